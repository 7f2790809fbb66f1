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

import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from harness import (
    BATCH,
    logits_loss,
    meta_loss_fn,
    net,
    synthetic_arrays,
    timed_child,
    timed_meta_gradient,
    timed_outer_steps,
)

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


class ImageMLP8(lopt_core.Task):
    """The 8x8 image MLP on synthetic data (batches of 128 drawn from keys)."""

    def __init__(self, num_examples: int = 16 * BATCH) -> None:
        arrays = synthetic_arrays(num_examples)
        splits = [lopt_core.ArraySplit(arrays, BATCH, seed=s) for s in range(4)]
        self.datasets = lopt_core.Datasets(*splits, extra_info={"num_classes": 10})
        self._net = net()

    def init(self, key: jax.Array) -> Any:
        return self._net.init(key, jnp.zeros((BATCH, 8, 8, 1)))

    def loss(self, params: Any, key: jax.Array, data: Any) -> jax.Array:
        return logits_loss(self._net.apply(params, data["image"]), data["label"])

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
    return timed_outer_steps(lambda: outer_learner(estimator_fn, schedule_length), n)


def w4() -> dict[str, float]:
    """W4: Part 1's meta_loss (LearnableAdam, 4 inner steps on one batch), jit(value_and_grad)."""
    task = ImageMLP8()
    batch = task.datasets.sample("train", jax.random.PRNGKey(0))
    lopt = LearnableAdam()
    return timed_meta_gradient(meta_loss_fn(task, lopt), lopt.init(jax.random.PRNGKey(0)), batch)


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
    """I1: a cold child process importing Part 1's names (`I1_CODE`): wall and CPU s."""
    return timed_child(I1_CODE)


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
