"""`lopt meta-train` and `lopt eval`: meta-train and evaluate from the command line."""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any, NoReturn

import jax

import lopt_core
from lopt_core import GradientEstimator, TruncatedStep, TruncationSchedule

__all__ = ["build_estimator", "build_learner", "build_run", "setup_eval", "setup_meta_train"]


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
    factory = lopt_core.REGISTRY.entry("outer_trainers", name).factory
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
    """The task family, learned optimizer and SingleMachineGradientLearner that `args` describe."""
    from lopt_outer.gradient_learner import SingleMachineGradientLearner
    from lopt_outer.lopt_truncated_step import VectorizedLOptTruncatedStep
    from lopt_outer.truncation_schedule import (
        ConstantTruncationSchedule,
        LogUniformLengthSchedule,
    )

    family = lopt_core.get_task_family(args.task_family)
    lopt = lopt_core.get_learned_optimizer(args.learned_optimizer)
    if args.min_length:
        sched = LogUniformLengthSchedule(args.min_length, args.max_length)
    else:
        sched = ConstantTruncationSchedule(args.max_length)
    split = args.meta_loss_split
    step = VectorizedLOptTruncatedStep(
        family,
        lopt,
        sched,
        args.num_tasks,
        meta_loss_split=None if split == "none" else split,
        random_initial_iteration_offset=args.max_length,
    )
    est = build_estimator(
        args.estimator, step, trunc_length=args.trunc_length, std=args.std, schedule=sched
    )
    theta_opt = lopt_core.get_optimizer("Adam", learning_rate=args.outer_lr)
    return family, lopt, SingleMachineGradientLearner(lopt, [est], theta_opt)


_RAY_FLAGS = {"workers": "--workers", "address": "--address", "max_staleness": "--max-staleness"}


def _fail(message: str) -> NoReturn:
    """Ends `lopt meta-train` with one line on stderr and exit status 2."""
    print(f"lopt meta-train: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(2)


def build_run(args: argparse.Namespace) -> tuple[Any, Any]:
    """The `RunConfig` and the backend that `lopt meta-train`'s `args` describe.

    Raises:
      ValueError: a flag is out of range, or a Ray-only flag is given without
        `--backend ray` (the message names the flag).
    """
    from lopt_outer.backends import backend_named
    from lopt_outer.run import RunConfig

    ray_given = [flag for dest, flag in _RAY_FLAGS.items() if getattr(args, dest) is not None]
    if args.backend != "ray" and ray_given:
        raise ValueError(
            f"{', '.join(ray_given)} only apply to the Ray backend; add --backend ray or drop "
            f"{'them' if len(ray_given) > 1 else 'it'}."
        )
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
    )
    options = {}
    if args.backend == "ray":
        options = {
            "num_workers": 1 if args.workers is None else args.workers,
            "address": args.address,
            "max_staleness": args.max_staleness,
        }
    return config, backend_named(args.backend, **options)


def _run_meta_train(args: argparse.Namespace) -> int:
    from lopt_outer.meta_train import meta_train
    from lopt_outer.metric_writers import METRICS_FILE
    from lopt_outer.run import RunInterrupted
    from lopt_outer.rundir import RunDirectoryError

    # Checked before the learner is built, so a wrong flag fails at once.
    if args.resume and args.no_resume:
        _fail("--resume and --no-resume contradict each other; pass one of them.")
    if args.overwrite and args.resume:
        _fail("--overwrite deletes the run that --resume would continue; pass one of them.")
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
    _, lopt, learner = build_learner(args)
    try:
        result = meta_train(learner, config, backend)
    except RunDirectoryError as exc:
        _fail(str(exc))
    except RunInterrupted as exc:
        where = f"checkpoint at step {exc.step} in {out}" if exc.checkpoint else "no checkpoint"
        print(
            f"lopt meta-train: interrupted ({exc.signal_name}) after step {exc.step}; {where}. "
            "Run the same command again to resume.",
            file=sys.stderr,
        )
        return 130 if exc.signal_name == "SIGINT" else 143
    theta_path = lopt_core.save(
        out / "theta.lopt",
        result.theta,
        {
            "task_family": args.task_family,
            "estimator": args.estimator,
            "outer_steps": result.steps,
            "seed": config.seed,
        },
        producer=lopt,
    )
    last = result.history[-1]["meta_loss"] if result.history else float("nan")
    ran = result.steps - result.resumed_from
    print(
        f"meta-trained {result.steps} steps ({result.stopped_by}); last meta-loss {last:.4f}\n"
        f"dropped steps: {result.dropped_steps} of {ran} (no finite meta-gradient); "
        f"diverged task estimates masked out: {result.masked_tasks}\n"
        f"theta: {theta_path}\nmetrics: {out / METRICS_FILE}"
    )
    if ran and result.dropped_steps == ran:
        print(
            f"lopt meta-train: every one of the {ran} outer steps was dropped (every "
            "meta-gradient was NaN or infinite), so theta did not move; lower --outer-lr or "
            "--std, or shorten --max-length.",
            file=sys.stderr,
        )
        return 1
    if ran and result.theta_changed is False:
        print(
            f"lopt meta-train: theta did not change in {ran} outer steps (every meta-gradient "
            "was zero); check that the learned optimizer's theta reaches the meta-loss.",
            file=sys.stderr,
        )
        return 1
    return 0


