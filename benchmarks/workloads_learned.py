"""Workloads W1, W1o, W2, W2c, W3, W1k, W2k, W3k and W7 (defined in benchmarks/README.md): inner speed.

The task is the 8x8 image MLP (flatten 64 -> ReLU 32 -> 10, softmax cross-entropy
averaged over a batch of 128), defined here with haiku so the benchmark needs only
lopt-core, lopt-optimizers and lopt-learned. The data is synthetic: 32 batches of
128 images, float32 uniform in [0, 1) of shape (128, 8, 8, 1), with int32 labels in
0..9, made once from fixed seeds before anything is timed.

- W1, W2, W3 (like for like): each inner step is one jitted call
  `step(state, batch, key)`; the batch is the next of the 32 pre-made ones (cycled)
  and the key the next of a list split beforehand.
- W1k, W2k, W3k (keyed, lopt's own way): each inner step is one jitted call
  `step(state, split, key)`; the 32 batches' examples sit on the device in a
  `lopt_core.ArraySplit` and the step draws its batch of 128 from the key.
- W1o: W1's harness around a plain `optax.adam` loop, with no lopt code in the step:
  the yardstick for lopt's Adam adapter, on the same jaxlib.
- W7: W1 with the whole loop inside one jitted `lax.scan`.
- W2c: W1 with the shipped `Celo2_General` (its meta-trained theta, loaded from the
  wheel): its cost per step against Adam's (`ratio_to_W1_cpu`).

W1, W2, W2c and W3 also report `state_floats_per_param`: the floats in the
optimizer's state (parameters included) per parameter of the MLP, so
`state_floats_per_param` minus W1's is the state an optimizer holds beyond Adam's.

Every stepwise workload runs `WARMUP` steps, then times `STEPS` steps in chunks of
`CHUNK`, by wall clock (`time.perf_counter`) and by the process's CPU time
(`time.process_time`, all threads). Each workload function runs once in the current
process and returns a dict of figures.

Run one by hand:
  python -c "import sys; sys.path.insert(0, 'benchmarks'); import workloads_learned as w; \
print(w.WORKLOADS['W2']())"
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import optax

import lopt_core
from lopt_learned import AdafacMLPLOpt, MLPLOpt, load_pretrained
from lopt_optimizers import Adam

STEPS = 2000
WARMUP = 100
CHUNK = 200
BATCH = 128
NUM_BATCHES = 32

Batch = tuple[jax.Array, jax.Array]


def _net() -> hk.Transformed:
    return hk.without_apply_rng(
        hk.transform(lambda x: hk.nets.MLP([32, 10])(jnp.reshape(x, (x.shape[0], -1))))
    )


def make_batches(seed: int = 0) -> list[Batch]:
    """The 32 pre-made synthetic batches: (images (128, 8, 8, 1) float32, labels (128,) int32).

    Args:
      seed: the seed of the images and labels.

    Returns:
      A list of `NUM_BATCHES` (images, labels) pairs on the default device.
    """
    k_img, k_lab = jax.random.split(jax.random.PRNGKey(seed))
    images = jax.random.uniform(k_img, (NUM_BATCHES, BATCH, 8, 8, 1), jnp.float32)
    labels = jax.random.randint(k_lab, (NUM_BATCHES, BATCH), 0, 10, jnp.int32)
    return [(images[i], labels[i]) for i in range(NUM_BATCHES)]


def _loss_fn(net: hk.Transformed) -> Callable[[Any, Batch], jax.Array]:
    def loss(params: Any, batch: Batch) -> jax.Array:
        images, labels = batch
        logits = net.apply(params, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    return loss


def _init_params(net: hk.Transformed) -> Any:
    return net.init(jax.random.PRNGKey(1), jnp.zeros((BATCH, 8, 8, 1), jnp.float32))


def _step_keys(n: int) -> list[jax.Array]:
    """`n` per-step keys, split (and sliced into single keys) before any timing."""
    return list(jax.random.split(jax.random.PRNGKey(2), n))


def _timed_loop(run_step: Callable[[int], jax.Array], total_warmup: int) -> dict[str, float]:
    """Warms up, then times `STEPS` calls of `run_step(i)` in chunks: wall and CPU.

    Args:
      run_step: runs inner step `i` (advancing its own state) and returns its loss.
      total_warmup: warm-up steps before the timed ones.

    Returns:
      steps/s (wall), µs per step by wall and by CPU time, steps per CPU-second, the
      fastest chunk's wall µs per step, and the last loss.
    """
    loss = None
    for i in range(total_warmup):
        loss = run_step(i)
    jax.block_until_ready(loss)
    walls, cpus = [], []
    i = total_warmup
    for _ in range(STEPS // CHUNK):
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(CHUNK):
            loss = run_step(i)
            i += 1
        jax.block_until_ready(loss)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    wall, cpu = sum(walls), sum(cpus)
    return {
        "steps_per_s": STEPS / wall,
        "us_per_step_wall": 1e6 * wall / STEPS,
        "us_per_step_cpu": 1e6 * cpu / STEPS,
        # Steps per CPU-second: the rate that other jobs on the machine disturb least.
        "cpu_steps_per_s": STEPS / cpu,
        # The fastest chunk of CHUNK steps, by wall clock.
        "best_chunk_us_per_step_wall": 1e6 * min(walls) / CHUNK,
        "final_loss": float(loss),
    }


def _stepwise(opt: Any) -> dict[str, float]:
    """Like for like: each step one jitted call of (state, batch, key), batches cycled."""
    net = _net()
    loss_fn = _loss_fn(net)

    @jax.jit
    def step(state: Any, batch: Batch, key: jax.Array) -> tuple[Any, jax.Array]:
        loss, grads = jax.value_and_grad(loss_fn)(opt.get_params(state), batch)
        return opt.update(state, grads, loss=loss, key=key), loss

    batches = make_batches()
    keys = _step_keys(WARMUP + STEPS)
    state = opt.init(_init_params(net), num_steps=WARMUP + STEPS)

    def run_step(i: int) -> jax.Array:
        nonlocal state
        state, loss = step(state, batches[i % NUM_BATCHES], keys[i])
        return loss

    floats = _floats_per_param(state, opt.get_params(state))
    return {**_timed_loop(run_step, WARMUP), "state_floats_per_param": floats}


def _floats_per_param(state: Any, params: Any) -> float:
    """Floating-point numbers in `state` (parameters included) per parameter."""

    def floats(tree: Any) -> int:
        return sum(
            int(x.size)
            for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
        )

    return floats(state) / floats(params)


def _keyed(opt: Any) -> dict[str, float]:
    """lopt's way: each step one jitted call of (state, split, key); the batch drawn inside."""
    net = _net()
    loss_fn = _loss_fn(net)
    batches = make_batches()
    split = lopt_core.ArraySplit(
        {
            "image": jnp.concatenate([b[0] for b in batches]),
            "label": jnp.concatenate([b[1] for b in batches]),
        },
        BATCH,
    )

    @jax.jit
    def step(state: Any, split: lopt_core.ArraySplit, key: jax.Array) -> tuple[Any, jax.Array]:
        k_data, k_opt = jax.random.split(key)
        data = split.sample(k_data)
        loss, grads = jax.value_and_grad(loss_fn)(
            opt.get_params(state), (data["image"], data["label"])
        )
        return opt.update(state, grads, loss=loss, key=k_opt), loss

    keys = _step_keys(WARMUP + STEPS)
    state = opt.init(_init_params(net), num_steps=WARMUP + STEPS)

    def run_step(i: int) -> jax.Array:
        nonlocal state
        state, loss = step(state, split, keys[i])
        return loss

    return _timed_loop(run_step, WARMUP)


