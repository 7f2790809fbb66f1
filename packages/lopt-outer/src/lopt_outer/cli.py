"""`lopt meta-train` and `lopt eval`: meta-train and evaluate from the command line.

`lopt --help` builds the parser of every command, so this module imports nothing
heavy when it loads: JAX, the learners, the backends and checkpoints are imported
inside the functions that run a command. Every flag is checked before anything is
built or compiled; a bad one ends the command with one line on stderr (naming the
flag and the fix) and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import math
import os
import shlex
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from lopt_core.registry import REGISTRY, DuplicateComponentError, UnknownComponentError

if TYPE_CHECKING:
    from lopt_core import GradientEstimator, TruncatedStep, TruncationSchedule
    from lopt_outer.recipe import Recipe

__all__ = [
    "BACKEND_NAMES",
    "META_LOSS_HELP",
    "build_estimator",
    "build_learner",
    "build_run",
    "compare_with_progress",
    "progress_printer",
    "recipe_from_flags",
    "setup_eval",
    "setup_meta_train",
]

BACKEND_NAMES = ("inprocess", "ray")
"""The names `--backend` takes: those of `lopt_outer.backends.BACKENDS`, spelled out here
so that building the parser imports no backend."""

_SEED_LIMIT = 2**32  # lopt_outer.run.SEED_LIMIT, without importing the run layer

META_LOSS_HELP = """\
What meta_loss means (the progress bar, metrics.jsonl, the last line): for every one
of the --num-tasks task samples, the loss at each inner step of the estimate's
unroll, averaged over those steps (the step right after a task's reset is left out),
then over the tasks (and over both antithetic copies of ES estimators; FullES follows
its loss_type). With --meta-loss-split none that loss is the training loss of each
inner step on its own training batch, before the step's update; with same_data, the
updated parameters on that same batch; with train, inner_valid, outer_valid or test,
the updated parameters on a fresh batch of that split.

It is raw only when the family's tasks define no normalizer; most map the loss onto a
common scale first, so compare meta-losses within one family and split only. The
sampled classification families (ImageMLPFamily_Digits8, ImageConvFamily_Digits8,
Sampled*Family, LMRNNFamily_EmbeddedText) clip the log-loss to [0, log 2K] for K
classes and map it affinely, log(K/5) to 0 and each log K of loss to 10 units (raw =
meta_loss * log(K) / 10 + log(K / 5)): for 10 classes chance (log 10) is 7.0, a loss
of 0 is -3.0, so 7.5 is a little worse than chance (log-loss 2.42) and -1.8 is a
log-loss of 0.28. Single image classifiers clip the log-loss to [0, 1.5 log K];
FixedDimQuadraticFamily clips to [0, 1000]; NoisyQuadraticFamily is raw."""


# -- help and errors ------------------------------------------------------------------
class _HelpFormatter(argparse.HelpFormatter):
    """Every option shows its default; descriptions and epilogs keep their paragraphs."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or not action.option_strings
            or action.required
            or any(action.default is v for v in (None, False, argparse.SUPPRESS))
        ):
            return text
        return f"{text} (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text
        return "\n\n".join(fill(p, width, indent) for p in text.split("\n\n"))


def _setup_parser(parser: argparse.ArgumentParser) -> None:
    # Errors are one line already: lopt_core.cli.Parser, the class of every subcommand.
    parser.formatter_class = _HelpFormatter


def _fail(message: str, command: str = "meta-train") -> NoReturn:
    """Ends `lopt COMMAND` with one line on stderr and exit status 2."""
    print(f"lopt {command}: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def _int_at_least(minimum: int, example: int) -> Callable[[str], int]:
    """An argparse `type=`: a whole number >= `minimum`; the error suggests `example`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number >= {minimum}, got {text!r}; pass one such as {example}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be a whole number >= {minimum}, got {value}; pass one such as {example}"
            )
        return value

    parse.__name__ = "int"
    return parse


def _float_above_zero(example: str, unit: str = "") -> Callable[[str], float]:
    """An argparse `type=`: a finite number > 0; the error suggests `example`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number > 0{unit}, got {text!r}; pass one such as {example}"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(
                f"must be a number > 0{unit}, got {text}; pass one such as {example}"
            )
        return value

    parse.__name__ = "float"
    return parse


def _seed(text: str) -> int:
    """An argparse `type=`: a seed in [0, 2**32)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seed must be an integer >= 0, got {text!r}; pass one such as 0"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"seed must be an integer >= 0, got {value}; pass one such as 0"
        )
    if value >= _SEED_LIMIT:
        raise argparse.ArgumentTypeError(
            f"seed must be below 2**32 = {_SEED_LIMIT}, got {value} (larger seeds would "
            "silently repeat smaller ones); pick a seed in [0, 2**32)"
        )
    return value


def _learning_rates(text: str) -> tuple[float, ...]:
    """An argparse `type=`: comma-separated learning rates > 0, such as `1e-4,3e-4`."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    hint = "pass comma-separated numbers > 0 without spaces, e.g. 1e-4,3e-4,3e-3"
    if not parts:
        raise argparse.ArgumentTypeError(f"expected at least one learning rate; {hint}")
    out = []
    for p in parts:
        try:
            value = float(p)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{p!r} is not a number; {hint}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"learning rate {p} is not > 0; {hint}")
        out.append(value)
    return tuple(out)


def _check_name(kind: str, name: str, flag: str, command: str) -> Any:
    """The registry entry `name` of `kind`, or a one-line error naming `flag`."""
    try:
        return REGISTRY.entry(kind, name)
    except (UnknownComponentError, DuplicateComponentError) as exc:
        _fail(f"{flag} {name}: {exc}", command)


