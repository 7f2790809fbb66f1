"""A byte-level code corpus that every Python install ships: the standard library's sources.

The embedded prose corpus is a few kilobytes, small enough for a language model to
memorise, so its validation loss says little about an optimizer. The `*.py` files of
the running interpreter's standard library (about 12 MB on CPython 3.11; test suites
and `site-packages` left out) are a corpus that needs no network and is large enough
to generalise over.

Files, not bytes, are split: a file's split is fixed by a CRC-32 of its path relative
to the standard library (train 80%, inner_valid 10%, outer_valid 5%, test 5%), so no
file is split between train and test, and adding a file to a later Python moves no
other. Each split is its files' bytes joined by a blank line in path order, cut to
`max_bytes` bytes. The contents follow the interpreter's version, which
`extra_info["name"]` records (for example `python_stdlib_3.11`).
"""

from __future__ import annotations

import functools
import sys
import sysconfig
import zlib
from pathlib import Path

import numpy as np

from lopt_core import Datasets
from lopt_core.validation import check_choice, check_positive_int
from lopt_tasks._plugin import CATALOG
from lopt_tasks.lm import LSTMLanguageModelTask, TransformerLanguageModelTask
from lopt_tasks.text import _text_datasets, windows

#: Split -> [low, high) of `crc32(relative path) % 100`.
_FILE_BUCKETS = {
    "train": (0, 80),
    "inner_valid": (80, 90),
    "outer_valid": (90, 95),
    "test": (95, 100),
}
_SKIPPED_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "__pycache__"})
_DEFAULT_MAX_BYTES = 4_000_000


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_name() -> str:
    """`python_stdlib_<major>.<minor>`: the corpus this interpreter gives."""
    return f"python_stdlib_{sys.version_info.major}.{sys.version_info.minor}"


@functools.cache
def _files_by_split() -> dict[str, tuple[str, ...]]:
    root = _stdlib_root()
    out: dict[str, list[str]] = {split: [] for split in _FILE_BUCKETS}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if _SKIPPED_DIRS & set(rel.parts[:-1]):
            continue
        bucket = zlib.crc32(rel.as_posix().encode()) % 100
        for split, (lo, hi) in _FILE_BUCKETS.items():
            if lo <= bucket < hi:
                out[split].append(rel.as_posix())
    return {split: tuple(sorted(files)) for split, files in out.items()}


def stdlib_files(split: str) -> list[str]:
    """The standard-library files of `split`, as sorted paths relative to its root."""
    split = check_choice(split, "stdlib_files", "split", tuple(_FILE_BUCKETS))
    return list(_files_by_split()[split])


@functools.cache
def stdlib_corpus(split: str, max_bytes: int = _DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of `split`: its files joined by blank lines, cut to `max_bytes`."""
    root = _stdlib_root()
    parts, size = [], 0
    for rel in stdlib_files(split):
        data = (root / rel).read_bytes() + b"\n\n"
        parts.append(data)
        size += len(data)
        if size >= max_bytes:
            break
    return b"".join(parts)[:max_bytes]


def _stdlib_windows(split: str, sequence_length: int, max_bytes: int) -> dict[str, np.ndarray]:
    """The windows of one split (module level, so the loader pickles)."""
    return {"window": windows(stdlib_corpus(split, max_bytes), sequence_length)}


def stdlib_text_datasets(
    batch_size: int = 16,
    sequence_length: int = 32,
    *,
    max_bytes: int = _DEFAULT_MAX_BYTES,
    seed: int = 0,
) -> Datasets:
    """The standard library's sources as byte-level LM `Datasets` (lazy, keyed).

    Args:
      batch_size: sequences per batch.
      sequence_length: bytes per sequence.
      max_bytes: the most bytes read into one split.
      seed: seed of the `next()` key sequences.

    Returns:
      Datasets with `{"obs", "target"}` int32 (B, T) batches and
      `extra_info["vocab_size"] == 256`; nothing is read until a batch is asked for.
    """
    owner = "stdlib_text_datasets"
    max_bytes = check_positive_int(max_bytes, owner, "max_bytes")
    return _text_datasets(
        functools.partial(_stdlib_windows, sequence_length=sequence_length, max_bytes=max_bytes),
        batch_size,
        sequence_length,
        corpus_name(),
        seed,
        owner,
    )


@CATALOG.task()
def LSTMLM_PyStdlib_Embed32_LSTM64() -> LSTMLanguageModelTask:
    """A byte LSTM LM (embed 32, LSTM 64) on Python's stdlib sources, batch 16 x 32 bytes."""
    return LSTMLanguageModelTask(
        stdlib_text_datasets(16, 32), 32, 64, name="LSTMLM_PyStdlib_Embed32_LSTM64"
    )


@CATALOG.task()
def TransformerLM_PyStdlib_2x32() -> TransformerLanguageModelTask:
    """A 2 layer, width 32 byte Transformer LM on Python's stdlib sources, batch 16 x 32."""
    return TransformerLanguageModelTask(
        stdlib_text_datasets(16, 32), 32, 2, 2, name="TransformerLM_PyStdlib_2x32"
    )
