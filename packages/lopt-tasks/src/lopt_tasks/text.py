"""Byte-level text datasets for language models: an embedded corpus and TFDS text.

Batches are `{"obs": int32 (B, T), "target": int32 (B, T)}` where `target` is
`obs` shifted by one byte; the vocabulary is the 256 byte values (0 is never
produced from text, so it can serve as padding).

The embedded corpus (`lopt_tasks/data/corpus.txt`, about 6 KB of original prose
written for this package) needs no network. It is split by bytes into contiguous
ranges: train 0-70%, inner_valid 70-80%, outer_valid 80-90%, test 90-100%.

TFDS text datasets (for example `tiny_shakespeare` or `lm1b`) are read with
`tfds.data_source`: the texts of TFDS's `train` split are joined with newlines
and cut by bytes into train 0-80%, inner_valid 80-90% and outer_valid 90-100%;
`test` comes from TFDS's `test` split.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

from lopt_core import Datasets
from lopt_core.typing import Batch
from lopt_core.validation import check_positive_int
from lopt_tasks._lazy import lazy_datasets
from lopt_tasks.tfds_data import DatasetNotPreparedError, default_data_dir, open_data_source

VOCAB_SIZE = 256
_CORPUS_FRACTIONS = {
    "train": (0.0, 0.7),
    "inner_valid": (0.7, 0.8),
    "outer_valid": (0.8, 0.9),
    "test": (0.9, 1.0),
}
_TFDS_TRAIN_FRACTIONS = {"train": (0.0, 0.8), "inner_valid": (0.8, 0.9), "outer_valid": (0.9, 1.0)}


@functools.cache
def embedded_corpus() -> bytes:
    """The text corpus that ships inside this package, as UTF-8 bytes."""
    return resources.files("lopt_tasks").joinpath("data/corpus.txt").read_bytes()


def windows(data: bytes | np.ndarray, sequence_length: int) -> np.ndarray:
    """Cuts `data` into windows of `sequence_length + 1` bytes (consecutive windows share
    one byte), as int32 (N, sequence_length + 1).

    Raises:
      ValueError: the data is shorter than one window.
    """
    arr = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else np.asarray(data, np.uint8)
    n = (len(arr) - 1) // sequence_length
    if n < 1:
        raise ValueError(
            f"Text of {len(arr)} bytes is too short for sequences of length {sequence_length}; "
            "use a shorter sequence_length or more text."
        )
    idx = np.arange(n)[:, None] * sequence_length + np.arange(sequence_length + 1)[None, :]
    return arr[idx].astype(np.int32)


def _shift(batch: Batch) -> Batch:
    w = batch["window"]
    return {"obs": w[:, :-1], "target": w[:, 1:]}


def _text_datasets(
    load: Callable[[str], dict[str, np.ndarray]],
    batch_size: int,
    sequence_length: int,
    name: str,
    seed: int,
    owner: str,
) -> Datasets:
    """Byte-level LM Datasets of four lazy splits; `load(split)` gives its windows."""
    batch_size = check_positive_int(batch_size, owner, "batch_size")
    sequence_length = check_positive_int(sequence_length, owner, "sequence_length")
    spec = jax.ShapeDtypeStruct((batch_size, sequence_length), jnp.int32)
    return lazy_datasets(
        load,
        batch_size,
        {"obs": spec, "target": spec},
        {"vocab_size": VOCAB_SIZE, "name": name},
        seed=seed,
        transform=_shift,
    )


def _slice(data: bytes, lo: float, hi: float) -> bytes:
    return data[int(len(data) * lo) : int(len(data) * hi)]


def embedded_text_datasets(
    batch_size: int = 16, sequence_length: int = 32, *, seed: int = 0
) -> Datasets:
    """The embedded corpus as byte-level LM `Datasets` (in memory, keyed, lazy).

    Args:
      batch_size: sequences per batch.
      sequence_length: bytes per sequence.
      seed: seed of the `next()` key sequences.

    Returns:
      Datasets with `{"obs", "target"}` int32 (B, T) batches, `extra_info["vocab_size"]`.
    """

    return _text_datasets(
        functools.partial(_embedded_windows, sequence_length=sequence_length),
        batch_size,
        sequence_length,
        "embedded_corpus",
        seed,
        "embedded_text_datasets",
    )


def _embedded_windows(split: str, sequence_length: int) -> dict[str, np.ndarray]:
    """The windows of one split of the embedded corpus (module level, so it pickles)."""
    lo, hi = _CORPUS_FRACTIONS[split]
    return {"window": windows(_slice(embedded_corpus(), lo, hi), sequence_length)}


@functools.cache
def _tfds_text(name: str, split: str, data_dir: str | None, max_bytes: int) -> bytes:
    source = open_data_source(name, split, data_dir)
    parts, total = [], 0
    for i in range(len(source)):
        text = source[i]["text"]
        chunk = text if isinstance(text, bytes) else str(text).encode("utf-8")
        parts.append(chunk)
        total += len(chunk) + 1
        if total >= max_bytes:
            break
    data = b"\n".join(parts)[:max_bytes]
    if not data:
        raise DatasetNotPreparedError(
            f"TFDS text dataset {name!r} split {split!r} in {data_dir or default_data_dir()!r} "
            "holds no text."
        )
    return data


def tfds_text_datasets(
    name: str,
    batch_size: int = 16,
    sequence_length: int = 32,
    *,
    data_dir: str | None = None,
    max_bytes: int = 64 * 1024**2,
    seed: int = 0,
) -> Datasets:
    """A TFDS text dataset (a `text` feature) as byte-level LM `Datasets`.

    Nothing is read at construction. At most `max_bytes` of each TFDS split are kept
    in memory.

    Args:
      name: TFDS name, e.g. "tiny_shakespeare" or "lm1b".
      batch_size: sequences per batch.
      sequence_length: bytes per sequence.
      data_dir: where prepared array_record data lives.
      max_bytes: bytes of text read per TFDS split.
      seed: seed of the `next()` key sequences.

    Raises:
      DatasetNotPreparedError: on the first batch, when the data is not prepared.
    """
    max_bytes = check_positive_int(max_bytes, "tfds_text_datasets", "max_bytes")
    load = functools.partial(
        _tfds_windows,
        name=name,
        data_dir=data_dir,
        max_bytes=max_bytes,
        sequence_length=sequence_length,
    )
    return _text_datasets(load, batch_size, sequence_length, name, seed, "tfds_text_datasets")


def _tfds_windows(
    split: str, *, name: str, data_dir: str | None, max_bytes: int, sequence_length: int
) -> dict[str, np.ndarray]:
    """The windows of one split of a TFDS text dataset (module level, so it pickles)."""
    if split == "test":
        data = _tfds_text(name, "test", data_dir, max_bytes)
    else:
        lo, hi = _TFDS_TRAIN_FRACTIONS[split]
        data = _slice(_tfds_text(name, "train", data_dir, max_bytes), lo, hi)
    return {"window": windows(data, sequence_length)}
