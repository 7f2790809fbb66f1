"""`lopt list learned_optimizers` shows every architecture of this package."""

from __future__ import annotations

import subprocess
import sys

import lopt_core
from lopt_core import cli

PLUGIN = "lopt-learned"
ARCHITECTURES = [
    "AdafacMLPLOpt",
    "HParamControllerLOPT",
    "LearnableAdam",
    "LearnableSGD",
    "LearnableSGDM",
    "MLPLOpt",
    "MetaSGDWD",
    "NNAdam",
    "PerParamMLP",
    "RNNMLPLOpt",
]


def _check_listing(out: str) -> None:
    entries = lopt_core.REGISTRY.entries("learned_optimizers")
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in ARCHITECTURES:
        assert name in rows, name
        assert rows[name].split()[1:3] == ["learned_optimizers", PLUGIN]
        assert rows[name].rstrip().endswith(entries[name].description)


def test_lopt_list_learned_optimizers_in_process(capsys):
    assert cli.main(["list", "learned_optimizers"]) == 0
    _check_listing(capsys.readouterr().out)


def test_lopt_list_learned_optimizers_console_command():
    # A fresh interpreter finds the plugin through its entry point alone.
    proc = subprocess.run(
        [sys.executable, "-m", "lopt_core.cli", "list", "learned_optimizers"],
        capture_output=True,
        text=True,
        check=True,
    )
    _check_listing(proc.stdout)
