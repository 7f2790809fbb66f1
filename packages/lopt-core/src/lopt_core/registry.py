"""The plugin registry: components found through `lopt` entry points and pluggy hooks.

Plugins load lazily, on the first lookup. Every built-in component of the lopt
packages registers through exactly this path, as a third-party plugin would.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar, cast

import pluggy

from lopt_core import hookspecs
from lopt_core.hookspecs import hookimpl
from lopt_core.optimizers import LearnedOptimizer, Optimizer
from lopt_core.tasks import Task, TaskFamily

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

ENTRY_POINT_GROUP = "lopt"

#: kind -> hook name. The kind is what `lopt list KIND` and `get_<kind>` use.
KINDS: dict[str, str] = {
    "tasks": "lopt_register_tasks",
    "task_families": "lopt_register_task_families",
    "optimizers": "lopt_register_optimizers",
    "learned_optimizers": "lopt_register_learned_optimizers",
    "outer_trainers": "lopt_register_outer_trainers",
    "metric_writers": "lopt_register_metric_writers",
    "commands": "lopt_register_commands",
}


class PluginWarning(UserWarning):
    """A plugin failed to import or to register; the other plugins still work."""


class UnknownComponentError(KeyError):
    """No plugin registered a component under the requested name."""

    def __str__(self) -> str:
        return str(self.args[0])


class DuplicateComponentError(ValueError):
    """Two plugins registered the same name for the same kind of component."""


@dataclass(frozen=True)
class Entry:
    """One registered component.

    Attributes:
      name: the name it is looked up by.
      kind: one of `KINDS`.
      factory: the class or function that builds it.
      description: a one-line description.
      plugin: the distribution (pip package) that registered it.
      version: that distribution's version.
    """

    name: str
    kind: str
    factory: Callable[..., Any]
    description: str
    plugin: str
    version: str


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """Holds every component that the installed plugins register."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] | None = None
        self._conflicts: dict[tuple[str, str], list[str]] = {}
        self._extra_plugins: list[tuple[Any, str, str]] = []
        self.failed_plugins: dict[str, BaseException] = {}

    # -- loading ---------------------------------------------------------------
    def add_plugin(self, module: Any, plugin: str, version: str = "0") -> None:
        """Registers a plugin object directly (for tests and interactive use)."""
        self._extra_plugins.append((module, plugin, version))
        self._entries = None

    def reload(self) -> None:
        """Forgets what was loaded; the next lookup scans the entry points again."""
        self._entries = None

    def _load(self) -> dict[str, dict[str, Entry]]:
        if self._entries is not None:
            return self._entries
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        owners: dict[str, tuple[str, str]] = {}
        self.failed_plugins = {}
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.value):
            dist = ep.dist.name if ep.dist is not None else ep.value
            version = ep.dist.version if ep.dist is not None else "0"
            label = f"{dist}:{ep.name}"
            if pm.has_plugin(label):
                continue
            try:
                module = ep.load()
            except Exception as exc:
                self.failed_plugins[label] = exc
                warnings.warn(
                    f"lopt plugin {label!r} ({ep.value}) failed to import and was skipped: "
                    f"{type(exc).__name__}: {exc}",
                    PluginWarning,
                    stacklevel=3,
                )
                continue
            pm.register(module, name=label)
            owners[label] = (dist, version)
        for module, plugin, version in self._extra_plugins:
            label = f"{plugin}:{id(module)}"
            pm.register(module, name=label)
            owners[label] = (plugin, version)

        entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._conflicts = {}
        for kind, hook_name in KINDS.items():
            caller = getattr(pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                dist, version = owners[impl.plugin_name]
                self._run_hook(impl, kind, dist, version, entries[kind])
        self._entries = entries
        return entries

    def _run_hook(
        self, impl: Any, kind: str, dist: str, version: str, table: dict[str, Entry]
    ) -> None:
        def register(
            name: str, factory: Callable[..., Any], description: str | None = None
        ) -> None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"{dist} registered a {kind} entry with an invalid name {name!r}.")
            if not callable(factory):
                raise TypeError(
                    f"{dist} registered the {kind} entry {name!r} with a factory that is not "
                    f"callable ({type(factory).__name__}); register a class or function."
                )
            entry = Entry(name, kind, factory, description or _first_line(factory), dist, version)
            if name in table and table[name].plugin == dist:
                raise ValueError(
                    f"{dist} registers the {kind} name {name!r} twice; each name must be "
                    "registered once."
                )
            if name in table:
                owners = self._conflicts.setdefault((kind, name), [table[name].plugin])
                owners.append(dist)
                warnings.warn(
                    f"lopt {kind} name {name!r} is registered by both "
                    f"{' and '.join(repr(o) for o in owners)}.",
                    PluginWarning,
                    stacklevel=2,
                )
                return
            table[name] = entry

        try:
            impl.function(register=register)
        except Exception as exc:
            self.failed_plugins[impl.plugin_name] = exc
            warnings.warn(
                f"lopt plugin {impl.plugin_name!r} raised in {impl.function.__name__}: "
                f"{type(exc).__name__}: {exc}",
                PluginWarning,
                stacklevel=3,
            )

    # -- lookup ----------------------------------------------------------------
    def _check_kind(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"Unknown kind {kind!r}; expected one of {', '.join(KINDS)}.")

    def entries(self, kind: str) -> dict[str, Entry]:
        """All entries of `kind`, by name."""
        self._check_kind(kind)
        return dict(self._load()[kind])

    def entry(self, kind: str, name: str) -> Entry:
        """The entry called `name` of `kind`.

        Raises:
          DuplicateComponentError: two plugins registered `name`.
          UnknownComponentError: nobody registered `name`; the message lists close matches.
        """
        self._check_kind(kind)
        table = self._load()[kind]
        if (kind, name) in self._conflicts:
            owners = self._conflicts[(kind, name)]
            raise DuplicateComponentError(
                f"{kind} name {name!r} is registered by more than one plugin: "
                f"{' and '.join(repr(o) for o in owners)}. Uninstall one of them or ask its "
                "author to rename the component."
            )
        if name not in table:
            close = difflib.get_close_matches(name, list(table), n=5, cutoff=0.5)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            singular = "task family" if kind == "task_families" else kind[:-1].replace("_", " ")
            raise UnknownComponentError(
                f"No {singular} named {name!r} is registered.{hint} "
                "The name may be misspelled, or the plugin that provides it may not be "
                "installed (see `lopt list`)."
            )
        return table[name]

    def find(self, name: str) -> list[Entry]:
        """Every entry called `name`, of any kind."""
        return [t[name] for t in self._load().values() if name in t]

    def names(self, kind: str) -> list[str]:
        """Sorted names of `kind`."""
        return sorted(self.entries(kind))

    def build(self, kind: str, name: str, **kwargs: Any) -> Any:
        """Looks up `name` and calls its factory with `kwargs`."""
        return self.entry(kind, name).factory(**kwargs)


