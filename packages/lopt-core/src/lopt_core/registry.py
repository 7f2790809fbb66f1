"""The plugin registry: components found through `lopt` entry points and pluggy hooks.

Plugins load lazily, on the first lookup. Every built-in component of the lopt
packages registers through exactly this path, as a third-party plugin would.
"""

from __future__ import annotations

import abc
import difflib
import importlib
import importlib.util
import inspect
import json
import os
import re
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import pluggy

from lopt_core import hookspecs
from lopt_core.hookspecs import hookimpl

if TYPE_CHECKING:  # the registry itself never imports JAX
    from lopt_core.optimizers import LearnedOptimizer, Optimizer
    from lopt_core.suites import Suite
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
    "suites": "lopt_register_suites",
    "commands": "lopt_register_commands",
}


class PluginWarning(UserWarning):
    """A plugin, or one of its entries, was skipped or shadowed; the rest of lopt still works.

    The message is one line: it names the plugin (its distribution), what went
    wrong and how to fix it. `Registry.problems` keeps every message of the last load.
    """


class UnknownComponentError(KeyError):
    """No plugin registered a component under the requested name."""

    def __str__(self) -> str:
        return str(self.args[0])


class DuplicateComponentError(ValueError):
    """A bare name that several third-party plugins register; use a qualified `plugin:name`."""


#: lopt's own distributions. When a third-party plugin registers a name one of
#: them has, the bare name keeps meaning the built-in component.
BUILTIN_PLUGINS: frozenset[str] = frozenset(
    {"lopt-core", "lopt-tasks", "lopt-optimizers", "lopt-learned", "lopt-outer"}
)

_LOPT_SECTION = re.compile(rf"^\s*\[{ENTRY_POINT_GROUP}\]\s*$", re.MULTILINE)


def _normalize(dist: str) -> str:
    """A distribution name as pip compares it: `Lopt_Tasks` and `lopt-tasks` are the same."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _exc_text(exc: BaseException) -> str:
    text = _one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _join(items: list[str], word: str = "and") -> str:
    quoted = [repr(i) for i in items]
    if len(quoted) == 1:
        return quoted[0]
    return f"{', '.join(quoted[:-1])} {word} {quoted[-1]}"


def _singular(kind: str) -> str:
    return "task family" if kind == "task_families" else kind[:-1].replace("_", " ")


def target_of(factory: Any) -> str:
    """The `module:QualName` that names `factory` (a class or function) for an import."""
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return f"?:{type(factory).__qualname__}"
    return f"{module}:{qualname}"


def resolve_target(target: str) -> Any:
    """Imports the object that a `module:QualName` string names.

    Raises:
      ImportError: the module cannot be imported or has no such attribute.
    """
    module_name, sep, qualname = target.partition(":")
    if not sep or not module_name or not qualname:
        raise ImportError(f"{target!r} is not a 'module:QualName' reference.")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"the module {module_name!r} defines no {qualname!r}") from None
    return obj


@dataclass(frozen=True)
class Entry:
    """One registered component.

    An entry read from a plugin's catalog index (`CatalogIndex`) holds only the
    `target` reference, its description, signature and docstring: the factory's
    module is imported when `factory` is first used, so `lopt list` and `lopt
    describe` import no plugin code.

    Attributes:
      name: the name it is registered under.
      kind: one of `KINDS`.
      target: `module:QualName` of the factory.
      description: a one-line description.
      plugin: the distribution (pip package) that registered it, or the name
        given to `Registry.add_plugin`.
      version: that distribution's version.
      signature: the factory's call signature, e.g. `(dim: int = 4)`.
      doc: the factory's docstring.
    """

    name: str
    kind: str
    target: str
    description: str
    plugin: str
    version: str
    signature: str = "(...)"
    doc: str = ""
    _factory: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def of(
        cls, name: str, kind: str, factory: Any, description: str, plugin: str, version: str
    ) -> Entry:
        """An entry for an already imported factory."""
        return cls(
            name,
            kind,
            target_of(factory),
            description,
            plugin,
            version,
            _signature(factory),
            inspect.getdoc(factory) or "",
            factory,
        )

    @property
    def factory(self) -> Callable[..., Any]:
        """The class or function that builds the component (imported on first use).

        Raises:
          ImportError: the module the plugin's index names cannot be imported, or
            lacks the factory; the message names the plugin and the fix.
        """
        if self._factory is None:
            try:
                factory = resolve_target(self.target)
            except ImportError as exc:
                raise ImportError(
                    f"lopt plugin {self.plugin!r} registers the {_singular(self.kind)} "
                    f"{self.name!r} as {self.target}, which cannot be loaded ({_exc_text(exc)}). "
                    f"Reinstall {self.plugin}; if you develop it, rewrite its catalog index "
                    "(python -m lopt_core.registry write-index ENTRY_POINT)."
                ) from exc
            if not callable(factory):
                raise ImportError(
                    f"lopt plugin {self.plugin!r} registers the {_singular(self.kind)} "
                    f"{self.name!r} as {self.target}, which is not callable."
                )
            object.__setattr__(self, "_factory", factory)
        return cast(Callable[..., Any], self._factory)

    @property
    def loaded(self) -> bool:
        """Whether the factory's module has been imported already."""
        return self._factory is not None

    @property
    def qualified_name(self) -> str:
        """`plugin:name`, which reaches this entry even where other plugins use `name` too."""
        return f"{self.plugin}:{self.name}"

    @property
    def builtin(self) -> bool:
        """Whether one of lopt's own packages (`BUILTIN_PLUGINS`) registered it."""
        return _normalize(self.plugin) in BUILTIN_PLUGINS


