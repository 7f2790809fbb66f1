"""Workloads D1, D10, D100 and D1000 (benchmarks/README.md): compile cost against data size.

The same meta-training step over 1x, 10x, 100x and 1000x the 8x8 digits: the four splits
of `lopt_tasks.digits_datasets` tiled along their example axis, an
`ImageMLPTask([32])` over them, and W5's TruncatedPES step (MLPLOpt, 8 tasks,
unroll 20, schedule 200, Adam(1e-3) on theta). Batches are drawn from keys
inside the jitted outer step, so the splits are read by compiled code: if the
program held them as constants, its lowering, compile time and the process's
memory would grow with the data.

Each workload runs once in the current process and returns a dict of figures:
the first outer step's wall and CPU seconds; what JAX's own compile events
report for it (`jax.monitoring`: tracing, lowering to MLIR and XLA's backend
compile, summed over every program that step compiled); the median seconds of
the later steps; the data's size; and the process's peak resident memory.

Run one by hand:
  python -c "import sys; sys.path.insert(0, 'benchmarks'); import workloads_data as w; \
print(w.WORKLOADS['D100']())"
"""

from __future__ import annotations

import collections
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

import lopt_core
from lopt_learned import MLPLOpt
from lopt_optimizers import Adam
from lopt_outer import (
    ConstantTruncationSchedule,
    SingleMachineGradientLearner,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
)
from lopt_tasks import ImageMLPTask, digits_datasets

BATCH = 128
_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "backend_compile_s",
}


def tiled_digits(times: int) -> lopt_core.Datasets:
    """The digits' four splits, each tiled `times` along its examples, as in-memory splits."""
    base = digits_datasets(batch_size=BATCH)
    splits = []
    for i, name in enumerate(lopt_core.SPLITS):
        arrays = base.split(name).arrays
        tiled = {
            k: np.tile(np.asarray(v), (times,) + (1,) * (v.ndim - 1)) for k, v in arrays.items()
        }
        splits.append(lopt_core.ArraySplit(tiled, BATCH, seed=i))
    return lopt_core.Datasets(*splits, extra_info=dict(base.extra_info))


def _compile_listener(totals: collections.Counter) -> Callable[..., None]:
    def listen(event: str, duration: float, **_: Any) -> None:
        if event in _EVENTS:
            totals[_EVENTS[event]] += duration

    return listen


def data_size_step(times: int, steps: int = 5) -> dict[str, float]:
    """One PES meta-training run over `times`x the digits: first step and later steps."""
    datasets = tiled_digits(times)
    nbytes = sum(
        int(np.asarray(v).nbytes)
        for s in lopt_core.SPLITS
        for v in datasets.split(s).arrays.values()
    )
    task = ImageMLPTask(datasets, [32])
    lopt = MLPLOpt()
    step = VectorizedLOptTruncatedStep(
        lopt_core.single_task_to_family(task),
        lopt,
        ConstantTruncationSchedule(200),
        num_tasks=8,
        random_initial_iteration_offset=200,
    )
    learner = SingleMachineGradientLearner(
        lopt, [TruncatedPES(step, unroll_length=20, std=0.01)], Adam(1e-3)
    )
    totals: collections.Counter = collections.Counter()
    jax.monitoring.register_event_duration_secs_listener(_compile_listener(totals))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu = time.perf_counter(), time.process_time()
    state = learner.init(jax.random.PRNGKey(0))
    state, loss, _ = learner.update(state, jax.random.PRNGKey(1))
    jax.block_until_ready(state)
    first, first_cpu = time.perf_counter() - start, time.process_time() - cpu
    first_totals = dict(totals)
    later = []
    for i in range(steps):
        t = time.perf_counter()
        state, loss, _ = learner.update(state, jax.random.PRNGKey(i + 2))
        jax.block_until_ready(state)
        later.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "data_mb": nbytes / 2**20,
        "first_outer_step_s": first,
        "first_outer_step_cpu_s": first_cpu,
        **{k: first_totals.get(k, 0.0) for k in _EVENTS.values()},
        "s_per_outer_step": statistics.median(later),
        # ru_maxrss is in KiB on Linux: the peak, data included.
        "peak_rss_mb": rss / 1024,
        "rss_growth_mb": (rss - rss_before) / 1024,
        "meta_loss": float(loss),
    }


WORKLOADS: dict[str, Callable[[], dict[str, float]]] = {
    f"D{n}": (lambda n=n: data_size_step(n)) for n in (1, 10, 100, 1000)
}
