"""Recipes: one TOML file that describes a meta-training run.

A recipe names the task families (several, with weights, make a mixture: one
member family's estimator runs per outer step), their augmentations, the learned
optimizer and its configuration, the truncation schedule, the estimator, the
truncated step's meta-loss options, the outer optimizer, and the run's length,
seed and budget. `lopt meta-train --recipe FILE` runs it; the recipe's text is
saved into the run directory (`recipe.toml`) and into the theta file's metadata
(`recipe`), so a meta-trained optimizer says how it was made.

Example (every table but `[[families]]` is optional; the defaults are those of
`lopt meta-train`):

    [run]
    num_steps = 1000          # or time_budget_s = 600 (with num_steps as a cap)
    seed = 0

    [[families]]
    name = "ImageMLPFamily_Digits8"
    weight = 1.0

    [learned_optimizer]
    name = "MLPLOpt"
    kwargs = { hidden_size = 32 }

    [schedule]
    name = "GrowingLogUniformSchedule"
    kwargs = { min_length = 10, start_max_length = 200, end_max_length = 5000, growth_steps = 1000 }

    [estimator]
    name = "TruncatedPES"
    kwargs = { unroll_length = 20, std = 0.01 }

    [truncated_step]
    num_tasks = 8
    meta_loss_split = "outer_valid"
    meta_loss_type = "mean"
    meta_loss_clip = 10.0

    [outer_optimizer]
    name = "Adam"
    kwargs = { learning_rate = 3e-3 }

    [mixture]                 # used with two or more families
    resample_every = 1        # outer steps between draws of the member family
    normalizer = "relative"   # or "task": see below
    normalize = false

`[mixture] normalizer` says how the members' meta-losses are put on one scale:
"relative" (the default) wraps each member family in
`lopt_tasks.augmentation.RelativeLossNormalizerFamily`, so every family's meta-loss
is on one shared scale; "task" keeps each task's own `normalizer`. With one family
nothing is wrapped, whatever it says.

`lopt meta-train`'s flags make a recipe too (`lopt_outer.cli.recipe_from_flags`,
written with `recipe_to_toml`), so a flag run is recorded like a recipe run.

Every key is checked when the recipe is loaded (`load_recipe`), before anything
is built: an unknown key, a value of the wrong type, an unknown component name or
an option its factory does not take raise `RecipeError`, one line naming the key
and the fix. Importing this module imports no JAX; `build_recipe` builds.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lopt_core.registry import REGISTRY, DuplicateComponentError, UnknownComponentError

__all__ = [
    "MEMBER_NORMALIZERS",
    "RECIPE_FILE",
    "BuiltRecipe",
    "Component",
    "FamilySpec",
    "Recipe",
    "RecipeError",
    "build_recipe",
    "load_recipe",
    "make_recipe",
    "parse_recipe",
    "recipe_to_toml",
]

RECIPE_FILE = "recipe.toml"
"""The name a run's recipe is saved under inside its output directory."""

MEMBER_NORMALIZERS = ("relative", "task")
"""The values of `[mixture] normalizer`: how a mixture's member meta-losses are scaled."""

_SPLITS = ("none", "same_data", "train", "inner_valid", "outer_valid", "test")


class RecipeError(ValueError):
    """A recipe that cannot be run: the message is one line naming the key and the fix."""