def _signature(factory: Any) -> str:
    try:
        text = str(inspect.signature(factory))
    except (TypeError, ValueError):
        return "(...)"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)  # the same text in every process


def close_matches(name: str, known: Any, n: int = 5) -> list[str]:
    """The names in `known` a user most likely meant by `name`, best first.

    Case is ignored; a name that contains `name` (`PES` -> `TruncatedPES`) or that
    `name` contains counts, then names that are spelled alike (difflib).
    """
    names = sorted(set(known))
    lower = {k.lower(): k for k in names}
    want = name.lower()
    found = [lower[want]] if want in lower else []
    if len(want) >= 2:
        found += [k for k in names if want in k.lower() or (len(k) >= 3 and k.lower() in want)]
    found += [lower[k] for k in difflib.get_close_matches(want, list(lower), n=n, cutoff=0.5)]
    return list(dict.fromkeys(k for k in found if k != name))[:n]


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _bare_choice(found: list[Entry]) -> Entry | None:
    """The entry a bare name reaches among those registered under it; None if ambiguous."""
    if len(found) == 1:
        return found[0]
    builtins = [e for e in found if e.builtin]
    return builtins[0] if len(builtins) == 1 else None


@dataclass(frozen=True)
class _Owner:
    plugin: str
    version: str
    where: str  # how messages name the plugin


