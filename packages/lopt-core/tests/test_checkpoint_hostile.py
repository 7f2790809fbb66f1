"""Crafted checkpoint files: every one is refused with a CheckpointError, cheaply.

Each case builds a file (correctly checksummed unless the case is about the
header or checksum) from an arbitrary msgpack payload and asserts that `load`
and `load_metadata` raise a CheckpointError naming the problem, without
allocating more than a small multiple of the file's size (tracemalloc traces
numpy's buffers and msgpack's objects alike).
"""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
import msgpack
import numpy as np
import pytest

from lopt_core import CheckpointError, checkpoint, load, load_metadata, save
from lopt_core.checkpoint import ALLOWED_DTYPES, MAGIC, metadata_value

MiB = 2**20


# -- building files ---------------------------------------------------------------------
def checksummed(payload: bytes) -> bytes:
    """The bytes of a checkpoint file holding `payload`, with a valid checksum."""
    return MAGIC + hashlib.sha256(payload).digest() + payload


def write(tmp_path: Path, payload: bytes, name: str = "crafted.lopt") -> Path:
    path = tmp_path / name
    path.write_bytes(checksummed(payload))
    return path


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def array_ext(shape: Any, dtype: Any, data: Any, code: int = 1) -> msgpack.ExtType:
    """flax's encoding of an ndarray: ext type 1 holding packb((shape, dtype name, bytes))."""
    return msgpack.ExtType(code, pack([shape, dtype, data]))


def real(arr: np.ndarray) -> msgpack.ExtType:
    return array_ext(list(arr.shape), arr.dtype.name, arr.tobytes())


def doc(tree: Any, metadata: Any = "{}", **extra: Any) -> bytes:
    """A payload: `metadata` (normally a JSON string) and `tree`, as given."""
    return pack({"metadata": metadata, "tree": tree, **extra})


def nested_dicts(depth: int) -> Any:
    tree: Any = real(np.zeros(1, np.float32))
    for _ in range(depth):
        tree = {"a": tree}
    return tree


def chunked(shape: list[int], chunks: list[Any]) -> dict[str, Any]:
    return {
        "__msgpack_chunked_array__": True,
        "shape": {str(i): d for i, d in enumerate(shape)},
        "chunks": {str(i): c for i, c in enumerate(chunks)},
    }


F32 = real(np.arange(3, dtype=np.float32))


class Case(NamedTuple):
    name: str
    build: Callable[[Path], Path]
    match: str


def payload_case(name: str, payload: bytes, match: str) -> Case:
    return Case(name, lambda tmp: write(tmp, payload), match)


def tree_case(name: str, tree: Any, match: str) -> Case:
    return payload_case(name, doc({"w": tree}), match)


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "fifo")
    return tmp / "fifo"


def _symlink_to_fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "fifo2")
    (tmp / "link.lopt").symlink_to(tmp / "fifo2")
    return tmp / "link.lopt"


def _sparse_huge(tmp: Path) -> Path:
    path = tmp / "huge.lopt"
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.truncate(300 * MiB)  # sparse: no disk, but 300 MiB to read
    return path


def _flipped(tmp: Path) -> Path:
    data = bytearray(checksummed(doc({"w": F32})))
    data[-2] ^= 0xFF
    (tmp / "flip.lopt").write_bytes(bytes(data))
    return tmp / "flip.lopt"


def _truncated(tmp: Path) -> Path:
    data = checksummed(doc({"w": F32}))
    (tmp / "trunc.lopt").write_bytes(data[: len(data) - 7])
    return tmp / "trunc.lopt"


def _raw(name: str, data: bytes) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        (tmp / name).write_bytes(data)
        return tmp / name

    return build


NOT_MSGPACK = "not a valid msgpack document"
BAD_LEAF = r"the leaf \['w'\] is"

