"""In-memory data reaches compiled code as arguments: ArraySplit pytrees and jit_with_data."""

import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt_core import ArraySplit, Datasets, array_splits, bind_arrays, jit_with_data

KEY = jax.random.PRNGKey(3)


def _split(n=20, offset=0.0, seed=0):
    return ArraySplit({"x": np.arange(n, dtype=np.float32) + offset}, batch_size=4, seed=seed)


def _main_signature(lowered):
    """The argument list of the lowered module's main function."""
    text = lowered.as_text()
    return re.search(r"func\.func public @main\((.*?)\) ->", text).group(1), text


def test_a_split_is_a_pytree_of_its_arrays():
    split = _split()
    leaves, treedef = jax.tree_util.tree_flatten(split)
    assert len(leaves) == 1
    np.testing.assert_array_equal(leaves[0], np.arange(20.0))
    copy = jax.tree_util.tree_unflatten(treedef, [leaves[0] * 2])
    assert (copy.batch_size, copy.num_examples) == (4, 20)
    np.testing.assert_array_equal(copy.sample(KEY)["x"], 2 * split.sample(KEY)["x"])
    # Passed to jit, the split is an argument: the same batch as outside jit.
    np.testing.assert_array_equal(
        jax.jit(lambda s, k: s.sample(k))(split, KEY)["x"], split.sample(KEY)["x"]
    )


def test_next_continues_the_key_sequence_it_always_had():
    split = _split(seed=5)
    key = jax.random.PRNGKey(5)
    for _ in range(3):
        key, k = jax.random.split(key)
        np.testing.assert_array_equal(next(split)["x"], split.sample(k)["x"])


def test_jit_with_data_passes_a_closed_over_split_as_an_argument():
    split = _split(n=1000)

    def total(key):
        return split.sample(key)["x"].sum()

    f = jit_with_data(total)
    assert float(f(KEY)) == float(total(KEY))
    args, text = _main_signature(f.lower(KEY))
    assert "tensor<1000xf32>" in args
    # No constant holds the data; plain jax.jit bakes it in (as 8 hex digits a float).
    _, baked = _main_signature(jax.jit(total).lower(KEY))
    assert 'dense<"0x' not in text and 'dense<"0x' in baked
    assert len(baked) - len(text) > 8 * 1000


@dataclasses.dataclass(frozen=True)
class _Holder:
    """A static configuration that holds data, as a task family or an estimator does."""

    datasets: Datasets
    scale: float

    def loss(self, key):
        return self.scale * self.datasets.sample("train", key)["x"].sum()


def _datasets(offset=0.0):
    return Datasets(*(_split(offset=offset + i, seed=i) for i in range(4)))


def test_static_arguments_are_searched_and_each_call_reads_its_own_data():
    @functools.partial(jit_with_data, static_argnums=0)
    def loss(holder, key):
        return holder.loss(key)

    a, b = _Holder(_datasets(), 2.0), _Holder(_datasets(100.0), 2.0)
    assert float(loss(a, KEY)) == float(a.loss(KEY))
    assert float(loss(b, KEY)) == float(b.loss(KEY)) != float(a.loss(KEY))
    # Datasets hash by identity, so b is a second static value: two programs.
    assert loss._cache_size() == 2
    # The train split is the one argument: the splits loss never reads are pruned.
    args, text = _main_signature(loss.lower(a, KEY))
    assert args == "%arg0: tensor<20xf32>, %arg1: tensor<2xui32>"
    assert 'dense<"0x' not in text


def test_array_splits_walks_closures_partials_methods_slots_and_containers():
    s1, s2, s3 = _split(), _split(offset=1.0), _split(offset=2.0)

    class Slotted:
        __slots__ = ("inner",)

        def __init__(self, inner):
            self.inner = inner

    def fn(key, extra):
        return s1.sample(key)

    holder = _Holder(Datasets(s1, s2, s3, s1), 1.0)
    cases = [
        ((fn,), (s1,)),
        ((functools.partial(lambda a, b: None, s2, b={"k": [s3]}),), (s2, s3)),
        ((holder.loss,), (s1, s2, s3)),
        ((Slotted((s3, s3)),), (s3,)),
        (({"a": s2}, [s1]), (s2, s1)),
        ((np.zeros(3), "text", 3), ()),
    ]
    for roots, want in cases:
        got = array_splits(*roots)
        assert [id(s) for s in got] == [id(s) for s in want], roots


def test_module_level_splits_named_by_the_code_are_found():
    got = array_splits(_uses_global)
    assert [id(s) for s in got] == [id(_GLOBAL_SPLIT)]
    args, _ = _main_signature(jit_with_data(_uses_global).lower(KEY))
    assert "tensor<7xf32>" in args


_GLOBAL_SPLIT = ArraySplit({"x": np.ones(7, np.float32)}, batch_size=2)


def _uses_global(key):
    return _GLOBAL_SPLIT.sample(key)["x"]


def test_bind_arrays_substitutes_and_restores():
    split = _split()
    with bind_arrays([split], [{"x": jnp.full(20, 9.0)}]):
        np.testing.assert_array_equal(split.sample(KEY)["x"], np.full(4, 9.0))
    assert float(split.sample(KEY)["x"].max()) < 20


def test_bad_arguments_are_named():
    with (
        pytest.raises(ValueError, match=r"bind_arrays: got 1 splits but 2 array mappings"),
        bind_arrays([_split()], [{}, {}]),
    ):
        pass
    with pytest.raises(ValueError, match=r"static_argnums must be non-negative ints; got -1"):
        jit_with_data(lambda x: x, static_argnums=-1)