def _check_output_dir(path: str, command: str) -> None:
    """Refuses an --output-dir that is a file or cannot be written, creating nothing."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        _fail(f"--output-dir {out} is a file, not a folder; pick a folder (--output-dir).", command)
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        _fail(
            f"--output-dir {out} cannot be created: {probe} is a file, not a folder; pick "
            "another --output-dir.",
            command,
        )
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".lopt-write-probe."):
            pass
    except OSError as exc:
        _fail(
            f"--output-dir {out} cannot be written ({exc.strerror or exc} in {probe}); pick a "
            "folder you can write to (--output-dir).",
            command,
        )


# -- meta-train -----------------------------------------------------------------------
def build_estimator(
    name: str,
    truncated_step: TruncatedStep,
    *,
    trunc_length: int,
    std: float,
    schedule: TruncationSchedule,
) -> GradientEstimator:
    """Builds the registered estimator `name`, passing the arguments its signature accepts.

    Truncated estimators get `trunc_length` (or `unroll_length`); full-unroll ones
    get the truncation schedule. Works for third-party estimators that follow the
    same argument names.
    """
    from lopt_core import GradientEstimator

    factory = REGISTRY.entry("outer_trainers", name).factory
    params = inspect.signature(factory).parameters
    offered = {
        "trunc_length": trunc_length,
        "unroll_length": trunc_length,
        "std": std,
        "truncation_schedule": schedule,
    }
    if "truncation_schedule" in params:
        offered.pop("unroll_length")
    kwargs = {k: v for k, v in offered.items() if k in params}
    est = factory(truncated_step, **kwargs)
    if not isinstance(est, GradientEstimator):
        raise ValueError(f"outer trainer {name!r} is not a GradientEstimator; pick an estimator.")
    return est


def build_learner(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """The task family, learned optimizer and SingleMachineGradientLearner that `args` describe.

    Built from the args' recipe (`--recipe`'s, or `recipe_from_flags(args)`) by
    `lopt_outer.recipe.build_recipe`; several families come back as a tuple.

    Raises:
      RecipeError: a flag or the recipe is not valid (one line naming it).
    """
    from lopt_outer import recipe as recipe_mod

    recipe = getattr(args, "_recipe", None) or recipe_from_flags(args)
    built = recipe_mod.build_recipe(recipe)
    families = built.families
    family = families[0] if len(families) == 1 else families
    return family, built.learned_opt, built.learner


_FLAGS_COMMENT = """\
Made by `lopt meta-train` from its flags. Run it again with:
  lopt meta-train --recipe recipe.toml --output-dir DIR"""


def recipe_from_flags(args: argparse.Namespace) -> Recipe:
    """The `Recipe` that `lopt meta-train`'s learner and run flags describe.

    `--task-family A:2,B` gives the families and weights, `--augment` (each in order)
    their augmentations, `--min-length`/`--max-length` the schedule
    (`LogUniformLengthSchedule` or `ConstantTruncationSchedule`), `--estimator` with
    `--trunc-length` and `--std` (those its signature takes) the estimator, `--outer-lr`
    Adam's learning rate, and `--member-normalizer` the mixture's `normalizer`. Its
    `text` (the TOML that `parse_recipe` reads back as this recipe) is what the run
    saves as `recipe.toml`.

    Raises:
      ValueError: a flag is not valid (`RecipeError` for a component's options).
    """
    from lopt_outer.recipe import Component, FamilySpec, make_recipe

    augment = tuple(
        Component(*_augment_spec(text)) for text in getattr(args, "augment", None) or ()
    )
    families = [
        FamilySpec(name, {}, weight, augment) for name, weight in _family_specs(args.task_family)
    ]
    if args.min_length:
        schedule = Component(
            "LogUniformLengthSchedule",
            {"min_length": args.min_length, "max_length": args.max_length},
        )
    else:
        schedule = Component("ConstantTruncationSchedule", {"total_length": args.max_length})
    return make_recipe(
        families,
        source="<flags>",
        comment=_FLAGS_COMMENT,
        learned_optimizer=Component(args.learned_optimizer),
        schedule=schedule,
        estimator=Component(args.estimator, _estimator_kwargs(args)),
        outer_optimizer=Component("Adam", {"learning_rate": float(args.outer_lr)}),
        num_tasks=args.num_tasks,
        meta_loss_split=args.meta_loss_split,
        random_initial_iteration_offset=args.max_length,
        normalizer=getattr(args, "member_normalizer", None) or "relative",
        num_steps=args.num_steps,
        seed=args.seed,
        time_budget_s=None if args.time_budget is None else float(args.time_budget),
        checkpoint_every=args.checkpoint_every,
    )


def _estimator_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The options `build_estimator` passes `--estimator` from the flags, as recipe kwargs
    (the truncation schedule aside: `build_recipe` passes it where it is taken)."""
    factory = REGISTRY.entry("outer_trainers", args.estimator).factory
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    offered: dict[str, Any] = {
        "trunc_length": args.trunc_length,
        "unroll_length": args.trunc_length,
        "std": float(args.std),
    }
    if "truncation_schedule" in params:
        offered.pop("unroll_length")
    return {k: v for k, v in offered.items() if k in params}


_FAMILY_FIX = (
    "write NAME or NAME:WEIGHT, comma-separated, such as "
    "FixedDimQuadraticFamily:2,NoisyQuadraticFamily:1"
)


def _family_specs(text: str | None) -> list[tuple[str, float]]:
    """`--task-family A:2,B` as `[(name, weight), ...]` (weight 1.0 when left out).

    Raises:
      ValueError: one line naming the flag, the bad part and the fix.
    """
    out = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, weight_text = (x.strip() for x in part.partition(":"))
        if not name:
            raise ValueError(
                f"--task-family {text}: {part.strip()!r} has no family name before ':'; "
                f"{_FAMILY_FIX}."
            )
        weight = 1.0
        if sep:
            try:
                weight = float(weight_text)
            except ValueError:
                weight = math.nan
            if not (math.isfinite(weight) and weight > 0):
                raise ValueError(
                    f"--task-family {text}: the weight {weight_text!r} of {name} is not a "
                    f"number > 0; {_FAMILY_FIX}."
                )
        out.append((name, weight))
    return out


def _family_names(text: str) -> list[str]:
    """`--task-family A,B` as its names (several: a mixture, one family per outer step)."""
    return [name.strip().partition(":")[0].strip() for name in text.split(",") if name.strip()]


_AUGMENT_FIX = "write NAME[:key=value,...] such as ReparamWeights:level=tensor,min_scale=0.01"


def _augment_spec(text: str) -> tuple[str, dict[str, Any]]:
    """`--augment NAME[:key=value,...]` as `(name, kwargs)`; values are TOML scalars
    (`1`, `0.5`, `true`, `"a"`), and a bare word that is none of them is a string.

    Raises:
      ValueError: one line naming the flag, the bad part and the fix.
    """
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"--augment {text}: no augmentation name before ':'; {_AUGMENT_FIX}.")
    kwargs: dict[str, Any] = {}
    if not sep:
        return name, kwargs
    for part in rest.split(","):
        key, eq, raw = (x.strip() for x in part.partition("="))
        if not (eq and key and raw):
            what = "an empty option" if not part.strip() else f"option {part.strip()!r}"
            raise ValueError(f"--augment {text}: {what} is not key=value; {_AUGMENT_FIX}.")
        if key in kwargs:
            raise ValueError(
                f"--augment {text}: option {key!r} is given twice; give each option once."
            )
        kwargs[key] = _scalar(text, key, raw)
    return name, kwargs


