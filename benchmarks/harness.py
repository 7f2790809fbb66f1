"""The library-neutral part of the workloads: the task, the data and the timing loops.

Everything here needs only jax, haiku, optax and numpy, so the same code times lopt
(`workloads_*.py`) and, in a separate environment, the reference library
(`reference_workloads.py`): the two sides differ only in the optimizer, learned
optimizer, estimator and learner objects they pass in. Those objects share the
reference's interface (`init(params, num_steps=)`, `get_params(state)`,
`update(state, grads, loss=, key=)`; `learner.init(key)`, `learner.update(state,
key)`), which is lopt's by design.

The task is the 8x8 image MLP: flatten 64 -> ReLU 32 -> 10, softmax cross-entropy
averaged over a batch of 128 synthetic images (float32 uniform in [0, 1), shape
(8, 8, 1)) with int32 labels in 0..9, all from fixed seeds.
"""

from __future__ import annotations

import itertools
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax

STEPS = 2000
WARMUP = 100
CHUNK = 200
BATCH = 128
NUM_BATCHES = 32
META_CALLS = 200  # W4: calls timed after the first

Batch = tuple[jax.Array, jax.Array]


def net() -> hk.Transformed:
    """The 8x8 image MLP as a haiku transform without an apply key."""
    return hk.without_apply_rng(
        hk.transform(lambda x: hk.nets.MLP([32, 10])(jnp.reshape(x, (x.shape[0], -1))))
    )


def logits_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy against integer labels, averaged over the batch."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


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


def synthetic_arrays(num_examples: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Host arrays of `num_examples` synthetic images and labels (the W4-W6 tasks' data)."""
    rng = np.random.RandomState(seed)
    return {
        "image": rng.uniform(size=(num_examples, 8, 8, 1)).astype(np.float32),
        "label": rng.randint(0, 10, size=(num_examples,)).astype(np.int32),
    }


OUTER_EXAMPLES = 16 * BATCH
"""Examples in each split of the W4-W6 task (the same on both libraries' sides)."""


def host_batches(seed: int) -> Iterator[dict[str, np.ndarray]]:
    """Endless host batches of 128 of the W4-W6 task's examples, a seeded order cycled.

    The like-for-like W5/W6 feed both libraries' tasks from these iterators: a
    host batch per inner step, as the reference's tasks read theirs.
    """
    arrays = synthetic_arrays(OUTER_EXAMPLES)
    order = np.random.RandomState(seed).permutation(OUTER_EXAMPLES)
    chunks = [order[i : i + BATCH] for i in range(0, OUTER_EXAMPLES, BATCH)]
    for idx in itertools.cycle(chunks):
        yield {k: v[idx] for k, v in arrays.items()}


def loss_fn(model: hk.Transformed) -> Callable[[Any, Batch], jax.Array]:
    """The batch loss of `model` as `loss(params, (images, labels))`."""

    def loss(params: Any, batch: Batch) -> jax.Array:
        images, labels = batch
        return logits_loss(model.apply(params, images), labels)

    return loss


def init_params(model: hk.Transformed) -> Any:
    """The MLP's parameters from a fixed key."""
    return model.init(jax.random.PRNGKey(1), jnp.zeros((BATCH, 8, 8, 1), jnp.float32))


def step_keys(n: int) -> list[jax.Array]:
    """`n` per-step keys, split (and sliced into single keys) before any timing."""
    return list(jax.random.split(jax.random.PRNGKey(2), n))


def timed_loop(run_step: Callable[[int], jax.Array], total_warmup: int) -> dict[str, float]:
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


CALL_OUTPUTS = (4, 8, 9, 10, 16, 32, 64, 100)
"""X1: the output counts timed (each output its own small fusion: one thunk each)."""


def call_cost(calls: int = 2000, warmup: int = 300) -> dict[str, float]:
    """X1: the cost of calling a jitted function of one small fusion per output.

    For each count k of `CALL_OUTPUTS`, `x -> tuple(sin(x * (i + 1)) for i < k)` on a
    `(3, 100)` float32 array: about k tiny thunks and k output arrays, no library
    code. It times the runtime's own cost per call, and how it grows with the
    program's thunk count, on each side's jaxlib.

    Returns:
      `us_per_call_cpu_k{k}` and `us_per_call_wall_k{k}` for every k.
    """
    x = jnp.ones((3, 100), jnp.float32)
    out: dict[str, float] = {}
    for k in CALL_OUTPUTS:
        fn = jax.jit(lambda x, k=k: tuple(jnp.sin(x * (i + 1)) for i in range(k)))
        res = fn(x)
        for _ in range(warmup):
            res = fn(x)
        jax.block_until_ready(res)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            res = fn(x)
        jax.block_until_ready(res)
        out[f"us_per_call_wall_k{k}"] = 1e6 * (time.perf_counter() - start) / calls
        out[f"us_per_call_cpu_k{k}"] = 1e6 * (time.process_time() - cpu) / calls
    return out


def floats_per_param(state: Any, params: Any) -> float:
    """Floating-point numbers in `state` (parameters included) per parameter."""

    def floats(tree: Any) -> int:
        return sum(
            int(x.size)
            for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
        )

    return floats(state) / floats(params)


def stepwise(opt: Any) -> dict[str, float]:
    """Like for like: each step one jitted call of (state, batch, key), batches cycled.

    Args:
      opt: an optimizer with `init(params, num_steps=)`, `get_params(state)` and
        `update(state, grads, loss=, key=)`.

    Returns:
      `timed_loop`'s figures and `state_floats_per_param`.
    """
    model = net()
    loss = loss_fn(model)

    @jax.jit
    def step(state: Any, batch: Batch, key: jax.Array) -> tuple[Any, jax.Array]:
        value, grads = jax.value_and_grad(loss)(opt.get_params(state), batch)
        return opt.update(state, grads, loss=value, key=key), value

    batches = make_batches()
    keys = step_keys(WARMUP + STEPS)
    state = opt.init(init_params(model), num_steps=WARMUP + STEPS)

    def run_step(i: int) -> jax.Array:
        nonlocal state
        state, value = step(state, batches[i % NUM_BATCHES], keys[i])
        return value

    floats = floats_per_param(state, opt.get_params(state))
    return {**timed_loop(run_step, WARMUP), "state_floats_per_param": floats}


def learned_opt(lopt: Any) -> Any:
    """`lopt`'s optimizer at its initial theta (from `PRNGKey(0)`)."""
    return lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))


