"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).parent.parent / "README.md"


def test_readme_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 3  # the Flax loop, the shipped MLPLOpt, save/load
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), ns)
    # The Flax loop trained: measured 0.48 -> under 0.03 in 150 steps.
    assert float(ns["loss"]) < 0.1
    assert type(ns["loaded"].lopt).__name__ == "MLPLOpt"
    assert ns["loaded"].lopt.hidden_size == 16
    np.testing.assert_array_equal(
        ns["loaded"].theta["mlp/~/linear_0"]["w"], ns["theta"]["mlp/~/linear_0"]["w"]
    )