def _scalar(text: str, key: str, raw: str) -> Any:
    """`raw` as a TOML scalar (int, float, bool, string); a bare word is a string."""
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if raw[0] in "\"'[{":
            raise ValueError(
                f"--augment {text}: the value of {key}, {raw}, is not a valid TOML value; "
                "write a number, true or false, or a string (quoted or a bare word)."
            ) from None
        return raw
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"--augment {text}: {key}=nan is not a number; pass a finite number.")
    if not isinstance(value, (bool, int, float, str)):
        raise ValueError(
            f"--augment {text}: the value of {key}, {raw}, is a {type(value).__name__}; pass "
            "a number, true or false, or a string."
        )
    return value


_RAY_FLAGS = {"workers": "--workers", "address": "--address", "max_staleness": "--max-staleness"}


def _ray_only_flags(args: argparse.Namespace) -> None:
    ray_given = [flag for dest, flag in _RAY_FLAGS.items() if getattr(args, dest) is not None]
    if args.backend != "ray" and ray_given:
        raise ValueError(
            f"{', '.join(ray_given)} only apply to the Ray backend; add --backend ray or drop "
            f"{'them' if len(ray_given) > 1 else 'it'}."
        )


def _evaluation(args: argparse.Namespace) -> Any:
    """The `SuiteEvaluation` that --eval-suite and its flags describe, or None.

    Raises:
      ValueError: an --eval-* flag without --eval-suite, an unknown suite, or tasks
        or horizons the suite cannot take (the message names the flag).
    """
    given = [
        flag
        for dest, flag in (("eval_tasks", "--eval-tasks"), ("eval_horizons", "--eval-horizons"))
        if getattr(args, dest, None) is not None
    ]
    if args.eval_suite is None:
        if given:
            raise ValueError(f"{', '.join(given)} need --eval-suite NAME (`lopt list suites`).")
        return None
    import lopt_core
    from lopt_outer.bench import SuiteEvaluation
    from lopt_outer.bench_cli import _ints, _names

    if args.eval_suite not in lopt_core.list_suites():
        raise ValueError(
            f"--eval-suite {args.eval_suite}: no such suite; the suites are "
            f"{', '.join(lopt_core.list_suites())}."
        )
    suite = lopt_core.get_suite(args.eval_suite)
    # The comma lists parse as `lopt bench`'s --tasks and --horizons do.
    for dest, flag, parse, field in (
        ("eval_tasks", "--eval-tasks", _names, "task_names"),
        ("eval_horizons", "--eval-horizons", _ints, "horizons"),
    ):
        text = getattr(args, dest)
        if text is None:
            continue
        try:
            values = parse(text)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"{flag} {text}: {exc}.") from None
        try:
            suite = suite.subset(**{field: values})
        except ValueError as exc:
            raise ValueError(f"{flag}: {exc}") from None
    return SuiteEvaluation(suite, every=args.eval_every)


def build_run(args: argparse.Namespace) -> tuple[Any, Any]:
    """The `RunConfig` and the backend that `lopt meta-train`'s `args` describe.

    Raises:
      ValueError: a flag is out of range, or a Ray-only flag is given without
        `--backend ray` (the message names the flag).
    """
    from lopt_outer.backends import backend_named
    from lopt_outer.run import RunConfig

    _ray_only_flags(args)
    override = [o.strip() for item in args.override or () for o in item.split(",") if o.strip()]
    config = RunConfig(
        num_steps=args.num_steps,
        seed=args.seed,
        output_dir=args.output_dir,
        checkpoint_every=args.checkpoint_every,
        time_budget_s=args.time_budget,
        resume=not args.no_resume,
        overwrite=args.overwrite,
        override=override,
        progress=not args.no_progress,
        evaluation=_evaluation(args),
    )
    options = {}
    if args.backend == "ray":
        options = {
            "num_workers": 1 if args.workers is None else args.workers,
            "address": args.address,
            "max_staleness": args.max_staleness,
        }
    return config, backend_named(args.backend, **options)