class Registry:
    """Holds every component that the installed plugins register.

    A broken plugin never breaks the others: a plugin that fails to import
    (raising or calling `sys.exit`), a hook that raises, and an entry with an
    invalid name or a factory that is not callable are each reported as a
    `PluginWarning` naming the plugin and skipped. `KeyboardInterrupt` propagates.

    Every entry is reachable by its qualified name `plugin:name`, where plugin
    is `Entry.plugin`. A bare name reaches the one entry registered under it; when
    lopt's built-in package and third-party plugins register the same name, the
    bare name means the built-in one; when only third-party plugins share it, the
    bare name is ambiguous and looking it up raises `DuplicateComponentError`.
    """

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, list[Entry]]] | None = None
        self._extra_plugins: list[tuple[Any, str, str]] = []
        self._problems: list[str] = []
        self.failed_plugins: dict[str, BaseException] = {}

    # -- loading ---------------------------------------------------------------
    def add_plugin(self, module: Any, plugin: str, version: str = "0") -> None:
        """Registers a plugin object directly (for tests and interactive use).

        `plugin` plays the part of the distribution name: it is `Entry.plugin` and
        the `plugin` of qualified names `plugin:name`.
        """
        self._extra_plugins.append((module, plugin, version))
        self._entries = None

    def reload(self) -> None:
        """Forgets what was loaded; the next lookup scans the entry points again."""
        self._entries = None

    @property
    def problems(self) -> list[str]:
        """Every problem the last load found, one line each (each was also a PluginWarning)."""
        self._load()
        return list(self._problems)

    def _report(self, message: str) -> None:
        message = _one_line(message)
        self._problems.append(message)
        warnings.warn(message, PluginWarning, stacklevel=5)

    def plugins(self) -> list[tuple[str, str]]:
        """(distribution, version) of every installed distribution with `lopt` entry points.

        Read from the installed metadata only: no plugin code is imported.
        """
        found = {(dist, version) for _, dist, version in self._entry_points()}
        return sorted(found, key=lambda item: (_normalize(item[0]) not in BUILTIN_PLUGINS, item))

    def _entry_points(self) -> list[tuple[metadata.EntryPoint, str, str]]:
        """(entry point, distribution, version) of every `lopt` entry point.

        Reads each distribution on its own, so one with unreadable metadata is
        reported and skipped instead of breaking the scan.
        """
        found: list[tuple[metadata.EntryPoint, str, str]] = []
        seen: set[str] = set()
        for dist in metadata.distributions():
            try:
                text = dist.read_text("entry_points.txt")
            except Exception:  # an unreadable file of some other package is not lopt's concern
                continue
            if not text or not _LOPT_SECTION.search(text):
                continue
            where = str(getattr(dist, "_path", dist))
            try:
                name = dist.metadata["Name"]
                if not isinstance(name, str) or not name:
                    raise ValueError("its METADATA has no Name")
                version = str(dist.version or "0")
                eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
            except Exception as exc:
                self.failed_plugins[where] = exc
                self._report(
                    f"The installed distribution at {where} declares lopt plugins but its "
                    f"metadata cannot be read ({_exc_text(exc)}); its plugins were skipped. "
                    "Reinstall or uninstall it; the other plugins still work."
                )
                continue
            if _normalize(name) in seen:  # an earlier copy on sys.path wins, as for imports
                continue
            seen.add(_normalize(name))
            found.extend((ep, name, version) for ep in eps)
        return sorted(found, key=lambda item: item[0].value)

    def _load(self) -> dict[str, dict[str, list[Entry]]]:
        if self._entries is not None:
            return self._entries
        self.failed_plugins = {}
        self._problems = []
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        owners: dict[str, _Owner] = {}
        for ep, dist, version in self._entry_points():
            label = f"{dist}:{ep.name}"
            if label in owners or label in self.failed_plugins:
                continue
            owner = _Owner(
                dist, version, f"lopt plugin {dist!r} (entry point `{ep.name} = {ep.value}`)"
            )
            try:
                index = CatalogIndex.beside(ep.value)
            except CatalogIndexError as exc:
                self.failed_plugins[label] = exc
                self._report(f"{owner.where} was skipped: {exc}")
                continue
            try:
                module = index or ep.load()
            except (Exception, SystemExit) as exc:
                self.failed_plugins[label] = exc
                self._report(
                    f"{owner.where} failed to import and was skipped: {_exc_text(exc)}. "
                    f"Fix it or uninstall {dist}; the other plugins still work."
                )
                continue
            self._add_to(pm, module, label, owner, owners)
        for module, plugin, version in self._extra_plugins:
            label, n = plugin, 1
            while label in owners or label in self.failed_plugins:
                n += 1
                label = f"{plugin}#{n}"
            self._add_to(
                pm, module, label, _Owner(plugin, version, f"lopt plugin {plugin!r}"), owners
            )

        entries: dict[str, dict[str, list[Entry]]] = {kind: {} for kind in KINDS}
        for kind, hook_name in KINDS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                self._run_hook(impl, kind, owners[impl.plugin_name], entries[kind])
        for kind, table in entries.items():
            for name in sorted(table):
                if len(table[name]) > 1:
                    self._report_shared(kind, name, table[name])
        self._entries = entries
        return entries

    def _add_to(
        self,
        pm: pluggy.PluginManager,
        module: Any,
        label: str,
        owner: _Owner,
        owners: dict[str, _Owner],
    ) -> None:
        try:
            pm.register(module, name=label)
        except Exception as exc:
            self.failed_plugins[label] = exc
            self._report(
                f"{owner.where} could not be registered and was skipped: {_exc_text(exc)}. "
                "Its hooks must be the lopt_register_* functions of lopt_core.hookspecs, each "
                "taking `register`; the other plugins still work."
            )
            return
        owners[label] = owner

    def _run_hook(self, impl: Any, kind: str, owner: _Owner, table: dict[str, list[Entry]]) -> None:
        """Runs one plugin's hook; its entries count only if the hook returns."""
        staged: dict[str, Entry] = {}
        singular = _singular(kind)

        # Typed Any: plugins may pass anything, and each argument is checked here.
        def register(name: Any, factory: Any, description: Any = None) -> None:
            if not isinstance(name, str) or not name or ":" in name:
                self._report(
                    f"{owner.where} registered a {singular} with the invalid name {name!r}; "
                    "that entry was skipped and its other entries still work. A name is a "
                    "non-empty string without ':' (':' separates plugin and name in a "
                    "qualified name)."
                )
                return
            if not isinstance(factory, Indexed) and not callable(factory):
                self._report(
                    f"{owner.where} registered the {singular} {name!r} with a factory that is "
                    f"not callable ({type(factory).__name__}); that entry was skipped and its "
                    "other entries still work. Register a class or function."
                )
                return
            if name in staged or any(e.plugin == owner.plugin for e in table.get(name, [])):
                self._report(
                    f"{owner.where} registers the {kind} name {name!r} twice; the first "
                    "registration stands and the second was skipped. Register each name once."
                )
                return
            if isinstance(factory, Indexed):
                staged[name] = Entry(
                    name,
                    kind,
                    factory.target,
                    _one_line(factory.description),
                    owner.plugin,
                    owner.version,
                    factory.signature,
                    factory.doc,
                )
                return
            if not isinstance(description, str) or not description.strip():
                description = _first_line(factory)
            staged[name] = Entry.of(
                name, kind, factory, _one_line(description), owner.plugin, owner.version
            )

        try:
            impl.function(**{arg: register for arg in impl.argnames})
        except (Exception, SystemExit) as exc:
            self.failed_plugins[impl.plugin_name] = exc
            self._report(
                f"{owner.where} raised in {KINDS[kind]}, so none of its {kind} were "
                f"registered: {_exc_text(exc)}. Fix it or uninstall {owner.plugin}; the other "
                "plugins still work."
            )
            return
        for name, entry in staged.items():
            table.setdefault(name, []).append(entry)

    def _report_shared(self, kind: str, name: str, found: list[Entry]) -> None:
        singular = _singular(kind)
        chosen = _bare_choice(found)
        if chosen is None:
            self._report(
                f"The {singular} name {name!r} is registered by "
                f"{_join([e.plugin for e in found])}, so the bare name is ambiguous; use "
                f"{_join([e.qualified_name for e in found], 'or')}, or uninstall one of them."
            )
            return
        for e in found:
            if e is not chosen:
                self._report(
                    f"lopt plugin {e.plugin!r} registers the {singular} name {name!r}, which "
                    f"lopt's built-in {chosen.plugin} already has; {name!r} keeps meaning the "
                    f"built-in one and {e.plugin}'s is reachable as {e.qualified_name!r}. Ask "
                    f"{e.plugin}'s author to rename it."
                )

    # -- lookup ----------------------------------------------------------------
    def _check_kind(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"Unknown kind {kind!r}; expected one of {', '.join(KINDS)}.")

    def entries(self, kind: str) -> dict[str, Entry]:
        """Every entry of `kind`, each under the name that reaches it.

        That is the bare name, or the qualified `plugin:name` where the bare name
        means another plugin's entry or is ambiguous.
        """
        self._check_kind(kind)
        out: dict[str, Entry] = {}
        for name, found in self._load()[kind].items():
            chosen = _bare_choice(found)
            for e in found:
                out[name if e is chosen else e.qualified_name] = e
        return out

    def registrations(self, kind: str, name: str) -> list[Entry]:
        """Every entry registered under the bare `name` of `kind`, one per plugin."""
        self._check_kind(kind)
        return list(self._load()[kind].get(name, []))

    def entry(self, kind: str, name: str) -> Entry:
        """The entry `name` of `kind` reaches: a bare name, or a qualified `plugin:name`.

        Raises:
          DuplicateComponentError: several third-party plugins registered the bare
            `name`; the message lists their qualified names.
          UnknownComponentError: nobody registered `name`; the message lists close matches.
        """
        self._check_kind(kind)
        table = self._load()[kind]
        plugin, qualified, bare = name.partition(":")
        if qualified:
            for e in table.get(bare, []):
                if _normalize(e.plugin) == _normalize(plugin):
                    return e
        elif name in table:
            found = table[name]
            chosen = _bare_choice(found)
            if chosen is None:
                raise DuplicateComponentError(
                    f"The {_singular(kind)} name {name!r} is registered by more than one "
                    f"plugin: {_join([e.plugin for e in found])}. Use a qualified name, "
                    f"{_join([e.qualified_name for e in found], 'or')}, or uninstall one of them."
                )
            return chosen
        known = list(self.entries(kind))
        if qualified:
            known += [e.qualified_name for found in table.values() for e in found]
        close = close_matches(name, known)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise UnknownComponentError(
            f"No {_singular(kind)} named {name!r} is registered.{hint} "
            "The name may be misspelled, or the plugin that provides it may not be "
            "installed (see `lopt list`)."
        )

    def find(self, name: str) -> list[Entry]:
        """The entry `name` (bare or qualified) reaches in each kind that has it.

        Raises:
          DuplicateComponentError: the bare `name` is ambiguous in some kind.
        """
        found = []
        for kind in KINDS:
            try:
                found.append(self.entry(kind, name))
            except UnknownComponentError:
                continue
        return found

    def names(self, kind: str) -> list[str]:
        """Sorted names of `kind`, qualified where the bare name reaches another entry."""
        return sorted(self.entries(kind))

    def build(self, kind: str, name: str, **kwargs: Any) -> Any:
        """Looks up `name` and calls its factory with `kwargs`.

        What the factory raises propagates unchanged, with a note (`exc.__notes__`,
        shown in the traceback) naming the component and the plugin that registered it.
        """
        entry = self.entry(kind, name)
        try:
            return entry.factory(**kwargs)
        except Exception as exc:
            exc.add_note(
                f"(raised building the {_singular(kind)} {entry.qualified_name!r} of plugin "
                f"{entry.plugin} {entry.version})"
            )
            raise


