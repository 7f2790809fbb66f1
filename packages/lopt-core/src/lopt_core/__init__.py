"""lopt-core: the interfaces, registry, checkpoints and contract checks of lopt.

Example:
  >>> import lopt_core
  >>> lopt_core.list_tasks()  # every task that installed plugins register
  [...]

Names load lazily (`lopt_core.lazy`): `import lopt_core` and the registry do not
import JAX; `lopt_core.Task`, `lopt_core.save` and the other names that need it
import it on first use.
"""

from lopt_core.lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        # checkpoints
        "Checkpoint": "checkpoint",
        "CheckpointError": "checkpoint",
        "load": "checkpoint",
        "load_metadata": "checkpoint",
        "save": "checkpoint",
        # declared components
        "ConfigError": "component",
        "config_of": "component",
        "declare": "component:component",
        "renamed_arguments": "component",
        # data
        "SPLITS": "datasets",
        "ArraySplit": "datasets",
        "Datasets": "datasets",
        "dataset_lru_cache": "datasets",
        "dataset_lru_cache_clear": "datasets",
        "array_splits": "datasets",
        "bind_arrays": "datasets",
        "jit_with_data": "datasets",
        "iterator_states": "data_state",
        "restore_iterator_states": "data_state",
        # hooks
        "hookimpl": "hookspecs",
        "hookspec": "hookspecs",
        # interfaces
        "Interface": "interface",
        "LearnedOptimizer": "optimizers",
        "Optimizer": "optimizers",
        "evaluation_point": "optimizers",
        "GradientEstimator": "outer",
        "GradientEstimatorOut": "outer",
        "OuterState": "outer",
        "TruncatedStep": "outer",
        "TruncatedUnrollOut": "outer",
        "TruncationSchedule": "outer",
        "WorkerWeights": "outer",
        "Suite": "suites",
        "SuiteTask": "suites",
        "Task": "tasks",
        "TaskFamily": "tasks",
        "single_task_to_family": "tasks",
        # the registry
        "REGISTRY": "registry",
        "Catalog": "registry",
        "CatalogIndex": "registry",
        "DuplicateComponentError": "registry",
        "Entry": "registry",
        "Kind": "registry",
        "PluginWarning": "registry",
        "Registry": "registry",
        "UnknownComponentError": "registry",
        "get_learned_optimizer": "registry",
        "get_metric_writer": "registry",
        "get_optimizer": "registry",
        "get_outer_trainer": "registry",
        "get_suite": "registry",
        "get_task": "registry",
        "get_task_family": "registry",
        "list_learned_optimizers": "registry",
        "list_metric_writers": "registry",
        "list_optimizers": "registry",
        "list_outer_trainers": "registry",
        "list_suites": "registry",
        "list_task_families": "registry",
        "list_tasks": "registry",
        # type aliases
        "Batch": "typing",
        "MetaParams": "typing",
        "ModelState": "typing",
        "OptState": "typing",
        "Params": "typing",
        "PRNGKey": "typing",
        "TaskCfg": "typing",
    },
    ("checkpoint", "component", "lazy", "testing", "tree_utils", "typing", "validation"),
)
