import re
from pathlib import Path

import numpy as np

README = Path(__file__).parents[1] / "README.md"


def _pes_example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- This block runs as a test.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "the README's PES example is missing"
    return match.group(1)


def test_readme_pes_example_runs_at_small_size(capsys):
    code = _pes_example()
    assert "num_outer_steps = 300" in code
    namespace: dict = {}
    exec(
        compile(code.replace("num_outer_steps = 300", "num_outer_steps = 4"), str(README), "exec"),
        namespace,
    )
    theta = namespace["theta"]
    # Four Adam(1e-2) steps on log_lr move it by about 4e-2 from log(0.01).
    assert abs(float(theta["log_lr"]) - np.log(0.01)) > 1e-2
    assert np.isfinite(float(namespace["meta_loss"]))
    assert "learned lr" in capsys.readouterr().out
