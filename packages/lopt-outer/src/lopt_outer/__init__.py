"""lopt_outer: meta-training for lopt.

Truncation schedules, truncated steps, gradient estimators (FullES, TruncatedES,
TruncatedPES, TruncatedGrad, FullGrad), gradient learners, the `meta_train` loop
and evaluation. Names load lazily, so `import lopt_outer` stays cheap until one is
used.

Example:
  >>> from lopt_outer import TruncatedPES, VectorizedLOptTruncatedStep
"""

from __future__ import annotations

import sys
import types
from typing import Any

from lopt_core.lazy import attach

_EXPORTS: dict[str, str] = {
    # truncation schedules
    "ConstantTruncationSchedule": "truncation_schedule",
    "GrowingLogUniformSchedule": "truncation_schedule",
    "LogUniformLengthSchedule": "truncation_schedule",
    "NeverEndingTruncationSchedule": "truncation_schedule",
    "ScheduledTruncationSchedule": "truncation_schedule",
    "TruncationState": "truncation_schedule",
    # truncated steps
    "VectorizedLOptTruncatedStep": "lopt_truncated_step",
    "SimpleLOptTruncatedStep": "lopt_truncated_step",
    "SimpleVecLOptTruncatedStep": "lopt_truncated_step",
    "TruncatedUnrollState": "lopt_truncated_step",
    "truncated_unroll": "truncated_step",
    "antithetic_unroll": "truncated_step",
    # estimators
    "FullES": "full_es",
    "TruncatedES": "truncated_es",
    "TruncatedPES": "truncated_pes",
    "PESWorkerState": "truncated_pes",
    "TruncatedGrad": "truncated_grad",
    "FullGrad": "truncated_grad",
    "MixtureEstimator": "mixture",
    "MixtureWorkerState": "mixture",
    "mixture_estimator": "mixture",
    # learners
    "AggregatedGradient": "gradient_learner",
    "GradientEstimatorState": "gradient_learner",
    "GradientLearner": "gradient_learner",
    "GradientLearnerState": "gradient_learner",
    "SingleMachineGradientLearner": "gradient_learner",
    "SingleMachineState": "gradient_learner",
    "WorkerComputeOut": "gradient_learner",
    "gradient_worker_compute": "gradient_learner",
    # the run layer, its backends, evaluation, writers
    "Backend": "run",
    "InProcessBackend": "inprocess",
    "MetaTrainResult": "run",
    "RayBackend": "ray",
    "RayMetaTrainResult": "ray",
    "RunConfig": "run",
    "meta_train": "meta_train",
    "meta_train_ray": "_compat_run",
    "RayMetaTrainer": "_compat_run",
    "single_task_training_curves": "eval_training",
    "multi_task_training_curves": "eval_training",
    "FixedOptimizer": "evaluate",
    "compare_with_adam": "evaluate",
    "format_table": "evaluate",
    "plot_curves": "evaluate",
    "write_summary": "evaluate",
    # recipes: one TOML file describes a run
    "Recipe": "recipe",
    "RecipeError": "recipe",
    "load_recipe": "recipe",
    "build_recipe": "recipe",
    "JsonlWriter": "metric_writers",
    "TensorBoardWriter": "metric_writers",
}

_SUBMODULES = (
    "compat",
    "distributed",
    "eval_training",
    "evaluate",
    "full_es",
    "gradient_learner",
    "inprocess",
    "lopt_truncated_step",
    "metric_writers",
    "mixture",
    "run",
    "sharding",
    "training",
    "truncated_es",
    "truncated_grad",
    "truncated_pes",
    "truncated_step",
    "truncation_schedule",
)

__getattr__, __dir__, __all__ = attach(
    __name__, {**_EXPORTS, "CATALOG": "_plugin"}, _SUBMODULES, catalog="CATALOG"
)


class _Package(types.ModuleType):
    """`lopt_outer.meta_train` is the function, whatever was imported first.

    Importing the submodule `lopt_outer.meta_train` (which defines the function)
    makes Python set the package attribute of that name to the submodule; this
    keeps the function there instead. The submodule stays importable by its full
    name (`from lopt_outer.meta_train import meta_train`).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "meta_train" and isinstance(value, types.ModuleType):
            value = value.meta_train
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