def _check_meta_train(args: argparse.Namespace) -> None:
    """Every check that needs no learner: flags together, names, Ray, the output folder."""
    if args.resume and args.no_resume:
        _fail("--resume and --no-resume contradict each other; pass one of them.")
    if args.overwrite and args.resume:
        _fail("--overwrite deletes the run that --resume would continue; pass one of them.")
    try:
        _ray_only_flags(args)
    except ValueError as exc:
        _fail(str(exc))
    if args.min_length > args.max_length:
        _fail(
            f"--min-length {args.min_length} is above --max-length {args.max_length}; pass "
            "--min-length <= --max-length, or --min-length 0 for unrolls of --max-length."
        )
    if args.backend == "ray" and importlib.util.find_spec("ray") is None:
        _fail(
            "--backend ray needs Ray, which is not installed; pip install 'lopt-outer[ray]', "
            "or drop --backend ray to meta-train in this process."
        )
    if args.recipe is not None:
        _apply_recipe(args)
    elif args.task_family is None:
        _fail(
            "the following arguments are required: --task-family (or --recipe FILE, a recipe "
            "that names its families)."
        )
    if args.output_dir is None:
        _fail(
            "the following arguments are required: --output-dir (or output_dir in the "
            "[run] table of the --recipe)."
        )
    _check_output_dir(args.output_dir, "meta-train")
    if args.recipe is not None:
        return  # the recipe's components were checked when it was loaded
    try:
        specs = _family_specs(args.task_family)
    except ValueError as exc:
        _fail(str(exc))
    names = [name for name, _ in specs]
    if not names:
        _fail(
            f"--task-family {args.task_family!r} names no family; pass one such as "
            "FixedDimQuadraticFamily, or several comma-separated (A,B: a mixture)."
        )
    if len(names) > 1 and importlib.util.find_spec("lopt_outer.mixture") is None:
        _fail(
            f"--task-family {args.task_family}: several families need lopt_outer.mixture, "
            "which is not installed; pass one family."
        )
    for name in names:
        _check_name("task_families", name, "--task-family", "meta-train")
    _check_name("learned_optimizers", args.learned_optimizer, "--learned-optimizer", "meta-train")
    entry = _check_name("outer_trainers", args.estimator, "--estimator", "meta-train")
    factory = entry.factory
    if isinstance(factory, type):
        from lopt_core import GradientEstimator

        if not issubclass(factory, GradientEstimator):
            _fail(
                f"--estimator {args.estimator} is a {factory.__name__}, not a gradient "
                "estimator; pick one of TruncatedPES, TruncatedES, FullES, TruncatedGrad, "
                "FullGrad (`lopt list outer_trainers`)."
            )
    _check_augment_flags(args)
    try:
        args._recipe = recipe_from_flags(args)
    except ValueError as exc:  # RecipeError too
        _fail(str(exc))


def _check_augment_flags(args: argparse.Namespace) -> None:
    """Each --augment parses and names an augmentation that takes its options."""
    from lopt_outer.recipe import Component, _augmenter

    for text in args.augment or ():
        try:
            comp = Component(*_augment_spec(text))
            _augmenter("<flags>", "augment", comp, label=f"--augment {text}")
        except ValueError as exc:  # RecipeError too
            _fail(str(exc))


# Flags that describe the learner: the recipe says them, so giving one with --recipe is
# refused (the saved recipe would not say how theta was made). The run flags
# (_RECIPE_RUN_FLAGS) override the recipe's [run] values instead.
_RECIPE_CONFLICTS = {
    "task_family": "--task-family",
    "learned_optimizer": "--learned-optimizer",
    "estimator": "--estimator",
    "num_tasks": "--num-tasks",
    "trunc_length": "--trunc-length",
    "max_length": "--max-length",
    "min_length": "--min-length",
    "std": "--std",
    "meta_loss_split": "--meta-loss-split",
    "outer_lr": "--outer-lr",
    "augment": "--augment",
    "member_normalizer": "--member-normalizer",
}
_RECIPE_RUN_FLAGS = {
    "num_steps": "num_steps",
    "seed": "seed",
    "time_budget": "time_budget_s",
    "checkpoint_every": "checkpoint_every",
    "output_dir": "output_dir",
}


def _apply_recipe(args: argparse.Namespace) -> None:
    """Loads --recipe (one-line errors), refuses conflicting flags, fills the run's values.

    Sets `args._recipe` (the `Recipe`), and `args.num_steps`, `seed`, `time_budget`,
    `checkpoint_every` and `output_dir` from the recipe unless given as flags.
    """
    from lopt_outer.recipe import RecipeError, load_recipe

    explicit = getattr(args, "_explicit", set())
    conflicts = [flag for dest, flag in _RECIPE_CONFLICTS.items() if dest in explicit]
    if conflicts:
        _fail(
            f"{', '.join(conflicts)} conflict{'s' if len(conflicts) == 1 else ''} with --recipe "
            f"{args.recipe}, which describes the learner; drop "
            f"{'it' if len(conflicts) == 1 else 'them'} and edit the recipe instead (only "
            "--num-steps, --time-budget, --seed, --checkpoint-every and --output-dir override "
            "a recipe)."
        )
    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as exc:
        _fail(f"--recipe {exc}")
    args._recipe = recipe
    overridden = {}
    for dest, field in _RECIPE_RUN_FLAGS.items():
        value = getattr(recipe, field)
        if dest in explicit:
            if getattr(args, dest) != value and not (dest == "output_dir" and value is None):
                overridden[field] = getattr(args, dest)
        else:
            setattr(args, dest, value)
    args._recipe_overrides = overridden
    args.task_family = recipe.family_names
    args.estimator = recipe.estimator.name
    args.meta_loss_split = recipe.meta_loss_split


def _resume_command(args: argparse.Namespace) -> str:
    """The command that continues this run: the flags given, less --overwrite and --no-resume."""
    parser: argparse.ArgumentParser = args._lopt_parser
    parts = shlex.split(parser.prog) if parser.prog else ["lopt", "meta-train"]
    # With --recipe, the flags given only: the others hold the recipe's values.
    given = getattr(args, "_explicit", set()) if args.recipe is not None else None
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "overwrite", "no_resume"):
            continue
        if given is not None and action.dest not in given:
            continue
        value = getattr(args, action.dest, None)
        if value == action.default and not action.required:
            continue
        flag = max(action.option_strings, key=len)
        if action.nargs == 0:
            if value:
                parts.append(flag)
        elif isinstance(value, list):
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _interrupted(args: argparse.Namespace, step: int, ckpt: Path | None, signal_name: str) -> int:
    where = f"checkpoint at step {step} in {args.output_dir}" if ckpt else "no checkpoint yet"
    verb = "resume" if ckpt else "start again"
    print(
        f"lopt meta-train: interrupted ({signal_name}) after step {step}; {where}; {verb} "
        f"with: {_resume_command(args)}",
        file=sys.stderr,
    )
    return 130 if signal_name == "SIGINT" else 143