def _scanned(opt: Any) -> dict[str, float]:
    """`STEPS` inner steps inside one jit (`lax.scan`) over the cycled batches and keys.

    Compiled and run once, then timed on the second call, by wall and CPU time.
    """
    net = _net()
    loss_fn = _loss_fn(net)
    batches = make_batches()
    images = jnp.stack([b[0] for b in batches])
    labels = jnp.stack([b[1] for b in batches])
    keys = jax.random.split(jax.random.PRNGKey(2), STEPS)
    which = jnp.arange(STEPS) % NUM_BATCHES

    @jax.jit
    def train(state: Any, images: jax.Array, labels: jax.Array) -> tuple[Any, jax.Array]:
        def body(s: Any, x: tuple[jax.Array, jax.Array]) -> tuple[Any, jax.Array]:
            j, key = x
            batch = (images[j], labels[j])
            loss, grads = jax.value_and_grad(loss_fn)(opt.get_params(s), batch)
            return opt.update(s, grads, loss=loss, key=key), loss

        return jax.lax.scan(body, state, (which, keys))

    state = opt.init(_init_params(net), num_steps=STEPS)
    jax.block_until_ready(train(state, images, labels))
    start, cpu = time.perf_counter(), time.process_time()
    _, losses = jax.block_until_ready(train(state, images, labels))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "steps_per_s": STEPS / wall,
        "us_per_step_wall": 1e6 * wall / STEPS,
        "us_per_step_cpu": 1e6 * cpu / STEPS,
        "cpu_steps_per_s": STEPS / cpu,
        "final_loss": float(losses[-1]),
    }


