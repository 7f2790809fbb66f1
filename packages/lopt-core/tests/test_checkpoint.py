import os

import flax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt_core import CheckpointError, LearnedOptimizer, checkpoint, load, load_metadata, save


@flax.struct.dataclass
class State:
    theta: dict
    step: jnp.ndarray


class Producer(LearnedOptimizer):
    def __init__(self, hidden_size=8, step_mult=0.01):
        self.hidden_size = hidden_size
        self._step_mult = step_mult

    def init(self, key):
        return {"w": jnp.zeros(self.hidden_size)}

    def opt_fn(self, theta, is_training=False):
        raise AssertionError("not used: this learned optimizer only produces checkpoints")


def _state():
    return State(
        {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3, jnp.bfloat16)}, jnp.asarray(5)
    )


def test_roundtrip_restores_types_values_and_dtypes(tmp_path):
    path = save(tmp_path / "ck.lopt", _state(), {"note": "x"})
    tree, meta = load(path, like=_state())
    assert isinstance(tree, State)
    np.testing.assert_array_equal(tree.theta["w"], np.arange(6.0).reshape(2, 3))
    assert tree.theta["b"].dtype == jnp.bfloat16
    assert int(tree.step) == 5
    assert meta["note"] == "x" and meta["lopt_version"]


def test_load_without_like_returns_nested_dicts(tmp_path):
    save(
        tmp_path / "ck",
        {"a": np.zeros(2, np.float32), "b": [np.ones(1, np.int32), np.ones(2, np.float32)]},
    )
    tree, _ = load(tmp_path / "ck")
    assert tree["a"].shape == (2,)
    assert tree["b"]["1"].shape == (2,)


def test_producer_class_and_config_are_recorded(tmp_path):
    save(tmp_path / "ck", {"a": np.zeros(1, np.float32)}, producer=Producer(hidden_size=4))
    meta = load_metadata(tmp_path / "ck")
    assert meta["producer"]["class"].endswith(":Producer")
    assert meta["producer"]["config"] == {"hidden_size": 4, "step_mult": 0.01}


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    old = os.umask(0o022)
    try:
        save(tmp_path / "ck", {"a": np.zeros(1, np.float32)})
    finally:
        os.umask(old)
    assert (tmp_path / "ck").stat().st_mode & 0o777 == 0o644
    save(tmp_path / "ck", {"a": np.ones(1, np.float32)})
    assert os.listdir(tmp_path) == ["ck"]
    np.testing.assert_array_equal(load(tmp_path / "ck").tree["a"], [1.0])


def test_structure_mismatch_names_the_first_path(tmp_path):
    save(tmp_path / "ck", _state())
    other = State({"w": jnp.zeros((2, 3)), "c": jnp.ones(3)}, jnp.asarray(0))
    with pytest.raises(CheckpointError, match=r"\['theta'\]\['b'\].*missing|\['theta'\]\['c'\]"):
        load(tmp_path / "ck", like=other)
    wrong_shape = State({"w": jnp.zeros((3, 3)), "b": jnp.ones(3)}, jnp.asarray(0))
    with pytest.raises(
        CheckpointError, match=r"\['theta'\]\['w'\] has shape \(2, 3\), expected \(3, 3\)"
    ):
        load(tmp_path / "ck", like=wrong_shape)


def test_truncated_and_corrupted_files_raise(tmp_path):
    path = save(tmp_path / "ck", _state())
    data = path.read_bytes()
    (tmp_path / "trunc").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load(tmp_path / "trunc")
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF
    (tmp_path / "flip").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load(tmp_path / "flip")
    (tmp_path / "junk").write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="not a lopt checkpoint"):
        load(tmp_path / "junk")
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "missing")


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save(tmp_path / "ck", {"a": np.zeros(1, np.float32)}, {"bad": object()})
    assert not (tmp_path / "ck").exists()


def test_config_of_prefers_a_config_dict():
    class WithConfig:
        config = {"a": 1}

    assert checkpoint.config_of(WithConfig()) == {"a": 1}