def _stop_reason(args: argparse.Namespace, result: Any) -> str:
    if result.stopped_by == "time_budget":
        return f"stopped when the time budget was spent (--time-budget {args.time_budget:g} s)"
    return f"stopped at the step limit (--num-steps {args.num_steps})"


def _meta_loss_words(split: str) -> str:
    if split == "none":
        return "the tasks' normalised training loss per inner step; see --help"
    if split == "same_data":
        return "the tasks' normalised loss after each inner step, same batch; see --help"
    return f"the tasks' normalised {split} loss after each inner step; see --help"


def _last_recorded_meta_loss(out: Path) -> tuple[float, int] | None:
    """`(meta_loss, step)` of the last row of the run's metrics file, or None."""
    from lopt_outer.metric_writers import METRICS_FILE

    path = out / METRICS_FILE
    if not path.is_file():
        return None
    import json

    last = None
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            last = (float(row["meta_loss"]), int(row["step"]))
        except (ValueError, KeyError, TypeError):
            continue
    return last


def _run_meta_train(args: argparse.Namespace) -> int:
    try:
        code = _meta_train(args)
    except KeyboardInterrupt:
        # Outside meta_train's own handling: while checking, building or saving theta.
        point = None
        try:
            from lopt_outer.run import resume_point

            config, backend = build_run(args)
            point = resume_point(config, backend)
        except Exception:
            point = None
        step, path = (point.step, point.path) if point else (0, None)
        code = _interrupted(args, step, path, "SIGINT")
    if code in (130, 143):
        _exit_now_after_interrupt(code)
    return code


def _exit_now_after_interrupt(code: int) -> None:
    """Ends the `lopt` process at once after an interrupt, once the run's files are safe.

    By then the checkpoint is written, the run's files are closed and its lock is
    released. A normal interpreter exit could still hang or abort: a background
    compile (`SingleMachineGradientLearner.init`'s precompile thread) inside XLA
    aborts it ("terminate called ...", SIGABRT), and other background threads
    (metric writers' flush threads) can keep it waiting after a SIGTERM. Only in
    the `lopt` process itself: a caller of `lopt_core.cli.main` keeps running.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if not (getattr(spec, "name", None) == "lopt_core.cli" or Path(sys.argv[0]).name == "lopt"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _meta_train(args: argparse.Namespace) -> int:
    _check_meta_train(args)  # before anything is built, so a wrong flag fails at once
    import lopt_core
    from lopt_outer.meta_train import meta_train
    from lopt_outer.metric_writers import METRICS_FILE
    from lopt_outer.run import RunInterrupted
    from lopt_outer.rundir import RunDirectoryError

    try:
        config, backend = build_run(args)
    except (TypeError, ValueError) as exc:
        _fail(str(exc))
    out = config.output_dir
    # The files this backend resumes from; theta.lopt (an output) is not one.
    resumable = backend.resumes_from
    if args.resume and not any((out / name).exists() for name in resumable):
        _fail(
            f"--resume given but {out} holds no {' or '.join(resumable)} to resume from with "
            f"backend {args.backend!r}; drop --resume to start a new run there."
        )
    from lopt_outer.recipe import RecipeError

    recipe = args._recipe  # --recipe's, or the flags' (recipe_from_flags)
    try:
        _, lopt, learner = build_learner(args)
    except (UnknownComponentError, DuplicateComponentError):
        raise
    except RecipeError as exc:
        _fail(f"--recipe {exc}" if args.recipe is not None else str(exc))
    except (TypeError, ValueError) as exc:
        _fail(str(exc))
    callback = _recipe_writer(out, recipe.text)
    try:
        result = meta_train(learner, config, backend, callback=callback)
    except (RunDirectoryError, lopt_core.CheckpointError) as exc:
        _fail(str(exc))
    except RunInterrupted as exc:
        return _interrupted(args, exc.step, exc.checkpoint, exc.signal_name)
    theta_path = lopt_core.save(
        out / "theta.lopt",
        result.theta,
        {
            "task_family": recipe.family_names,
            "estimator": args.estimator,
            "outer_steps": result.steps,
            "seed": config.seed,
            **_recipe_metadata(args, out),
        },
        producer=lopt,
    )
    ran = result.steps - result.resumed_from
    files = f"theta: {theta_path}\nmetrics: {out / METRICS_FILE}"
    if not ran:
        recorded = _last_recorded_meta_loss(out)
        last = (
            f"last meta-loss {recorded[0]:.4f} (step {recorded[1]}, from {METRICS_FILE})"
            if recorded
            else f"no meta-loss recorded in {METRICS_FILE}"
        )
        print(
            f"{out} is already done: {result.steps} steps, and --num-steps is "
            f"{args.num_steps}; nothing trained (raise --num-steps to continue it); {last}\n"
            f"{files}"
        )
        return 0
    last_loss = result.history[-1]["meta_loss"] if result.history else float("nan")
    resumed = f"; resumed from step {result.resumed_from}" if result.resumed_from else ""
    print(
        f"meta-trained {result.steps} steps ({result.stopped_by}): "
        f"{_stop_reason(args, result)}{resumed}; last meta-loss {last_loss:.4f} "
        f"({_meta_loss_words(args.meta_loss_split)})\n"
        f"dropped steps: {result.dropped_steps} of {ran} (no finite meta-gradient); "
        f"diverged task estimates masked out: {result.masked_tasks}\n{files}"
    )
    if result.dropped_steps == ran:
        print(
            f"lopt meta-train: every one of the {ran} outer steps was dropped (every "
            "meta-gradient was NaN or infinite), so theta did not move; lower --outer-lr or "
            "--std, or shorten --max-length.",
            file=sys.stderr,
        )
        return 1
    if result.theta_changed is False:
        print(
            f"lopt meta-train: theta did not change in {ran} outer steps (every meta-gradient "
            "was zero); check that the learned optimizer's theta reaches the meta-loss.",
            file=sys.stderr,
        )
        return 1
    return 0


def _recipe_writer(out: Path, text: str) -> Callable[..., None]:
    """A `meta_train` callback that saves the recipe's text as `<out>/recipe.toml`, once.

    Written after the first step, when the run owns its directory (a folder
    holding another run is refused before any step, and keeps its own recipe).
    """
    done = []

    def write(step: int, state: Any, row: Any) -> None:
        if not done:
            _write_recipe(out, text)
            done.append(True)

    return write


def _write_recipe(out: Path, text: str) -> None:
    from lopt_outer.recipe import RECIPE_FILE

    path = out / RECIPE_FILE
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(f".{RECIPE_FILE}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _recipe_metadata(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The theta file's `recipe` (the TOML text: --recipe's, or the flags' own) and
    `recipe_overrides` (run flags given over a --recipe)."""
    recipe = getattr(args, "_recipe", None)
    if recipe is None:
        return {}
    _write_recipe(out, recipe.text)  # also when no step ran in this process
    meta: dict[str, Any] = {"recipe": recipe.text}
    overrides = {k: str(v) for k, v in getattr(args, "_recipe_overrides", {}).items()}
    if overrides:
        meta["recipe_overrides"] = overrides
    return meta


