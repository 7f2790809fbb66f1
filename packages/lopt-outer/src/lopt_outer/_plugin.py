"""lopt-outer's catalog: every component it registers, declared once.

The `lopt` entry point names `CATALOG` (`outer = "lopt_outer._plugin:CATALOG"`).
lopt reads it from its index, `_plugin.lopt-index.json` beside this module, so
neither `lopt list` nor a lookup imports this module; each component's module is
imported when it is first built. After changing a declaration, rewrite the index:
`python -m lopt_core.registry write-index lopt_outer._plugin:CATALOG` (the
contract tests check it is current, and iterate `CATALOG`).
"""

from __future__ import annotations

import lopt_core
from lopt_outer import (
    bench_cli,
    cli,
    full_es,
    lopt_truncated_step,
    metric_writers,
    mixture,
    truncated_es,
    truncated_grad,
    truncated_pes,
    truncation_schedule,
)

__all__ = ["CATALOG"]

CATALOG = lopt_core.Catalog()

# Estimators, truncation schedules and truncated steps, by class name; each
# description is the first line of the class docstring.
for _component in (
    truncated_pes.TruncatedPES,
    truncated_es.TruncatedES,
    full_es.FullES,
    truncated_grad.TruncatedGrad,
    truncated_grad.FullGrad,
    mixture.MixtureEstimator,
    truncation_schedule.ConstantTruncationSchedule,
    truncation_schedule.LogUniformLengthSchedule,
    truncation_schedule.GrowingLogUniformSchedule,
    truncation_schedule.NeverEndingTruncationSchedule,
    truncation_schedule.ScheduledTruncationSchedule,
    lopt_truncated_step.VectorizedLOptTruncatedStep,
    lopt_truncated_step.SimpleVecLOptTruncatedStep,
    lopt_truncated_step.SimpleLOptTruncatedStep,
):
    CATALOG.outer_trainer()(_component)

CATALOG.metric_writer("jsonl")(metric_writers.JsonlWriter)
# Registered whether or not tensorboardX is installed (the catalog index is the same on
# every machine); building it without tensorboardX raises an ImportError naming the fix.
CATALOG.metric_writer("tensorboard")(metric_writers.TensorBoardWriter)

CATALOG.command("meta-train", "meta-train a learned optimizer on a task family")(
    cli.setup_meta_train
)
CATALOG.command("eval", "compare a (meta-trained) learned optimizer with Adam")(cli.setup_eval)
CATALOG.command("bench", "score an optimizer on an evaluation suite against tuned baselines")(
    bench_cli.setup_bench
)
