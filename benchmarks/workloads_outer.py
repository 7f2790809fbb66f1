"""Workloads W4, W5, W5u, W5k, W5uk, W6, W6u and I1 (defined in benchmarks/README.md).

The task is the 8x8 image MLP (flatten 64 -> ReLU 32 -> 10, softmax cross-entropy
averaged over a batch of 128 synthetic images, uniform in [0, 1), labels in 0..9),
defined here with haiku.

- W5 / W6 run the unroll as jitted calls of 10 inner steps each (`steps_per_jit=10`,
  as the reference harness does); W5u / W6u run the whole unroll of an outer step
  as one jitted call (lopt's default). All four read host batches from Python
  iterators, as the reference's tasks do.
- W5k / W5uk are W5 / W5u with the data in `lopt_core.ArraySplit`s on the device,
  so batches are drawn from keys inside the jitted calls (lopt's own way).
- I1 times a cold child process importing what a Part 1 user imports.

Every figure is given by wall clock (`time.perf_counter`) and by CPU time (this
process's `time.process_time`, all threads; the child's `getrusage` for I1). Each
workload function runs once in the current process and returns a dict of figures.

Run one by hand:
  python -c "import sys; sys.path.insert(0, 'benchmarks'); import workloads_outer as w; \
print(w.WORKLOADS['W5']())"
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from harness import (
    BATCH,
    OUTER_EXAMPLES,
    host_batches,
    logits_loss,
    meta_loss_fn,
    net,
    plain_adam_meta_loss,
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
    NeverEndingTruncationSchedule,
    SingleMachineGradientLearner,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
)


class ImageMLP8(lopt_core.Task):
    """The 8x8 image MLP on synthetic data.

    Args:
      keyed: the splits are `lopt_core.ArraySplit`s on the device, so batches are
        drawn from keys inside the jitted calls (lopt's own way); else host
        iterators of the same examples (`harness.host_batches`), a host batch per
        inner step, as the reference's tasks read theirs.
    """

    def __init__(self, keyed: bool = True) -> None:
        if keyed:
            arrays = synthetic_arrays(OUTER_EXAMPLES)
            splits = [lopt_core.ArraySplit(arrays, BATCH, seed=s) for s in range(4)]
        else:
            splits = [host_batches(s) for s in range(4)]
        self.datasets = lopt_core.Datasets(*splits, extra_info={"num_classes": 10})
        self._net = net()

    def init(self, key: jax.Array) -> Any:
        return self._net.init(key, jnp.zeros((BATCH, 8, 8, 1)))

    def loss(self, params: Any, key: jax.Array, data: Any) -> jax.Array:
        return logits_loss(self._net.apply(params, data["image"]), data["label"])

    def normalizer(self, loss: jax.Array) -> jax.Array:
        return jnp.clip(jnp.nan_to_num(loss, nan=1.5 * np.log(10)), 0, 1.5 * np.log(10))


PES_SCHEDULE = ConstantTruncationSchedule(200)  # W5's; a frozen declaration, safely shared


def outer_learner(
    estimator_fn: Callable[[Any], Any],
    schedule: Any = PES_SCHEDULE,
    offset: int = 200,
    keyed: bool = True,
) -> SingleMachineGradientLearner:
    """W5/W6's learner: MLPLOpt on 8 copies of the 8x8 MLP, Adam(1e-3) on theta.

    `schedule` and `offset` are the truncated step's schedule and random initial
    iteration offset.
    """
    lopt = MLPLOpt()
    family = lopt_core.single_task_to_family(ImageMLP8(keyed))
    step = VectorizedLOptTruncatedStep(
        family,
        lopt,
        schedule,
        num_tasks=8,
        random_initial_iteration_offset=offset,
    )
    return SingleMachineGradientLearner(lopt, [estimator_fn(step)], Adam(1e-3))


def _pes(steps_per_jit: int | None, keyed: bool) -> dict[str, float]:
    """20 outer steps of TruncatedPES (unroll 20, std 0.01) after the first, schedule 200."""
    return timed_outer_steps(
        lambda: outer_learner(
            lambda s: TruncatedPES(s, unroll_length=20, std=0.01, steps_per_jit=steps_per_jit),
            keyed=keyed,
        ),
        20,
    )


def _full_es(steps_per_jit: int | None) -> dict[str, float]:
    """10 outer steps of FullES (100-step unroll, std 0.01) after the first, host batches."""
    # FullES owns the unroll's schedule; the step's never ends, as the reference requires.
    return timed_outer_steps(
        lambda: outer_learner(
            lambda s: FullES(
                s, ConstantTruncationSchedule(100), std=0.01, steps_per_jit=steps_per_jit
            ),
            schedule=NeverEndingTruncationSchedule(),
            offset=0,
            keyed=False,
        ),
        10,
    )


def w4() -> dict[str, float]:
    """W4: Part 1's meta_loss (LearnableAdam, 4 inner steps on one batch), jit(value_and_grad)."""
    task = ImageMLP8()
    batch = task.datasets.sample("train", jax.random.PRNGKey(0))
    lopt = LearnableAdam()
    return timed_meta_gradient(meta_loss_fn(task, lopt), lopt.init(jax.random.PRNGKey(0)), batch)


def w4p() -> dict[str, float]:
    """W4p: W4's meta-loss in plain JAX (`harness.plain_adam_meta_loss`), no lopt code."""
    task = ImageMLP8()
    meta_loss, theta = plain_adam_meta_loss(task)
    return timed_meta_gradient(
        meta_loss, theta, task.datasets.sample("train", jax.random.PRNGKey(0))
    )


PER_JIT = 10  # inner steps per jitted call in W5 and W6, as in the reference harness

# W5 / W5u / W6 / W6u read host batches (like for like); W5k / W5uk draw them from keys.
w5 = functools.partial(_pes, PER_JIT, False)
w5u = functools.partial(_pes, None, False)
w5k = functools.partial(_pes, PER_JIT, True)
w5uk = functools.partial(_pes, None, True)
w6 = functools.partial(_full_es, PER_JIT)
w6u = functools.partial(_full_es, None)


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
    "W4p": w4p,
    "W5": w5,
    "W5k": w5k,
    "W5uk": w5uk,
    "W5u": w5u,
    "W6": w6,
    "W6u": w6u,
    "I1": i1,
}


if __name__ == "__main__":
    for wid in sys.argv[1:] or list(WORKLOADS):
        print(wid, WORKLOADS[wid]())
