"""Checkpoints of any pytree: atomic writes, recorded provenance, verified reads.

File layout: an 8-byte magic, a 32-byte SHA-256 of the payload, then the payload,
a msgpack document (`flax.serialization`) holding `{"metadata": ..., "tree": ...}`.
The checksum makes a truncated or corrupted file fail loudly instead of returning
garbage.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import serialization

from lopt_core.component import config_of, describe

__all__ = ["MAGIC", "Checkpoint", "CheckpointError", "config_of", "load", "load_metadata", "save"]
from lopt_core.tree_utils import first_difference

MAGIC = b"LOPTCK1\n"
_HEADER = len(MAGIC) + 32


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupted or does not match what was expected."""


class Checkpoint(NamedTuple):
    """A loaded checkpoint: the tree and the metadata it was saved with."""

    tree: Any
    metadata: dict[str, Any]


def _lopt_version() -> str:
    try:
        return importlib_metadata.version("lopt-core")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def save(
    path: str | os.PathLike[str],
    tree: Any,
    metadata: dict[str, Any] | None = None,
    *,
    producer: Any = None,
) -> Path:
    """Writes `tree` to `path` atomically (a temp file in the same folder, then a rename).

    Args:
      path: destination file.
      tree: any pytree of arrays (theta, an optimizer state, a learner state, ...).
      metadata: JSON-serialisable values stored beside the tree.
      producer: the object that produced the tree (a learned optimizer, say); its
        class and config (`lopt_core.component.config_of`) are recorded under
        `metadata["producer"]`.

    Returns:
      The path written.

    Raises:
      ConfigError: a field of `producer` cannot be recorded (the message names it);
        nothing is written.

    Example:
      >>> save("/tmp/theta.lopt", {"w": np.zeros(3)}, {"step": 10})
      PosixPath('/tmp/theta.lopt')
    """
    path = Path(path)
    meta = dict(metadata or {})
    meta["lopt_version"] = _lopt_version()
    if producer is not None:
        meta["producer"] = describe(producer)
    try:
        meta_json = json.dumps(meta)
    except TypeError as exc:
        raise TypeError(f"Checkpoint metadata must be JSON-serialisable: {exc}") from exc
    state = serialization.to_state_dict(jax.device_get(tree))
    payload = serialization.msgpack_serialize({"metadata": meta_json, "tree": state})
    data = MAGIC + hashlib.sha256(payload).digest() + payload
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _read(path: Path) -> Checkpoint:
    if not path.exists():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist.")
    data = path.read_bytes()
    if len(data) < _HEADER or not data.startswith(MAGIC):
        raise CheckpointError(
            f"{str(path)!r} is not a lopt checkpoint (bad header); it may be truncated or "
            "written by something else."
        )
    digest, payload = data[len(MAGIC) : _HEADER], data[_HEADER:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is corrupted or truncated (checksum mismatch); "
            "restore it from another copy."
        )
    doc = serialization.msgpack_restore(payload)
    metadata = json.loads(doc["metadata"])
    return Checkpoint(doc["tree"], metadata)


def load_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads only the metadata of a checkpoint."""
    return _read(Path(path)).metadata


def load(path: str | os.PathLike[str], like: Any = None) -> Checkpoint:
    """Reads a checkpoint written by `save`.

    Args:
      path: the file.
      like: optional pytree with the expected structure; the result then has its
        exact tree type (dataclasses, tuples, ...) and leaf shapes are checked.

    Returns:
      `Checkpoint(tree, metadata)`. Without `like`, the tree is nested dicts of
      numpy arrays.

    Raises:
      CheckpointError: the file is missing, corrupted, truncated, or its structure
        does not match `like` (the message names the first mismatching path).
    """
    tree, meta = _read(Path(path))
    if like is None:
        return Checkpoint(tree, meta)
    expected = serialization.to_state_dict(like)
    diff = first_difference(_shapes(expected), _shapes(tree))
    if diff is not None:
        raise CheckpointError(f"Checkpoint {str(path)!r} does not match the expected tree: {diff}.")
    return Checkpoint(serialization.from_state_dict(like, tree), meta)


def _shapes(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: np.zeros(np.shape(x), np.int8), tree)