CASES = [
    # -- what is not a regular file, or too large, or not a checkpoint at all
    Case("fifo", _fifo, "is a FIFO .*not a regular file"),
    Case("symlink-to-fifo", _symlink_to_fifo, "is a FIFO"),
    Case("dev-zero", lambda tmp: Path("/dev/zero"), "is a character device"),
    Case("directory", lambda tmp: tmp, "is a directory"),
    Case(
        "sparse-300MiB", _sparse_huge, r"over the limit of max_bytes=268435456.*max_bytes=314572800"
    ),
    Case("missing", lambda tmp: tmp / "nope.lopt", "does not exist"),
    Case("empty", _raw("empty", b""), "not a lopt checkpoint"),
    Case("wrong-magic", _raw("magic", b"PK\x03\x04" + bytes(60)), "not a lopt checkpoint"),
    Case("truncated", _truncated, "corrupted or truncated"),
    Case("flipped-byte", _flipped, "checksum mismatch"),
    # -- msgpack garbage and bombs
    payload_case("reserved-byte", b"\xc1", NOT_MSGPACK),
    payload_case("empty-payload", b"", NOT_MSGPACK),
    payload_case("trailing-bytes", doc({"w": F32}) + b"\x00", NOT_MSGPACK),
    payload_case("incomplete", doc({"w": F32})[:-3], NOT_MSGPACK),
    payload_case("map-nesting-bomb", b"\x81\xa1k" * 5000 + b"\xc0", NOT_MSGPACK),
    payload_case("list-nesting-bomb", b"\x91" * 100_000 + b"\xc0", NOT_MSGPACK),
    # Each array32 header declares 4999 items: msgpack allocates a list that long
    # before reading it (flax's reader: 40 MB from this 5 KB payload).
    payload_case(
        "list-preallocation-bomb", (b"\xdd" + struct.pack(">I", 4999)) * 1000, NOT_MSGPACK
    ),
    payload_case("huge-map-header", b"\xdf" + struct.pack(">I", 2**31) + b"\xa1k", NOT_MSGPACK),
    payload_case("huge-str-header", b"\xdb" + struct.pack(">I", 2**31) + b"abc", NOT_MSGPACK),
    payload_case("huge-ext-header", b"\xc9" + struct.pack(">I", 2**31) + b"\x01ab", NOT_MSGPACK),
    payload_case("int-map-key", pack({1: 2}), NOT_MSGPACK),
    payload_case("bad-utf8", b"\x82\xa8metadata\xa2\xff\xfe\xa4tree\xc0", NOT_MSGPACK),
    # -- the document's shape
    payload_case("payload-is-list", pack([1, 2]), "must be a map of 'metadata' and 'tree'"),
    payload_case("payload-is-str", pack("hello"), "must be a map of 'metadata' and 'tree'"),
    payload_case("no-tree", pack({"metadata": "{}"}), "must be a map of 'metadata' and 'tree'"),
    payload_case("extra-entry", doc({}, extra=1), "must be a map of 'metadata' and 'tree'"),
    # -- the metadata
    payload_case("metadata-int", doc({}, 5), "metadata is a Python int .*not a JSON string"),
    payload_case("metadata-bytes", doc({}, b"{}"), "metadata is a bytes string, not a JSON string"),
    payload_case(
        "metadata-array", doc({}, F32), "metadata is a float32.3,. array, not a JSON string"
    ),
    payload_case("metadata-not-json", doc({}, "{not json"), "metadata is not valid JSON"),
    payload_case("metadata-json-list", doc({}, "[1, 2]"), "must be a JSON object, got a JSON list"),
    payload_case("metadata-json-str", doc({}, '"x"'), "must be a JSON object, got a JSON str"),
    payload_case(
        "metadata-json-null", doc({}, "null"), "must be a JSON object, got a JSON NoneType"
    ),
    payload_case("metadata-recursion-bomb", doc({}, "[" * 200_000), "metadata nests deeper"),
    payload_case(
        "metadata-deep", doc({}, '{"a": ' * 100 + "1" + "}" * 100), "metadata nests deeper than 64"
    ),
    payload_case("metadata-huge-int", doc({}, '{"step": ' + "9" * 10_000 + "}"), "not valid JSON"),
    # -- the tree's leaves: dtypes, Python values, extension types
    tree_case("float64", real(np.zeros(3)), BAD_LEAF + " a float64 array"),
    tree_case("int8", real(np.zeros(3, np.int8)), BAD_LEAF + " a int8 array"),
    tree_case("int64", real(np.zeros(3, np.int64)), BAD_LEAF + " a int64 array"),
    tree_case("uint8", real(np.zeros(3, np.uint8)), BAD_LEAF + " a uint8 array"),
    tree_case("complex64", real(np.zeros(3, np.complex64)), BAD_LEAF + " a complex64 array"),
    tree_case("object-dtype", array_ext([1], "object", b"\x00" * 8), BAD_LEAF + " a object array"),
    tree_case("unicode-dtype", real(np.array(["abc"])), BAD_LEAF + " a str96 array"),
    tree_case("datetime", real(np.zeros(2, "datetime64[s]")), BAD_LEAF + " a datetime64"),
    tree_case("python-str", "rm -rf /", BAD_LEAF + " a Python str"),
    tree_case("python-float", 1.5, BAD_LEAF + " a Python float"),
    tree_case("python-int", 7, BAD_LEAF + " a Python int"),
    tree_case("python-bool", True, BAD_LEAF + " a Python bool"),
    tree_case("list", [1, 2, 3], BAD_LEAF + " a list"),
    tree_case("bytes", b"\x00" * 16, BAD_LEAF + " a bytes"),
    tree_case("native-complex-ext", msgpack.ExtType(2, pack([1.0, 2.0])), "extension of type 2"),
    tree_case("unknown-ext", msgpack.ExtType(42, b"payload"), "extension of type 42, not an array"),
    tree_case("ext-garbage", msgpack.ExtType(1, b"\xc1\xc1"), "encoding is malformed"),
    tree_case("ext-not-triple", msgpack.ExtType(1, pack([[3], "float32"])), "not \\(shape, dtype"),
    tree_case("ext-inner-list-bomb", msgpack.ExtType(1, b"\xdd\xff\xff\xff\xff"), "malformed"),
    tree_case("ext-dtype-int", array_ext([1], 7, b"\x00" * 4), "dtype is int, not a dtype name"),
    tree_case("ext-data-str", array_ext([1], "float32", "abcd"), "data is str, not bytes"),
    tree_case(
        "declared-1e9-values-holds-4-bytes",
        array_ext([10**9], "float32", b"\x00" * 4),
        r"float32\(1000000000,\) array, 4000000000 bytes, but holds 4 bytes",
    ),
    tree_case(
        "declared-2**124-values",
        array_ext([2**62, 2**62], "float32", b""),
        "invalid shape",
    ),
    tree_case("negative-dim", array_ext([-1], "float32", b""), "invalid shape"),
    tree_case("float-dim", array_ext([1.0], "float32", b"\x00" * 4), "invalid shape"),
    tree_case("bool-dim", array_ext([True], "float32", b"\x00" * 4), "invalid shape"),
    tree_case("40-dims", array_ext([1] * 40, "float32", b"\x00" * 4), "malformed"),
    tree_case(
        "npscalar-with-shape", array_ext([3], "float32", b"\x00" * 12, code=3), "invalid shape"
    ),
    tree_case(
        "chunked-declares-1e12", chunked([10**12], [F32]), "chunked array .* malformed.*needs"
    ),
    tree_case("chunked-no-chunks", {"__msgpack_chunked_array__": True, "shape": {}}, "malformed"),
    tree_case("chunked-chunk-is-str", chunked([3], ["abc"]), "chunk 0 is a Python str"),
    tree_case(
        "chunked-mixed-dtypes",
        chunked([4], [real(np.zeros(2, np.float32)), real(np.zeros(2, np.int32))]),
        "chunk 1 is int32",
    ),
    # -- the tree's shape
    payload_case("non-string-key", doc({b"k": F32}), r"has a non-string key b'k'"),
    payload_case("tree-100-deep", doc(nested_dicts(100)), "tree nests deeper than 64 levels"),
    payload_case("tree-is-str", doc("tree"), r"the leaf <root> is a Python str"),
]


