"""Workloads W1, W1o, W2, W2c, W3, W1k, W2k, W3k, W7 and X1 (defined in benchmarks/README.md).

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
- X1: no library code: the cost of a jitted call against the number of small
  fusions (and outputs) in the program (`harness.call_cost`), on this jaxlib.
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

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from harness import (
    BATCH,
    STEPS,
    WARMUP,
    PlainOptax,
    call_cost,
    init_params,
    learned_opt,
    loss_fn,
    make_batches,
    net,
    scanned,
    step_keys,
    stepwise,
    timed_loop,
)

import lopt_core
from lopt_learned import AdafacMLPLOpt, MLPLOpt, load_pretrained
from lopt_optimizers import Adam


def _keyed(opt: Any) -> dict[str, float]:
    """lopt's way: each step one jitted call of (state, split, key); the batch drawn inside."""
    model = net()
    loss = loss_fn(model)
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
        value, grads = jax.value_and_grad(loss)(
            opt.get_params(state), (data["image"], data["label"])
        )
        return opt.update(state, grads, loss=value, key=k_opt), value

    keys = step_keys(WARMUP + STEPS)
    state = opt.init(init_params(model), num_steps=WARMUP + STEPS)

    def run_step(i: int) -> jax.Array:
        nonlocal state
        state, value = step(state, split, keys[i])
        return value

    return timed_loop(run_step, WARMUP)


def w1o() -> dict[str, float]:
    """W1o: W1's harness around a plain `optax.adam(1e-2)` loop (no lopt code in the step)."""
    return stepwise(PlainOptax(optax.adam(1e-2)))


def w1() -> dict[str, float]:
    """W1: Adam(1e-2), one jitted call per step given a pre-made batch and a key."""
    return stepwise(Adam(1e-2))


def w2() -> dict[str, float]:
    """W2: W1 with MLPLOpt at freshly initialised theta."""
    return stepwise(learned_opt(MLPLOpt()))


def w2c() -> dict[str, float]:
    """W2c: W1 with the shipped, meta-trained Celo2_General."""
    loaded = load_pretrained("Celo2_General")
    return stepwise(loaded.lopt.opt_fn(loaded.theta))


def w3() -> dict[str, float]:
    """W3: W1 with AdafacMLPLOpt at freshly initialised theta."""
    return stepwise(learned_opt(AdafacMLPLOpt()))


def w1k() -> dict[str, float]:
    """W1k: Adam(1e-2), one jitted call per step given a key; the batch drawn inside."""
    return _keyed(Adam(1e-2))


def w2k() -> dict[str, float]:
    """W2k: W1k with MLPLOpt at freshly initialised theta."""
    return _keyed(learned_opt(MLPLOpt()))


def w3k() -> dict[str, float]:
    """W3k: W1k with AdafacMLPLOpt at freshly initialised theta."""
    return _keyed(learned_opt(AdafacMLPLOpt()))


def w7() -> dict[str, float]:
    """W7: W1 with all steps inside one jit."""
    return scanned(Adam(1e-2))


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
    "X1": call_cost,
}