@dataclasses.dataclass(frozen=True)
class Component:
    """A registered component by name, with the keyword arguments it is built with."""

    name: str
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class FamilySpec:
    """One task family of a recipe: its registered name, kwargs, weight and augmentations."""

    name: str
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    weight: float = 1.0
    augment: tuple[Component, ...] = ()


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A parsed and validated recipe (see the module docstring for the format).

    Attributes:
      families: the task families (two or more: a mixture).
      learned_optimizer, schedule, estimator, outer_optimizer: components by name.
      num_tasks, meta_loss_split, meta_loss_type, meta_loss_clip,
        random_initial_iteration_offset: the truncated step's options (the offset
        None: the schedule's longest unroll).
      resample_every: outer steps between draws of the mixture's member family.
      normalize: the mixture divides each member's gradient by a running scale of
        its meta-loss (`lopt_outer.mixture.MixtureEstimator`).
      normalizer: how a mixture's members' meta-losses are scaled: "relative"
        wraps each family in `RelativeLossNormalizerFamily` (one shared scale),
        "task" keeps each task's own normalizer; unused with one family.
      num_steps, seed, time_budget_s, checkpoint_every, log_every, output_dir:
        the run's settings (`RunConfig`).
      eval_tasks: names of evaluation task families (recorded, not run).
      text: the recipe's TOML text, as read.
      source: where it was read from ("<string>" for `parse_recipe(text)`).
    """

    families: tuple[FamilySpec, ...]
    learned_optimizer: Component = Component("MLPLOpt")
    schedule: Component = Component("ConstantTruncationSchedule", {"total_length": 200})
    estimator: Component = Component("TruncatedPES", {"unroll_length": 20, "std": 0.01})
    outer_optimizer: Component = Component("Adam", {"learning_rate": 1e-3})
    num_tasks: int = 8
    meta_loss_split: str = "none"
    meta_loss_type: str = "mean"
    meta_loss_clip: float | None = None
    random_initial_iteration_offset: int | None = None
    resample_every: int = 1
    normalize: bool = False
    normalizer: str = "relative"
    num_steps: int = 1000
    seed: int = 0
    time_budget_s: float | None = None
    checkpoint_every: int = 100
    log_every: int = 1
    output_dir: str | None = None
    eval_tasks: tuple[str, ...] = ()
    text: str = ""
    source: str = "<string>"

    @property
    def family_names(self) -> str:
        """The family names, comma-separated (as `--task-family A,B` spells a mixture)."""
        return ",".join(f.name for f in self.families)

    def run_config_kwargs(self) -> dict[str, Any]:
        """The `RunConfig` fields the recipe sets (all but `output_dir`)."""
        return {
            "num_steps": self.num_steps,
            "seed": self.seed,
            "time_budget_s": self.time_budget_s,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
        }


# -- parsing ----------------------------------------------------------------------------
class _Reader:
    """Reads one table of a recipe, refusing unknown keys and wrong types, naming `where`."""

    def __init__(self, source: str, where: str, table: Any) -> None:
        self.source, self.where = source, where
        if not isinstance(table, dict):
            self.fail("", f"must be a table, got {_kind(table)}", f"write it as [{where}]")
        self.table = table
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, problem: str, fix: str) -> None:
        key = self.key(name) if name else self.where
        raise RecipeError(f"{self.source}: {key}: {problem}; {fix}.")

    def get(self, name: str, check: Any, default: Any, fix: str) -> Any:
        self.used.add(name)
        if name not in self.table:
            return default
        value = self.table[name]
        try:
            return check(value)
        except (TypeError, ValueError) as exc:
            self.fail(name, f"{exc}, got {value!r}", fix)

    def done(self, allowed: tuple[str, ...] = ()) -> None:
        extra = sorted(set(self.table) - self.used)
        if extra:
            known = ", ".join(sorted(self.used | set(allowed)))
            self.fail(
                extra[0],
                "unknown key",
                f"remove it (the keys of {self.where or 'the top level'} are: {known})",
            )


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("must be a non-empty string")
    return value


def _int(minimum: int) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"must be a whole number >= {minimum}")
        if value < minimum:
            raise ValueError(f"must be a whole number >= {minimum}")
        return value

    return check


def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("must be a number > 0")
    if not (math.isfinite(value) and value > 0):
        raise ValueError("must be a number > 0")
    return float(value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise TypeError("must be a number")
    return float(value)


def _choice(choices: tuple[str, ...]) -> Any:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("must be true or false")
    return value


def _table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("must be a table of keyword arguments")
    return dict(value)


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TypeError("must be an array of names")
    return tuple(value)


def _factory(kind: str, name: str) -> Any:
    return REGISTRY.entry(kind, name).factory


def _check_component(
    source: str, where: str, kind: str, name: str, kwargs: Mapping[str, Any], taken: tuple = ()
) -> Any:
    """The factory of registered `name`, checking that it takes every key of `kwargs`."""
    try:
        factory = _factory(kind, name)
    except (UnknownComponentError, DuplicateComponentError) as exc:
        text = " ".join(str(exc).split())
        raise RecipeError(f"{source}: {where}.name: {text}") from None
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return factory
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return factory
    accepted = [
        n
        for n, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in taken
    ]
    for key in kwargs:
        if key not in accepted:
            raise RecipeError(
                f"{source}: {where}.kwargs.{key}: {name} takes no option {key!r}; use one of "
                f"{', '.join(accepted) or '(none)'}."
            )
    return factory


def _component(source: str, where: str, value: Any, kind: str, default: Component) -> Component:
    if value is None:
        return default
    r = _Reader(source, where, value)
    name = r.get("name", _string, None, f"name a registered component (`lopt list {kind}`)")
    if name is None:
        r.fail("name", "missing", f"name a registered component (`lopt list {kind}`)")
    kwargs = r.get("kwargs", _table, {}, "write kwargs = { option = value, ... }")
    r.done()
    return Component(name, kwargs)


def parse_recipe(text: str, source: str = "<string>") -> Recipe:
    """Parses and validates a recipe's TOML text.

    Checks the structure and types of every key and that every named component is
    registered and takes the options given; builds nothing and compiles nothing.

    Raises:
      RecipeError: one line naming the key and the fix.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{source}: not valid TOML ({exc}); fix the syntax.") from None
    top = _Reader(source, "", data)
    tables = {
        name: top.get(name, lambda v: v, None, "")
        for name in (
            "run",
            "learned_optimizer",
            "schedule",
            "estimator",
            "truncated_step",
            "outer_optimizer",
            "mixture",
            "evaluation",
        )
    }
    families_raw = top.get("families", lambda v: v, None, "")
    top.done()

    if families_raw is None:
        raise RecipeError(
            f'{source}: families: missing; add a [[families]] table with name = "..." (a '
            "registered task family, `lopt list task_families`)."
        )
    if not isinstance(families_raw, list) or not families_raw:
        raise RecipeError(
            f"{source}: families: must be an array of tables, got {_kind(families_raw)}; write "
            'each family as [[families]] with name = "...".'
        )
    families = []
    for i, raw in enumerate(families_raw):
        families.append(_family(source, f"families[{i}]", raw))

    fields: dict[str, Any] = {"families": tuple(families), "text": text, "source": source}
    fields["learned_optimizer"] = _component(
        source,
        "learned_optimizer",
        tables["learned_optimizer"],
        "learned_optimizers",
        Recipe.learned_optimizer,
    )
    fields["schedule"] = _component(
        source, "schedule", tables["schedule"], "outer_trainers", Recipe.schedule
    )
    fields["estimator"] = _component(
        source, "estimator", tables["estimator"], "outer_trainers", Recipe.estimator
    )
    fields["outer_optimizer"] = _component(
        source, "outer_optimizer", tables["outer_optimizer"], "optimizers", Recipe.outer_optimizer
    )

    r = _Reader(source, "truncated_step", tables["truncated_step"] or {})
    fields["num_tasks"] = r.get("num_tasks", _int(1), 8, "pass a whole number such as 8")
    fields["meta_loss_split"] = r.get(
        "meta_loss_split", _choice(_SPLITS), "none", "pick one of those splits"
    )
    fields["meta_loss_type"] = r.get(
        "meta_loss_type", _choice(("mean", "final")), "mean", 'pick "mean" or "final"'
    )
    fields["meta_loss_clip"] = r.get(
        "meta_loss_clip", _number, None, "pass a number such as 10.0, or leave it out"
    )
    fields["random_initial_iteration_offset"] = r.get(
        "random_initial_iteration_offset",
        _int(0),
        None,
        "pass a whole number >= 0, or leave it out for the schedule's longest unroll",
    )
    r.done()

    r = _Reader(source, "mixture", tables["mixture"] or {})
    fields["resample_every"] = r.get("resample_every", _int(1), 1, "pass a whole number >= 1")
    fields["normalize"] = r.get("normalize", _bool, False, "pass true or false")
    fields["normalizer"] = r.get(
        "normalizer", _choice(MEMBER_NORMALIZERS), "relative", 'pick "relative" or "task"'
    )
    r.done()

    r = _Reader(source, "run", tables["run"] or {})
    fields["num_steps"] = r.get("num_steps", _int(1), 1000, "pass a whole number such as 1000")
    fields["seed"] = r.get("seed", _int(0), 0, "pass a whole number in [0, 2**32)")
    if fields["seed"] >= 2**32:
        r.fail("seed", f"must be below 2**32, got {fields['seed']}", "pick a seed in [0, 2**32)")
    fields["time_budget_s"] = r.get(
        "time_budget_s", _positive, None, "pass seconds such as 600, or leave it out"
    )
    fields["checkpoint_every"] = r.get(
        "checkpoint_every", _int(1), 100, "pass a whole number such as 100"
    )
    fields["log_every"] = r.get("log_every", _int(1), 1, "pass a whole number such as 10")
    fields["output_dir"] = r.get("output_dir", _string, None, "pass a folder, or give --output-dir")
    r.done()

    r = _Reader(source, "evaluation", tables["evaluation"] or {})
    fields["eval_tasks"] = r.get("tasks", _names, (), 'write tasks = ["FamilyName", ...]')
    r.done()

    recipe = Recipe(**fields)
    _check_names(recipe)
    return recipe