class PlainOptax:
    """A plain optax loop in `stepwise`'s shape: the state is `(params, optax state)`.

    No library code runs in its step: W1o is the yardstick for an Adam adapter (W1) on
    the same jaxlib.
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


def scanned(opt: Any) -> dict[str, float]:
    """`STEPS` inner steps inside one jit (`lax.scan`) over the cycled batches and keys.

    Compiled and run once, then timed on the second call, by wall and CPU time.
    """
    model = net()
    loss = loss_fn(model)
    batches = make_batches()
    images = jnp.stack([b[0] for b in batches])
    labels = jnp.stack([b[1] for b in batches])
    keys = jax.random.split(jax.random.PRNGKey(2), STEPS)
    which = jnp.arange(STEPS) % NUM_BATCHES

    @jax.jit
    def train(state: Any, images: jax.Array, labels: jax.Array) -> tuple[Any, jax.Array]:
        def body(s: Any, x: tuple[jax.Array, jax.Array]) -> tuple[Any, jax.Array]:
            j, key = x
            value, grads = jax.value_and_grad(loss)(opt.get_params(s), (images[j], labels[j]))
            return opt.update(s, grads, loss=value, key=key), value

        return jax.lax.scan(body, state, (which, keys))

    state = opt.init(init_params(model), num_steps=STEPS)
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


def meta_loss_fn(task: Any, lopt: Any) -> Callable[[Any, jax.Array, Any], jax.Array]:
    """Part 1's `meta_loss`: `lopt`'s optimizer runs 4 inner steps of `task` on one batch.

    Args:
      task: a task with `init(key)` and `loss(params, key, batch)`.
      lopt: a learned optimizer with `opt_fn(theta)`.

    Returns:
      `meta_loss(theta, key, batch)`: the task's loss after the 4 steps.
    """

    def meta_loss(theta: Any, key: jax.Array, batch: Any) -> jax.Array:
        opt = lopt.opt_fn(theta)
        key1, key = jax.random.split(key)
        param = task.init(key1)
        opt_state = opt.init(param)
        for _ in range(4):
            param = opt.get_params(opt_state)
            key1, key = jax.random.split(key)
            loss, grad = jax.value_and_grad(task.loss)(param, key1, batch)
            opt_state = opt.update(opt_state, grad, loss)
        param, _ = opt.get_params_state(opt_state)
        key1, key = jax.random.split(key)
        return task.loss(param, key1, batch)

    return meta_loss


def plain_adam_meta_loss(task: Any) -> tuple[Callable[[Any, jax.Array, Any], jax.Array], Any]:
    """W4p: Part 1's `meta_loss` written in plain JAX, no library: the W4 yardstick.

    The same 4 inner steps of `task` on one batch as `meta_loss_fn`, with Adam's four
    hyperparameters as theta in LearnableAdam's parametrisation (logs of lr and eps,
    logs of one minus each beta; bias-corrected, `eps_root=1e-8`), written inline.

    Returns:
      `(meta_loss(theta, key, batch), theta)` with theta at lr 1e-3, betas 0.9 and
      0.999, eps 1e-8.
    """
    theta = {
        "log_epsilon": jnp.log(jnp.float32(1e-8)),
        "log_lr": jnp.log(jnp.float32(1e-3)),
        "one_minus_beta1": jnp.log(jnp.float32(0.1)),
        "one_minus_beta2": jnp.log(jnp.float32(1e-3)),
    }

    def meta_loss(theta: Any, key: jax.Array, batch: Any) -> jax.Array:
        lr, eps = jnp.exp(theta["log_lr"]), jnp.exp(theta["log_epsilon"])
        b1 = 1 - jnp.exp(theta["one_minus_beta1"])
        b2 = 1 - jnp.exp(theta["one_minus_beta2"])
        key1, key = jax.random.split(key)
        param = task.init(key1)
        mu = jax.tree.map(jnp.zeros_like, param)
        nu = jax.tree.map(jnp.zeros_like, param)
        for t in range(1, 5):
            key1, key = jax.random.split(key)
            grad = jax.grad(task.loss)(param, key1, batch)
            mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, mu, grad)
            nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, nu, grad)
            c1, c2 = 1 - b1**t, 1 - b2**t
            param = jax.tree.map(
                lambda p, m, v, c1=c1, c2=c2: p - lr * (m / c1) / (jnp.sqrt(v / c2 + 1e-8) + eps),
                param,
                mu,
                nu,
            )
        key1, key = jax.random.split(key)
        return task.loss(param, key1, batch)

    return meta_loss, theta


def timed_meta_gradient(meta_loss: Callable[..., jax.Array], theta: Any, batch: Any) -> dict:
    """W4: `jax.jit(jax.value_and_grad(meta_loss))`'s first call, then `META_CALLS` more.

    Returns:
      The first call (compile included) and the mean later call, wall and CPU; and
      the compiled program's fusion count (`fusions`, from its optimised HLO).
    """
    key = jax.random.PRNGKey(0)
    fn = jax.jit(jax.value_and_grad(meta_loss))
    start, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(theta, key, batch))
    first, first_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(META_CALLS):
        out = fn(theta, key, batch)
    jax.block_until_ready(out)
    per_call = (time.perf_counter() - start) / META_CALLS
    per_call_cpu = (time.process_time() - cpu) / META_CALLS
    return {
        "first_call_s": first,
        "first_call_cpu_s": first_cpu,
        "us_per_call": 1e6 * per_call,
        "us_per_call_cpu": 1e6 * per_call_cpu,
        "fusions": fusion_count(fn, theta, key, batch),
    }


def fusion_count(fn: Callable[..., Any], *args: Any) -> int:
    """The number of fusion computations in `fn`'s optimised HLO for these arguments."""
    text = fn.lower(*args).compile().as_text()
    return sum(1 for line in text.splitlines() if line.lstrip().startswith("%fused_computation"))


