"""The bars a shipped general-purpose optimizer is held to, from a `lopt bench run` report.

Reads `bench_report.json` (written by `lopt bench run --suite offline --optimizer
THETA_FILE`) and the baseline cache it was scored against, and prints, as Markdown:

- per task and horizon: the candidate's final test loss (mean over seeds), tuned
  Adam's (the best of the 7-point learning-rate sweep by final validation loss),
  Adam(1e-3)'s (the sweep's 1e-3 point), who wins each, and diverged seeds (a
  non-finite train loss, or a final train loss not below the first);
- per horizon: the fraction of tasks on which it beats tuned Adam, the fraction on
  which it beats Adam(1e-3), and the diverged runs;
- the bars: beats tuned Adam on >= 60% of tasks at 1,000 steps and >= 50% at 5,000;
  beats Adam(1e-3) on >= 90% at every horizon; no diverged run.

Usage:
  python benchmarks/pretrained_report.py benchmarks/results/offline-1_Celo2_General/bench_report.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

import lopt_core
from lopt_outer import bench

BARS_TUNED = {"1000": 0.6, "5000": 0.5}
BAR_DEFAULT = 0.9
DEFAULT_LR = 1e-3


def _fmt(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else str(v)


def adam_default_final_tests(suite: lopt_core.Suite, task: str) -> dict[str, float]:
    """Adam(1e-3)'s final test loss (mean over seeds) per horizon, from the baseline cache."""
    (adam,) = [b for b in bench.DEFAULT_BASELINES if b.name == "Adam"]
    result = bench.load_baseline(suite, task, adam, None)
    lrs = [c["learning_rate"] for c in result.configs]
    i = int(np.argmin([abs(math.log(lr / DEFAULT_LR)) for lr in lrs]))
    if not math.isclose(lrs[i], DEFAULT_LR, rel_tol=1e-6):
        raise ValueError(f"{task}: the Adam sweep has no {DEFAULT_LR} point ({lrs}).")
    return {str(h): float(c.split("test")[i, :, -1].mean()) for h, c in result.curves.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    args = parser.parse_args()
    report = json.loads(args.report.read_text())
    suite = lopt_core.get_suite(report["suite"])
    suite = suite.subset(tuple(report["tasks"]), horizons=tuple(report["horizons"]))
    lines = [
        "| task | horizon | final test | tuned Adam | beats it | Adam(1e-3) | beats it | diverged |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    per_h: dict[str, dict[str, list]] = {}
    for task, per in report["tasks"].items():
        defaults = adam_default_final_tests(suite, task)
        for h, s in per.items():
            default = defaults[h]
            final = s["final_test"]
            beats_default = bool(math.isfinite(final) and final < default and not s["diverged"])
            acc = per_h.setdefault(h, {"tuned": [], "default": [], "diverged": [], "lost": []})
            acc["tuned"].append(bool(s["win"]))
            acc["default"].append(beats_default)
            acc["diverged"].append(int(s["diverged"]))
            if not beats_default:
                acc["lost"].append(task)
            lines.append(
                f"| {task} | {h} | {_fmt(final)} | {_fmt(s['adam_final_test'])} | "
                f"{'yes' if s['win'] else 'no'} | {_fmt(default)} | "
                f"{'yes' if beats_default else 'no'} | {s['diverged']}/{s['seeds']} |"
            )
    lines += [
        "",
        "| horizon | beats tuned Adam | bar | beats Adam(1e-3) | bar | diverged runs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for h, acc in per_h.items():
        n = len(acc["tuned"])
        tuned, default = sum(acc["tuned"]), sum(acc["default"])
        bar = BARS_TUNED.get(h)
        tuned_bar = "-" if bar is None else ("met" if tuned / n >= bar else f"missed ({bar:.0%})")
        default_bar = "met" if default / n >= BAR_DEFAULT else f"missed ({BAR_DEFAULT:.0%})"
        lines.append(
            f"| {h} | {tuned} of {n} ({tuned / n:.0%}) | {tuned_bar} | {default} of {n} "
            f"({default / n:.0%}) | {default_bar} | {sum(acc['diverged'])} |"
        )
    print("\n".join(lines))
    for h, acc in per_h.items():
        if acc["lost"]:
            print(f"\nat {h} steps, not better than Adam(1e-3) on: {', '.join(acc['lost'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
