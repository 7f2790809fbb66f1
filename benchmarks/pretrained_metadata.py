"""Writes a shipped theta with its recipe and its suite report in the metadata.

How `lopt_learned/pretrained/celo2_general.lopt` was made from the run's theta:

  python benchmarks/pretrained_metadata.py RUN/theta.lopt RECIPE.toml \
      benchmarks/results/offline-1_Celo2_General/bench_report.json OUT.lopt \
      --name Celo2_General --elapsed-s 3627.2

The theta and the architecture are the run's; the metadata keeps the run's fields
(outer steps, seed, families, estimator) and adds `recipe` (the recipe's text),
`name`, `meta_training` and `suite_report` (the report's summary and, per task
and horizon, the final test loss, tuned Adam's, the win, diverged seeds and the
speed-up). `lopt_version` is written by `lopt_core.save`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lopt_core
from lopt_learned.export import load_learned_optimizer

_SCORE_FIELDS = ("final_test", "adam_final_test", "win", "diverged", "seeds", "speedup")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("theta", type=Path, help="the run's theta.lopt")
    parser.add_argument("recipe", type=Path, help="the recipe it was meta-trained by")
    parser.add_argument("report", type=Path, help="its `lopt bench run` bench_report.json")
    parser.add_argument("out", type=Path, help="the file to write")
    parser.add_argument("--name", required=True)
    parser.add_argument("--elapsed-s", type=float, required=True, help="meta-training seconds")
    args = parser.parse_args()
    loaded = load_learned_optimizer(args.theta)
    report = json.loads(args.report.read_text())
    meta = {k: v for k, v in loaded.metadata.items() if k not in ("producer", "lopt_version")}
    meta |= {
        "recipe": args.recipe.read_text(),
        "name": args.name,
        "meta_training": {
            "elapsed_s": args.elapsed_s,
            "machine": "2 CPU cores, shared with a CI run",
            "dropped_steps": 0,
        },
        "suite_report": {
            "suite": report["suite"],
            "version": report["version"],
            "horizons": report["horizons"],
            "seeds": report["seeds"],
            "summary": report["summary"],
            "tasks": {
                t: {h: {k: s[k] for k in _SCORE_FIELDS} for h, s in per.items()}
                for t, per in report["tasks"].items()
            },
            "command": report.get("optimizer_argument"),
        },
    }
    path = lopt_core.save(args.out, loaded.theta, meta, producer=loaded.lopt)
    print(f"{path}: {sorted(load_learned_optimizer(path).metadata)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
