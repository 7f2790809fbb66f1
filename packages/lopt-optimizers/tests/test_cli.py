"""`lopt list optimizers` shows every optimizer of this package with its description."""

from __future__ import annotations

import subprocess
import sys

import lopt_core
from lopt_core import cli

PLUGIN = "lopt-optimizers"


def _ours() -> dict[str, lopt_core.Entry]:
    return {n: e for n, e in lopt_core.REGISTRY.entries("optimizers").items() if e.plugin == PLUGIN}


def _check_listing(out: str) -> None:
    ours = _ours()
    assert len(ours) == 25  # 19 + Fromage and PiecewiseLinearAdam + the 4 tuning-free
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name, entry in ours.items():
        assert name in rows, name
        assert rows[name].split()[1:3] == ["optimizers", PLUGIN]
        assert rows[name].rstrip().endswith(entry.description)


def test_lopt_list_optimizers_in_process(capsys):
    assert cli.main(["list", "optimizers"]) == 0
    _check_listing(capsys.readouterr().out)


def test_lopt_list_optimizers_console_command():
    # The same command as a user types it, in a fresh interpreter that finds the
    # plugin through its entry point alone.
    proc = subprocess.run(
        [sys.executable, "-m", "lopt_core.cli", "list", "optimizers"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    _check_listing(proc.stdout)
    assert "Adam with eps_root, the reference's defaults (optax.adam)." in proc.stdout


def test_describe_shows_the_docstring(capsys):
    assert cli.main(["describe", "SGDM", "--kind", "optimizers"]) == 0
    out = capsys.readouterr().out
    assert "heavy-ball momentum" in out and f"plugin: {PLUGIN}" in out