def timed_outer_steps(make_learner: Callable[[], Any], n: int) -> dict:
    """Learner init plus the first outer step, then `n` more outer steps: wall and CPU.

    Args:
      make_learner: builds the learner (`init(key)`, `update(state, key)` returning
        `(state, loss, metrics)`); built before the clock starts.
      n: outer steps timed after the first.
    """
    learner = make_learner()
    start, cpu = time.perf_counter(), time.process_time()
    state = learner.init(jax.random.PRNGKey(0))
    state, loss, _ = learner.update(state, jax.random.PRNGKey(1))
    jax.block_until_ready(state)
    first, first_cpu = time.perf_counter() - start, time.process_time() - cpu
    walls, cpus = [], []
    for i in range(n):
        t, c = time.perf_counter(), time.process_time()
        state, loss, _ = learner.update(state, jax.random.PRNGKey(i + 2))
        jax.block_until_ready(state)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return {
        "first_outer_step_s": first,
        # CPU seconds of this process (all threads): less sensitive to other jobs.
        "first_outer_step_cpu_s": first_cpu,
        "s_per_outer_step": statistics.median(walls),
        "cpu_s_per_outer_step": statistics.median(cpus),
        "outer_steps": n,
        "meta_loss": float(loss),
    }


def timed_child(code: str) -> dict[str, float]:
    """Runs `python -c code` in a cold child process: its wall and CPU seconds.

    CPU is the child's user plus system time (`resource.getrusage(RUSAGE_CHILDREN)`).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"import_s_wall": wall, "import_s_cpu": cpu}
