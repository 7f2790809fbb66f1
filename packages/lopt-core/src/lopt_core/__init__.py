"""lopt-core: the interfaces, registry, checkpoints and contract checks of lopt.

Example:
  >>> import lopt_core
  >>> lopt_core.list_tasks()  # every task that installed plugins register
  [...]
"""

from lopt_core import checkpoint, testing, tree_utils
from lopt_core._types import (
    Batch,
    MetaParams,
    ModelState,
    OptState,
    Params,
    PRNGKey,
    TaskCfg,
)
from lopt_core.checkpoint import Checkpoint, CheckpointError, load, load_metadata, save
from lopt_core.datasets import SPLITS, ArraySplit, Datasets
from lopt_core.hookspecs import hookimpl, hookspec
from lopt_core.optimizers import LearnedOptimizer, Optimizer
from lopt_core.outer import (
    GradientEstimator,
    GradientEstimatorOut,
    OuterState,
    TruncatedStep,
    TruncatedUnrollOut,
    TruncationSchedule,
    WorkerWeights,
)
from lopt_core.registry import (
    REGISTRY,
    DuplicateComponentError,
    Entry,
    PluginWarning,
    Registry,
    UnknownComponentError,
    get_learned_optimizer,
    get_metric_writer,
    get_optimizer,
    get_outer_trainer,
    get_task,
    get_task_family,
    list_learned_optimizers,
    list_metric_writers,
    list_optimizers,
    list_outer_trainers,
    list_task_families,
    list_tasks,
)
from lopt_core.tasks import Task, TaskFamily, single_task_to_family

__all__ = [
    "REGISTRY",
    "SPLITS",
    "ArraySplit",
    "Batch",
    "Checkpoint",
    "CheckpointError",
    "Datasets",
    "DuplicateComponentError",
    "Entry",
    "GradientEstimator",
    "GradientEstimatorOut",
    "LearnedOptimizer",
    "MetaParams",
    "ModelState",
    "OptState",
    "Optimizer",
    "OuterState",
    "PRNGKey",
    "Params",
    "PluginWarning",
    "Registry",
    "Task",
    "TaskCfg",
    "TaskFamily",
    "TruncatedStep",
    "TruncatedUnrollOut",
    "TruncationSchedule",
    "UnknownComponentError",
    "WorkerWeights",
    "checkpoint",
    "get_learned_optimizer",
    "get_metric_writer",
    "get_optimizer",
    "get_outer_trainer",
    "get_task",
    "get_task_family",
    "hookimpl",
    "hookspec",
    "list_learned_optimizers",
    "list_metric_writers",
    "list_optimizers",
    "list_outer_trainers",
    "list_task_families",
    "list_tasks",
    "load",
    "load_metadata",
    "save",
    "single_task_to_family",
    "testing",
    "tree_utils",
]