def _family(source: str, where: str, raw: Any) -> FamilySpec:
    r = _Reader(source, where, raw)
    fix = "name a registered task family (`lopt list task_families`)"
    name = r.get("name", _string, None, fix)
    if name is None:
        r.fail("name", "missing", fix)
    weight = r.get("weight", _positive, 1.0, "pass a number > 0 such as 1.0")
    kwargs = r.get("kwargs", _table, {}, "write kwargs = { option = value, ... }")
    augment_raw = r.get("augment", lambda v: v, [], "")
    r.done()
    if not isinstance(augment_raw, list):
        r.fail(
            "augment",
            f"must be an array of tables, got {_kind(augment_raw)}",
            f'write each as [[{where.split("[")[0]}.augment]] with name = "..."',
        )
    augment = []
    for j, item in enumerate(augment_raw):
        a = _Reader(source, f"{where}.augment[{j}]", item)
        aname = a.get("name", _string, None, "name a registered task family augmentation")
        if aname is None:
            a.fail("name", "missing", "name a registered task family augmentation")
        akwargs = a.get("kwargs", _table, {}, "write kwargs = { option = value, ... }")
        a.done()
        augment.append(Component(aname, akwargs))
    return FamilySpec(name, kwargs, weight, tuple(augment))


def _augmentations() -> dict[str, Any]:
    """lopt-tasks' task-family augmentation wrappers by name ("ScaleLoss" and "ScaleLossFamily")."""
    try:
        from lopt_tasks import augmentation
    except ImportError:
        return {}
    from lopt_core import TaskFamily

    out: dict[str, Any] = {}
    for name in getattr(augmentation, "__all__", ()):
        cls = getattr(augmentation, name, None)
        if name.endswith("Family") and isinstance(cls, type) and issubclass(cls, TaskFamily):
            out[name] = out[name[: -len("Family")]] = cls
    return out


