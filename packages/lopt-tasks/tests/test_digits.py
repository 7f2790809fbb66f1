import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core
from lopt_tasks import ImageMLP_Digits8_Relu32, LazyArraySplit, digits_datasets
from lopt_tasks._common import softmax_cross_entropy
from lopt_tasks.digits import digits_split_indices


def test_digits_splits_are_fixed_disjoint_and_cover_everything():
    idx = digits_split_indices()
    sizes = {k: len(v) for k, v in idx.items()}
    assert sizes == {"train": 1150, "inner_valid": 144, "outer_valid": 144, "test": 359}
    everything = np.concatenate(list(idx.values()))
    assert np.array_equal(np.sort(everything), np.arange(1797))
    again = digits_split_indices()
    assert all(np.array_equal(idx[k], again[k]) for k in idx)
    # The permutation is numpy's PCG64 stream, which numpy keeps stable.
    assert idx["train"][:5].tolist() == np.random.default_rng(0).permutation(1797)[:5].tolist()


def test_digits_batches_have_reference_shapes_and_range():
    ds = digits_datasets(batch_size=128)
    assert ds.extra_info["num_classes"] == 10
    assert ds.abstract_batch["image"].shape == (128, 8, 8, 1)
    assert ds.abstract_batch["label"].dtype == jnp.int32
    batch = next(ds.train)
    assert batch["image"].shape == (128, 8, 8, 1)
    assert batch["image"].dtype == jnp.float32
    assert batch["label"].shape == (128,)
    assert batch["label"].dtype == jnp.int32
    assert float(batch["image"].min()) >= 0.0
    assert float(batch["image"].max()) == 1.0
    assert set(np.unique(batch["label"]).tolist()) <= set(range(10))
    assert ds.train.num_examples == 1150
    assert ds.test.num_examples == 359


def test_digits_are_lazy_until_the_first_batch():
    ds = digits_datasets(batch_size=16)
    assert all(isinstance(ds.split(s), lopt_core.ArraySplit) for s in lopt_core.SPLITS)
    assert all(isinstance(ds.split(s), LazyArraySplit) for s in lopt_core.SPLITS)
    task = ImageMLP_Digits8_Relu32()
    task.init(jax.random.PRNGKey(0))
    assert not task.datasets.train.loaded
    assert not ds.train.loaded
    next(ds.train)
    assert ds.train.loaded
    assert not ds.test.loaded


def test_digits_keyed_sampling_inside_jit_is_reproducible():
    ds = digits_datasets(batch_size=32)
    assert ds.keyed
    sample = jax.jit(lambda k: ds.sample("train", k))
    a = sample(jax.random.PRNGKey(3))
    b = sample(jax.random.PRNGKey(3))
    c = sample(jax.random.PRNGKey(4))
    assert np.array_equal(a["image"], b["image"])
    assert np.array_equal(a["label"], b["label"])
    assert not np.array_equal(a["label"], c["label"])
    first = [next(digits_datasets(batch_size=32, seed=5).train)["label"] for _ in range(2)]
    assert np.array_equal(first[0], first[1])


def test_digits_resize():
    ds = digits_datasets(batch_size=4, image_size=16)
    batch = next(ds.train)
    assert batch["image"].shape == (4, 16, 16, 1)
    assert ds.abstract_batch["image"].shape == (4, 16, 16, 1)
    with pytest.raises(ValueError, match="image_size must be"):
        digits_datasets(image_size=(8, 8, 8))


def test_sgd_on_digits_mlp_reaches_low_test_loss():
    """SGD at lr 0.1 for 1000 steps, the loop as one lax.scan with keyed batches."""
    task = ImageMLP_Digits8_Relu32()
    ds = task.datasets
    params = task.init(jax.random.PRNGKey(0))

    @jax.jit
    def train(params, key):
        def step(p, k):
            k_data, k_loss = jax.random.split(k)
            loss, grads = jax.value_and_grad(task.loss)(p, k_loss, ds.sample("train", k_data))
            return jax.tree_util.tree_map(lambda x, g: x - 0.1 * g, p, grads), loss

        return jax.lax.scan(step, params, jax.random.split(key, 1000))

    params, losses = train(params, jax.random.PRNGKey(1))
    test = ds.test.arrays
    logits_loss = task.loss(params, jax.random.PRNGKey(2), test)
    full_test_loss = float(
        softmax_cross_entropy(task._mod.apply(params, None, test["image"]), test["label"])
    )
    print(f"digits SGD lr=0.1, 1000 steps: test loss {full_test_loss:.4f}")
    assert float(losses[0]) > 2.0
    assert float(jnp.mean(losses[-50:])) < float(jnp.mean(losses[:50]))
    assert full_test_loss == pytest.approx(float(logits_loss), rel=1e-5)
    assert full_test_loss < 0.5


def test_digits_through_tfds_array_record_match_the_in_memory_splits(tmp_path):
    from lopt_core import cli

    assert cli.main(["data", "prepare", "lopt_digits", "--data-dir", str(tmp_path)]) == 0
    # Written without TensorFlow (the test environment does not install it).
    assert sys.modules.get("tensorflow") is None
    via_tfds = digits_datasets(batch_size=8, source="tfds", data_dir=str(tmp_path))
    in_memory = digits_datasets(batch_size=8)
    assert via_tfds.abstract_batch["image"].shape == (8, 8, 8, 1)
    for split in lopt_core.SPLITS:
        a, b = via_tfds.split(split).arrays, in_memory.split(split).arrays
        assert a["image"].shape == b["image"].shape, split
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    with pytest.raises(ValueError, match="source must be"):
        digits_datasets(source="disk")