def _learned(lopt: Any) -> Any:
    return lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))


class _PlainOptax:
    """A plain optax loop in `_stepwise`'s shape: the state is `(params, optax state)`.

    No lopt code runs in its step: W1o is the yardstick for lopt's Adam adapter (W1).
    """

    def __init__(self, tx: optax.GradientTransformation) -> None:
        self.tx = tx

    def init(self, params: Any, num_steps: int | None = None) -> Any:
        return params, self.tx.init(params)

    def get_params(self, state: Any) -> Any:
        return state[0]

    def update(self, state: Any, grads: Any, loss: Any = None, key: Any = None) -> Any:
        params, opt_state = state
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state


def w1o() -> dict[str, float]:
    """W1o: W1's harness around a plain `optax.adam(1e-2)` loop (no lopt code in the step)."""
    return _stepwise(_PlainOptax(optax.adam(1e-2)))


def w1() -> dict[str, float]:
    """W1: Adam(1e-2), one jitted call per step given a pre-made batch and a key."""
    return _stepwise(Adam(1e-2))


def w2() -> dict[str, float]:
    """W2: W1 with MLPLOpt at freshly initialised theta."""
    return _stepwise(_learned(MLPLOpt()))


def w2c() -> dict[str, float]:
    """W2c: W1 with the shipped, meta-trained Celo2_General."""
    loaded = load_pretrained("Celo2_General")
    return _stepwise(loaded.lopt.opt_fn(loaded.theta))


def w3() -> dict[str, float]:
    """W3: W1 with AdafacMLPLOpt at freshly initialised theta."""
    return _stepwise(_learned(AdafacMLPLOpt()))


def w1k() -> dict[str, float]:
    """W1k: Adam(1e-2), one jitted call per step given a key; the batch drawn inside."""
    return _keyed(Adam(1e-2))


def w2k() -> dict[str, float]:
    """W2k: W1k with MLPLOpt at freshly initialised theta."""
    return _keyed(_learned(MLPLOpt()))


def w3k() -> dict[str, float]:
    """W3k: W1k with AdafacMLPLOpt at freshly initialised theta."""
    return _keyed(_learned(AdafacMLPLOpt()))


def w7() -> dict[str, float]:
    """W7: W1 with all steps inside one jit."""
    return _scanned(Adam(1e-2))


WORKLOADS: dict[str, Callable[[], dict[str, float]]] = {
    "W1": w1,
    "W1o": w1o,
    "W2": w2,
    "W2c": w2c,
    "W3": w3,
    "W1k": w1k,
    "W2k": w2k,
    "W3k": w3k,
    "W7": w7,
}