def setup_meta_train(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lopt meta-train`."""
    parser.add_argument("--task-family", required=True, help="registered task family name")
    parser.add_argument("--learned-optimizer", default="MLPLOpt")
    parser.add_argument("--estimator", default="TruncatedPES", help="registered estimator name")
    parser.add_argument("--num-tasks", type=int, default=8)
    parser.add_argument("--trunc-length", type=int, default=20, help="inner steps per estimate")
    parser.add_argument("--max-length", type=int, default=200, help="inner steps before a reset")
    parser.add_argument(
        "--min-length", type=int, default=0, help="if set, lengths are log-uniform in [min, max)"
    )
    parser.add_argument("--std", type=float, default=0.01, help="ES perturbation std")
    parser.add_argument(
        "--meta-loss-split",
        default="none",
        choices=["none", "same_data", "train", "inner_valid", "outer_valid", "test"],
        help="data the meta-loss is measured on ('none': each step's training loss)",
    )
    parser.add_argument("--outer-lr", type=float, default=1e-3, help="Adam lr on theta")
    parser.add_argument("--num-steps", type=int, default=1000, help="outer steps")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="never continue a run; refused when --output-dir holds one (see --overwrite)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run already in --output-dir (its checkpoints, metrics and theta) and "
        "start afresh",
    )
    parser.add_argument(
        "--override",
        action="append",
        metavar="FIELD[,FIELD]",
        help="resume although these configuration fields differ from the checkpoint's "
        "(dotted paths such as estimators.0.std or theta_opt.learning_rate, as the error "
        "for a differing field names them)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="require a checkpoint in --output-dir and continue from it (a run resumes "
        "automatically when one exists)",
    )
    parser.add_argument("--no-progress", action="store_true")
    from lopt_outer.backends import BACKENDS

    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default="inprocess",
        help="where gradient estimates are computed ('ray' needs lopt-outer[ray])",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="Ray worker actors (--backend ray; default 1)"
    )
    parser.add_argument(
        "--address",
        default=None,
        help="join this Ray cluster ('auto' or HOST:PORT; --backend ray)",
    )
    parser.add_argument(
        "--max-staleness",
        type=int,
        default=None,
        help="drop Ray estimates more than this many updates old (--backend ray; default: "
        "--workers)",
    )
    parser.set_defaults(func=_run_meta_train)


def _run_eval(args: argparse.Namespace) -> int:
    from lopt_outer.evaluate import compare_with_adam, format_table, plot_curves, write_summary

    family = lopt_core.get_task_family(args.task_family)
    lopt = lopt_core.get_learned_optimizer(args.learned_optimizer)
    like = lopt.init(jax.random.PRNGKey(0))
    theta = lopt_core.load(args.theta, like=like).tree if args.theta else like
    lrs = [float(x) for x in args.adam_lrs.split(",") if x.strip()]
    result = compare_with_adam(
        family,
        lopt,
        theta,
        n_tasks=args.n_tasks,
        steps=args.steps,
        key=jax.random.PRNGKey(args.seed),
        baseline_lr=args.baseline_lr,
        adam_lrs=lrs,
        eval_every=args.eval_every,
        steps_per_jit=args.eval_every,
    )
    print(format_table(result))
    out = Path(args.output_dir)
    summary = write_summary(result, out / "eval_summary.json", theta=args.theta)
    try:
        plot = plot_curves(result, out / "eval_curves.png", title=args.task_family)
    except ImportError as exc:
        print(f"lopt eval: no plot written: {exc}", file=sys.stderr)
        plot = None
    print(f"summary: {summary}" + (f"\nplot: {plot}" if plot else ""))
    return 0


def setup_eval(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lopt eval`."""
    parser.add_argument("--task-family", required=True)
    parser.add_argument("--learned-optimizer", default="MLPLOpt")
    parser.add_argument("--theta", help="theta checkpoint (from lopt meta-train); default: init")
    parser.add_argument("--n-tasks", type=int, default=4, help="held-out task samples")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=10_000, help="seed of the held-out samples")
    parser.add_argument("--baseline-lr", type=float, default=1e-3)
    parser.add_argument("--adam-lrs", default="1e-4,3e-4,3e-3,1e-2,3e-2")
    parser.add_argument("--output-dir", default="lopt_eval_out")
    parser.set_defaults(func=_run_eval)
