"""C1: start-up of the `lopt` command, against a bare `python -c pass` in the same run.

Each command runs 10 times as a child process of this one (the `lopt` console script
of the env that runs the benchmark); wall time from `perf_counter` and CPU time
(user + system) from `resource.getrusage(RUSAGE_CHILDREN)`, medians reported, and
each as a ratio to `python -c pass` measured in the same loop. `import jax` is
timed the same way, to show what the commands no longer pay.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPEATS = 10


def _lopt() -> str:
    beside = Path(sys.executable).with_name("lopt")
    found = str(beside) if beside.exists() else shutil.which("lopt")
    if not found:
        raise RuntimeError("no `lopt` console script in this env; install lopt-core")
    return found


def _time(argv: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one run of `argv`, output discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def startup() -> dict:
    lopt = _lopt()
    commands = {
        "python_pass": [sys.executable, "-c", "pass"],
        "lopt_help": [lopt, "--help"],
        "lopt_list": [lopt, "list"],
        "lopt_describe": [lopt, "describe", "MLPLOpt"],
        "lopt_meta_train_help": [lopt, "meta-train", "--help"],
        "import_jax": [sys.executable, "-c", "import jax"],
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(REPEATS):  # interleaved, so load changes hit every command alike
        for name, argv in commands.items():
            runs[name].append(_time(argv))
    out: dict[str, float | int] = {"repeats": REPEATS}
    base_wall = statistics.median(w for w, _ in runs["python_pass"])
    base_cpu = statistics.median(c for _, c in runs["python_pass"])
    for name, samples in runs.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        out[f"{name}_wall_s"] = round(wall, 4)
        out[f"{name}_cpu_s"] = round(cpu, 4)
        if name != "python_pass":
            out[f"{name}_wall_ratio_to_python"] = round(wall / base_wall, 2)
            out[f"{name}_cpu_ratio_to_python"] = round(cpu / max(base_cpu, 1e-6), 2)
    return out


WORKLOADS = {"C1": startup}
