"""Every Python block of every README runs by itself, in a fresh namespace.

A block runs alone unless a marker right above it says otherwise:

- `<!-- readme-test: continues -->`: it continues the block above (which runs first,
  in the same namespace);
- `<!-- readme-test: replace "OLD" "NEW" -->`: `OLD` becomes `NEW` for the test, to
  shorten a long loop (the text must occur in the block);
- `<!-- readme-test: skip REASON -->`: not run here, for the stated reason (an
  excerpt of a file that runs elsewhere).

The env of lopt-outer's tests holds every lopt package, flax and matplotlib, so
each README's blocks run as a user who installed what that README says would.
"""

from __future__ import annotations

import re
import shlex
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

ROOT = Path(__file__).parents[3]
READMES = [
    ROOT / "README.md",
    *sorted(ROOT.glob("packages/*/README.md")),
    ROOT / "examples" / "lopt-plugin-example" / "README.md",
]
_BLOCK = re.compile(
    r"(?P<markers>(?:^[ \t]*<!--.*?-->[ \t]*\n)*)^(?P<indent>[ \t]*)```python\n(?P<code>.*?)^(?P=indent)```",
    re.S | re.M,
)
_MARKER = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->", re.S)


@dataclass
class Block:
    path: Path
    line: int
    code: str
    continues: bool = False
    skip: str = ""
    replacements: list[tuple[str, str]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    text = path.read_text()
    out = []
    for m in _BLOCK.finditer(text):
        indent = m.group("indent")
        code = "\n".join(line[len(indent) :] for line in m.group("code").splitlines()) + "\n"
        block = Block(path, text.count("\n", 0, m.start("indent")) + 1, code)
        for directive in _MARKER.findall(m.group("markers")):
            word, _, rest = directive.partition(" ")
            if word == "continues":
                block.continues = True
            elif word == "skip":
                assert rest.strip(), f"{block.label}: a skip marker must give its reason"
                block.skip = rest.strip()
            elif word == "replace":
                old, new = shlex.split(rest)
                assert old in code, f"{block.label}: {old!r} is not in the block"
                block.replacements.append((old, new))
            else:
                raise AssertionError(f"{block.label}: unknown readme-test marker {directive!r}")
        out.append(block)
    return out


def _chains() -> list[list[Block]]:
    """Each runnable block with the blocks it continues, in order."""
    chains = []
    for path in READMES:
        blocks = _blocks(path)
        for i, block in enumerate(blocks):
            if block.skip:
                continue
            chain = [block]
            j = i
            while blocks[j].continues:
                assert j > 0, f"{blocks[j].label} continues, but no block is above it"
                j -= 1
                chain.insert(0, blocks[j])
            chains.append(chain)
    return chains


CHAINS = _chains()


@pytest.mark.parametrize("path", READMES, ids=[str(p.relative_to(ROOT)) for p in READMES])
def test_every_python_block_is_found_and_run_or_skipped_with_a_reason(path):
    blocks = _blocks(path)
    assert len(blocks) == len(re.findall(r"^[ \t]*```python$", path.read_text(), re.M))
    ends = {chain[-1].label for chain in CHAINS}
    for block in blocks:
        assert block.label in ends or block.skip, block.label


@pytest.mark.parametrize("chain", CHAINS, ids=[c[-1].label for c in CHAINS])
def test_readme_block_runs_by_itself(chain, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # files a block writes land in a scratch folder
    module = types.ModuleType("__readme__")  # a real module: dataclasses look theirs up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for block in chain:
        code = block.code
        for old, new in block.replacements:
            code = code.replace(old, new)
        exec(compile(code, block.label, "exec"), namespace)
    # A block ends with what it computed: nothing it defines may be a NaN loss.
    for name in ("loss", "meta_loss"):
        if name in namespace:
            assert float(namespace[name]) == float(namespace[name]), f"{name} is NaN"