REGISTRY = Registry()


@dataclass(frozen=True)
class Kind(Generic[T]):
    """One kind of component: its registry key, its hook and the class its factories build.

    `Kind.get` and `Kind.list` are the typed `get_<kind>` / `list_<kind>s` functions.
    """

    name: str
    singular: str
    base: type[T] | None = None

    def get(self, name: str, **kwargs: Any) -> T:
        """Builds the component registered as `name`, passing `kwargs` to its factory.

        Raises:
          UnknownComponentError: nobody registered `name` (close matches are listed).
          TypeError: the factory returned something that is not a `base`.
        """
        obj = REGISTRY.build(self.name, name, **kwargs)
        if self.base is not None and not isinstance(obj, self.base):
            entry = REGISTRY.entry(self.name, name)
            raise TypeError(
                f"The {self.singular.replace('_', ' ')} {name!r} registered by {entry.plugin} "
                f"built a {type(obj).__name__}, not a {self.base.__name__}; its factory must "
                f"return a lopt_core.{self.base.__name__}."
            )
        return cast(T, obj)

    def list(self) -> list[str]:
        """Sorted names of every registered component of this kind."""
        return REGISTRY.names(self.name)


TASKS: Kind[Task] = Kind("tasks", "task", Task)
TASK_FAMILIES: Kind[TaskFamily] = Kind("task_families", "task_family", TaskFamily)
OPTIMIZERS: Kind[Optimizer] = Kind("optimizers", "optimizer", Optimizer)
LEARNED_OPTIMIZERS: Kind[LearnedOptimizer] = Kind(
    "learned_optimizers", "learned_optimizer", LearnedOptimizer
)
OUTER_TRAINERS: Kind[Any] = Kind("outer_trainers", "outer_trainer")
METRIC_WRITERS: Kind[Any] = Kind("metric_writers", "metric_writer")

get_task = TASKS.get
list_tasks = TASKS.list
get_task_family = TASK_FAMILIES.get
list_task_families = TASK_FAMILIES.list
get_optimizer = OPTIMIZERS.get
list_optimizers = OPTIMIZERS.list
get_learned_optimizer = LEARNED_OPTIMIZERS.get
list_learned_optimizers = LEARNED_OPTIMIZERS.list
get_outer_trainer = OUTER_TRAINERS.get
list_outer_trainers = OUTER_TRAINERS.list
get_metric_writer = METRIC_WRITERS.get
list_metric_writers = METRIC_WRITERS.list