REGISTRY = Registry()


@dataclass(frozen=True)
class Kind(Generic[T]):
    """One kind of component: its registry key, its hook and the class its factories build.

    `Kind.get` and `Kind.list` are the typed `get_<kind>` / `list_<kind>s` functions.
    `base` is the `module:QualName` of that class, imported when a component is built.
    """

    name: str
    singular: str
    base: str | None = None

    def get(self, name: str, **kwargs: Any) -> T:
        """Builds the component registered as `name`, passing `kwargs` to its factory.

        Raises:
          UnknownComponentError: nobody registered `name` (close matches are listed).
          TypeError: the factory returned something that is not a `base`.
        """
        obj = REGISTRY.build(self.name, name, **kwargs)
        base = None if self.base is None else resolve_target(self.base)
        if base is not None and not isinstance(obj, base):
            entry = REGISTRY.entry(self.name, name)
            raise TypeError(
                f"The {self.singular.replace('_', ' ')} {name!r} registered by {entry.plugin} "
                f"built a {type(obj).__name__}, not a {base.__name__}; its factory must "
                f"return a lopt_core.{base.__name__}."
            )
        return cast(T, obj)

    def list(self) -> list[str]:
        """Sorted names of every registered component of this kind."""
        return REGISTRY.names(self.name)


