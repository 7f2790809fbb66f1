"""Workloads R0, R1, R2 and R3: meta-training on Ray next to the in-process loop.

R0-R2 run W5's outer step (TruncatedPES, trunc 20, std 0.01, 8 tasks of the 8x8
image MLP, schedule 200, MLPLOpt, Adam(1e-3); the task and setup come from
workloads_outer.py) for `STEPS` outer steps:
- R0: the in-process loop, `meta_train`;
- R1: `meta_train` on `RayBackend` with one worker actor on a local 2-CPU Ray cluster;
- R2: the same with two worker actors.
Each reports `outer_steps_per_s` over the steps after `WARMUP` (compilation and
worker start-up excluded) and `first_step_s` (from the call to the first applied
update, start-up and compilation included); R1 and R2 also report the Ray
cluster's start time, the learner's own milliseconds per update (median) and the
fraction of the time the learner was busy (near 1: the learner is the
bottleneck), both over the steps after `WARMUP`.

R3 measures what bounds a single learner: for theta of MLPLOpt's size and for
synthetic thetas of 1M and 10M float32 parameters, the time to apply one update
(`GradientLearner.update` with Adam), to publish theta (`ray.put` of the worker
weights) and a worker round trip (an actor call that fetches theta from the
object store and returns a gradient of the same size).

Needs `ray` (`pip install 'lopt-outer[ray]'`). Run one by hand:
  python -c "import sys; sys.path.insert(0, 'benchmarks'); import workloads_ray as w; \
print(w.WORKLOADS['R1']())"
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lopt_learned import MLPLOpt
from lopt_optimizers import Adam
from lopt_outer import (
    GradientLearner,
    RunConfig,
    SingleMachineGradientLearner,
    TruncatedPES,
    meta_train,
)
from lopt_outer.ray import RayBackend, host

HERE = Path(__file__).parent
STEPS = 40
WARMUP = 5
SEED = 0


def _learner() -> SingleMachineGradientLearner:
    """W5's learner (from workloads_outer, imported by name beside this file)."""
    from workloads_outer import outer_learner

    return outer_learner(lambda step: TruncatedPES(step, 20, 0.01))


def _start_ray() -> tuple[Any, float]:
    import ray

    # Workers import workloads_outer (ImageMLP8) by name; they inherit this path.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray, time.perf_counter() - start


def _rates(stamps: dict[int, float], start: float) -> dict[str, float]:
    steady = (STEPS - WARMUP) / (stamps[STEPS] - stamps[WARMUP])
    return {"outer_steps_per_s": steady, "first_step_s": stamps[1] - start}


def r0() -> dict[str, Any]:
    """R0: `meta_train` in process, W5's outer step."""
    learner = _learner()
    stamps: dict[int, float] = {}
    start = time.perf_counter()
    meta_train(
        learner,
        RunConfig(STEPS, seed=SEED, progress=False),
        callback=lambda step, state, row: stamps.__setitem__(step, time.perf_counter()),
    )
    return {**_rates(stamps, start), "workers": 0}


def _ray_run(num_workers: int) -> dict[str, Any]:
    ray, ray_start_s = _start_ray()
    try:
        learner = _learner()
        stamps: dict[int, float] = {}
        start = time.perf_counter()
        result = meta_train(
            learner,
            RunConfig(STEPS, seed=SEED, progress=False, metric_writers=()),
            RayBackend(num_workers=num_workers),
            callback=lambda step, state, row: stamps.__setitem__(step, time.perf_counter()),
        )
    finally:
        ray.shutdown()
    # Updates after the warm-up: the first ones include the learner's compilation.
    steady = result.history[WARMUP:]
    return {
        **_rates(stamps, start),
        "ray_start_s": ray_start_s,
        "learner_ms_per_update": 1e3 * statistics.median(r["ray/learner_s"] for r in steady),
        "learner_busy_frac": sum(r["ray/learner_s"] for r in steady)
        / (stamps[STEPS] - stamps[WARMUP]),
        "dropped_stale": result.dropped_stale,
        "max_staleness_seen": max(row["ray/staleness"] for row in result.history),
        "workers": num_workers,
    }


def r1() -> dict[str, Any]:
    """R1: `RayBackend` with 1 worker on a local 2-CPU cluster."""
    return _ray_run(1)


def r2() -> dict[str, Any]:
    """R2: `RayBackend` with 2 workers on a local 2-CPU cluster."""
    return _ray_run(2)


class _FixedTheta:
    """`init(key)` returning a fixed theta (a synthetic learned optimizer's weights)."""

    def __init__(self, theta: Any) -> None:
        self.theta = theta

    def init(self, key: jax.Array) -> Any:
        del key
        return self.theta


def _median_ms(fn: Callable[[], Any], n: int) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def _learner_costs(ray: Any, echo: Any, theta: Any, n: int) -> dict[str, float]:
    from lopt_outer.gradient_learner import AggregatedGradient

    learner = GradientLearner(_FixedTheta(theta), Adam(1e-3))
    state = learner.init(jax.random.PRNGKey(0))
    grad = host(jax.tree_util.tree_map(lambda x: 1e-3 * jnp.ones_like(x), theta))
    msg = AggregatedGradient(grad, None, np.float32(1.0))

    def apply() -> None:
        nonlocal state
        state, _ = learner.update(state, [msg], False, jax.random.PRNGKey(1))
        jax.block_until_ready(state)

    def publish() -> Any:
        return ray.put(host(learner.get_state_for_worker(state)))

    ref = publish()
    return {
        "params": int(sum(np.size(x) for x in jax.tree_util.tree_leaves(theta))),
        "apply_ms": _median_ms(apply, n),
        "publish_ms": _median_ms(publish, n),
        "roundtrip_ms": _median_ms(lambda: ray.get(echo.grad_like.remote(ref)), n),
    }


class _Echo:
    """A worker stand-in: fetches the weights and returns a gradient shaped like theta."""

    def grad_like(self, weights: Any) -> Any:
        return jax.tree_util.tree_map(np.zeros_like, weights.theta)


def r3() -> dict[str, Any]:
    """R3: learner capacity: apply, publish and round-trip times for three theta sizes."""
    ray, _ = _start_ray()
    try:
        echo = ray.remote(num_cpus=1)(_Echo).remote()
        mlp_theta = MLPLOpt().init(jax.random.PRNGKey(0))
        out: dict[str, Any] = {}
        sizes = {"mlplopt": (mlp_theta, 50), "1M": (None, 20), "10M": (None, 5)}
        for name, (theta, n) in sizes.items():
            if theta is None:
                count = {"1M": 1_000_000, "10M": 10_000_000}[name]
                theta = {"w": jnp.zeros((count,), jnp.float32)}
            for k, v in _learner_costs(ray, echo, theta, n).items():
                out[f"{name}_{k}"] = v
        return out
    finally:
        ray.shutdown()


WORKLOADS: dict[str, Callable[[], dict[str, Any]]] = {"R0": r0, "R1": r1, "R2": r2, "R3": r3}