def augmentation_names() -> tuple[str, ...]:
    """The short names of lopt-tasks' augmentation wrappers ("ScaleLoss", ...), sorted."""
    return tuple(sorted(n for n in _augmentations() if not n.endswith("Family")))


def _augmenter(source: str, where: str, aug: Component, label: str | None = None) -> Any:
    """`wrap(family) -> family` for augmentation `aug`, its options checked.

    The name is a lopt-tasks augmentation wrapper ("ScaleLoss" or "ScaleLossFamily",
    built as `ScaleLossFamily(family, **kwargs)`), or a registered task family that takes
    the family to wrap as `base` (`get_task_family(name, base=family, **kwargs)`).
    Errors name `source: where.KEY`, or `label` (such as "--augment X") when given.
    """

    def at(part: str) -> str:
        return label if label is not None else f"{source}: {where}.{part}"

    wrappers = _augmentations()
    known = augmentation_names()
    if aug.name in wrappers:
        cls = wrappers[aug.name]
        params = list(inspect.signature(cls).parameters)
        first = params[0] if params else "family"
        for key in aug.kwargs:
            if key not in params[1:]:
                raise RecipeError(
                    f"{at(f'kwargs.{key}')}: {cls.__name__} takes no option {key!r}; "
                    f"use one of {', '.join(params[1:]) or '(none)'}."
                )
        return lambda family: cls(**{first: family}, **dict(aug.kwargs))
    try:
        factory = _factory("task_families", aug.name)
    except (UnknownComponentError, DuplicateComponentError) as exc:
        if label is not None:
            close = difflib.get_close_matches(aug.name, known, n=3, cutoff=0.5)
            near = f"close matches: {', '.join(close)}; " if close else ""
            raise RecipeError(
                f"{label}: no augmentation named {aug.name!r}; {near}pick one of "
                f"{', '.join(known) or '(none: lopt-tasks is not installed)'}, or a "
                "registered task family that takes `base`."
            ) from None
        hint = f" Augmentations: {', '.join(known)}." if known else ""
        text = " ".join(str(exc).split())
        raise RecipeError(f"{at('name')}: {text}{hint}") from None
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if (
        params
        and "base" not in params
        and not any(p.kind is p.VAR_KEYWORD for p in params.values())
    ):
        raise RecipeError(
            f"{at('name')}: task family {aug.name} does not wrap another family (it "
            "takes no `base`); name an augmentation such as "
            f"{', '.join(known[:3]) or '...'}."
        )
    try:
        _check_component(source, where, "task_families", aug.name, aug.kwargs, ("base",))
    except RecipeError as exc:
        if label is None:
            raise
        raise RecipeError(f"{label}: {str(exc).split(': ', 2)[-1]}") from None

    import lopt_core

    return lambda family: lopt_core.get_task_family(aug.name, base=family, **dict(aug.kwargs))


