"""The README's code blocks run and do what the README says."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_examples_run():
    declared, first, second = _blocks()
    ns: dict = {}
    exec(compile(declared, "README.md", "exec"), ns)
    np.testing.assert_allclose(np.asarray(ns["opt"].get_params(ns["state"])["w"]), [-0.1, 0.1])
    assert repr(ns["opt"]) == "SignMomentum(learning_rate=0.1)"
    assert ns["opt"] == ns["SignMomentum"](0.1)
    ns = {}
    exec(compile(first, "README.md", "exec"), ns)
    np.testing.assert_array_equal(
        np.asarray(ns["opt"].get_params(ns["opt_state"])["a"]),
        np.array([-9.9999335e-05, -9.9999335e-05], np.float32),
    )
    ns = {}
    exec(compile(second, "README.md", "exec"), ns)
    assert float(ns["loss_fn"](ns["params"])) < 1e-4