def _bound(path: Path) -> int:
    """Allowed peak allocation: a small multiple of the file's size plus a fixed 1 MiB."""
    size = path.stat().st_size if path.is_file() else 0
    return 4 * size + MiB


@pytest.fixture(autouse=True)
def _no_blocking():
    """A FIFO or device that blocked the reader would hang the suite: fail instead."""
    if not hasattr(signal, "SIGALRM"):  # not on Windows
        yield
        return
    old = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the reader blocked"))
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_the_table_is_large_and_its_names_unique():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("reader", [load, load_metadata], ids=["load", "load_metadata"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_crafted_file_is_refused_cheaply(tmp_path, case, reader):
    path = case.build(tmp_path)
    bound = _bound(path)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(CheckpointError, match=case.match) as info:
            reader(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 10
    assert peak < bound, f"{case.name}: peak {peak} bytes, bound {bound}"
    assert str(path) in str(info.value)
    assert len(str(info.value)) < 2000, "a message must not echo a hostile value in full"


def test_flax_reader_would_have_allocated_the_preallocation_bomb():
    """The bound above is meaningful: flax's msgpack_restore allocates ~8000x this payload."""
    from flax import serialization

    payload = (b"\xdd" + struct.pack(">I", 4999)) * 1000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError):
            serialization.msgpack_restore(payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak > 30 * MiB


def test_a_file_over_max_bytes_names_the_limit_and_the_fix(tmp_path):
    path = save(tmp_path / "ck", {"w": np.zeros(1000, np.float32)})
    size = path.stat().st_size
    with pytest.raises(
        CheckpointError, match=rf"is {size} bytes, over the limit of max_bytes=1000"
    ):
        load(path, max_bytes=1000)
    with pytest.raises(CheckpointError, match=rf"read it with max_bytes={size} \(or more\)"):
        load_metadata(path, max_bytes=1000)
    np.testing.assert_array_equal(load(path, max_bytes=size).tree["w"], np.zeros(1000))
    with pytest.raises(ValueError, match="max_bytes must be an int"):
        load(path, max_bytes=1.5e9)


# -- what lopt writes still loads -------------------------------------------------------
def test_every_allowed_dtype_and_none_round_trip(tmp_path):
    assert {"float32", "float16", "bfloat16", "int32", "uint32", "bool"} == ALLOWED_DTYPES
    tree = {
        "f32": np.arange(3, dtype=np.float32),
        "f16": np.ones((2, 2), np.float16),
        "bf16": jnp.ones(3, jnp.bfloat16),
        "i32": jnp.asarray(5),
        "key": np.asarray([0, 42], np.uint32),  # a PRNG key
        "done": np.asarray([True, False]),  # the truncated-unroll states' flags
        "scalar": np.float32(2.5),
        "model_state": None,
        "empty": {},
    }
    save(tmp_path / "ck", tree, {"step": 3})
    got, meta = load(tmp_path / "ck")
    assert {k: got[k].dtype.name for k in tree if k not in ("model_state", "empty")} == {
        "f32": "float32",
        "f16": "float16",
        "bf16": "bfloat16",
        "i32": "int32",
        "key": "uint32",
        "done": "bool",
        "scalar": "float32",
    }
    assert got["model_state"] is None and got["empty"] == {}
    np.testing.assert_array_equal(got["key"], [0, 42])
    assert float(got["scalar"]) == 2.5 and meta["step"] == 3


def test_a_chunked_array_is_reassembled(tmp_path):
    """flax splits arrays over 1 GiB into chunks; a well-formed chunked array loads."""
    parts = [real(np.arange(4, dtype=np.float32)), real(np.arange(4, 6, dtype=np.float32))]
    path = write(tmp_path, doc({"w": chunked([2, 3], parts)}))
    np.testing.assert_array_equal(load(path).tree["w"], np.arange(6).reshape(2, 3))


def test_save_refuses_leaves_that_load_would_refuse(tmp_path):
    for tree, what in [
        ({"w": np.zeros(2)}, "a float64 array"),
        ({"w": {"v": np.zeros(2, np.int8)}}, "a int8 array"),
        ({"step": 5}, "a int"),
        ({"lr": 0.1}, "a float"),
        ({"name": "x"}, "a str"),
    ]:
        with pytest.raises(TypeError, match=f"Cannot save the tree: the leaf .* is {what}"):
            save(tmp_path / "ck", tree)
    assert not list(tmp_path.iterdir())


def test_load_with_like_checks_dtypes(tmp_path):
    save(tmp_path / "ck", {"w": np.zeros(3, np.int32)})
    with pytest.raises(CheckpointError, match=r"path \['w'\] has dtype int32, expected float32"):
        load(tmp_path / "ck", like={"w": jnp.zeros(3)})
    assert load(tmp_path / "ck", like={"w": jnp.zeros(3, jnp.int32)}).tree["w"].dtype == np.int32


def test_a_legitimate_load_stays_within_the_bound(tmp_path):
    path = save(
        tmp_path / "ck", {"w": np.zeros((256, 256), np.float32), "b": np.ones(256, np.float32)}
    )
    tracemalloc.start()
    try:
        tree, _ = load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tree["w"].shape == (256, 256)
    assert peak < _bound(path)


# -- metadata_value ---------------------------------------------------------------------
def test_metadata_value_checks_the_type_and_names_file_and_field():
    meta = {"step": 7, "bad_step": "abc", "flag": True, "lr": 1, "name": "run"}
    assert metadata_value(meta, "step", int, "ck.lopt") == 7
    assert metadata_value(meta, "lr", float, "ck.lopt") == 1.0
    assert isinstance(metadata_value(meta, "lr", float, "ck.lopt"), float)
    assert metadata_value(meta, "name", str, "ck.lopt") == "run"
    assert metadata_value(meta, "missing", int, "ck.lopt", default=0) == 0
    with pytest.raises(
        CheckpointError,
        match=r"^run/ck.lopt: metadata field 'bad_step' must be an int, got 'abc'; the file",
    ):
        metadata_value(meta, "bad_step", int, "run/ck.lopt")
    with pytest.raises(CheckpointError, match="'flag' must be an int, got True"):
        metadata_value(meta, "flag", int, "ck.lopt")
    with pytest.raises(CheckpointError, match="ck.lopt: metadata has no field 'seed'"):
        metadata_value(meta, "seed", int, "ck.lopt")
    with pytest.raises(CheckpointError, match=r"'p' must be a JSON object, got 'xxx+\.\.\.; the"):
        metadata_value({"p": "x" * 200}, "p", dict, "ck.lopt")
    with pytest.raises(ValueError, match="kind must be one of"):
        metadata_value(meta, "step", tuple, "ck.lopt")
    assert "metadata_value" in checkpoint.__all__


def test_metadata_value_reads_a_saved_step(tmp_path):
    save(tmp_path / "ck", {"w": np.zeros(1, np.float32)}, {"step": 12})
    assert metadata_value(load_metadata(tmp_path / "ck"), "step", int, tmp_path / "ck") == 12
