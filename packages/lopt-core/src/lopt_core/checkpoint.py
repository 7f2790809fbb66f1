"""Checkpoints of any pytree: atomic writes, recorded provenance, verified reads.

File layout: an 8-byte magic, a 32-byte SHA-256 of the payload, then the payload,
a msgpack document (`flax.serialization`'s encoding) holding
`{"metadata": <JSON string>, "tree": <state dict>}`. The checksum makes a truncated
or corrupted file fail loudly instead of returning garbage; it does not make a file
trustworthy, since anyone can write a file with a valid checksum.

Reading trusts nothing in the file:

- only a regular file is opened (a FIFO, a device or a folder is refused before
  `open`), and only when it is at most `max_bytes` long (`DEFAULT_MAX_BYTES`
  unless the caller passes more);
- the payload is decoded with msgpack limits of our own, never through
  `flax.serialization.msgpack_restore`: an array is built (a view of the file's
  bytes, nothing more) only after its declared shape and dtype are checked against
  the bytes it holds, and only for the dtypes in `ALLOWED_DTYPES`;
- the tree may hold only dicts with string keys, such arrays and None; any other
  value (a string, a Python number, a list, an unknown msgpack extension) and any
  nesting deeper than `MAX_DEPTH` is refused with a `CheckpointError` naming its
  path;
- the metadata must be a JSON object.

So every malformed file, checksummed or not, raises `CheckpointError` naming the
problem, and reading allocates a small multiple of the file's size at most.
`metadata_value` reads one metadata field with its type checked, for code that
acts on metadata (resuming a run at its recorded step, say).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import jax
import jax.numpy as jnp
import msgpack  # type: ignore[import-untyped]  # flax's own encoder; no type stubs
import numpy as np
from flax import serialization

from lopt_core.component import config_of, describe
from lopt_core.tree_utils import first_difference, path_str

__all__ = [
    "ALLOWED_DTYPES",
    "DEFAULT_MAX_BYTES",
    "MAGIC",
    "MAX_DEPTH",
    "Checkpoint",
    "CheckpointError",
    "check_tree",
    "config_of",
    "leaf_kind",
    "load",
    "load_metadata",
    "metadata_value",
    "read_file",
    "save",
    "unpack",
]

T = TypeVar("T")

MAGIC = b"LOPTCK1\n"
_HEADER = len(MAGIC) + 32

DEFAULT_MAX_BYTES = 256 * 2**20
"""The largest file `load` and `load_metadata` read unless given `max_bytes=` (256 MiB)."""

ALLOWED_DTYPES: frozenset[str] = frozenset(
    {"float32", "float16", "bfloat16", "int32", "uint32", "bool"}
)
"""The dtypes an array in a checkpoint may have; `save` and the readers refuse others.

What lopt's own trees hold: thetas and optimizer states are float32 (bfloat16 or
float16 when a user asks for them), step counters int32, PRNG keys uint32, and the
truncated-unroll states of the outer trainers hold bool `is_done` flags, which is
why bool is accepted. float64, int64, int8, complex and object arrays are refused.
"""

MAX_DEPTH = 64
"""The deepest nesting of dicts (in the tree) or of JSON containers (in the metadata)."""

# flax.serialization's msgpack extension codes.
_EXT_NDARRAY = 1
_EXT_NPSCALAR = 3
_MAX_NDIM = 32
_MAX_DIM = 2**40
_CHUNKED = "__msgpack_chunked_array__"
_DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(jnp.bfloat16) if name == "bfloat16" else np.dtype(name)
    for name in ALLOWED_DTYPES
}
_ALLOWED_TEXT = ", ".join(sorted(ALLOWED_DTYPES))


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupted, malformed or does not match what was expected."""


class Checkpoint(NamedTuple):
    """A loaded checkpoint: the tree and the metadata it was saved with."""

    tree: Any
    metadata: dict[str, Any]


def _lopt_version() -> str:
    try:
        return importlib_metadata.version("lopt-core")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


# -- writing ------------------------------------------------------------------------
def _keystr(path: tuple[str, ...]) -> str:
    return "".join(f"[{k!r}]" for k in path) or "<root>"


