"""lopt-core: the interfaces, registry, checkpoints and contract checks of lopt.

Example:
  >>> import lopt_core
  >>> lopt_core.list_tasks()  # every task that installed plugins register
  [...]
"""

from lopt_core import checkpoint, component, testing, tree_utils, typing, validation
from lopt_core.checkpoint import Checkpoint, CheckpointError, load, load_metadata, save
from lopt_core.component import ConfigError, config_of, renamed_arguments
from lopt_core.component import component as declare
from lopt_core.datasets import SPLITS, ArraySplit, Datasets
from lopt_core.hookspecs import hookimpl, hookspec
from lopt_core.interface import Interface
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
    Catalog,
    DuplicateComponentError,
    Entry,
    Kind,
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
from lopt_core.typing import (
    Batch,
    MetaParams,
    ModelState,
    OptState,
    Params,
    PRNGKey,
    TaskCfg,
)

__all__ = [
    "REGISTRY",
    "SPLITS",
    "ArraySplit",
    "Batch",
    "Catalog",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "Datasets",
    "DuplicateComponentError",
    "Entry",
    "GradientEstimator",
    "GradientEstimatorOut",
    "Interface",
    "Kind",
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
    "component",
    "config_of",
    "declare",
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
    "renamed_arguments",
    "save",
    "single_task_to_family",
    "testing",
    "tree_utils",
    "typing",
    "validation",
]
