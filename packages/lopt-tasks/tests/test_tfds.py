import jax
import numpy as np
import pytest

import lopt_core
from lopt_tasks import (
    DatasetNotPreparedError,
    image_classification_datasets,
    tfds_data,
)


def test_image_datasets_shapes_resize_and_bw(mock_tfds):
    ds = image_classification_datasets("cifar10", batch_size=8, image_size=(8, 8))
    assert ds.abstract_batch["image"].shape == (8, 8, 8, 3)
    batch = next(ds.train)
    assert batch["image"].shape == (8, 8, 8, 3)
    assert batch["image"].dtype == np.float32
    assert batch["label"].dtype == np.int32
    assert 0.0 <= float(batch["image"].min()) <= float(batch["image"].max()) <= 1.0
    bw = image_classification_datasets(
        "cifar10", batch_size=8, image_size=16, convert_to_black_and_white=True
    )
    assert bw.abstract_batch["image"].shape == (8, 16, 16, 1)
    assert next(bw.test)["image"].shape == (8, 16, 16, 1)
    c100 = image_classification_datasets("cifar100", batch_size=4)
    assert c100.extra_info["num_classes"] == 100
    assert next(c100.outer_valid)["image"].shape == (4, 32, 32, 3)


def test_in_memory_tfds_split_is_keyed_and_lazy(mock_tfds):
    ds = image_classification_datasets("mnist", batch_size=8, image_size=8)
    assert ds.keyed
    assert not ds.train.loaded
    a = jax.jit(lambda k: ds.sample("train", k))(jax.random.PRNGKey(0))
    b = ds.sample("train", jax.random.PRNGKey(0))
    assert np.array_equal(a["image"], b["image"])
    assert ds.train.loaded
    assert ds.train.num_examples == 24


def test_streaming_split_is_reproducible(mock_tfds):
    def first_labels():
        ds = image_classification_datasets("svhn_cropped", batch_size=6, in_memory=False)
        assert not ds.keyed
        batch = next(ds.train)
        assert batch["image"].shape == (6, 32, 32, 3)
        return batch["label"]

    assert np.array_equal(first_labels(), first_labels())


def test_generic_loader_by_name_uses_metadata(mock_tfds):
    ds = image_classification_datasets("emnist/letters", batch_size=4, image_size=8)
    assert ds.extra_info["num_classes"] == 37
    assert next(ds.train)["image"].shape == (4, 8, 8, 1)


def test_generic_loader_rejects_non_image_datasets():
    with pytest.raises(ValueError, match="not an image-classification dataset"):
        image_classification_datasets("tiny_shakespeare")


def test_missing_data_error_names_dataset_dir_and_command(tmp_path):
    tfds_data._load_split.cache_clear()
    ds = image_classification_datasets("fashion_mnist", batch_size=4, data_dir=str(tmp_path))
    with pytest.raises(DatasetNotPreparedError) as info:
        next(ds.train)
    msg = str(info.value)
    assert "'fashion_mnist'" in msg
    assert str(tmp_path) in msg
    assert "lopt data prepare fashion_mnist" in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_part1_first_section_runs_on_mock_data(mock_tfds, capsys):
    # Part 1's code with only the imports changed (image_mlp -> lopt_tasks).
    from lopt_tasks import image_mlp

    key = jax.random.PRNGKey(0)
    task = image_mlp.ImageMLP_FashionMnist8_Relu32()

    params = task.init(key)
    shapes = jax.tree_util.tree_map(lambda x: x.shape, params)
    assert shapes == {
        "mlp/~/linear_0": {"b": (32,), "w": (64, 32)},
        "mlp/~/linear_1": {"b": (10,), "w": (32, 10)},
    }
    batch = next(task.datasets.train)
    spec = jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), batch)
    assert spec == {
        "image": ((128, 8, 8, 1), np.dtype("float32")),
        "label": ((128,), np.dtype("int32")),
    }
    key, key1 = jax.random.split(key)
    loss = task.loss(params, key1, batch)
    assert 1.5 < float(loss) < 3.5
    loss, grad = jax.value_and_grad(task.loss)(params, key1, batch)
    assert jax.tree_util.tree_map(lambda x: x.shape, grad) == shapes

    grad_fn = jax.jit(jax.value_and_grad(task.loss))
    key = jax.random.PRNGKey(0)
    params = task.init(key)
    lr = 0.1
    first = None
    for i in range(1000):
        key, key1 = jax.random.split(key)
        batch = next(task.datasets.train)
        l, grads = grad_fn(params, key1, batch)  # noqa: E741  (Part 1 verbatim)
        params = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
        first = float(l) if first is None else first
        if i % 100 == 0:
            test_l = task.loss(params, key, next(task.datasets.test))
            print(f"train loss at {i}: {float(l)}. Test loss: {float(test_l)}")
    out = capsys.readouterr().out
    assert out.count("train loss at") == 10
    # Mock data has 24 random examples: SGD memorizes them.
    assert float(l) < first


def test_named_tfds_tasks_are_lazy(tmp_path, monkeypatch):
    monkeypatch.setenv("LOPT_DATA_DIR", str(tmp_path))
    task = lopt_core.get_task("ImageMLP_Cifar10BW8_Relu32")
    params = task.init(jax.random.PRNGKey(0))
    assert params["mlp/~/linear_0"]["w"].shape == (64, 32)
    assert task.datasets.abstract_batch["image"].shape == (128, 8, 8, 1)
    with pytest.raises(DatasetNotPreparedError, match="cifar10"):
        next(task.datasets.train)


def test_unknown_dataset_name_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Unknown TFDS dataset 'no_such_dataset_xyz'"):
        image_classification_datasets("no_such_dataset_xyz", data_dir=str(tmp_path))