def _check_savable(node: Any, path: tuple[str, ...] = ()) -> None:
    """Raises a TypeError when `node` holds a leaf that `load` would refuse."""
    if len(path) > MAX_DEPTH:
        raise TypeError(f"Cannot save the tree: it nests deeper than {MAX_DEPTH} levels.")
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"Cannot save the tree: {_keystr(path)} has a non-string key {key!r}."
                )
            _check_savable(value, (*path, key))
        return
    if node is None:
        return
    if isinstance(node, (np.ndarray, np.generic)):
        if node.dtype.name in ALLOWED_DTYPES:
            return
        what = f"a {node.dtype.name} array"
    else:
        what = f"a {type(node).__name__}"
    raise TypeError(
        f"Cannot save the tree: the leaf {_keystr(path)} is {what}; checkpoints hold only "
        f"arrays of {_ALLOWED_TEXT} (lopt_core.checkpoint.ALLOWED_DTYPES) and None. Convert "
        "it, e.g. np.asarray(x, np.float32) or jnp.asarray(x, jnp.int32)."
    )


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
      tree: any pytree of arrays (theta, an optimizer state, a learner state, ...)
        whose dtypes are in `ALLOWED_DTYPES`; None leaves are kept.
      metadata: JSON-serialisable values stored beside the tree.
      producer: the object that produced the tree (a learned optimizer, say); its
        class and config (`lopt_core.component.config_of`) are recorded under
        `metadata["producer"]`.

    Returns:
      The path written.

    Raises:
      ConfigError: a field of `producer` cannot be recorded (the message names it);
        nothing is written.
      TypeError: the metadata is not JSON-serialisable, or a leaf of the tree is not
        an array of an allowed dtype (the message names its path); nothing is written.

    Example:
      >>> save("/tmp/theta.lopt", {"w": np.zeros(3, np.float32)}, {"step": 10})
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
    _check_savable(state)
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


# -- reading the file -----------------------------------------------------------------
def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _check_size(where: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise CheckpointError(
            f"{where} is {size} bytes, over the limit of max_bytes={max_bytes} bytes; "
            f"if you trust the file, read it with max_bytes={size} (or more) passed to the "
            "loading function."
        )


def read_file(path: Path, max_bytes: int) -> memoryview:
    """The file's bytes, after checking it is a regular file of at most `max_bytes`.

    Raises:
      CheckpointError: the file is missing, not a regular file (a FIFO, a device, a
        folder), or larger than `max_bytes`.
    """
    where = repr(str(path))
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < _HEADER:
        raise ValueError(f"max_bytes must be an int >= {_HEADER}, got {max_bytes!r}.")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"Checkpoint {where} does not exist.") from None
    except OSError as exc:
        raise CheckpointError(f"Checkpoint {where} cannot be read: {exc}.") from exc
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(
            f"{where} is {_file_kind(st.st_mode)}, not a regular file; a checkpoint is a "
            "plain file written by lopt_core.save. Pass the path of such a file."
        )
    _check_size(where, st.st_size, max_bytes)
    # O_NONBLOCK: should the path become a FIFO after the stat, open still returns.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise CheckpointError(f"Checkpoint {where} cannot be opened: {exc}.") from exc
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(
                f"{where} is {_file_kind(st.st_mode)}, not a regular file (it was replaced "
                "while being opened); pass the path of a checkpoint file."
            )
        _check_size(where, st.st_size, max_bytes)
        buf = bytearray(st.st_size + 1)
        view = memoryview(buf)
        n = 0
        while n < len(buf):
            got = f.readinto(view[n:])
            if not got:
                break
            n += got
    if n > st.st_size:
        raise CheckpointError(
            f"Checkpoint {where} grew while it was read; lopt_core.save replaces files "
            "atomically, so something else is writing it. Read it once that has finished."
        )
    return view[:n]


