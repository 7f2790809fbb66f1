"""The reference library's side of the like-for-like workloads, for `run.py --reference-python`.

This module runs only in an environment with Google's `learned_optimization` and its
pinned stack (jax 0.4.30; `benchmarks/reference_env.sh` builds one): `run.py` starts
it with that environment's python, one fresh process per run, interleaved with
lopt's runs of the same workload. It never imports lopt.

Each workload calls the same `harness` function as lopt's workload of the same id,
with the reference's own objects in place of lopt's, so the two sides run the same
task, data, step function, warm-up and timing code:

| id | reference objects |
| --- | --- |
| W1 | `optax_opts.Adam(1e-2)` |
| W1o | a plain `optax.adam(1e-2)` loop (no library code; separates jaxlib from library) |
| W2 | `mlp_lopt.MLPLOpt()` at its initial theta |
| W3 | `adafac_mlp_lopt.AdafacMLPLOpt()` at its initial theta |
| W4 | `lopt_base.LearnableAdam()` in Part 1's `meta_loss` |
| W4p | none: the plain-JAX meta-loss on the reference's jaxlib 0.4.30 |
| W5 / W5u | `truncated_pes.TruncatedPES` over `lopt_truncated_step.VectorizedLOptTruncatedStep`, `steps_per_jit` 10 / 20 (the whole unroll) |
| W6 / W6u | `full_es.FullES`, `steps_per_jit` 10 / 100 (the whole unroll) |
| W7 | W1 inside one `lax.scan` |
| I1 | a cold child importing Part 1's names |
| X1 | none: the cost of a jitted call against its fusion count, on jaxlib 0.4.30 |

The reference's tasks read their data from host iterators (its only way); W5 and W6
feed both libraries from the same iterators (`harness.host_batches`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import harness
import jax
import numpy as np
import optax
from learned_optimization.learned_optimizers import adafac_mlp_lopt, mlp_lopt
from learned_optimization.learned_optimizers import base as lopt_base
from learned_optimization.optimizers import optax_opts
from learned_optimization.outer_trainers import (
    full_es,
    gradient_learner,
    lopt_truncated_step,
    truncated_pes,
    truncation_schedule,
)
from learned_optimization.tasks import base as tasks_base
from learned_optimization.tasks.datasets import base as datasets_base


class ImageMLP8(tasks_base.Task):
    """The 8x8 image MLP as a reference Task, its four splits host iterators of batches."""

    def __init__(self) -> None:
        self.datasets = datasets_base.Datasets(*[harness.host_batches(s) for s in range(4)])
        self._net = harness.net()

    def init(self, key: jax.Array) -> Any:
        return self._net.init(key, np.zeros((harness.BATCH, 8, 8, 1), np.float32))

    def loss(self, params: Any, key: jax.Array, data: Any) -> jax.Array:
        return harness.logits_loss(self._net.apply(params, data["image"]), data["label"])

    def normalizer(self, loss: jax.Array) -> jax.Array:
        bound = 1.5 * np.log(10)
        return jax.numpy.clip(jax.numpy.nan_to_num(loss, nan=bound), 0, bound)


def _learner(estimator_fn: Callable[[Any], Any], schedule: Any, offset: int) -> Any:
    lopt = mlp_lopt.MLPLOpt()
    step = lopt_truncated_step.VectorizedLOptTruncatedStep(
        tasks_base.single_task_to_family(ImageMLP8()),
        lopt,
        schedule,
        num_tasks=8,
        random_initial_iteration_offset=offset,
    )
    return gradient_learner.SingleMachineGradientLearner(
        lopt, [estimator_fn(step)], optax_opts.Adam(1e-3)
    )


def _pes(steps_per_jit: int) -> dict:
    return harness.timed_outer_steps(
        lambda: _learner(
            lambda s: truncated_pes.TruncatedPES(
                s, trunc_length=20, std=0.01, steps_per_jit=steps_per_jit
            ),
            truncation_schedule.ConstantTruncationSchedule(200),
            200,
        ),
        20,
    )


def _full_es(steps_per_jit: int) -> dict:
    sched = truncation_schedule.ConstantTruncationSchedule(100)
    return harness.timed_outer_steps(
        lambda: _learner(
            lambda s: full_es.FullES(s, sched, std=0.01, steps_per_jit=steps_per_jit),
            # FullES owns the schedule; the reference refuses a finite one in the step.
            truncation_schedule.NeverEndingTruncationSchedule(),
            0,
        ),
        10,
    )


def w4() -> dict:
    """W4 with the reference's LearnableAdam."""
    task = ImageMLP8()
    batch = next(task.datasets.train)
    lopt = lopt_base.LearnableAdam()
    return harness.timed_meta_gradient(
        harness.meta_loss_fn(task, lopt), lopt.init(jax.random.PRNGKey(0)), batch
    )


def w4p() -> dict:
    """W4p: the plain-JAX meta-loss on the reference's jaxlib (no library code)."""
    task = ImageMLP8()
    meta_loss, theta = harness.plain_adam_meta_loss(task)
    return harness.timed_meta_gradient(meta_loss, theta, next(task.datasets.train))


I1_CODE = (
    "from learned_optimization.outer_trainers.truncated_pes import TruncatedPES\n"
    "from learned_optimization.outer_trainers.lopt_truncated_step import "
    "VectorizedLOptTruncatedStep\n"
    "from learned_optimization.outer_trainers.gradient_learner import "
    "SingleMachineGradientLearner\n"
    "from learned_optimization.tasks.fixed.image_mlp import ImageMLP_FashionMnist8_Relu32\n"
)

WORKLOADS: dict[str, Callable[[], dict]] = {
    "W1": lambda: harness.stepwise(optax_opts.Adam(1e-2)),
    "W1o": lambda: harness.stepwise(harness.PlainOptax(optax.adam(1e-2))),
    "W2": lambda: harness.stepwise(harness.learned_opt(mlp_lopt.MLPLOpt())),
    "W3": lambda: harness.stepwise(harness.learned_opt(adafac_mlp_lopt.AdafacMLPLOpt())),
    "W4": w4,
    "W4p": w4p,
    "W5": lambda: _pes(10),
    "W5u": lambda: _pes(20),
    "W6": lambda: _full_es(10),
    "W6u": lambda: _full_es(100),
    "W7": lambda: harness.scanned(optax_opts.Adam(1e-2)),
    "I1": lambda: harness.timed_child(I1_CODE),
    "X1": harness.call_cost,
}


if __name__ == "__main__":
    for wid in sys.argv[1:] or list(WORKLOADS):
        print(wid, WORKLOADS[wid]())