TASKS: Kind[Task] = Kind("tasks", "task", "lopt_core.tasks:Task")
TASK_FAMILIES: Kind[TaskFamily] = Kind("task_families", "task_family", "lopt_core.tasks:TaskFamily")
OPTIMIZERS: Kind[Optimizer] = Kind("optimizers", "optimizer", "lopt_core.optimizers:Optimizer")
LEARNED_OPTIMIZERS: Kind[LearnedOptimizer] = Kind(
    "learned_optimizers", "learned_optimizer", "lopt_core.optimizers:LearnedOptimizer"
)
OUTER_TRAINERS: Kind[Any] = Kind("outer_trainers", "outer_trainer")
METRIC_WRITERS: Kind[Any] = Kind("metric_writers", "metric_writer")
SUITES: Kind[Suite] = Kind("suites", "suite", "lopt_core.suites:Suite")

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
get_suite = SUITES.get
list_suites = SUITES.list


class _CatalogHooks(abc.ABC):
    """The registration hooks of a catalog: each hands the catalog's entries of one kind over."""

    @abc.abstractmethod
    def _register(self, kind: str, register: Callable[..., None]) -> None:
        """Calls `register(name, factory, description)` for each entry of `kind`."""

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
    def lopt_register_suites(self, register: Callable[..., None]) -> None:
        self._register("suites", register)

    @hookimpl
    def lopt_register_commands(self, register: Callable[..., None]) -> None:
        self._register("commands", register)


