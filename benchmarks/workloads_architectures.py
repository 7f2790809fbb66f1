"""Workloads A1, A2, A3 (defined in benchmarks/README.md): the newer architectures' step cost.

Each workload times one architecture against `lopt_optimizers.Adam(1e-3)` in the
same process, on the 8x8 image MLP (flatten 64 -> ReLU 32 -> 10, softmax
cross-entropy, batch 128). Unlike W1-W3, every step is one jitted call that is
passed a fresh batch (drawn on the host from a pool of 4096 synthetic images) and
a fresh key, after 100 warm-up steps. Wall time (`time.perf_counter`) and process
CPU time (`time.process_time`, all threads) are both reported, as ratios to
Adam's, with the state's floats per parameter.

Run one by hand:
  python -c "import sys; sys.path.insert(0, 'benchmarks'); \
import workloads_architectures as w; print(w.WORKLOADS['A1']())"
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax

import lopt_core
from lopt_learned import Celo2, MuAdafacMLPLOpt
from lopt_optimizers import Adam

STEPS = 1000
WARMUP = 100
BATCH = 128
POOL = 4096


def _problem() -> tuple[Any, Callable[[Any, Any], jax.Array], np.ndarray, np.ndarray]:
    """Initial params, `loss(params, batch)` and the host-side image and label pool."""
    rng = np.random.default_rng(0)
    images = rng.random((POOL, 8, 8, 1), dtype=np.float32)
    labels = rng.integers(0, 10, POOL).astype(np.int32)
    net = hk.without_apply_rng(
        hk.transform(lambda x: hk.nets.MLP([32, 10])(jnp.reshape(x, (x.shape[0], -1))))
    )
    params = net.init(jax.random.PRNGKey(0), images[:BATCH])

    def loss(p: Any, batch: Any) -> jax.Array:
        logits = net.apply(p, batch["image"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

    return params, loss, images, labels


def _time(opt: Any) -> dict[str, float]:
    """`STEPS` steps of `opt`, each one jitted call given a batch and a key."""
    params, loss_fn, images, labels = _problem()

    @jax.jit
    def step(state: Any, batch: Any, key: jax.Array) -> tuple[Any, jax.Array]:
        loss, grads = jax.value_and_grad(loss_fn)(opt.get_params(state), batch)
        return opt.update(state, grads, loss=loss, key=key), loss

    rng = np.random.default_rng(1)
    batches = []
    for _ in range(WARMUP + STEPS):
        i = rng.integers(0, POOL, BATCH)
        batches.append({"image": images[i], "label": labels[i]})
    keys = list(jax.random.split(jax.random.PRNGKey(2), WARMUP + STEPS))
    state = opt.init(params, num_steps=WARMUP + STEPS)
    for t in range(WARMUP):
        state, loss = step(state, batches[t], keys[t])
    jax.block_until_ready(state)
    wall, cpu = time.perf_counter(), time.process_time()
    for t in range(WARMUP, WARMUP + STEPS):
        state, loss = step(state, batches[t], keys[t])
    jax.block_until_ready((state, loss))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    num_params = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(params))
    # Everything in the state but the params and the iteration counter.
    floats = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(state)) - num_params - 1
    return {
        "us_per_step": 1e6 * wall / STEPS,
        "cpu_us_per_step": 1e6 * cpu / STEPS,
        "state_floats_per_param": floats / num_params,
        "final_loss": float(loss),
    }


def _against_adam(lopt: Any) -> dict[str, Any]:
    adam = _time(Adam(1e-3))
    ours = _time(lopt.opt_fn(lopt.init(jax.random.PRNGKey(0))))
    return {
        "architecture": type(lopt).__name__,
        "steps_per_s": 1e6 / ours["us_per_step"],
        "us_per_step": ours["us_per_step"],
        "cpu_us_per_step": ours["cpu_us_per_step"],
        "adam_us_per_step": adam["us_per_step"],
        "adam_cpu_us_per_step": adam["cpu_us_per_step"],
        "wall_ratio_to_adam": ours["us_per_step"] / adam["us_per_step"],
        "cpu_ratio_to_adam": ours["cpu_us_per_step"] / adam["cpu_us_per_step"],
        "state_floats_per_param": ours["state_floats_per_param"],
        "final_loss": ours["final_loss"],
    }


def a1() -> dict[str, Any]:
    """A1: Celo2 (initial theta) against Adam(1e-3)."""
    return _against_adam(Celo2())


def a2() -> dict[str, Any]:
    """A2: MuAdafacMLPLOpt (initial theta) against Adam(1e-3)."""
    return _against_adam(MuAdafacMLPLOpt())


def a3() -> dict[str, Any]:
    """A3: HyperV2 (initial theta) against Adam(1e-3), once it is registered."""
    if "HyperV2" not in lopt_core.list_learned_optimizers():
        raise RuntimeError("A3 needs HyperV2, which lopt-learned does not register yet.")
    return _against_adam(lopt_core.get_learned_optimizer("HyperV2"))


WORKLOADS: dict[str, Callable[[], dict[str, Any]]] = {"A1": a1, "A2": a2, "A3": a3}