class _Recorded:
    """Mixed into a flag's action: records that the flag was given (`args._explicit`)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None):
        explicit = set(getattr(namespace, "_explicit", ()))
        explicit.add(self.dest)  # type: ignore[attr-defined]
        namespace._explicit = explicit
        super().__call__(parser, namespace, values, option_string)  # type: ignore[misc]


_RECORDED_CLASSES: dict[type, type] = {}


def _record_given_flags(parser: argparse.ArgumentParser) -> None:
    """Makes every option of `parser` record when it is given, so --recipe can tell a
    flag given explicitly (even at its default value) from one left at its default."""
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        cls = type(action)
        if cls not in _RECORDED_CLASSES:
            _RECORDED_CLASSES[cls] = type(f"Recorded{cls.__name__}", (_Recorded, cls), {})
        action.__class__ = _RECORDED_CLASSES[cls]


def setup_meta_train(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lopt meta-train`."""
    _setup_parser(parser)
    parser.epilog = META_LOSS_HELP
    add = parser.add_argument
    add(
        "--recipe",
        default=None,
        metavar="FILE",
        help="a TOML recipe describing the run (families, learned optimizer, schedule, "
        "estimator, meta-loss, outer optimizer, steps, seed; see lopt-outer's README, "
        "Recipes); saved as recipe.toml in --output-dir and in theta.lopt's metadata (a run "
        "from flags saves the recipe its flags make). Flags that describe the learner are "
        "refused with it; --num-steps, --time-budget, --seed, --checkpoint-every and "
        "--output-dir override its [run] values (default: none)",
    )
    add(
        "--task-family",
        default=None,
        metavar="NAME[:WEIGHT][,...]",
        help="registered task family to meta-train on (`lopt list task_families`); several, "
        "comma-separated, make a mixture (one family's estimate per outer step), drawn in "
        "proportion to the optional weights after a colon (A:2,B:1; default 1 each); "
        "required unless --recipe names the families (default: none)",
    )
    add(
        "--augment",
        action="append",
        metavar="NAME[:KEY=VALUE,...]",
        help="apply this task-family augmentation to every --task-family family, such as "
        "ReparamWeights:level=tensor,min_scale=0.01, ScaleLoss or LabelNoise:max_fraction=0.3 "
        "(the names a recipe's [[families.augment]] takes); values are TOML scalars (1, 0.5, "
        "true, a word); repeat to stack them, applied in order (default: none)",
    )
    add(
        "--member-normalizer",
        choices=["relative", "task"],
        default="relative",
        help="how a mixture's members' meta-losses are scaled: 'relative' wraps each family "
        "in RelativeLossNormalizerFamily, one shared scale; 'task' keeps each task's own "
        "normalizer (a recipe's [mixture] normalizer; unused with one family)",
    )
    add(
        "--learned-optimizer",
        default="MLPLOpt",
        metavar="NAME",
        help="registered learned optimizer to meta-train (`lopt list learned_optimizers`)",
    )
    add(
        "--estimator",
        default="TruncatedPES",
        metavar="NAME",
        help="registered gradient estimator: TruncatedPES, TruncatedES, FullES, TruncatedGrad "
        "or FullGrad (`lopt list outer_trainers`)",
    )
    add(
        "--num-tasks",
        type=_int_at_least(1, 8),
        default=8,
        metavar="N",
        help="task samples trained side by side in each gradient estimate",
    )
    add(
        "--trunc-length",
        type=_int_at_least(1, 20),
        default=20,
        metavar="N",
        help="inner steps each truncated estimate unrolls (TruncatedPES/ES/Grad)",
    )
    add(
        "--max-length",
        type=_int_at_least(1, 200),
        default=200,
        metavar="N",
        help="inner steps a task trains before it is reset with a fresh sample",
    )
    add(
        "--min-length",
        type=_int_at_least(0, 50),
        default=0,
        metavar="N",
        help="if > 0, each task's length is drawn log-uniformly in [--min-length, "
        "--max-length); 0: every task trains --max-length steps",
    )
    add(
        "--std",
        type=_float_above_zero("0.01"),
        default=0.01,
        help="standard deviation of the ES perturbations of theta (ES estimators)",
    )
    add(
        "--meta-loss-split",
        default="none",
        choices=["none", "same_data", "train", "inner_valid", "outer_valid", "test"],
        help="data the meta-loss is measured on: 'none', each inner step's training loss on "
        "its training batch; 'same_data', the updated parameters on that batch; a split "
        "name, the updated parameters on a fresh batch of it (see below)",
    )
    add(
        "--outer-lr",
        type=_float_above_zero("1e-3"),
        default=1e-3,
        metavar="LR",
        help="learning rate of the Adam meta-optimizer on theta",
    )
    add(
        "--num-steps",
        type=_int_at_least(1, 1000),
        default=1000,
        metavar="N",
        help="outer steps (meta-gradient updates) in all, counting those before a resume",
    )
    add(
        "--time-budget",
        type=_float_above_zero("600", " seconds"),
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds of meta-training (compiling not counted), with a "
        "checkpoint; the progress bar then counts the budget's seconds (default: none, "
        "train until --num-steps)",
    )
    add(
        "--seed",
        type=_seed,
        default=0,
        help="the run's seed, in [0, 2**32); with the step number it fixes every random key, "
        "so a resumed run ends where an uninterrupted one would",
    )
    add(
        "--output-dir",
        default=None,
        metavar="DIR",
        help="folder for checkpoint.lopt, metrics.jsonl and theta.lopt; a run in it is "
        "resumed; required unless the --recipe's [run] names output_dir (default: none)",
    )
    add(
        "--checkpoint-every",
        type=_int_at_least(1, 100),
        default=100,
        metavar="N",
        help="outer steps between checkpoints (one is also written at the end and on Ctrl-C)",
    )
    add(
        "--no-resume",
        action="store_true",
        help="never continue a run; refused when --output-dir holds one (see --overwrite) "
        "(default: resume when --output-dir holds a checkpoint)",
    )
    add(
        "--overwrite",
        action="store_true",
        help="delete the run already in --output-dir (its checkpoints, metrics and theta) and "
        "start afresh (default: off)",
    )
    add(
        "--override",
        action="append",
        metavar="FIELD[,FIELD]",
        help="resume although these configuration fields differ from the checkpoint's "
        "(dotted paths such as estimators.0.std or theta_opt.learning_rate, as the error "
        "for a differing field names them; comma-separated or repeated) (default: none)",
    )
    add(
        "--resume",
        action="store_true",
        help="require a checkpoint in --output-dir and continue from it (default: off; a run "
        "resumes anyway when a checkpoint exists)",
    )
    add(
        "--no-progress",
        action="store_true",
        help="no progress bar and no progress messages (resuming, compiling) on stderr "
        "(default: show them)",
    )
    add(
        "--eval-suite",
        default=None,
        metavar="NAME",
        help="continuous evaluation: score theta on this suite (`lopt list suites`) every "
        "--eval-every steps and at the end, against its cached tuned baselines; the scores "
        "join the metrics rows (default: none)",
    )
    add(
        "--eval-every",
        type=_int_at_least(1, 100),
        default=100,
        metavar="N",
        help="outer steps between evaluations on --eval-suite (default: 100)",
    )
    add(
        "--eval-tasks",
        default=None,
        metavar="A,B",
        help="only these tasks of --eval-suite (default: all of them)",
    )
    add(
        "--eval-horizons",
        default=None,
        metavar="N,N",
        help="other horizons than --eval-suite's, e.g. 200 (default: the suite's)",
    )
    add(
        "--backend",
        choices=list(BACKEND_NAMES),
        default="inprocess",
        help="where gradient estimates are computed ('ray' needs lopt-outer[ray])",
    )
    add(
        "--workers",
        type=_int_at_least(1, 4),
        default=None,
        metavar="N",
        help="Ray worker actors (--backend ray; default: 1)",
    )
    add(
        "--address",
        default=None,
        help="join this Ray cluster, 'auto' or HOST:PORT (--backend ray; default: start a "
        "local cluster listening on 127.0.0.1)",
    )
    add(
        "--max-staleness",
        type=_int_at_least(0, 2),
        default=None,
        metavar="N",
        help="drop Ray estimates more than this many updates old (--backend ray; default: "
        "--workers)",
    )
    _record_given_flags(parser)
    parser.set_defaults(func=_run_meta_train, _lopt_parser=parser)


