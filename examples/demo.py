"""The main job: meta-train MLPLOpt with PES on digit MLPs, then score it and the shipped
general optimizer against tuned baselines.

1. Meta-trains the per-parameter learned optimizer `MLPLOpt` with truncated PES on
   `ImageMLPFamily_Digits8` (1-hidden-layer MLPs on the 8x8 digits that ship with
   lopt-tasks; activation and initialisation vary per sample) for a fixed number of
   outer steps, so the result does not depend on how fast or loaded the machine is.
2. Trains fresh, held-out task samples of that family (a seed meta-training never
   used) with the meta-trained optimizer, with untuned Adam(1e-3) and with an Adam
   learning-rate sweep; the best Adam of the sweep is picked on the validation
   (`outer_valid`) loss, and every optimizer's test loss is reported.
3. Scores the shipped general optimizer `Celo2_General` and the freshly trained
   `MLPLOpt` on a few tasks of the `offline` suite (tasks neither was meta-trained
   on: a tabular MLP, a digit MLP with LayerNorm, Rosenbrock) against the suite's
   cached tuned baselines (each tuned on its validation loss), and prints one table
   of every optimizer's final test loss and rank per task.
4. Writes `curves.png`, `summary.json`, `suite_report.json`, the suite plots of each
   learned optimizer (`suite/<name>/bench_curves.png`), the meta-training metrics
   and the trained theta (a lopt checkpoint that `lopt_learned.load_learned_optimizer`
   reads) to the output folder, and prints where they are.

Components are found by name through the lopt registry, as any plugin's would be.

Usage:
  nox -s demo                               # the defaults below
  python examples/demo.py --outer-steps 1000 --out demo_out
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import lopt_core
import lopt_learned
from lopt_outer import (
    ConstantTruncationSchedule,
    RunConfig,
    SingleMachineGradientLearner,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
    bench,
    format_table,
    meta_train,
    plot_curves,
    write_summary,
)
from lopt_outer.bench_cli import format_report, write_plots
from lopt_outer.cli import compare_with_progress

FAMILY = "ImageMLPFamily_Digits8"
SHIPPED = "Celo2_General"
SUITE = "offline"
#: Held-out suite tasks of three kinds, each a few seconds per optimizer at 1,000 steps.
SUITE_TASKS = ("MLP_Wine_32", "ImageMLP_Digits8_32_LayerNorm_Relu", "Rosenbrock_10D")


def _csv(kind: type) -> Any:
    def parse(text: str) -> tuple[Any, ...]:
        values = tuple(kind(p.strip()) for p in text.split(",") if p.strip())
        if not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated values, got {text!r}")
        return values

    return parse


def _progress(t0: float) -> Any:
    def show(text: str) -> None:
        print(f"  {text} (at {time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    return show


def _loss(value: Any) -> float:
    return float(value) if value is not None and math.isfinite(value) else math.inf


def ranking_table(reports: dict[str, dict[str, Any]], horizon: int) -> str:
    """Every optimizer's final test loss on each task at `horizon`, with its rank (1 = best).

    Rows: the scored learned optimizers (`reports`, display name -> `run_suite` report of
    one candidate on the same suite), then the tuned baselines; a candidate whose seeds
    all diverged shows `diverged` and ranks last. The last column is the mean rank.
    """
    first = next(iter(reports.values()))
    tasks = list(first["tasks"])
    h = str(horizon)
    losses: dict[str, dict[str, float]] = {}
    notes: dict[str, dict[str, str]] = {}
    for name, report in reports.items():
        losses[name], notes[name] = {}, {}
        for t in tasks:
            s = report["tasks"][t][h]
            losses[name][t] = _loss(s["final_test"])
            if s["diverged"]:
                notes[name][t] = f" {s['diverged']}/{s['seeds']} div"
    for t in tasks:
        for baseline, picked in first["baselines"][t][h].items():
            losses.setdefault(f"{baseline} (tuned)", {})[t] = _loss(picked["final_test"])
    ranks = {name: {} for name in losses}
    for t in tasks:
        order = sorted(losses, key=lambda n: losses[n][t])
        for i, name in enumerate(order):
            ranks[name][t] = i + 1
    head = ("optimizer", *tasks, "mean rank")
    rows = [head]
    for name in sorted(losses, key=lambda n: np.mean(list(ranks[n].values()))):
        cells = []
        for t in tasks:
            v = losses[name][t]
            text = f"{v:.4g}" if math.isfinite(v) else "diverged"
            cells.append(f"{text} ({ranks[name][t]}){notes.get(name, {}).get(t, '')}")
        rows.append((name, *cells, f"{np.mean(list(ranks[name].values())):.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument(
        "--outer-steps", type=int, default=3000, help="meta-training outer steps (PES estimates)"
    )
    parser.add_argument("--num-tasks", type=int, default=8, help="tasks per PES estimate")
    parser.add_argument("--horizon", type=int, default=200, help="inner steps per task")
    parser.add_argument("--trunc-length", type=int, default=20, help="inner steps per estimate")
    parser.add_argument("--std", type=float, default=0.01, help="PES perturbation std")
    parser.add_argument("--meta-lr", type=float, default=3e-3, help="Adam lr on theta")
    parser.add_argument("--eval-tasks", type=int, default=8, help="held-out task samples")
    parser.add_argument(
        "--meta-loss-split",
        default="outer_valid",
        help="split the meta-loss is measured on ('none': the training loss of each step)",
    )
    parser.add_argument(
        "--suite-tasks",
        type=_csv(str),
        default=SUITE_TASKS,
        help=f"tasks of the {SUITE} suite to score on, comma-separated",
    )
    parser.add_argument(
        "--suite-horizons",
        type=_csv(int),
        default=(1000,),
        help="inner steps the suite tasks train for, comma-separated (of 200, 1000, 5000)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fresh", action="store_true", help="delete an earlier run's checkpoint and start over"
    )
    args = parser.parse_args()
    if args.outer_steps < 1:
        parser.error(f"--outer-steps must be at least 1, got {args.outer_steps}")
    out = Path(args.out)
    t_start = time.perf_counter()
    # Checked before meta-training, so a bad task name or horizon fails at once.
    try:
        suite = lopt_core.get_suite(SUITE).subset(args.suite_tasks, horizons=args.suite_horizons)
    except ValueError as exc:
        parser.error(str(exc))
    try:  # the shipped baseline cache must hold every task and horizon: it is not recomputed
        for task in suite.task_names:
            for baseline in bench.DEFAULT_BASELINES:
                bench.load_baseline(suite, task, baseline)
    except (FileNotFoundError, bench.CacheMismatch) as exc:
        parser.error(
            f"{exc} The demo scores against the baselines shipped with lopt-outer only; pick "
            "--suite-tasks and --suite-horizons it holds (the defaults do)."
        )
    shipped = lopt_learned.load_pretrained(SHIPPED)

    family = lopt_core.get_task_family(FAMILY)
    lopt = lopt_core.get_learned_optimizer("MLPLOpt")
    sched = ConstantTruncationSchedule(args.horizon)
    step = VectorizedLOptTruncatedStep(
        family,
        lopt,
        sched,
        args.num_tasks,
        # Measuring the meta-loss on held-out data makes PES favour updates that
        # generalise, not only ones that fit the training batches fastest.
        meta_loss_split=None if args.meta_loss_split == "none" else args.meta_loss_split,
        random_initial_iteration_offset=args.horizon,
    )
    pes = TruncatedPES(step, unroll_length=args.trunc_length, std=args.std)
    learner = SingleMachineGradientLearner(
        lopt, [pes], lopt_core.get_optimizer("Adam", learning_rate=args.meta_lr)
    )
    print(
        f"Meta-training {lopt.name} with PES on {FAMILY} for {args.outer_steps} outer steps "
        f"({args.num_tasks} tasks, {args.horizon}-step unrolls, truncations of "
        f"{args.trunc_length})."
    )
    config = RunConfig(
        args.outer_steps,
        seed=args.seed,
        output_dir=out / "meta_train",
        checkpoint_every=250,
        log_every=10,
        overwrite=args.fresh,
    )
    result = meta_train(learner, config)
    t_meta = time.perf_counter() - t_start
    print(
        f"Meta-training finished {result.steps} outer steps in {t_meta:.0f} s"
        + (f"; it resumed from step {result.resumed_from}." if result.resumed_from else ".")
    )
    theta_path = lopt_core.save(
        out / "mlp_lopt_digits8.lopt",
        result.theta,
        {"task_family": FAMILY, "estimator": "TruncatedPES", "outer_steps": result.steps},
        producer=lopt,
    )

    # -- held-out samples of the family -------------------------------------------------
    adam_lrs = (1e-4, 3e-4, 3e-3, 1e-2, 3e-2)
    # Says what it trains (optimizers x held-out tasks x steps), which optimizer it is
    # at, and the time taken (on stderr).
    comparison = compare_with_progress(
        task_family=family,
        learned_opt=lopt,
        theta=result.theta,
        n_tasks=args.eval_tasks,
        steps=args.horizon,
        key=jax.random.PRNGKey(10_000 + args.seed),
        baseline_lr=1e-3,
        adam_lrs=adam_lrs,
        eval_every=args.horizon // 10,
        steps_per_jit=args.horizon // 10,
        n_eval_batches_vec=8,
        split="test",
        select_split="outer_valid",
    )
    print(f"\nHeld-out samples of {FAMILY} ({args.eval_tasks} tasks, {args.horizon} steps):")
    print(format_table(comparison))
    s = comparison["summary"]
    learned = s[comparison["learned"]]["final_test_loss"]
    adam = s[comparison["baseline"]]["final_test_loss"]
    best = comparison["best_adam"]
    plot_path = plot_curves(
        comparison,
        out / "curves.png",
        title=f"{lopt.name} meta-trained {result.steps} PES steps vs Adam, held-out {FAMILY}",
    )

    # -- held-out suite tasks -----------------------------------------------------------
    fresh_name = f"{lopt.name} (this run, {result.steps} steps)"
    # Display name -> (learned optimizer, theta, folder of its suite plots).
    candidates = {
        f"{SHIPPED} (shipped)": (shipped.lopt, shipped.theta, "shipped"),
        fresh_name: (lopt, result.theta, "this_run"),
    }
    print(
        f"\nScoring {', '.join(candidates)} on {len(suite.task_names)} tasks of the {SUITE} "
        f"suite ({', '.join(suite.task_names)}; {', '.join(map(str, suite.horizons))} steps, "
        f"{suite.seeds} seeds) against its cached tuned baselines ...",
        flush=True,
    )
    t_suite = time.perf_counter()
    reports = {}
    for name, (candidate, theta, _) in candidates.items():
        report = bench.run_suite(
            suite,
            learned_optimizer=candidate,
            theta=theta,
            cache_dir=None,
            compute_missing=False,
            progress=_progress(t_suite),
        )
        reports[name] = {**report, "candidate": name}
    for name, report in reports.items():
        print(f"\n{name} vs tuned Adam:")
        print(format_report(report))
    suite_plots = []
    try:
        for name, report in reports.items():
            folder = out / "suite" / candidates[name][2]
            folder.mkdir(parents=True, exist_ok=True)
            suite_plots += write_plots(report, folder)
    except ImportError as exc:
        print(f"no suite plots written: {exc}", file=sys.stderr)
    suite_path = out / "suite_report.json"
    suite_path.write_text(json.dumps(reports, indent=1) + "\n")
    for h in suite.horizons:
        print(
            f"\nFinal test loss (mean over {suite.seeds} seeds) and rank on held-out {SUITE} "
            f"suite tasks, {h} steps; each baseline tuned on the validation loss:"
        )
        print(ranking_table(reports, h))

    summary_path = write_summary(
        comparison,
        out / "summary.json",
        task_family=FAMILY,
        meta_training={
            "outer_steps": result.steps,
            "seconds": t_meta,
            "final_meta_loss": float(np.mean([h["meta_loss"] for h in result.history[-20:]]))
            if result.history
            else None,
        },
        learned_beats_adam_1e3=bool(learned < adam),
        learned_beats_best_adam=bool(learned < s[best]["final_test_loss"]),
        theta=str(theta_path),
        suite={name: {"tasks": r["tasks"], "summary": r["summary"]} for name, r in reports.items()},
    )
    verdict = "beats" if learned < adam else "does NOT beat"
    print(
        f"\nOn held-out {FAMILY} samples the meta-trained {lopt.name} {verdict} Adam(1e-3): "
        f"final test loss {learned:.4f} vs {adam:.4f} (best of the Adam sweep on validation: "
        f"{best}, test loss {s[best]['final_test_loss']:.4f})."
    )
    print(f"plot:    {plot_path.resolve()}")
    for p in suite_plots:
        print(f"plot:    {p.resolve()}")
    print(f"summary: {summary_path.resolve()}")
    print(f"suite:   {suite_path.resolve()}")
    print(f"theta:   {theta_path.resolve()}")
    print(f"metrics: {(out / 'meta_train' / 'metrics.jsonl').resolve()}")
    print(f"total time {time.perf_counter() - t_start:.0f} s")
    json.loads(summary_path.read_text())  # the summary is valid JSON
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
