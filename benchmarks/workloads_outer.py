"""Workloads W4, W5, W5u, W6, W6u and I1 (defined in benchmarks/README.md): meta-training.

The task is the 8x8 image MLP (flatten 64 -> ReLU 32 -> 10, softmax cross-entropy
averaged over a batch of 128 synthetic images, uniform in [0, 1), labels in 0..9),
defined here with haiku. For W5 and W6 its data lives in a `lopt_core.ArraySplit`,
so batches are drawn from keys inside the jitted calls of each outer step.

- W5 / W6 run the unroll as jitted calls of 10 inner steps each (`steps_per_jit=10`,
  as the reference harness does); W5u / W6u run the whole unroll of an outer step
  as one jitted call (lopt's default).
- I1 times a cold child process importing what a Part 1 user imports.

Every figure is given by wall clock (`time.perf_counter`) and by CPU time (this
process's `time.process_time`, all threads; the child's `getrusage` for I1). Each
workload function runs once in the current process and returns a dict of figures.

Run one by hand:
  python -c "import sys; sys.path.insert(0, 'benchmarks'); import workloads_outer as w; \
print(w.WORKLOADS['W5']())"
"""

from __future__ import annotations

import resource
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
    """Learner init plus the first outer step, then `n` more outer steps: wall and CPU."""
    learner = outer_learner(estimator_fn, schedule_length)
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
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        out = fn(theta, key, batch)
    jax.block_until_ready(out)
    per_call = (time.perf_counter() - start) / calls
    per_call_cpu = (time.process_time() - cpu) / calls
    return {
        "first_call_s": first,
        "first_call_cpu_s": first_cpu,
        "us_per_call": 1e6 * per_call,
        "us_per_call_cpu": 1e6 * per_call_cpu,
    }


PER_JIT = 10  # inner steps per jitted call in W5 and W6, as in the reference harness


def w5() -> dict[str, float]:
    """W5: TruncatedPES (unroll 20, std 0.01), 8 tasks, schedule 200; 10 inner steps per jit."""
    return _timed_outer_steps(
        lambda s: TruncatedPES(s, unroll_length=20, std=0.01, steps_per_jit=PER_JIT), 200, 20
    )


def w5u() -> dict[str, float]:
    """W5u: W5 with the whole 20-step unroll of an outer step in one jitted call."""
    return _timed_outer_steps(lambda s: TruncatedPES(s, unroll_length=20, std=0.01), 200, 20)


def w6() -> dict[str, float]:
    """W6: W5 with FullES over a schedule of length 100; 10 inner steps per jit."""
    return _timed_outer_steps(
        lambda s: FullES(s, ConstantTruncationSchedule(100), std=0.01, steps_per_jit=PER_JIT),
        100,
        10,
    )


def w6u() -> dict[str, float]:
    """W6u: W6 with the whole 100-step unroll of an outer step in one jitted call."""
    return _timed_outer_steps(
        lambda s: FullES(s, ConstantTruncationSchedule(100), std=0.01), 100, 10
    )


# What a Part 1 user imports; touching each name makes a lazy export load for real.
I1_CODE = (
    "from lopt_outer import TruncatedPES, VectorizedLOptTruncatedStep, "
    "SingleMachineGradientLearner\n"
    "from lopt_tasks import ImageMLPTask\n"
    "names = (TruncatedPES, VectorizedLOptTruncatedStep, SingleMachineGradientLearner, "
    "ImageMLPTask)\n"
    "assert all(isinstance(n, type) and n.__init__ for n in names), names\n"
)


def i1() -> dict[str, float]:
    """I1: a cold child process importing Part 1's names: its wall and CPU seconds.

    The child runs `I1_CODE`: `from lopt_outer import TruncatedPES,
    VectorizedLOptTruncatedStep, SingleMachineGradientLearner` and `from lopt_tasks
    import ImageMLPTask`, then touches each class. CPU is the child's user plus
    system time (`resource.getrusage(RUSAGE_CHILDREN)`).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", I1_CODE], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"import_s_wall": wall, "import_s_cpu": cpu}


WORKLOADS: dict[str, Callable[[], dict[str, float]]] = {
    "W4": w4,
    "W5": w5,
    "W5u": w5u,
    "W6": w6,
    "W6u": w6u,
    "I1": i1,
}


if __name__ == "__main__":
    for wid in sys.argv[1:] or list(WORKLOADS):
        print(wid, WORKLOADS[wid]())
