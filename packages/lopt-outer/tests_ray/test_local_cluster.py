"""Clusters that lopt starts itself: they listen on loopback only, and the README's command runs.

No `ray_cluster` fixture here: each test lets lopt start (and stop) its own cluster.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ray_helpers import descendants, is_loopback, listening_sockets, make_learner

from lopt_outer import RunConfig
from lopt_outer.ray import RayBackend

README = Path(__file__).parents[1] / "README.md"


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def test_a_cluster_that_lopt_starts_listens_on_loopback_only():
    before = descendants()
    seen: list[tuple[str, int, str]] = []

    def snapshot(step, state, row):
        if step == 1:
            pids = (descendants() - before) | {os.getpid()}
            seen.extend((ip, port, _process_name(pid)) for ip, port, pid in listening_sockets(pids))

    config = RunConfig(2, progress=False, metric_writers=())
    result = RayBackend(num_workers=1).run(make_learner(), config, snapshot)
    assert result.steps == 2
    owners = {name for _, _, name in seen}
    # The snapshot saw the cluster's servers, this driver's and a worker's.
    assert {"gcs_server", "raylet"} <= owners, seen
    assert len(seen) >= 4, seen
    exposed = [s for s in seen if not is_loopback(s[0])]
    assert exposed == [], f"listening beyond 127.0.0.1: {exposed}"


def _readme_ray_command() -> list[str]:
    """The `lopt meta-train ... --backend ray --workers 4` command of the package README."""
    lines = [
        line.strip()
        for line in README.read_text().splitlines()
        if line.startswith("lopt meta-train") and "--backend ray" in line
    ]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


def test_the_readme_ray_command_meta_trains_on_its_own_local_cluster(tmp_path):
    command = _readme_ray_command()
    assert command[command.index("--workers") + 1] == "4"
    lopt = shutil.which("lopt", path=str(Path(sys.executable).parent))
    assert lopt is not None, "the lopt console script is not installed beside this Python"
    # The README's command as it stands, shortened: the last of a repeated flag wins.
    short = ["--num-steps", "3", "--num-tasks", "2", "--trunc-length", "4", "--max-length", "16"]
    out = tmp_path / "runs" / "ray"
    args = [lopt, *command[1:], *short, "--output-dir", str(out), "--no-progress"]
    proc = subprocess.run(
        args,
        cwd=tmp_path,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "meta-trained 3 steps (num_steps)" in proc.stdout
    assert (out / "theta.lopt").exists()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[-1]["ray/num_workers"] == 4.0
    assert all(r["meta_loss"] == r["meta_loss"] for r in rows)  # not NaN