# -- decoding the payload -------------------------------------------------------------
class _Refused:
    """A value the decoder did not build; the tree check reports it with its path."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _array_from_ext(data: bytes, scalar: bool) -> Any:
    """An array (or numpy scalar) from flax's `(shape, dtype name, bytes)` encoding."""
    try:
        parts = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_array_len=_MAX_NDIM,
            max_map_len=0,
            max_str_len=64,
            max_bin_len=len(data),
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack's errors are ValueErrors of several kinds
        why = f"{type(exc).__name__}: {str(exc)[:200]}"
        return _Refused(f"an array whose encoding is malformed ({why})")
    if not (isinstance(parts, list) and len(parts) == 3):
        return _Refused("an array encoding that is not (shape, dtype, bytes)")
    shape, name, buffer = parts
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    if not isinstance(name, str):
        return _Refused(f"an array whose dtype is {type(name).__name__}, not a dtype name")
    if name not in ALLOWED_DTYPES:
        return _Refused(f"a {name[:32]} array, a dtype that is not accepted")
    if not (
        isinstance(shape, list)
        and all(type(d) is int and 0 <= d <= _MAX_DIM for d in shape)
        and (not scalar or not shape)
    ):
        return _Refused(f"an array with the invalid shape {str(shape)[:80]}")
    if not isinstance(buffer, bytes):
        return _Refused(f"an array whose data is {type(buffer).__name__}, not bytes")
    dtype = _DTYPES[name]
    declared = math.prod(shape) * dtype.itemsize
    if declared != len(buffer):
        return _Refused(
            f"a {name}{tuple(shape)} array, {declared} bytes, but holds {len(buffer)} bytes"
        )
    array = np.frombuffer(buffer, dtype).reshape(shape)
    return array[()] if scalar else array


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_NDARRAY:
        return _array_from_ext(data, scalar=False)
    if code == _EXT_NPSCALAR:
        return _array_from_ext(data, scalar=True)
    return _Refused(f"a msgpack extension of type {code}, not an array")


def leaf_kind(value: Any) -> str:
    """What `value` is, in words, for a message."""
    if isinstance(value, _Refused):
        return value.reason
    if isinstance(value, (bool, int, float, str)):
        return f"a Python {type(value).__name__} ({str(value)[:40]!r})"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype.name}{value.shape} array"
    if isinstance(value, bytes):
        return "a bytes string"
    return f"a {type(value).__name__}"


def _unchunk(node: dict[str, Any], where: str, path: str) -> np.ndarray:
    """Reassembles flax's chunked encoding of an array (written for arrays over 1 GiB)."""

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{where}: the chunked array at {path} is malformed: {why}.")

    if set(node) != {_CHUNKED, "shape", "chunks"}:
        raise bad(f"it has the entries {sorted(node)[:8]}, not {_CHUNKED}, shape and chunks")
    shape_d, chunks_d = node["shape"], node["chunks"]
    if not (isinstance(shape_d, dict) and isinstance(chunks_d, dict)):
        raise bad("its shape and chunks must be dicts")
    if set(shape_d) != {str(i) for i in range(len(shape_d))} or len(shape_d) > _MAX_NDIM:
        raise bad("its shape is not a sequence of dimensions")
    shape = [shape_d[str(i)] for i in range(len(shape_d))]
    if not all(type(d) is int and 0 <= d <= _MAX_DIM for d in shape):
        raise bad(f"its shape {str(shape)[:80]} is not a sequence of sizes")
    if not chunks_d or set(chunks_d) != {str(i) for i in range(len(chunks_d))}:
        raise bad("its chunks are not a sequence of arrays")
    chunks = [chunks_d[str(i)] for i in range(len(chunks_d))]
    for i, chunk in enumerate(chunks):
        if not isinstance(chunk, np.ndarray) or chunk.ndim != 1:
            raise bad(f"chunk {i} is {leaf_kind(chunk)} (expected a 1-D array)")
        if chunk.dtype != chunks[0].dtype:
            raise bad(f"chunk {i} is {chunk.dtype}, chunk 0 {chunks[0].dtype}")
    held = sum(c.size for c in chunks)
    if math.prod(shape) != held:
        raise bad(
            f"its shape {tuple(shape)} needs {math.prod(shape)} values, the chunks hold {held}"
        )
    return np.concatenate(chunks).reshape(shape)


def check_tree(node: Any, where: str, path: tuple[str, ...] = ()) -> Any:
    """`node` with its chunked arrays joined, or a CheckpointError naming a bad leaf.

    Every leaf must be an array of `ALLOWED_DTYPES` or None, nested at most
    `MAX_DEPTH` levels.
    """
    here = _keystr(path)
    if len(path) > MAX_DEPTH:
        raise CheckpointError(
            f"{where}: its tree nests deeper than {MAX_DEPTH} levels (at {here[:200]}...); "
            "lopt never writes such trees, the file is malformed."
        )
    if isinstance(node, dict):
        for key in node:
            if not isinstance(key, str):
                raise CheckpointError(f"{where}: {here} has a non-string key {key!r}.")
        if node.get(_CHUNKED) is True:
            return _unchunk(node, where, here)
        for key, value in node.items():
            node[key] = check_tree(value, where, (*path, key))
        return node
    if node is None or isinstance(node, (np.ndarray, np.generic)):
        return node  # built by _ext_hook, so of an allowed dtype
    raise CheckpointError(
        f"{where}: the leaf {here} is {leaf_kind(node)}; a checkpoint tree holds only "
        f"dicts, None and arrays of {_ALLOWED_TEXT} (lopt_core.checkpoint.ALLOWED_DTYPES). "
        "The file was not written by lopt_core.save, or was edited."
    )


