"""The repository README's quick start runs as written (the PES loop shortened)."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np

README = Path(__file__).parents[3] / "README.md"


def _quick_start_blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Quick start") : text.index("## Writing a plugin")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_quick_start_runs(capsys):
    blocks = _quick_start_blocks()
    assert len(blocks) == 3  # Adam on digits, PES meta-training, the pretrained MLPLOpt in optax
    assert "range(100):\n    state, meta_loss" in blocks[1]
    blocks[1] = blocks[1].replace(
        "range(100):\n    state, meta_loss", "range(3):\n    state, meta_loss"
    )
    ns: dict = {}
    exec(compile(blocks[0], str(README), "exec"), ns)
    # Adam(1e-2), 500 steps on the digits MLP: the training loss falls from log(10) ~ 2.3.
    assert float(capsys.readouterr().out) < 0.5
    exec(compile(blocks[1], str(README), "exec"), ns)
    assert int(ns["state"].gradient_learner_state.outer_iteration) == 3
    assert np.isfinite(float(ns["meta_loss"]))
    shapes = jax.tree_util.tree_map(np.shape, ns["lopt"].init(jax.random.PRNGKey(0)))
    assert jax.tree_util.tree_map(np.shape, ns["theta"]) == shapes
    exec(compile(blocks[2], str(README), "exec"), ns)
    # The shipped meta-trained MLPLOpt trains the digits MLP through optax.
    assert float(ns["loss"]) < 0.5
