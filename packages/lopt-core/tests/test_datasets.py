import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt_core import ArraySplit


def _split(**kw):
    return ArraySplit({"x": np.arange(20.0), "y": np.arange(20) % 3}, batch_size=5, **kw)


def test_same_key_same_batch_inside_and_outside_jit():
    split = _split()
    key = jax.random.PRNGKey(7)
    a = split.sample(key)
    b = jax.jit(split.sample)(key)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert a["x"].shape == (5,) and a["y"].dtype == jnp.int32
    # x and y stay aligned: they are drawn with the same indices.
    np.testing.assert_array_equal(np.asarray(a["x"]).astype(int) % 3, a["y"])


def test_iteration_is_reproducible_from_the_seed():
    xs1 = [np.asarray(next(_split(seed=3))["x"]) for _ in range(1)]
    s1, s2 = _split(seed=3), _split(seed=3)
    for _ in range(3):
        np.testing.assert_array_equal(next(s1)["x"], next(s2)["x"])
    assert not np.array_equal(next(_split(seed=4))["x"], xs1[0])


def test_transform_and_abstract_batch():
    split = ArraySplit(
        {"x": np.ones((10, 2, 2))}, batch_size=4, transform=lambda b: {"x": b["x"] * 2}
    )
    assert split.abstract_batch["x"].shape == (4, 2, 2)
    np.testing.assert_array_equal(split.sample(jax.random.PRNGKey(0))["x"], 2 * np.ones((4, 2, 2)))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="share their leading dimension"):
        ArraySplit({"x": np.ones(3), "y": np.ones(4)}, batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        ArraySplit({"x": np.ones(3)}, batch_size=0)
    with pytest.raises(ValueError, match="empty mapping"):
        ArraySplit({}, batch_size=2)
    with pytest.raises(ValueError, match="zero examples"):
        ArraySplit({"x": np.ones((0, 2))}, batch_size=2)
