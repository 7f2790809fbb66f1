"""The main job: meta-train MLPLOpt with PES on digit-classifier MLPs, then beat Adam with it.

1. Meta-trains the per-parameter learned optimizer `MLPLOpt` with truncated PES on
   `ImageMLPFamily_Digits8` (1-hidden-layer MLPs on the 8x8 digits that ship with
   lopt-tasks; activation and initialisation vary per sample), under a time budget.
2. Trains fresh, held-out task samples (a seed meta-training never used) with the
   meta-trained optimizer, with untuned Adam(1e-3) and with an Adam learning-rate
   sweep, and compares their test losses.
3. Writes `curves.png`, `summary.json`, the meta-training metrics and the trained
   theta (a lopt checkpoint that `lopt_learned.load_learned_optimizer` reads) to
   the output folder, and prints where they are.

Components are found by name through the lopt registry, as any plugin's would be.

Usage:
  nox -s demo                               # the defaults below
  python examples/demo.py --budget 120 --out demo_out
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

import lopt_core
from lopt_outer import (
    ConstantTruncationSchedule,
    RunConfig,
    SingleMachineGradientLearner,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
    format_table,
    meta_train,
    plot_curves,
    write_summary,
)
from lopt_outer.cli import compare_with_progress

FAMILY = "ImageMLPFamily_Digits8"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument("--budget", type=float, default=210.0, help="meta-training seconds")
    parser.add_argument("--max-outer-steps", type=int, default=20_000)
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="ignore an earlier run's checkpoint")
    args = parser.parse_args()
    out = Path(args.out)
    t_start = time.perf_counter()

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
        f"Meta-training {lopt.name} with PES on {FAMILY} for {args.budget:.0f} s "
        f"({args.num_tasks} tasks, {args.horizon}-step unrolls, truncations of {args.trunc_length})."
    )
    config = RunConfig(
        args.max_outer_steps,
        seed=args.seed,
        output_dir=out / "meta_train",
        checkpoint_every=250,
        log_every=10,
        time_budget_s=args.budget,
        resume=not args.fresh,
    )
    result = meta_train(learner, config)
    t_meta = time.perf_counter() - t_start
    why = {
        "time_budget": f"the time budget ({args.budget:.0f} s) was spent",
        "num_steps": f"the step limit ({args.max_outer_steps}) was reached",
    }.get(result.stopped_by, result.stopped_by)
    print(
        f"Meta-training stopped after {result.steps} outer steps ({t_meta:.0f} s): {why}."
        + (f" It resumed from step {result.resumed_from}." if result.resumed_from else "")
    )
    theta_path = lopt_core.save(
        out / "mlp_lopt_digits8.lopt",
        result.theta,
        {"task_family": FAMILY, "estimator": "TruncatedPES", "outer_steps": result.steps},
        producer=lopt,
    )

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
    )
    print(format_table(comparison))
    s = comparison["summary"]
    learned = s[comparison["learned"]]["final_test_loss"]
    adam = s[comparison["baseline"]]["final_test_loss"]
    best = comparison["best_adam"]
    verdict = "beats" if learned < adam else "does NOT beat"
    summary_path = write_summary(
        comparison,
        out / "summary.json",
        task_family=FAMILY,
        meta_training={
            "outer_steps": result.steps,
            "stopped_by": result.stopped_by,
            "seconds": t_meta,
            "final_meta_loss": float(np.mean([h["meta_loss"] for h in result.history[-20:]]))
            if result.history
            else None,
        },
        learned_beats_adam_1e3=bool(learned < adam),
        theta=str(theta_path),
    )
    plot_path = plot_curves(
        comparison,
        out / "curves.png",
        title=f"{lopt.name} meta-trained {result.steps} PES steps vs Adam, held-out {FAMILY}",
    )
    print(
        f"\nThe meta-trained {lopt.name} {verdict} Adam(1e-3): final test loss {learned:.4f} vs "
        f"{adam:.4f} (best of the Adam sweep: {best}, {s[best]['final_test_loss']:.4f})."
    )
    print(f"plot:    {plot_path.resolve()}")
    print(f"summary: {summary_path.resolve()}")
    print(f"theta:   {theta_path.resolve()}")
    print(f"metrics: {(out / 'meta_train' / 'metrics.jsonl').resolve()}")
    print(f"total time {time.perf_counter() - t_start:.0f} s")
    json.loads(summary_path.read_text())  # the summary is valid JSON
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