# -- eval -----------------------------------------------------------------------------
def _registered_class(name: str) -> type:
    entry = REGISTRY.entry("learned_optimizers", name)
    factory = entry.factory
    return factory if isinstance(factory, type) else type(factory())


def _eval_optimizer(args: argparse.Namespace, command: str = "eval") -> tuple[Any, Any]:
    """The learned optimizer and theta to evaluate: the --theta file's architecture, or
    --learned-optimizer (MLPLOpt by default) at its initial theta. One-line errors."""
    import lopt_core

    name = args.learned_optimizer
    if args.theta is None:
        import jax

        lopt = lopt_core.get_learned_optimizer(name or "MLPLOpt")
        return lopt, lopt.init(jax.random.PRNGKey(0))
    path = Path(args.theta)
    try:
        from lopt_learned import load_learned_optimizer
    except ImportError:
        load_learned_optimizer = None
    if load_learned_optimizer is None:
        if name is None:
            _fail(
                f"--theta {path}: reading the learned optimizer's architecture from the file "
                "needs lopt-learned, which is not installed; pip install lopt-learned, or name "
                "the architecture with --learned-optimizer.",
                command,
            )
        return _load_theta_as(name, path, command)
    try:
        loaded = load_learned_optimizer(path)
    except lopt_core.CheckpointError as exc:
        _fail(f"--theta {path}: {exc}", command)
    if name is not None:
        want = _registered_class(name)
        got = type(loaded.lopt)
        if got is not want:
            named = name if name == want.__name__ else f"{name} ({want.__name__})"
            _fail(
                f"--theta {path} holds a {got.__name__} theta, but --learned-optimizer is "
                f"{named}; drop --learned-optimizer to evaluate the file's "
                f"{got.__name__}, or pass the theta file of a {want.__name__}.",
                command,
            )
    return loaded.lopt, loaded.theta


def _load_theta_as(name: str, path: Path, command: str = "eval") -> tuple[Any, Any]:
    """Without lopt-learned: theta loaded into `name`'s default configuration, if it fits."""
    import jax

    import lopt_core

    lopt = lopt_core.get_learned_optimizer(name)
    cls = type(lopt)
    try:
        recorded = (lopt_core.load_metadata(path).get("producer") or {}).get("class")
    except lopt_core.CheckpointError as exc:
        _fail(f"--theta {path}: {exc}", command)
    if recorded and recorded != f"{cls.__module__}:{cls.__qualname__}":
        _fail(
            f"--theta {path} holds a theta of {recorded}, but --learned-optimizer is {name} "
            f"({cls.__name__}); pass the theta file of a {cls.__name__}, or name its "
            "architecture with --learned-optimizer.",
            command,
        )
    like = lopt.init(jax.random.PRNGKey(0))
    try:
        return lopt, lopt_core.load(path, like=like).tree
    except lopt_core.CheckpointError as exc:
        _fail(f"--theta {path}: {exc}", command)


