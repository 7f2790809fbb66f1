"""Workload M1 (meta-training at breadth): a mixture of three families against one family.

M1 meta-trains LearnableAdam with TruncatedPES (4 tasks, unroll 10 of a
truncation of 50) through `lopt_outer.mixture_estimator`:

- `mix3`: three 8x8-digits image-MLP families of the same task size (ParametricImageMLP,
  hidden (32,), batch 128; three separate family objects, so three estimators
  and three compiled estimates), one drawn per outer step;
- `one`: one such family, through the same MixtureEstimator with one member;
- `mixq`: FixedDimQuadraticFamily(10), NoisyQuadraticFamily(10) and the digits
  MLP family (different structures), for reference.

Figures: `*_steps_per_s` (outer steps per second once compiled, wall), their
`*_cpu_s_per_step` (process CPU time per step), `*_compile_s` and
`*_compile_cpu_s` (learner init, which precompiles every member on a background
thread, plus the first outer step: wall and process CPU seconds), and
`mix3_vs_one` (the steps/s ratio; the goal is >= 0.7).

Run by hand (few steps):
  python -c "import sys; sys.path.insert(0, 'benchmarks'); import workloads_mixture as w; \
print(w.m1(steps=5))"
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import jax

from lopt_learned import LearnableAdam
from lopt_optimizers import Adam
from lopt_outer import (
    ConstantTruncationSchedule,
    SingleMachineGradientLearner,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
    mixture_estimator,
)
from lopt_tasks import ParametricImageMLP, digits_datasets
from lopt_tasks.quadratics import FixedDimQuadraticFamily, NoisyQuadraticFamily

LOPT = LearnableAdam()


def _pes(family: Any) -> TruncatedPES:
    step = VectorizedLOptTruncatedStep(
        family, LOPT, ConstantTruncationSchedule(50), 4, random_initial_iteration_offset=50
    )
    return TruncatedPES(step, unroll_length=10, std=0.01)


def _digits(i: int) -> ParametricImageMLP:
    return ParametricImageMLP(
        digits_datasets(batch_size=128, image_size=(8, 8)), 10, (32,), name=f"DigitsMLP{i}"
    )


def _measure(families: list[Any], steps: int) -> dict[str, float]:
    est = mixture_estimator(families, _pes)
    t0, c0 = time.perf_counter(), time.process_time()
    learner = SingleMachineGradientLearner(LOPT, [est], Adam(1e-3))
    state = learner.init(jax.random.PRNGKey(0))
    state, loss, _ = learner.update(state, jax.random.PRNGKey(1))
    jax.block_until_ready(loss)
    compile_s, compile_cpu = time.perf_counter() - t0, time.process_time() - c0
    # Every member has compiled (the precompile); one more step per member to be sure.
    for i in range(len(families) * 2):
        state, loss, _ = learner.update(state, jax.random.PRNGKey(100 + i))
    jax.block_until_ready(loss)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        state, loss, _ = learner.update(state, jax.random.PRNGKey(1000 + i))
    jax.block_until_ready(loss)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "steps_per_s": steps / wall,
        "cpu_s_per_step": cpu / steps,
        "compile_s": compile_s,
        "compile_cpu_s": compile_cpu,
    }


def m1(steps: int = 30) -> dict[str, float]:
    """M1: steps/s and compile time of mix3, one and mixq (see the module docstring)."""
    out: dict[str, float] = {}
    runs = {
        "one": [_digits(0)],
        "mix3": [_digits(1), _digits(2), _digits(3)],
        "mixq": [FixedDimQuadraticFamily(10), NoisyQuadraticFamily(10), _digits(4)],
    }
    for label, families in runs.items():
        for k, v in _measure(families, steps).items():
            out[f"{label}_{k}"] = v
    out["mix3_vs_one"] = out["mix3_steps_per_s"] / out["one_steps_per_s"]
    return out


WORKLOADS: dict[str, Callable[[], dict[str, float]]] = {"M1": m1}


if __name__ == "__main__":
    for wid in sys.argv[1:] or list(WORKLOADS):
        print(wid, WORKLOADS[wid]())
