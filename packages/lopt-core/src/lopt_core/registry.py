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
from typing import Any

import pluggy

from lopt_core import hookspecs

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

    def _run_hook(self, impl: Any, kind: str, dist: str, version: str, table: dict) -> None:
        def register(name: str, factory: Callable[..., Any], description: str | None = None):
            if not isinstance(name, str) or not name:
                raise ValueError(f"{dist} registered a {kind} entry with an invalid name {name!r}.")
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
            raise UnknownComponentError(
                f"No {kind[:-1].replace('_', ' ')} named {name!r} is registered.{hint} "
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


def get_task(name: str, **kwargs: Any) -> Any:
    """Builds the Task registered as `name`."""
    return REGISTRY.build("tasks", name, **kwargs)


def list_tasks() -> list[str]:
    """Names of every registered Task."""
    return REGISTRY.names("tasks")


def get_task_family(name: str, **kwargs: Any) -> Any:
    """Builds the TaskFamily registered as `name`."""
    return REGISTRY.build("task_families", name, **kwargs)


def list_task_families() -> list[str]:
    """Names of every registered TaskFamily."""
    return REGISTRY.names("task_families")


def get_optimizer(name: str, **kwargs: Any) -> Any:
    """Builds the Optimizer registered as `name`."""
    return REGISTRY.build("optimizers", name, **kwargs)


def list_optimizers() -> list[str]:
    """Names of every registered Optimizer."""
    return REGISTRY.names("optimizers")


def get_learned_optimizer(name: str, **kwargs: Any) -> Any:
    """Builds the LearnedOptimizer registered as `name`."""
    return REGISTRY.build("learned_optimizers", name, **kwargs)


def list_learned_optimizers() -> list[str]:
    """Names of every registered LearnedOptimizer."""
    return REGISTRY.names("learned_optimizers")


def get_outer_trainer(name: str, **kwargs: Any) -> Any:
    """Builds the outer-training component (estimator, schedule, ...) registered as `name`."""
    return REGISTRY.build("outer_trainers", name, **kwargs)


def list_outer_trainers() -> list[str]:
    """Names of every registered outer-training component."""
    return REGISTRY.names("outer_trainers")


def get_metric_writer(name: str, **kwargs: Any) -> Any:
    """Builds the metric writer registered as `name`."""
    return REGISTRY.build("metric_writers", name, **kwargs)


def list_metric_writers() -> list[str]:
    """Names of every registered metric writer."""
    return REGISTRY.names("metric_writers")