class Catalog:
    """One package's components, declared once: registration, `__all__` and tests derive from it.

    A package makes one `Catalog`, declares each component with a decorator, and
    names the catalog (not a module) as its entry point; the catalog implements
    every registration hook.

    Example:
      >>> CATALOG = Catalog()
      >>> @CATALOG.task("my_quadratic")
      ... class ShiftedQuadratic(Task): ...

    and in pyproject.toml: `[project.entry-points.lopt] my_plugin = "my_plugin:CATALOG"`.
    """

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, tuple[Callable[..., Any], str | None]]] = {
            kind: {} for kind in KINDS
        }

    def add(
        self, kind: str, name: str, factory: Callable[..., Any], description: str | None = None
    ) -> None:
        """Declares `factory` under `name` for `kind` (one of `KINDS`).

        Raises:
          ValueError: unknown kind, or `name` already declared in this catalog.
          TypeError: `factory` is not callable.
        """
        if kind not in KINDS:
            raise ValueError(f"Unknown kind {kind!r}; expected one of {', '.join(KINDS)}.")
        if not callable(factory):
            raise TypeError(f"The {kind} entry {name!r} must be callable, got {factory!r}.")
        table = self._entries[kind]
        if name in table:
            raise ValueError(f"The {kind} name {name!r} is declared twice in this catalog.")
        table[name] = (factory, description)

    def _decorator(self, kind: str, name: str | None, description: str | None) -> Any:
        def wrap(factory: F) -> F:
            self.add(kind, name or factory.__name__, factory, description)
            return factory

        return wrap

    def task(self, name: str | None = None, description: str | None = None) -> Any:
        """Decorator: declares a Task class or a function returning a Task."""
        return self._decorator("tasks", name, description)

    def task_family(self, name: str | None = None, description: str | None = None) -> Any:
        """Decorator: declares a TaskFamily class or factory."""
        return self._decorator("task_families", name, description)

    def optimizer(self, name: str | None = None, description: str | None = None) -> Any:
        """Decorator: declares an Optimizer class or factory."""
        return self._decorator("optimizers", name, description)

    def learned_optimizer(self, name: str | None = None, description: str | None = None) -> Any:
        """Decorator: declares a LearnedOptimizer class or factory."""
        return self._decorator("learned_optimizers", name, description)

    def outer_trainer(self, name: str | None = None, description: str | None = None) -> Any:
        """Decorator: declares an outer-training component (estimator, schedule, ...)."""
        return self._decorator("outer_trainers", name, description)

    def metric_writer(self, name: str | None = None, description: str | None = None) -> Any:
        """Decorator: declares a metric writer class or factory."""
        return self._decorator("metric_writers", name, description)

    def command(self, name: str, description: str | None = None) -> Any:
        """Decorator: declares a `lopt NAME` subcommand (a `setup(subparsers)` function)."""
        return self._decorator("commands", name, description)

    def names(self, kind: str) -> list[str]:
        """The names declared for `kind`, in declaration order."""
        return list(self._entries[kind])

    def factories(self, kind: str) -> dict[str, Callable[..., Any]]:
        """name -> factory for `kind`, in declaration order."""
        return {name: f for name, (f, _) in self._entries[kind].items()}

    def exported_names(self) -> list[str]:
        """The public names of every declared class or function, for a package's `__all__`."""
        out = {
            f.__name__
            for table in self._entries.values()
            for f, _ in table.values()
            if not getattr(f, "__name__", "_").startswith("_")
        }
        return sorted(out)

    def _register(self, kind: str, register: Callable[..., None]) -> None:
        for name, (factory, description) in self._entries[kind].items():
            register(name, factory, description)

    @hookimpl
    def lopt_register_tasks(self, register: Callable[..., None]) -> None:
        self._register("tasks", register)

    @hookimpl
    def lopt_register_task_families(self, register: Callable[..., None]) -> None:
        self._register("task_families", register)

    @hookimpl
    def lopt_register_optimizers(self, register: Callable[..., None]) -> None:
        self._register("optimizers", register)

    @hookimpl
    def lopt_register_learned_optimizers(self, register: Callable[..., None]) -> None:
        self._register("learned_optimizers", register)

    @hookimpl
    def lopt_register_outer_trainers(self, register: Callable[..., None]) -> None:
        self._register("outer_trainers", register)

    @hookimpl
    def lopt_register_metric_writers(self, register: Callable[..., None]) -> None:
        self._register("metric_writers", register)

    @hookimpl
    def lopt_register_commands(self, register: Callable[..., None]) -> None:
        self._register("commands", register)
