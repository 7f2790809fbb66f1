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
    assert len(blocks) == 3  # Adam on digits, PES meta-training, the pretrained Celo2 in optax
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
    # The shipped Celo2_General trains the digits MLP through optax, from log(10) ~ 2.3.
    assert float(ns["loss"]) < 0.5


def test_readme_plugin_guide_shows_the_plugin_example_verbatim():
    example = README.parent / "examples" / "lopt-plugin-example"
    text = README.read_text()
    section = text[text.index("## Writing a plugin") : text.index("## What is implemented")]
    blocks = [
        "\n".join(line[3:] for line in block.splitlines())
        for block in re.findall(r"```(?:python|toml)\n(.*?)   ```", section, re.S)
    ]
    assert len(blocks) == 3
    components = (example / "src/lopt_plugin_example/components.py").read_text()
    code = blocks[0].split("\n", 1)[1]  # after the "# ... (excerpt)" line
    assert code in components
    pyproject = (example / "pyproject.toml").read_text()
    for line in blocks[1].splitlines():
        assert line in pyproject.splitlines(), line
    # The example's own test file runs exactly the test the README shows.
    example_test = (example / "tests" / "test_example_plugin.py").read_text()
    assert blocks[2][blocks[2].index("def test_") :] in example_test