class Catalog(_CatalogHooks):
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

    def suite(self, name: str | None = None, description: str | None = None) -> Any:
        """Decorator: declares an evaluation suite factory (returns a `lopt_core.Suite`)."""
        return self._decorator("suites", name, description)

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

    def index(self) -> dict[str, Any]:
        """This catalog as a catalog index (see `CatalogIndex`), ready to be written as JSON.

        Raises:
          ValueError: a factory cannot be named by `module:QualName` (a lambda or a
            nested function), so an index could not import it again.
        """
        entries: dict[str, dict[str, dict[str, str]]] = {}
        for kind, table in self._entries.items():
            for name, (factory, description) in table.items():
                target = target_of(factory)
                try:
                    same = resolve_target(target) is factory
                except ImportError:
                    same = False
                if not same:
                    raise ValueError(
                        f"The {_singular(kind)} {name!r} cannot go into a catalog index: its "
                        f"factory {factory!r} is not reachable as {target}. Declare a "
                        "module-level class or function."
                    )
                if not isinstance(description, str) or not description.strip():
                    description = _first_line(factory)
                entries.setdefault(kind, {})[name] = {
                    "target": target,
                    "description": _one_line(description),
                    "signature": _signature(factory),
                    "doc": inspect.getdoc(factory) or "",
                }
        return {"lopt_catalog_index": INDEX_FORMAT, "entries": entries}


#: The version of the catalog index format that `Catalog.index` writes.
INDEX_FORMAT = 1
#: An index file beside a plugin's entry-point module: `<module>.lopt-index.json`.
INDEX_SUFFIX = ".lopt-index.json"
_INDEX_MAX_BYTES = 16 * 2**20