def _check_json_depth(value: Any, where: str) -> None:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CheckpointError(
                f"{where}: its metadata nests deeper than {MAX_DEPTH} levels; the file is "
                "malformed."
            )
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def unpack(payload: memoryview, where: str, hint: str) -> Any:
    """Decodes a flax msgpack document without trusting it.

    msgpack's own limits (no list longer than 64 items: msgpack reserves a list's
    declared length before reading it; no map, string or binary longer than the
    payload) and an extension hook that builds an array only once its shape times
    its item size equals the bytes it holds. Nothing is allocated beyond a small
    factor of the payload's size.

    Args:
      payload: the bytes.
      where: how messages name the file.
      hint: what the message adds when the bytes are not valid msgpack.

    Raises:
      CheckpointError: the payload is not a valid msgpack document, or holds an
        extension that is not a well-formed array.
    """
    try:
        return msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            ext_hook=_ext_hook,
            # Lists are never written (flax stores sequences as dicts), and msgpack
            # allocates a list's declared length before reading it.
            max_array_len=64,
            max_map_len=len(payload) // 2,
            max_str_len=len(payload),
            max_bin_len=len(payload),
            max_ext_len=len(payload),
        )
    except CheckpointError:
        raise
    except Exception as exc:  # msgpack's errors are ValueErrors of several kinds
        raise CheckpointError(
            f"{where}: its payload is not a valid msgpack document "
            f"({type(exc).__name__}: {str(exc)[:200]}); {hint}."
        ) from exc


def _decode(payload: memoryview, where: str) -> Checkpoint:
    malformed = "the file was not written by lopt_core.save, or was edited"
    doc = unpack(payload, where, malformed)
    if not isinstance(doc, dict) or set(doc) != {"metadata", "tree"}:
        got = sorted(map(str, doc))[:8] if isinstance(doc, dict) else type(doc).__name__
        raise CheckpointError(
            f"{where}: its payload must be a map of 'metadata' and 'tree', got {got}; {malformed}."
        )
    meta_json = doc["metadata"]
    if not isinstance(meta_json, str):
        raise CheckpointError(
            f"{where}: its metadata is {leaf_kind(meta_json)}, not a JSON string; {malformed}."
        )
    try:
        metadata = json.loads(meta_json)
    except RecursionError:
        raise CheckpointError(
            f"{where}: its metadata nests deeper than JSON can be read; {malformed}."
        ) from None
    except ValueError as exc:
        raise CheckpointError(
            f"{where}: its metadata is not valid JSON ({exc}); {malformed}."
        ) from exc
    if not isinstance(metadata, dict):
        raise CheckpointError(
            f"{where}: its metadata must be a JSON object, got a JSON "
            f"{type(metadata).__name__}; {malformed}."
        )
    _check_json_depth(metadata, where)
    return Checkpoint(check_tree(doc["tree"], where), metadata)


