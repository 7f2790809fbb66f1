"""Runs the benchmark workloads: each one three times in a fresh process, medians reported.

Workloads live in `workloads_*.py` beside this file; each module exposes
`WORKLOADS = {"W1": fn, ...}` where `fn()` runs the workload once and returns a dict
of figures. This script prints one JSON line per workload with the median of every
figure, and ratios taken in the same run:
- `ratio_to_W1` / `ratio_to_W1_cpu`: the workload's steps/s (wall) / steps per
  CPU-second over W1's (below 1: slower than W1); keyed workloads (W2k, W3k) get
  `ratio_to_W1k` / `ratio_to_W1k_cpu` as well;
- `speedup_over_W5` / `speedup_over_W5_cpu` for W5u (`..._W5k...` for W5uk,
  `..._W6...` for W6u): the 10-steps-per-jit workload's median seconds per outer
  step over the whole-unroll one's.
Each line names the backend and device the workload ran on (`backend`, `device`,
`device_count`): JAX's default backend, a GPU where the env's jax has one, unless
`JAX_PLATFORMS` is set. It also records the machine's 1-minute load average when
the workload's runs started and ended and the highest sampled while they ran
(`load_avg_1m_start`, `load_avg_1m_end`, `load_avg_1m_max`), the core count
(`cpu_count`) and `busy`: true when the load average exceeded the core count during
the runs (a warning goes to stderr), so its wall times are not comparable.

With `--reference-python PY` (the python of an environment holding Google's
`learned_optimization` and its pinned stack; `reference_env.sh` builds one), every
workload that `reference_workloads.py` also defines runs there too, each reference
run in a fresh process right after a lopt run, and the line gains `reference` (the
reference's medians) and `lopt_over_reference_cpu` / `lopt_over_reference_wall`:
lopt's time over the reference's for the workload's main figure, CPU and wall
(below 1: lopt takes less time).

`--cpu-dispatch sync` turns off jax's asynchronous dispatch on CPU in lopt's
processes (`jax_cpu_enable_async_dispatch=False`); the reference's jax 0.4.30
predates it and always dispatches synchronously. Each line records
`cpu_async_dispatch`.

Usage:
  python benchmarks/run.py              # every workload
  python benchmarks/run.py W1 W2        # some
  python benchmarks/run.py --repeats 1  # quicker, noisier
  python benchmarks/run.py W2 --reference-python /path/to/refenv/bin/python
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
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


SYNC_ENV = "LOPT_BENCH_CPU_SYNC_DISPATCH"

# Each kind of workload's main figure: (CPU-time field, wall-time field) of lopt and
# the reference, compared as `lopt_over_reference_cpu` / `_wall`.
MAIN_FIGURES = (
    ("us_per_step_cpu", "us_per_step_wall"),
    ("cpu_s_per_outer_step", "s_per_outer_step"),
    ("first_call_cpu_s", "first_call_s"),
    ("import_s_cpu", "import_s_wall"),
    ("us_per_call_cpu_k16", "us_per_call_wall_k16"),
)


def _run_single(module: str, wid: str) -> None:
    sys.path.insert(0, str(HERE))
    import jax

    if os.environ.get(SYNC_ENV) == "1":
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    fn = importlib.import_module(module).WORKLOADS[wid]
    result = fn()
    # jax 0.4.30 (the reference's) has no such option: it dispatches synchronously.
    result["cpu_async_dispatch"] = bool(
        jax.config.values.get("jax_cpu_enable_async_dispatch", False)
    )

    device = jax.devices()[0]
    result.update(
        backend=jax.default_backend(),
        device=f"{device.platform}:{device.device_kind}",
        device_count=jax.device_count(),
    )
    print("RESULT " + json.dumps(result), flush=True)


def _spawn(module: str, wid: str, python: str = sys.executable) -> dict:
    # JAX picks the backend (a GPU where jax has one) unless JAX_PLATFORMS says otherwise.
    env = dict(os.environ)
    out = subprocess.run(
        [python, __file__, "--single", module, wid],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"workload {wid} failed:\n{out.stderr[-3000:]}")
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


class LoadMonitor:
    """Samples the 1-minute load average in a background thread while a workload runs.

    Use as a context manager; afterwards `figures()` gives the load at the start, at
    the end, the highest sample, the core count and whether the load exceeded it.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.cpu_count = os.cpu_count() or 1
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadMonitor:
        self.start = os.getloadavg()[0]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.end = os.getloadavg()[0]

    def figures(self) -> dict[str, float | int | bool]:
        """Load at start and end, the highest sample, the core count, and `busy`."""
        peak = max([self.start, self.end, *self._samples])
        return {
            "load_avg_1m_start": self.start,
            "load_avg_1m_end": self.end,
            "load_avg_1m_max": peak,
            "cpu_count": self.cpu_count,
            "busy": peak > self.cpu_count,
        }


