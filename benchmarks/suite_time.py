"""What an evaluation suite costs: its baselines (from the cache) and one candidate's run.

  python benchmarks/suite_time.py cost --suite offline [--cache-dir DIR]
      sums the wall and CPU seconds each baseline cache file records (what
      `lopt bench baselines` spent computing it, compiles included), per task and
      in all; files written before costs were recorded are counted as missing.
  python benchmarks/suite_time.py run --suite offline --optimizer NAME_OR_THETA --output-dir DIR
      runs `lopt bench run` in this process (baselines from the cache only) and
      adds its wall and CPU seconds to the report as `run_cost`.

Both print Markdown tables for benchmarks/README.md. This is not a test: the full
offline suite takes hours on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _cost(args: argparse.Namespace) -> int:
    import lopt_core
    from lopt_outer import bench

    suite = lopt_core.get_suite(args.suite)
    cache = Path(args.cache_dir) if args.cache_dir else bench.default_cache_dir()
    folder = cache / f"{suite.name}-{suite.version}"
    rows, missing = [], []
    total_wall = total_cpu = 0.0
    for task in suite.task_names:
        wall = cpu = 0.0
        for b in bench.DEFAULT_BASELINES:
            path = folder / f"{task}__{b.name}.json"
            cost = json.loads(path.read_text()).get("cost", {}) if path.is_file() else {}
            if not cost:
                missing.append(f"{task}__{b.name}")
                continue
            wall += float(cost["wall_s"])
            cpu += float(cost["cpu_s"])
        rows.append((task, wall, cpu))
        total_wall += wall
        total_cpu += cpu
    configs = sum(len(b.configs) for b in bench.DEFAULT_BASELINES)
    print(
        f"suite {suite.name} {suite.version}: {len(suite.tasks)} tasks x {configs} baseline "
        f"configurations x {suite.seeds} seeds x horizons {list(suite.horizons)}"
    )
    print("\n| task | wall s | CPU s |\n| --- | --- | --- |")
    for task, wall, cpu in rows:
        print(f"| {task} | {wall:.0f} | {cpu:.0f} |")
    print(f"| all | {total_wall:.0f} | {total_cpu:.0f} |")
    if missing:
        tasks = sorted({m.split("__")[0] for m in missing}, key=suite.task_names.index)
        print(f"\n{len(missing)} cache files missing or without a cost, for: {', '.join(tasks)}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from lopt_core.cli import main

    out = Path(args.output_dir)
    argv = ["bench", "run", "--suite", args.suite, "--optimizer", args.optimizer]
    argv += ["--output-dir", str(out), "--no-compute"]
    if args.cache_dir:
        argv += ["--cache-dir", args.cache_dir]
    if args.tasks:
        argv += ["--tasks", args.tasks]
    wall, cpu = time.perf_counter(), time.process_time()
    code = main(argv)
    cost = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    if code == 0:
        path = out / "bench_report.json"
        report = json.loads(path.read_text())
        path.write_text(json.dumps({**report, "run_cost": cost}, indent=1))
    print(f"\nlopt bench run: wall {cost['wall_s']:.0f} s, CPU {cost['cpu_s']:.0f} s (exit {code})")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cost = sub.add_parser("cost", help="sum the baseline cache's recorded costs")
    cost.add_argument("--suite", required=True)
    cost.add_argument("--cache-dir", default=None)
    cost.set_defaults(func=_cost)
    run = sub.add_parser("run", help="time one candidate's `lopt bench run`")
    run.add_argument("--suite", required=True)
    run.add_argument("--optimizer", required=True)
    run.add_argument("--output-dir", required=True)
    run.add_argument("--cache-dir", default=None)
    run.add_argument("--tasks", default=None, help="only these tasks (A,B) of the suite")
    run.set_defaults(func=_run)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
