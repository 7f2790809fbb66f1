"""Runs the benchmark workloads: each one three times in a fresh process, medians reported.

Workloads live in `workloads_*.py` beside this file; each module exposes
`WORKLOADS = {"W1": fn, ...}` where `fn()` runs the workload once and returns a dict
of figures. This script prints one JSON line per workload with the median of every
figure, and the ratio of each steps/s figure to W1's, taken in the same run. Each
line names the backend and device the workload ran on (`backend`, `device`,
`device_count`): JAX's default backend, a GPU where the env's jax has one, unless
`JAX_PLATFORMS` is set.

Usage:
  python benchmarks/run.py              # every workload
  python benchmarks/run.py W1 W2        # some
  python benchmarks/run.py --repeats 1  # quicker, noisier
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def _modules() -> list[str]:
    return sorted(p.stem for p in HERE.glob("workloads_*.py"))


def _registry() -> dict[str, str]:
    sys.path.insert(0, str(HERE))
    table = {}
    for mod in _modules():
        for wid in importlib.import_module(mod).WORKLOADS:
            table[wid] = mod
    return table


def _run_single(module: str, wid: str) -> None:
    sys.path.insert(0, str(HERE))
    fn = importlib.import_module(module).WORKLOADS[wid]
    result = fn()
    import jax  # the workload has imported it: this names what it ran on

    device = jax.devices()[0]
    result.update(
        backend=jax.default_backend(),
        device=f"{device.platform}:{device.device_kind}",
        device_count=jax.device_count(),
    )
    print("RESULT " + json.dumps(result), flush=True)


def _spawn(module: str, wid: str) -> dict:
    # JAX picks the backend (a GPU where jax has one) unless JAX_PLATFORMS says otherwise.
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, __file__, "--single", module, wid],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"workload {wid} failed:\n{out.stderr[-3000:]}")
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("ids", nargs="*", help="workload ids (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single", nargs=2, metavar=("MODULE", "ID"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="also write the JSON lines to this file")
    args = parser.parse_args()
    if args.single:
        _run_single(*args.single)
        return 0
    table = _registry()
    ids = args.ids or sorted(
        table, key=lambda w: (w[0] != "W", w[0], int(w[1:]) if w[1:].isdigit() else 0)
    )
    unknown = [w for w in ids if w not in table]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; known: {sorted(table)}")
    results: dict[str, dict] = {}
    lines = []
    for wid in ids:
        runs = [_spawn(table[wid], wid) for _ in range(args.repeats)]
        med = {
            k: statistics.median(r[k] for r in runs)
            for k in runs[0]
            if isinstance(runs[0][k], (int, float))
        }
        med.update({k: v for k, v in runs[0].items() if not isinstance(v, (int, float))})
        results[wid] = med
        if "steps_per_s" in med and "W1" in results and wid != "W1":
            med["ratio_to_W1"] = med["steps_per_s"] / results["W1"]["steps_per_s"]
        line = json.dumps(
            {"id": wid, "repeats": args.repeats, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **med}
        )
        print(line, flush=True)
        lines.append(line)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