def _check_names(recipe: Recipe) -> None:
    """Every component is registered and takes the options the recipe gives it."""
    src = recipe.source
    for i, fam in enumerate(recipe.families):
        where = f"families[{i}]"
        _check_component(src, where, "task_families", fam.name, fam.kwargs)
        for j, aug in enumerate(fam.augment):
            _augmenter(src, f"{where}.augment[{j}]", aug)
    _check_component(
        src,
        "learned_optimizer",
        "learned_optimizers",
        recipe.learned_optimizer.name,
        recipe.learned_optimizer.kwargs,
    )
    sched = _check_component(
        src, "schedule", "outer_trainers", recipe.schedule.name, recipe.schedule.kwargs
    )
    est = _check_component(
        src,
        "estimator",
        "outer_trainers",
        recipe.estimator.name,
        recipe.estimator.kwargs,
        ("truncated_step",),
    )
    from lopt_core import GradientEstimator, TruncationSchedule

    if isinstance(sched, type) and not issubclass(sched, TruncationSchedule):
        raise RecipeError(
            f"{src}: schedule.name: {recipe.schedule.name} is not a truncation schedule; pick "
            "one such as ConstantTruncationSchedule, LogUniformLengthSchedule or "
            "GrowingLogUniformSchedule."
        )
    if isinstance(est, type) and not issubclass(est, GradientEstimator):
        raise RecipeError(
            f"{src}: estimator.name: {recipe.estimator.name} is not a gradient estimator; pick "
            "one of TruncatedPES, TruncatedES, FullES, TruncatedGrad, FullGrad."
        )
    _check_component(
        src,
        "outer_optimizer",
        "optimizers",
        recipe.outer_optimizer.name,
        recipe.outer_optimizer.kwargs,
    )