def _check_eval(args: argparse.Namespace) -> None:
    _check_name("task_families", args.task_family, "--task-family", "eval")
    if args.learned_optimizer is not None:
        _check_name("learned_optimizers", args.learned_optimizer, "--learned-optimizer", "eval")
    if args.eval_every > args.steps or args.steps % args.eval_every:
        _fail(
            f"--steps {args.steps} is not a multiple of --eval-every {args.eval_every}; pass "
            "--eval-every dividing --steps (such as --steps 500 --eval-every 50).",
            "eval",
        )
    if args.theta is not None:
        path = Path(args.theta)
        if not path.exists():
            _fail(
                f"--theta {path} does not exist; pass the theta.lopt that lopt meta-train "
                "wrote into its --output-dir, or drop --theta to evaluate the initial theta.",
                "eval",
            )
        if not path.is_file():
            _fail(f"--theta {path} is not a file; pass a theta.lopt file.", "eval")
    _check_output_dir(args.output_dir, "eval")


def progress_printer(
    n_tasks: int, steps: int, file: Any = None
) -> Callable[[list[str], int], None]:
    """A `compare_with_adam(progress=...)` callback: what is evaluated, then `[i/n] label`."""
    t0 = time.perf_counter()

    def progress(labels: list[str], index: int) -> None:
        out = file or sys.stderr
        if index == 0:
            print(
                f"evaluating {len(labels)} optimizers, {n_tasks} held-out tasks x {steps} "
                f"inner steps each: {', '.join(labels)} (each compiles first) ...",
                file=out,
                flush=True,
            )
        print(
            f"  [{index + 1}/{len(labels)}] {labels[index]} (at {time.perf_counter() - t0:.0f} s)",
            file=out,
            flush=True,
        )

    return progress


def compare_with_progress(**kwargs: Any) -> Any:
    """`lopt_outer.evaluate.compare_with_adam(**kwargs)`, saying on stderr what it
    evaluates, which optimizer it trains, and how long it took."""
    from lopt_outer import evaluate

    t0 = time.perf_counter()
    progress = progress_printer(kwargs["n_tasks"], kwargs["steps"])
    result = evaluate.compare_with_adam(progress=progress, **kwargs)
    print(f"evaluated in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return result


def _run_eval(args: argparse.Namespace) -> int:
    try:
        return _eval(args)
    except KeyboardInterrupt:
        print("lopt eval: interrupted (SIGINT); no summary or plot written.", file=sys.stderr)
        return 130


def _eval(args: argparse.Namespace) -> int:
    _check_eval(args)
    lopt, theta = _eval_optimizer(args)

    import jax

    import lopt_core
    from lopt_outer.evaluate import format_table, plot_curves, write_summary

    family = lopt_core.get_task_family(args.task_family)
    result = compare_with_progress(
        task_family=family,
        learned_opt=lopt,
        theta=theta,
        n_tasks=args.n_tasks,
        steps=args.steps,
        key=jax.random.PRNGKey(args.seed),
        baseline_lr=args.baseline_lr,
        adam_lrs=list(args.adam_lrs),
        eval_every=args.eval_every,
        steps_per_jit=args.eval_every,
    )
    print(format_table(result))
    out = Path(args.output_dir)
    summary = write_summary(result, out / "eval_summary.json", theta=args.theta)
    theta_text = args.theta or "initial theta"
    title = f"{args.task_family}: {lopt.name} ({theta_text}) vs Adam"
    try:
        plot = plot_curves(result, out / "eval_curves.png", title=title)
    except ImportError as exc:
        print(f"lopt eval: no plot written: {exc}", file=sys.stderr)
        plot = None
    print(f"summary: {summary}" + (f"\nplot: {plot}" if plot else ""))
    return 0


def setup_eval(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lopt eval`."""
    _setup_parser(parser)
    add = parser.add_argument
    add(
        "--task-family",
        required=True,
        metavar="NAME",
        help="registered task family to sample held-out tasks from; required",
    )
    add(
        "--learned-optimizer",
        default=None,
        metavar="NAME",
        help="registered learned optimizer; with --theta it must be the file's architecture "
        "(default: the architecture and configuration recorded in --theta; MLPLOpt without "
        "--theta)",
    )
    add(
        "--theta",
        metavar="FILE",
        help="theta file to evaluate (theta.lopt from lopt meta-train, or any file "
        "lopt_learned.save_learned_optimizer wrote) (default: none, the learned optimizer's "
        "initial theta)",
    )
    add(
        "--n-tasks",
        type=_int_at_least(1, 4),
        default=4,
        metavar="N",
        help="held-out task samples each optimizer trains",
    )
    add(
        "--steps",
        type=_int_at_least(1, 500),
        default=500,
        metavar="N",
        help="inner steps each task trains; a multiple of --eval-every",
    )
    add(
        "--eval-every",
        type=_int_at_least(1, 50),
        default=50,
        metavar="N",
        help="inner steps between evaluations of the test loss",
    )
    add(
        "--seed",
        type=_seed,
        default=10_000,
        help="seed of the held-out samples (meta-training's seeds are small; keep this apart)",
    )
    add(
        "--baseline-lr",
        type=_float_above_zero("1e-3"),
        default=1e-3,
        metavar="LR",
        help="learning rate of the untuned Adam baseline",
    )
    add(
        "--adam-lrs",
        type=_learning_rates,
        default=(1e-4, 3e-4, 3e-3, 1e-2, 3e-2),
        metavar="LR[,LR...]",
        help="learning rates of the Adam sweep, comma-separated numbers, e.g. 1e-4,3e-4 "
        "(default: 1e-4,3e-4,3e-3,1e-2,3e-2)",
    )
    add(
        "--output-dir",
        default="lopt_eval_out",
        metavar="DIR",
        help="folder for eval_summary.json and eval_curves.png",
    )
    parser.set_defaults(func=_run_eval)