def _reference_ids(python: str) -> list[str]:
    """The workload ids `reference_workloads.py` defines, asked of the reference's python."""
    code = (
        f"import sys, json; sys.path.insert(0, {str(HERE)!r}); "
        "import reference_workloads as r; print('IDS ' + json.dumps(list(r.WORKLOADS)))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    lines = [x for x in out.stdout.splitlines() if x.startswith("IDS ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(
            f"--reference-python {python}: cannot import reference_workloads there "
            f"(is learned_optimization installed? benchmarks/reference_env.sh builds an "
            f"environment):\n{out.stderr[-2000:]}"
        )
    return json.loads(lines[0][len("IDS ") :])


def _medians(runs: list[dict]) -> dict:
    """The median of every numeric figure over the runs; other fields from the first run."""
    med = {
        k: statistics.median(r[k] for r in runs)
        for k in runs[0]
        if isinstance(runs[0][k], (int, float)) and not isinstance(runs[0][k], bool)
    }
    med.update({k: v for k, v in runs[0].items() if k not in med})
    return med


def _add_reference(med: dict, ref: dict) -> None:
    """Adds the reference's medians and lopt's time over the reference's (main figure)."""
    med["reference"] = ref
    for cpu_key, wall_key in MAIN_FIGURES:
        if cpu_key in med and cpu_key in ref:
            med["lopt_over_reference_cpu"] = med[cpu_key] / ref[cpu_key]
            med["lopt_over_reference_wall"] = med[wall_key] / ref[wall_key]
            med["compared_figure"] = cpu_key
            return


def _sort_key(wid: str) -> tuple[bool, str, int, str]:
    """W workloads first, then by letter, number and suffix (W1, W1k, W2, ..., W10)."""
    digits = "".join(itertools.takewhile(str.isdigit, wid[1:]))
    return (wid[0] != "W", wid[0], int(digits) if digits else 0, wid[1 + len(digits) :])


# Each whole-unroll workload and its 10-steps-per-jit twin, for `speedup_over_<twin>`.
WHOLE_UNROLL_OF = {"W5u": "W5", "W5uk": "W5k", "W6u": "W6"}


def _add_ratios(wid: str, med: dict, results: dict[str, dict]) -> None:
    """Ratios to W1 (and W1k for keyed ids) and W5u's / W6u's speedups, same run only."""
    bases = ["W1"] + (["W1k"] if wid.endswith("k") else [])
    for base in bases:
        if base in results and wid != base and "steps_per_s" in med:
            ref = results[base]
            med[f"ratio_to_{base}"] = med["steps_per_s"] / ref["steps_per_s"]
            if "cpu_steps_per_s" in med and "cpu_steps_per_s" in ref:
                med[f"ratio_to_{base}_cpu"] = med["cpu_steps_per_s"] / ref["cpu_steps_per_s"]
    chunked = WHOLE_UNROLL_OF.get(wid)
    if chunked in results and "s_per_outer_step" in med:
        ref = results[chunked]
        med[f"speedup_over_{chunked}"] = ref["s_per_outer_step"] / med["s_per_outer_step"]
        if "cpu_s_per_outer_step" in med and "cpu_s_per_outer_step" in ref:
            med[f"speedup_over_{chunked}_cpu"] = (
                ref["cpu_s_per_outer_step"] / med["cpu_s_per_outer_step"]
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("ids", nargs="*", help="workload ids (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single", nargs=2, metavar=("MODULE", "ID"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="also write the JSON lines to this file")
    parser.add_argument(
        "--reference-python",
        default=os.environ.get("LOPT_REFERENCE_PYTHON"),
        help="python of an env with learned_optimization: also time the reference"
        " (default: $LOPT_REFERENCE_PYTHON)",
    )
    parser.add_argument(
        "--cpu-dispatch",
        choices=("async", "sync"),
        default="async",
        help="jax's CPU dispatch in lopt's processes (default: jax's own, async)",
    )
    args = parser.parse_args()
    if args.single:
        _run_single(*args.single)
        return 0
    if args.cpu_dispatch == "sync":
        os.environ[SYNC_ENV] = "1"
    ref_ids = _reference_ids(args.reference_python) if args.reference_python else []
    table = _registry()
    ids = args.ids or sorted(table, key=_sort_key)
    unknown = [w for w in ids if w not in table]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; known: {sorted(table)}")
    results: dict[str, dict] = {}
    lines = []
    for wid in ids:
        runs, ref_runs = [], []
        with LoadMonitor() as load:
            for _ in range(args.repeats):
                runs.append(_spawn(table[wid], wid))
                if wid in ref_ids:
                    ref_runs.append(_spawn("reference_workloads", wid, args.reference_python))
        med = _medians(runs)
        _add_ratios(wid, med, results)
        if ref_runs:
            _add_reference(med, _medians(ref_runs))
        results[wid] = med
        med.update(load.figures())
        if med["busy"]:
            print(
                f"warning: {wid}: the 1-minute load average reached {med['load_avg_1m_max']:.2f}"
                f" on {med['cpu_count']} cores while it ran; its wall times are disturbed by"
                " other jobs (compare CPU-time figures and same-run ratios).",
                file=sys.stderr,
                flush=True,
            )
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