def _read(path: Path, max_bytes: int) -> Checkpoint:
    where = repr(str(path))
    data = read_file(path, max_bytes)
    if len(data) < _HEADER or data[: len(MAGIC)] != MAGIC:
        raise CheckpointError(
            f"{where} is not a lopt checkpoint (bad header); it may be truncated or "
            "written by something else."
        )
    digest, payload = data[len(MAGIC) : _HEADER], data[_HEADER:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(
            f"Checkpoint {where} is corrupted or truncated (checksum mismatch); "
            "restore it from another copy."
        )
    return _decode(payload, where)


def load_metadata(
    path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, Any]:
    """Reads the metadata of a checkpoint (the whole file is checked as by `load`).

    Args:
      path: the file.
      max_bytes: refuse files larger than this (`DEFAULT_MAX_BYTES`, 256 MiB).

    Returns:
      The metadata dict (JSON values); read its fields with `metadata_value`.

    Raises:
      CheckpointError: as `load`.
    """
    return _read(Path(path), max_bytes).metadata


def load(
    path: str | os.PathLike[str], like: Any = None, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> Checkpoint:
    """Reads a checkpoint written by `save`, trusting nothing in the file.

    Args:
      path: the file.
      like: optional pytree with the expected structure; the result then has its
        exact tree type (dataclasses, tuples, ...), and leaf shapes (and dtypes, for
        leaves of `like` that have one) are checked.
      max_bytes: refuse files larger than this (`DEFAULT_MAX_BYTES`, 256 MiB); raise
        it to read a larger file you trust.

    Returns:
      `Checkpoint(tree, metadata)`. Without `like`, the tree is nested dicts of
      read-only numpy arrays (and None).

    Raises:
      CheckpointError: the file is missing, not a regular file, larger than
        `max_bytes`, corrupted, truncated or malformed (the message names the
        problem, and for a bad leaf its path), or its structure does not match
        `like` (the message names the first mismatching path).
    """
    tree, meta = _read(Path(path), max_bytes)
    if like is None:
        return Checkpoint(tree, meta)
    expected = serialization.to_state_dict(like)
    diff = first_difference(_shapes(expected), _shapes(tree)) or _dtype_difference(expected, tree)
    if diff is not None:
        raise CheckpointError(f"Checkpoint {str(path)!r} does not match the expected tree: {diff}.")
    return Checkpoint(serialization.from_state_dict(like, tree), meta)


def _shapes(tree: Any) -> Any:
    """The tree with every leaf replaced by its shape (nothing the size of a leaf is made)."""
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.int8), tree)


def _dtype_difference(expected: Any, got: Any) -> str | None:
    """The first path (of two trees of one structure) whose leaves' dtypes differ."""
    a = jax.tree_util.tree_leaves_with_path(expected)
    b = jax.tree_util.tree_leaves(got)
    for (p, want), have in zip(a, b, strict=True):
        want_dtype = getattr(want, "dtype", None)
        if want_dtype is not None and np.dtype(want_dtype) != np.dtype(have.dtype):
            return f"path {path_str(p)} has dtype {np.dtype(have.dtype)}, expected {np.dtype(want_dtype)}"
    return None


# -- reading metadata -----------------------------------------------------------------
_MISSING: Any = object()
_KIND_NAMES = {
    bool: "a bool",
    int: "an int",
    float: "a number",
    str: "a string",
    dict: "a JSON object",
    list: "a JSON list",
}


def metadata_value(
    metadata: Mapping[str, Any],
    key: str,
    kind: type[T],
    path: str | os.PathLike[str],
    *,
    default: Any = _MISSING,
) -> T:
    """One field of a checkpoint's metadata, checked to be of `kind`.

    Metadata comes from the file, so code acting on it (resuming at the recorded
    step, say) should read it through this: a wrong value then raises a
    `CheckpointError` naming the file, the field and what it holds, instead of a
    TypeError or a silent misuse later.

    Args:
      metadata: the metadata, from `load` or `load_metadata`.
      key: the field.
      kind: `bool`, `int` (a bool is not an int here), `float` (an int is accepted
        and returned as a float), `str`, `dict` or `list`.
      path: the file, for the message.
      default: returned when the field is absent; without it, an absent field raises.

    Returns:
      The value.

    Raises:
      CheckpointError: the field is absent (and no default was given) or is not a
        `kind`.
      ValueError: `kind` is not one of the kinds above.

    Example:
      >>> meta = load_metadata("run/checkpoint.lopt")
      >>> step = metadata_value(meta, "step", int, "run/checkpoint.lopt")
    """
    if kind not in _KIND_NAMES:
        raise ValueError(
            f"metadata_value: kind must be one of {', '.join(k.__name__ for k in _KIND_NAMES)}, "
            f"got {kind!r}."
        )
    fix = (
        "the file was not written by this version of lopt, or was edited; use a checkpoint "
        "written by lopt_core.save."
    )
    if key not in metadata:
        if default is not _MISSING:
            return cast(T, default)
        raise CheckpointError(f"{path}: metadata has no field {key!r}; {fix}")
    value = metadata[key]
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise CheckpointError(
            f"{path}: metadata field {key!r} must be {_KIND_NAMES[kind]}, got {shown}; {fix}"
        )
    return cast(T, value)
