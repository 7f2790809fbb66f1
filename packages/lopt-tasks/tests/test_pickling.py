"""Every registered task and family pickles, and the copy computes what the original does.

This is what the Ray backend needs: it ships the estimators, with their task
family and its datasets, to worker processes with cloudpickle. Plain `pickle` is
checked too, so nothing relies on cloudpickle shipping closures by value. The
TFDS-backed tasks run on `tfds.testing.mock_data` (the `mock_data` fixture), so
every registered task and family is built and checked offline.
"""

from __future__ import annotations

import pickle

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

import lopt_core
from lopt_core import SPLITS, ArraySplit
from lopt_tasks import LazyArraySplit, digits_datasets, quadratics, text, tfds_data

try:
    import cloudpickle
except ImportError:  # the Ray backend's serializer; plain pickle is checked either way
    cloudpickle = None

PICKLERS = [pickle] if cloudpickle is None else [pickle, cloudpickle]


@pytest.fixture(scope="module")
def mock_data(tmp_path_factory):
    """TFDS replaced by random mock data (200 examples per split: enough text for the
    64-byte windows of the TFDS language-model tasks); data_dir is an empty folder.

    One mock for the module, so the tasks on one dataset share its loaded splits.
    """
    caches = (tfds_data._load_split, text._tfds_text)
    for cache in caches:
        cache.cache_clear()
    with pytest.MonkeyPatch.context() as patch, tfds.testing.mock_data(num_examples=200):
        patch.setenv("LOPT_DATA_DIR", str(tmp_path_factory.mktemp("empty_data_dir")))
        yield
    for cache in caches:
        cache.cache_clear()


_CACHE_OPTIONS = {
    "jax_compilation_cache_dir": None,  # set to a temporary folder by the fixture
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": -1,
}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """A compilation cache for this module, so that a copy costs no compilation.

    A copy jits the very programs its original did (same configuration, same
    shapes), so it finds them in the cache; restored to no cache afterwards.
    """
    from jax.experimental.compilation_cache import compilation_cache as cc

    saved = {name: getattr(jax.config, name) for name in _CACHE_OPTIONS}
    options = {**_CACHE_OPTIONS, "jax_compilation_cache_dir": str(tmp_path_factory.mktemp("xla"))}
    for name, value in options.items():
        jax.config.update(name, value)
    cc.reset_cache()
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    cc.reset_cache()


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _assert_same(expected, got):
    assert jax.tree_util.tree_structure(expected) == jax.tree_util.tree_structure(got)
    for a, b in zip(_leaves(expected), _leaves(got), strict=True):
        np.testing.assert_array_equal(a, b)


def _results(task, key):
    """A task's params, one keyed batch, one next() batch and the loss on the keyed batch."""
    k_init, k_data, k_loss = jax.random.split(key, 3)
    params, state = task.init_with_state(k_init)
    ds = task.datasets
    batch = nxt = None
    if ds is not None:
        batch = ds.sample("train", k_data) if ds.keyed else next(ds.train)
        nxt = next(ds.outer_valid)
    loss, _ = task.loss_with_state(params, state, k_loss, batch)
    return {"params": params, "batch": batch, "next": nxt, "loss": loss}


def _ships_no_device_arrays(data: bytes) -> bool:
    # A jax.Array pickles through jax's _reconstruct_array; numpy arrays do not.
    return b"_reconstruct_array" not in data


@pytest.mark.parametrize("name", lopt_core.list_tasks())
def test_every_task_pickles_and_the_copy_gives_the_same_batch_and_loss(name, mock_data):
    task = lopt_core.get_task(name)
    dumped = {p.__name__: p.dumps(task) for p in PICKLERS}
    assert _ships_no_device_arrays(dumped["pickle"]), name
    expected = _results(task, jax.random.PRNGKey(3))
    for pickler_name, data in dumped.items():
        copy = pickle.loads(data)
        assert type(copy) is type(task) and copy.name == task.name, pickler_name
        _assert_same(expected, _results(copy, jax.random.PRNGKey(3)))


@pytest.mark.parametrize("name", lopt_core.list_task_families())
def test_every_family_pickles_and_the_copy_samples_the_same_task(name, mock_data):
    family = lopt_core.get_task_family(name)
    dumped = {p.__name__: p.dumps(family) for p in PICKLERS}
    assert _ships_no_device_arrays(dumped["pickle"]), name
    key = jax.random.PRNGKey(4)
    cfg = family.sample(key)
    expected = _results(family.task_fn(cfg), key)
    for pickler_name, data in dumped.items():
        copy = pickle.loads(data)
        assert type(copy) is type(family) and copy.name == family.name, pickler_name
        copy_cfg = copy.sample(key)
        _assert_same(cfg, copy_cfg)
        _assert_same(expected, _results(copy.task_fn(copy_cfg), key))


def test_a_loaded_lazy_split_pickles_as_its_loader_and_reads_again():
    ds = digits_datasets(batch_size=4)
    unloaded = pickle.dumps(ds)
    key = jax.random.PRNGKey(0)
    batch = ds.sample("train", key)
    assert all(isinstance(ds.split(s), LazyArraySplit) for s in SPLITS)
    assert ds.train.loaded and ds.train.num_examples == 1150
    loaded = pickle.dumps(ds)
    # The 1150 training images alone are 294 KB as float32; the pickle holds none.
    assert len(loaded) == len(unloaded) < 10_000
    copy = pickle.loads(loaded)
    assert not copy.train.loaded
    _assert_same(batch, copy.sample("train", key))
    assert copy.train.loaded and copy.train.num_examples == 1150
    # The copy has a lock and a jitted next() of its own, and continues the key sequence.
    assert copy.train._lock is not ds.train._lock
    _assert_same(next(ds.test), next(copy.test))


def test_an_array_split_pickles_its_arrays_as_numpy_and_continues_its_sequence():
    x = np.arange(40.0, dtype=np.float32).reshape(20, 2)
    # A module-level transform (batch -> batch["x"]), so plain pickle can name it.
    split = ArraySplit({"x": x}, batch_size=3, seed=5, transform=quadratics._rows)
    next(split)
    state = split.__getstate__()
    assert type(state["arrays"]["x"]) is np.ndarray and type(state["_key"]) is np.ndarray
    assert "_sample_jit" not in state
    copy = pickle.loads(pickle.dumps(split))
    assert isinstance(copy.arrays["x"], jax.Array)
    np.testing.assert_array_equal(np.asarray(copy.arrays["x"]), x)
    assert copy.transform is quadratics._rows
    assert copy.num_examples == 20 and copy.batch_size == 3
    _assert_same(next(split), next(copy))
    _assert_same(split.sample(jax.random.PRNGKey(1)), copy.sample(jax.random.PRNGKey(1)))