class CatalogIndexError(ValueError):
    """A catalog index file is malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class Indexed:
    """A factory known by reference only: what a `CatalogIndex` registers.

    The registry keeps the reference, and imports the factory when it is used.
    """

    target: str
    description: str
    signature: str
    doc: str


def index_path(entry_point: str) -> Path | None:
    """Where the catalog index of the entry point `module:ATTR` lives, found without imports.

    The index of `pkg.sub.mod:CATALOG` is `pkg/sub/mod.lopt-index.json` inside the
    installed package `pkg` (of `pkg:CATALOG`, `pkg/__init__.lopt-index.json`).
    None when `pkg` is not a package on the path.
    """
    module = entry_point.partition(":")[0].strip()
    parts = module.split(".")
    if not all(p.isidentifier() for p in parts):
        return None
    try:
        spec = importlib.util.find_spec(parts[0])  # top level: nothing is executed
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        return None
    stem = parts[1:] if len(parts) > 1 else ["__init__"]
    return Path(locations[0], *stem[:-1], stem[-1] + INDEX_SUFFIX)


class CatalogIndex(_CatalogHooks):
    """A catalog read from its index file: names, descriptions, signatures, docs; no imports.

    A package that ships `<entry-point module>.lopt-index.json` beside the module
    its `lopt` entry point names gets registered from that file: `lopt list` and
    `lopt describe` import none of its code, and each factory is imported when it
    is first used (`Entry.factory`). Write the file with `write_index`
    (`python -m lopt_core.registry write-index pkg._plugin:CATALOG`) and check it
    in the package's tests with `lopt_core.testing.check_catalog_index`. A package
    without the file is loaded through its entry point, as before.
    """

    def __init__(self, entries: dict[str, dict[str, Indexed]], source: str) -> None:
        self.entries = entries
        self.source = source

    @classmethod
    def beside(cls, entry_point: str) -> CatalogIndex | None:
        """The index of the entry point `module:ATTR`, or None when it ships none.

        Raises:
          CatalogIndexError: the file exists but is malformed, or belongs to another
            catalog.
        """
        path = index_path(entry_point)
        if path is None:
            return None
        try:
            info = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_size > _INDEX_MAX_BYTES:
            raise CatalogIndexError(
                f"{path} is not a regular file under {_INDEX_MAX_BYTES} bytes; reinstall the "
                "package that ships it."
            )
        return cls.parse(path.read_bytes(), str(path))

    @classmethod
    def parse(cls, data: bytes, source: str) -> CatalogIndex:
        """Reads an index from the JSON text `Catalog.index` wrote.

        Raises:
          CatalogIndexError: the text is not such an index (the message names `source`).
        """

        def bad(why: str) -> CatalogIndexError:
            return CatalogIndexError(
                f"The catalog index {source} is malformed: {why}. Rewrite it with "
                "`python -m lopt_core.registry write-index ENTRY_POINT`, or reinstall its "
                "package."
            )

        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad(f"not JSON ({_exc_text(exc)})") from None
        if not isinstance(raw, dict) or raw.get("lopt_catalog_index") != INDEX_FORMAT:
            raise bad(f"it does not start with lopt_catalog_index = {INDEX_FORMAT}")
        tables = raw.get("entries")
        if not isinstance(tables, dict):
            raise bad("'entries' is not an object")
        entries: dict[str, dict[str, Indexed]] = {}
        for kind, table in tables.items():
            if kind not in KINDS or not isinstance(table, dict):
                raise bad(f"{kind!r} is not one of {', '.join(KINDS)} with an object of entries")
            for name, item in table.items():
                fields = ("target", "description", "signature", "doc")
                if not isinstance(item, dict) or not all(
                    isinstance(item.get(f), str) for f in fields
                ):
                    raise bad(f"the {kind} entry {name!r} lacks one of the strings {fields}")
                entries.setdefault(kind, {})[name] = Indexed(*(item[f] for f in fields))
        return cls(entries, source)

    def _register(self, kind: str, register: Callable[..., None]) -> None:
        for name, item in self.entries.get(kind, {}).items():
            register(name, item, item.description)


def _catalog_of(entry_point: str) -> Catalog:
    """The complete catalog an entry point names: every submodule of its package imported."""
    import pkgutil

    module_name, _, attr = entry_point.partition(":")
    module = importlib.import_module(module_name.strip())
    top = importlib.import_module(module_name.strip().split(".")[0])
    for info in pkgutil.walk_packages(top.__path__, prefix=f"{top.__name__}."):
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:  # an optional dependency of that module
            if (exc.name or "").split(".")[0] == top.__name__:
                raise
    catalog = getattr(module, attr.strip() or "CATALOG")
    if not isinstance(catalog, Catalog):
        raise TypeError(f"{entry_point} is not a lopt_core.Catalog.")
    return catalog


def index_text(entry_point: str) -> str:
    """The index file text for the catalog that `entry_point` (`module:ATTR`) names."""
    return json.dumps(_catalog_of(entry_point).index(), indent=1, sort_keys=True) + "\n"


def write_index(entry_point: str) -> Path:
    """Writes the catalog index of `entry_point` beside its module and returns its path."""
    path = index_path(entry_point)
    if path is None:
        raise ValueError(f"{entry_point}: its top-level module is not a package on sys.path.")
    path.write_text(index_text(entry_point))
    return path


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lopt_core.registry",
        description="Write a plugin's catalog index (the file `lopt list` reads without imports).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("write-index", help="write ENTRY_POINT's index beside its module")
    p.add_argument(
        "entry_point", nargs="+", help="the entry point's value, e.g. pkg._plugin:CATALOG"
    )
    args = parser.parse_args(argv)
    for entry_point in args.entry_point:
        print(write_index(entry_point))
    return 0


if __name__ == "__main__":  # run the imported module's copy, whose classes plugins use
    from lopt_core import registry

    raise SystemExit(registry._main())
