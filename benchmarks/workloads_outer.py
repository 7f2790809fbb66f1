"""Workloads W4, W5, W6 and I1 (defined in benchmarks/README.md): meta-training speed.

The task is the 8x8 image MLP (flatten 64 -> ReLU 32 -> 10, softmax cross-entropy
averaged over a batch of 128 synthetic images, uniform in [0, 1), labels in 0..9),
defined here with haiku. For W5 and W6 its data lives in a `lopt_core.ArraySplit`,
so batches are drawn from keys inside the one jitted call of each outer step.
Each workload function runs once in the current process and returns a dict of
figures.

Run one by hand:
  python -c "import sys; sys.path.insert(0, 'benchmarks'); import workloads_outer as w; \
print(w.WORKLOADS['W5']())"
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax

import lopt_core
from lopt_learned import LearnableAdam, MLPLOpt
from lopt_optimizers import Adam
from lopt_outer import (
    ConstantTruncationSchedule,
    FullES,
    SingleMachineGradientLearner,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
)

BATCH = 128


def _net() -> hk.Transformed:
    return hk.without_apply_rng(
        hk.transform(lambda x: hk.nets.MLP([32, 10])(jnp.reshape(x, (x.shape[0], -1))))
    )


class ImageMLP8(lopt_core.Task):
    """The 8x8 image MLP on synthetic data (batches of 128 drawn from keys)."""

    def __init__(self, num_examples: int = 16 * BATCH) -> None:
        rng = np.random.RandomState(0)
        arrays = {
            "image": rng.uniform(size=(num_examples, 8, 8, 1)).astype(np.float32),
            "label": rng.randint(0, 10, size=(num_examples,)).astype(np.int32),
        }
        splits = [lopt_core.ArraySplit(arrays, BATCH, seed=s) for s in range(4)]
        self.datasets = lopt_core.Datasets(*splits, extra_info={"num_classes": 10})
        self._net = _net()

    def init(self, key: jax.Array) -> Any:
        return self._net.init(key, jnp.zeros((BATCH, 8, 8, 1)))

    def loss(self, params: Any, key: jax.Array, data: Any) -> jax.Array:
        logits = self._net.apply(params, data["image"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, data["label"]).mean()

    def normalizer(self, loss: jax.Array) -> jax.Array:
        return jnp.clip(jnp.nan_to_num(loss, nan=1.5 * np.log(10)), 0, 1.5 * np.log(10))


def outer_learner(
    estimator_fn: Callable[[Any], Any], schedule_length: int
) -> SingleMachineGradientLearner:
    """W5/W6's learner: MLPLOpt on 8 copies of the 8x8 MLP, Adam(1e-3) on theta."""
    lopt = MLPLOpt()
    family = lopt_core.single_task_to_family(ImageMLP8())
    step = VectorizedLOptTruncatedStep(
        family,
        lopt,
        ConstantTruncationSchedule(schedule_length),
        num_tasks=8,
        random_initial_iteration_offset=schedule_length,
    )
    return SingleMachineGradientLearner(lopt, [estimator_fn(step)], Adam(1e-3))


def _timed_outer_steps(estimator_fn: Callable[[Any], Any], schedule_length: int, n: int) -> dict:
    learner = outer_learner(estimator_fn, schedule_length)
    start, cpu = time.perf_counter(), time.process_time()
    state = learner.init(jax.random.PRNGKey(0))
    state, loss, _ = learner.update(state, jax.random.PRNGKey(1))
    jax.block_until_ready(state)
    first, first_cpu = time.perf_counter() - start, time.process_time() - cpu
    times = []
    for i in range(n):
        t = time.perf_counter()
        state, loss, _ = learner.update(state, jax.random.PRNGKey(i + 2))
        jax.block_until_ready(state)
        times.append(time.perf_counter() - t)
    return {
        "first_outer_step_s": first,
        # CPU seconds of this process (all threads): less sensitive to other jobs.
        "first_outer_step_cpu_s": first_cpu,
        "s_per_outer_step": statistics.median(times),
        "meta_loss": float(loss),
    }


def w4() -> dict[str, float]:
    """W4: Part 1's meta_loss (LearnableAdam, 4 inner steps on one batch), jit(value_and_grad)."""
    task = ImageMLP8()
    batch = task.datasets.sample("train", jax.random.PRNGKey(0))
    lopt = LearnableAdam()

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

    key = jax.random.PRNGKey(0)
    theta = lopt.init(key)
    fn = jax.jit(jax.value_and_grad(meta_loss))
    start, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(theta, key, batch))
    first, first_cpu = time.perf_counter() - start, time.process_time() - cpu
    calls = 200
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(theta, key, batch)
    jax.block_until_ready(out)
    per_call = (time.perf_counter() - start) / calls
    return {"first_call_s": first, "first_call_cpu_s": first_cpu, "us_per_call": 1e6 * per_call}


def w5() -> dict[str, float]:
    """W5: TruncatedPES (trunc 20, std 0.01) over 8 tasks, schedule 200, MLPLOpt, Adam(1e-3)."""
    return _timed_outer_steps(lambda s: TruncatedPES(s, unroll_length=20, std=0.01), 200, 20)


def w6() -> dict[str, float]:
    """W6: W5 with FullES over a schedule of length 100."""
    return _timed_outer_steps(
        lambda s: FullES(s, ConstantTruncationSchedule(100), std=0.01), 100, 10
    )


def i1() -> dict[str, float]:
    """I1: `python -c "import lopt_outer"` in a cold process (wall time of the process)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import lopt_outer"], check=True)
    return {"import_s": time.perf_counter() - start}


WORKLOADS: dict[str, Callable[[], dict[str, float]]] = {"W4": w4, "W5": w5, "W6": w6, "I1": i1}


if __name__ == "__main__":
    for wid in sys.argv[1:] or list(WORKLOADS):
        print(wid, WORKLOADS[wid]())