def load_recipe(path: str | Path) -> Recipe:
    """Reads and validates the recipe at `path` (see `parse_recipe`).

    Raises:
      RecipeError: the file cannot be read, or the recipe is not valid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(
            f"{path}: cannot be read ({exc.strerror or exc}); pass the path of a recipe file."
        ) from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: is not UTF-8 text; pass a TOML recipe file.") from None
    return parse_recipe(text, str(path))


# -- writing ----------------------------------------------------------------------------
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"a TOML key must be a string, got {key!r}")
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    """`value` as a TOML value: a string, bool, int, float, array or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # "0.001", "1e-05", "1e+16": each a TOML float
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    raise TypeError(
        f"{type(value).__name__} {value!r} has no TOML form here; use a string, number, "
        "boolean, array or table"
    )


def _component_lines(header: str, comp: Component) -> list[str]:
    lines = [header, f"name = {_toml_string(comp.name)}"]
    if comp.kwargs:
        lines.append(f"kwargs = {_toml_value(comp.kwargs)}")
    return [*lines, ""]


def recipe_to_toml(recipe: Recipe, comment: str | None = None) -> str:
    """The TOML text of `recipe`'s fields (not its `text`), which `parse_recipe` reads back.

    `parse_recipe(recipe_to_toml(r), r.source)` equals `r` but for `text`. Every
    field is written, but those that are None and an empty `[evaluation]`.
    `comment` (lines) goes on top, each line behind "# ".

    Raises:
      TypeError: a kwargs value has no TOML form (such as None or an object).
    """
    lines = [f"# {line}".rstrip() for line in (comment or "").splitlines()]
    if lines:
        lines.append("")
    lines += [
        "[run]",
        f"num_steps = {_toml_value(recipe.num_steps)}",
        f"seed = {_toml_value(recipe.seed)}",
    ]
    if recipe.time_budget_s is not None:
        lines.append(f"time_budget_s = {_toml_value(recipe.time_budget_s)}")
    lines += [
        f"checkpoint_every = {_toml_value(recipe.checkpoint_every)}",
        f"log_every = {_toml_value(recipe.log_every)}",
    ]
    if recipe.output_dir is not None:
        lines.append(f"output_dir = {_toml_value(recipe.output_dir)}")
    lines.append("")
    for fam in recipe.families:
        lines += [
            "[[families]]",
            f"name = {_toml_string(fam.name)}",
            f"weight = {_toml_value(float(fam.weight))}",
        ]
        if fam.kwargs:
            lines.append(f"kwargs = {_toml_value(fam.kwargs)}")
        lines.append("")
        for aug in fam.augment:
            lines += _component_lines("[[families.augment]]", aug)
    lines += _component_lines("[learned_optimizer]", recipe.learned_optimizer)
    lines += _component_lines("[schedule]", recipe.schedule)
    lines += _component_lines("[estimator]", recipe.estimator)
    lines += [
        "[truncated_step]",
        f"num_tasks = {_toml_value(recipe.num_tasks)}",
        f"meta_loss_split = {_toml_string(recipe.meta_loss_split)}",
        f"meta_loss_type = {_toml_string(recipe.meta_loss_type)}",
    ]
    if recipe.meta_loss_clip is not None:
        lines.append(f"meta_loss_clip = {_toml_value(float(recipe.meta_loss_clip))}")
    if recipe.random_initial_iteration_offset is not None:
        offset = recipe.random_initial_iteration_offset
        lines.append(f"random_initial_iteration_offset = {_toml_value(offset)}")
    lines.append("")
    lines += _component_lines("[outer_optimizer]", recipe.outer_optimizer)
    lines += [
        "[mixture]",
        f"resample_every = {_toml_value(recipe.resample_every)}",
        f"normalize = {_toml_value(recipe.normalize)}",
        f"normalizer = {_toml_string(recipe.normalizer)}",
        "",
    ]
    if recipe.eval_tasks:
        lines += ["[evaluation]", f"tasks = {_toml_value(list(recipe.eval_tasks))}", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def make_recipe(
    families: Sequence[FamilySpec],
    *,
    source: str = "<flags>",
    comment: str | None = None,
    **fields: Any,
) -> Recipe:
    """A `Recipe` of `families` and `fields` (`Recipe`'s other fields), with its `text`.

    The text is `recipe_to_toml`'s, parsed back and checked like a file's
    (`parse_recipe(text, source)`), so the result equals what that text loads as.

    Raises:
      RecipeError: a field is not valid (the message names its key, after `source`).
    """
    for name in ("text", "source", "families"):
        if name in fields:
            raise TypeError(f"make_recipe() sets {name!r} itself; do not pass it")
    draft = Recipe(families=tuple(families), source=source, **fields)
    try:
        text = recipe_to_toml(draft, comment)
    except TypeError as exc:
        raise RecipeError(f"{source}: {exc}.") from None
    recipe = parse_recipe(text, source)
    if dataclasses.replace(draft, text=text) != recipe:  # pragma: no cover - a writer bug
        raise RuntimeError(f"recipe_to_toml did not round-trip: {draft} != {recipe}")
    return recipe


# -- building ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BuiltRecipe:
    """What `build_recipe` returns.

    Attributes:
      learner: the `SingleMachineGradientLearner` to pass to `meta_train`.
      learned_opt: the learned optimizer (the producer of theta).
      estimator: the gradient estimator (a mixture's for several families).
      run_config_kwargs: the `RunConfig` fields the recipe sets (add `output_dir`).
      families: the task families the estimators train on, augmented (and, in a
        mixture with `normalizer = "relative"`, wrapped in `RelativeLossNormalizerFamily`).
    """

    learner: Any
    learned_opt: Any
    estimator: Any
    run_config_kwargs: dict[str, Any]
    families: tuple[Any, ...] = ()


def _build_family(source: str, where: str, spec: FamilySpec) -> Any:
    import lopt_core

    family = lopt_core.get_task_family(spec.name, **dict(spec.kwargs))
    for j, aug in enumerate(spec.augment):
        family = _augmenter(source, f"{where}.augment[{j}]", aug)(family)
    return family


def build_estimator_for(recipe: Recipe, family: Any, learned_opt: Any, schedule: Any) -> Any:
    """The recipe's estimator over a `VectorizedLOptTruncatedStep` on `family`."""
    from lopt_core import GradientEstimator
    from lopt_outer.lopt_truncated_step import VectorizedLOptTruncatedStep

    offset = recipe.random_initial_iteration_offset
    if offset is None:
        offset = schedule.max_length or 0
        offset = 0 if offset >= 2**30 else int(offset)
    split = recipe.meta_loss_split
    step = VectorizedLOptTruncatedStep(
        family,
        learned_opt,
        schedule,
        recipe.num_tasks,
        meta_loss_split=None if split == "none" else split,
        random_initial_iteration_offset=offset,
        meta_loss_type=recipe.meta_loss_type,
        meta_loss_clip=recipe.meta_loss_clip,
    )
    factory = _factory("outer_trainers", recipe.estimator.name)
    kwargs = dict(recipe.estimator.kwargs)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if "truncation_schedule" in params and "truncation_schedule" not in kwargs:
        kwargs["truncation_schedule"] = schedule
    est = factory(step, **kwargs)
    if not isinstance(est, GradientEstimator):
        raise RecipeError(
            f"{recipe.source}: estimator.name: {recipe.estimator.name} did not build a "
            "GradientEstimator; pick an estimator."
        )
    return est


def build_recipe(recipe: Recipe) -> BuiltRecipe:
    """Builds the learner a recipe describes (imports JAX; compiles nothing).

    One family: its estimator. Several: `lopt_outer.mixture.mixture_estimator`
    over the families, with their weights and `[mixture] resample_every`, each
    family wrapped in `lopt_tasks.augmentation.RelativeLossNormalizerFamily` first
    when `[mixture] normalizer = "relative"` (the default).

    Raises:
      RecipeError: a component rejects its options (the message names the table).
    """
    import lopt_core
    from lopt_outer.gradient_learner import SingleMachineGradientLearner

    def built(where: str, make: Any) -> Any:
        try:
            return make()
        except (TypeError, ValueError) as exc:
            if isinstance(exc, RecipeError):
                raise
            text = " ".join(str(exc).split())
            raise RecipeError(f"{recipe.source}: {where}: {text}; fix its kwargs.") from None

    lo = recipe.learned_optimizer
    learned_opt = built(
        "learned_optimizer", lambda: lopt_core.get_learned_optimizer(lo.name, **dict(lo.kwargs))
    )
    sc = recipe.schedule
    schedule = built("schedule", lambda: lopt_core.get_outer_trainer(sc.name, **dict(sc.kwargs)))
    families = [
        built(
            f"families[{i}]",
            lambda spec=spec, i=i: _build_family(recipe.source, f"families[{i}]", spec),
        )
        for i, spec in enumerate(recipe.families)
    ]

    if len(families) > 1 and recipe.normalizer == "relative":
        wrap = _relative_normalizer(recipe.source)
        families = [built(f"families[{i}]", lambda f=f: wrap(f)) for i, f in enumerate(families)]

    def make_estimator(family: Any) -> Any:
        return build_estimator_for(recipe, family, learned_opt, schedule)

    if len(families) == 1:
        estimator = built("estimator", lambda: make_estimator(families[0]))
    else:
        try:
            from lopt_outer.mixture import mixture_estimator
        except ImportError as exc:
            raise RecipeError(
                f"{recipe.source}: families: {len(families)} families need the mixture "
                f"estimator (lopt_outer.mixture), which cannot be imported ({exc}); list one "
                "family."
            ) from None
        weights = [f.weight for f in recipe.families]
        # Equal weights are uniform sampling: None, as `--task-family A,B` always built it
        # (so a run's fingerprint does not depend on how its equal weights are spelled).
        uniform = len(set(weights)) == 1
        estimator = built(
            "estimator",
            lambda: mixture_estimator(
                families,
                make_estimator,
                weights=None if uniform else weights,
                resample_every=recipe.resample_every,
                normalize=recipe.normalize,
            ),
        )
    oo = recipe.outer_optimizer
    theta_opt = built(
        "outer_optimizer", lambda: lopt_core.get_optimizer(oo.name, **dict(oo.kwargs))
    )
    learner = SingleMachineGradientLearner(learned_opt, [estimator], theta_opt)
    return BuiltRecipe(learner, learned_opt, estimator, recipe.run_config_kwargs(), tuple(families))


def _relative_normalizer(source: str) -> Any:
    """`lopt_tasks.augmentation.RelativeLossNormalizerFamily`, or a RecipeError."""
    try:
        from lopt_tasks.augmentation import RelativeLossNormalizerFamily
    except ImportError as exc:
        raise RecipeError(
            f'{source}: mixture.normalizer: "relative" needs '
            "lopt_tasks.augmentation.RelativeLossNormalizerFamily, which cannot be imported "
            f'({exc}); install a lopt-tasks that has it, or set normalizer = "task" '
            "(--member-normalizer task)."
        ) from None
    return RelativeLossNormalizerFamily
