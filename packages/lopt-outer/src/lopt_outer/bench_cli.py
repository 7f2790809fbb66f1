"""`lopt bench baselines` and `lopt bench run`: evaluation suites from the command line.

`lopt bench baselines --suite NAME` computes (or reuses) the cached tuned
baselines of a suite. `lopt bench run --suite NAME --optimizer NAME_OR_FILE`
scores a hand-designed optimizer, a learned optimizer at its initial theta, or
a theta file against them, prints a table and writes `bench_report.json`,
`bench_curves.png` and `bench_speedups.png` to `--output-dir`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from lopt_outer.cli import (
    _check_name,
    _check_output_dir,
    _eval_optimizer,
    _fail,
    _int_at_least,
    _setup_parser,
)

__all__ = ["format_report", "setup_bench", "write_plots"]


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers such as 200,1000, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected whole numbers >= 1 such as 200,1000, got {text!r}"
        )
    return values


def _names(text: str) -> tuple[str, ...]:
    values = tuple(p.strip() for p in text.split(",") if p.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected comma-separated task names")
    return values


def _suite(args: argparse.Namespace, command: str) -> Any:
    import lopt_core

    _check_name("suites", args.suite, "--suite", command)
    suite = lopt_core.get_suite(args.suite)
    try:
        return suite.subset(args.tasks, horizons=args.horizons, seeds=args.seeds)
    except ValueError as exc:
        _fail(str(exc), command)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _baselines(args: argparse.Namespace) -> int:
    from lopt_outer import bench

    suite = _suite(args, "bench baselines")
    results = bench.run_baselines(
        suite, bench.DEFAULT_BASELINES, args.cache_dir, rebuild=args.rebuild, progress=_progress
    )
    n = sum(len(per) for per in results.values())
    print(f"{n} baseline results for {len(results)} tasks of {suite.name} {suite.version}")
    return 0


def _candidate(text: str) -> dict[str, Any]:
    """The candidate for `--optimizer`: a theta file, an optimizer or a learned optimizer name."""
    import lopt_core

    command = "bench run"
    if Path(text).is_file():
        lopt, theta = _eval_optimizer(
            argparse.Namespace(theta=text, learned_optimizer=None), command
        )
        return {"learned_optimizer": lopt, "theta": theta}
    if text in lopt_core.list_optimizers():
        return {"optimizer": lopt_core.get_optimizer(text)}
    if text in lopt_core.list_learned_optimizers():
        import jax

        lopt = lopt_core.get_learned_optimizer(text)
        return {"learned_optimizer": lopt, "theta": lopt.init(jax.random.PRNGKey(0))}
    _fail(
        f"--optimizer {text}: not a file, a registered optimizer or a registered learned "
        "optimizer; see `lopt list optimizers` and `lopt list learned_optimizers`.",
        command,
    )


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def format_report(report: dict[str, Any]) -> str:
    """The report as a text table: one row per task and horizon, then the summary."""
    head = (
        "task",
        "horizon",
        "final test",
        "tuned Adam",
        "win",
        "steps to Adam",
        "speed-up",
        "diverged",
    )
    rows = [head]
    for task, per in report["tasks"].items():
        for h, s in per.items():
            rows.append(
                (
                    task,
                    h,
                    _fmt(s["final_test"]),
                    _fmt(s["adam_final_test"]),
                    _fmt(s["win"]),
                    _fmt(s["steps_to_adam"]),
                    _fmt(s["speedup"]),
                    f"{s['diverged']}/{s['seeds']}",
                )
            )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    for h, s in report["summary"].items():
        lines.append(
            f"horizon {h}: beats tuned Adam on {s['win_fraction']:.0%} of {s['tasks']} tasks; "
            f"reaches its final loss on {s['reached_adam']} (median speed-up "
            f"{_fmt(s['speedup_median'])}); {s['diverged_runs']} diverged runs on "
            f"{s['tasks_with_divergence']} tasks"
        )
    return "\n".join(lines)


def write_plots(report: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    tasks = list(report["curves"])
    horizon = str(max(report["horizons"]))
    cols = min(4, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, task in zip(axes.ravel(), tasks):
        c = report["curves"][task][horizon]
        for key, values in c.items():
            if key == "xs":
                continue
            label = report["candidate"] if key == "candidate_test" else key[: -len("_test")]
            ax.plot(c["xs"], values, label=label, lw=2.0 if key == "candidate_test" else 1.0)
        ax.set_title(task, fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("test loss")
        ax.set_yscale("log")
    for ax in axes.ravel()[len(tasks) :]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=6)
    fig.tight_layout()
    curves = out / "bench_curves.png"
    fig.savefig(curves, dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3))
    for h in report["horizons"]:
        sp = [s["speedup"] for per in report["tasks"].values() if (s := per[str(h)])["speedup"]]
        if sp:
            ax.hist(sp, bins=10, alpha=0.5, label=f"horizon {h}")
    ax.set_xlabel("speed-up over tuned Adam (steps to its final test loss)")
    ax.set_ylabel("tasks")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    else:
        ax.text(
            0.5, 0.5, "no task reached tuned Adam's final loss", ha="center", transform=ax.transAxes
        )
    fig.tight_layout()
    hist = out / "bench_speedups.png"
    fig.savefig(hist, dpi=80)
    plt.close(fig)
    return [curves, hist]


def _run(args: argparse.Namespace) -> int:
    from lopt_outer import bench

    _check_output_dir(args.output_dir, "bench run")
    suite = _suite(args, "bench run")
    candidate = _candidate(args.optimizer)
    try:
        report = bench.run_suite(
            suite,
            **candidate,
            baselines=bench.DEFAULT_BASELINES,
            cache_dir=args.cache_dir,
            compute_missing=not args.no_compute,
            progress=_progress,
        )
    except FileNotFoundError as exc:
        _fail(str(exc), "bench run")
    print(format_report(report))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench_report.json"
    path.write_text(json.dumps({**report, "optimizer_argument": args.optimizer}, indent=1))
    print(f"report: {path}")
    try:
        for p in write_plots(report, out):
            print(f"plot: {p}")
    except ImportError as exc:
        print(f"lopt bench run: no plots written: {exc}", file=sys.stderr)
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    _setup_parser(parser)
    add = parser.add_argument
    add("--suite", required=True, metavar="NAME", help="registered suite (`lopt list suites`)")
    add("--tasks", type=_names, default=None, metavar="A,B", help="only these tasks of the suite")
    add(
        "--horizons",
        type=_ints,
        default=None,
        metavar="N,N",
        help="other horizons than the suite's",
    )
    add("--seeds", type=_int_at_least(1, 3), default=None, metavar="N", help="fewer or more seeds")
    add(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="folder of the baseline cache (default: the cache shipped with lopt-outer)",
    )


def setup_bench(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lopt bench` and its two subcommands."""
    _setup_parser(parser)
    sub = parser.add_subparsers(dest="bench_command", metavar="{baselines,run}", required=True)
    base = sub.add_parser("baselines", help="compute or reuse the tuned baselines of a suite")
    _common(base)
    base.add_argument("--rebuild", action="store_true", help="recompute even what is cached")
    base.set_defaults(func=_baselines)
    run = sub.add_parser("run", help="score an optimizer on a suite against the tuned baselines")
    _common(run)
    run.add_argument(
        "--optimizer",
        required=True,
        metavar="NAME_OR_FILE",
        help="a registered optimizer (at its defaults), a registered learned optimizer (its "
        "initial theta) or a theta file",
    )
    run.add_argument(
        "--no-compute",
        action="store_true",
        help="fail instead of computing baselines missing from the cache",
    )
    run.add_argument("--output-dir", default="lopt_bench_out", metavar="DIR", help="report folder")
    run.set_defaults(func=_run)
