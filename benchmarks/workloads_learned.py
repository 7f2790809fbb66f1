"""Workloads W1, W2, W3 and W7 (defined in benchmarks/README.md): inner training speed.

The task is the 8x8 image MLP (flatten 64 -> ReLU 32 -> 10, softmax cross-entropy
averaged over a batch of 128 synthetic images), defined here with haiku so the
benchmark needs only lopt-core, lopt-optimizers and lopt-learned. Each workload
function runs once in the current process and returns a dict of figures.

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

from lopt_learned import AdafacMLPLOpt, MLPLOpt
from lopt_optimizers import Adam

STEPS = 2000
WARMUP = 20
CHUNK = 200


def _task() -> tuple[Any, Callable[[Any], jax.Array]]:
    """Initial params and the loss of the 8x8 image MLP on one fixed synthetic batch."""
    k_img, k_lab, k_init = jax.random.split(jax.random.PRNGKey(0), 3)
    images = jax.random.uniform(k_img, (128, 8, 8, 1), jnp.float32)
    labels = jax.random.randint(k_lab, (128,), 0, 10, jnp.int32)
    net = hk.without_apply_rng(
        hk.transform(lambda x: hk.nets.MLP([32, 10])(jnp.reshape(x, (x.shape[0], -1))))
    )
    params = net.init(k_init, images)

    def loss(p: Any) -> jax.Array:
        logits = net.apply(p, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    return params, loss


def _stepwise(opt: Any) -> dict[str, float]:
    """`STEPS` inner steps, each one jitted call of get_params, value_and_grad and update.

    Timed in chunks of `CHUNK` steps; the figures cover all `STEPS` steps, plus the
    fastest chunk.
    """
    params, loss_fn = _task()

    @jax.jit
    def step(state: Any) -> tuple[Any, jax.Array]:
        p = opt.get_params(state)
        loss, grads = jax.value_and_grad(loss_fn)(p)
        return opt.update(state, grads, loss=loss), loss

    state = opt.init(params, num_steps=STEPS)
    for _ in range(WARMUP):
        state, loss = step(state)
    jax.block_until_ready(state)
    chunks = []
    for _ in range(STEPS // CHUNK):
        start = time.perf_counter()
        for _ in range(CHUNK):
            state, loss = step(state)
        jax.block_until_ready((state, loss))
        chunks.append(time.perf_counter() - start)
    seconds = sum(chunks)
    return {
        "steps_per_s": STEPS / seconds,
        "us_per_step": 1e6 * seconds / STEPS,
        # The fastest chunk of CHUNK steps: less sensitive to other jobs on the machine.
        "best_chunk_us_per_step": 1e6 * min(chunks) / CHUNK,
        "final_loss": float(loss),
    }


def _scanned(opt: Any) -> dict[str, float]:
    """`STEPS` inner steps inside one jit (`lax.scan`); timed on the second call."""
    params, loss_fn = _task()

    @jax.jit
    def train(state: Any) -> tuple[Any, jax.Array]:
        def body(s: Any, _: Any) -> tuple[Any, jax.Array]:
            loss, grads = jax.value_and_grad(loss_fn)(opt.get_params(s))
            return opt.update(s, grads, loss=loss), loss

        return jax.lax.scan(body, state, None, length=STEPS)

    state = opt.init(params, num_steps=STEPS)
    jax.block_until_ready(train(state))
    start = time.perf_counter()
    _, losses = jax.block_until_ready(train(state))
    seconds = time.perf_counter() - start
    return {
        "steps_per_s": STEPS / seconds,
        "us_per_step": 1e6 * seconds / STEPS,
        "final_loss": float(losses[-1]),
    }


def _learned(lopt: Any) -> Any:
    return lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))


def w1() -> dict[str, float]:
    """W1: Adam(1e-2), one jitted call per step."""
    return _stepwise(Adam(1e-2))


def w2() -> dict[str, float]:
    """W2: MLPLOpt with freshly initialised theta, one jitted call per step."""
    return _stepwise(_learned(MLPLOpt()))


def w3() -> dict[str, float]:
    """W3: AdafacMLPLOpt with freshly initialised theta, one jitted call per step."""
    return _stepwise(_learned(AdafacMLPLOpt()))


def w7() -> dict[str, float]:
    """W7: W1 with all steps inside one jit."""
    return _scanned(Adam(1e-2))


WORKLOADS: dict[str, Callable[[], dict[str, float]]] = {"W1": w1, "W2": w2, "W3": w3, "W7": w7}
