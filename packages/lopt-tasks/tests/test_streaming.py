"""GrainSplit and grain_image_datasets on real array_record files written by the test.

The data is `lopt_digits` (8x8 digits from scikit-learn's wheel), prepared into a
temporary folder by its local TFDS builder: real array_record files read through
`tfds.data_source`, with no download and no TensorFlow.
"""

import json
import pickle

import numpy as np
import pytest

pytest.importorskip("grain")

import lopt_core
from lopt_tasks import GrainSplit, grain_image_datasets, prepare_dataset
from lopt_tasks.tfds_data import open_data_source


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    prepare_dataset("lopt_digits", data_dir)
    return data_dir


def _records(n):
    """n records whose label is their index, so batches show which records they hold."""
    return [{"x": np.full((2,), i, np.float32), "label": i} for i in range(n)]


def _labels(split, n):
    return [next(split)["label"].tolist() for _ in range(n)]


def test_image_batches_have_lopt_shapes_and_dtypes(digits_dir):
    ds = grain_image_datasets("lopt_digits", batch_size=8, data_dir=digits_dir, seed=1)
    assert not ds.keyed
    assert ds.extra_info == {"num_classes": 10, "name": "lopt_digits", "image_size": (8, 8)}
    assert ds.abstract_batch["image"].shape == (8, 8, 8, 1)
    for name in lopt_core.SPLITS:
        batch = next(ds.split(name))
        assert set(batch) == {"image", "label"}
        assert isinstance(batch["image"], np.ndarray)
        assert batch["image"].shape == (8, 8, 8, 1) and batch["image"].dtype == np.float32
        assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
        assert 0.0 <= batch["image"].min() <= batch["image"].max() <= 1.0
        assert batch["image"].max() > 0.0
    small = grain_image_datasets("lopt_digits", batch_size=3, image_size=4, data_dir=digits_dir)
    assert small.abstract_batch["image"].shape == (3, 4, 4, 1)
    assert next(small.train)["image"].shape == (3, 4, 4, 1)


def test_in_order_split_yields_the_stored_records_in_order(digits_dir):
    split = GrainSplit.from_tfds("lopt_digits", "train", 5, data_dir=digits_dir)
    source = open_data_source("lopt_digits", "train[0:80%]", digits_dir)
    assert len(source) == 1150
    for b in range(3):
        batch = next(split)
        expected = [source[i] for i in range(5 * b, 5 * b + 5)]
        np.testing.assert_array_equal(batch["image"], np.stack([e["image"] for e in expected]))
        np.testing.assert_array_equal(batch["label"], [e["label"] for e in expected])
    assert split.abstract_batch["image"].shape == (5, 8, 8, 1)
    assert split.abstract_batch["image"].dtype == np.uint8


def test_in_order_batches_span_epochs_and_a_finite_stream_ends():
    split = GrainSplit(_records(7), 3, num_epochs=2)
    # 14 records: four full batches; the last two records do not make a batch.
    assert _labels(split, 4) == [[0, 1, 2], [3, 4, 5], [6, 0, 1], [2, 3, 4]]
    with pytest.raises(StopIteration):
        next(split)


def test_shuffle_is_a_new_permutation_each_epoch_fixed_by_the_seed():
    def epochs(seed):
        split = GrainSplit(_records(12), 4, shuffle=True, seed=seed)
        return [[i for batch in _labels(split, 3) for i in batch] for _ in range(2)]

    first, second = epochs(0)
    assert sorted(first) == sorted(second) == list(range(12))
    assert first != second
    assert first != list(range(12))
    assert epochs(0) == [first, second]
    assert epochs(1) != [first, second]


def test_shuffled_image_splits_are_deterministic_per_seed(digits_dir):
    def labels(seed):
        ds = grain_image_datasets("lopt_digits", batch_size=16, data_dir=digits_dir, seed=seed)
        return np.concatenate([next(ds.train)["label"] for _ in range(3)])

    np.testing.assert_array_equal(labels(0), labels(0))
    assert not np.array_equal(labels(0), labels(1))


def test_set_state_resumes_at_exactly_the_next_batch(digits_dir):
    def build():
        return grain_image_datasets("lopt_digits", batch_size=8, data_dir=digits_dir, seed=2)

    split = build().train
    for _ in range(3):
        next(split)
    state = split.get_state()
    assert state == {
        "batch_size": 8,
        "shuffle": True,
        "seed": 8,
        "num_epochs": None,
        "iterator": {"next_index": 3},
    }
    expected = [next(split) for _ in range(4)]
    # As a checkpoint holds it: JSON, read back into a split that was never read.
    fresh = build().train
    assert fresh.get_state()["iterator"] is None
    fresh.set_state(json.loads(json.dumps(state)))
    # And on the same split, rewound after reading ahead.
    split.set_state(state)
    for want in expected:
        for got in (next(fresh), next(split)):
            np.testing.assert_array_equal(got["image"], want["image"])
            np.testing.assert_array_equal(got["label"], want["label"])
    assert fresh.get_state()["iterator"] == {"next_index": 7}


def test_set_state_refuses_other_settings_and_malformed_states():
    split = GrainSplit(_records(10), 2, shuffle=True, seed=3)
    next(split)
    state = split.get_state()
    other = GrainSplit(_records(10), 2, shuffle=True, seed=4)
    with pytest.raises(ValueError, match="taken with seed=3, this split has seed=4"):
        other.set_state(state)
    with pytest.raises(ValueError, match="lacks iterator"):
        split.set_state({k: v for k, v in state.items() if k != "iterator"})
    with pytest.raises(ValueError, match="'iterator' must be grain's iterator state"):
        split.set_state({**state, "iterator": [1]})
    with pytest.raises(ValueError, match="JSON values only, got bytes"):
        split.set_state({**state, "iterator": {"next_index": b"1"}})
    with pytest.raises(ValueError, match="expected a dict from get_state"):
        split.set_state("next_index=1")


def test_a_pickled_split_continues_identically(digits_dir):
    ds = grain_image_datasets("lopt_digits", batch_size=8, data_dir=digits_dir, seed=5)
    unread = pickle.loads(pickle.dumps(ds.inner_valid))
    next(ds.train), next(ds.train)
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.train.get_state() == ds.train.get_state()
    for _ in range(3):
        a, b = next(ds.train), next(copy.train)
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    np.testing.assert_array_equal(next(unread)["label"], next(ds.inner_valid)["label"])


def test_iterator_states_walk_to_every_stateful_split_once(digits_dir):
    ds = grain_image_datasets("lopt_digits", batch_size=4, data_dir=digits_dir)
    holder = {"families": [ds, ds], "keyed": lopt_core.Datasets(*[iter(())] * 4)}
    next(ds.train)
    states = lopt_core.iterator_states(holder)
    assert list(states) == [f"['families'][0].{s}" for s in lopt_core.SPLITS]
    assert states["['families'][0].train"]["iterator"] == {"next_index": 1}
    again = grain_image_datasets("lopt_digits", batch_size=4, data_dir=digits_dir)
    restored = lopt_core.restore_iterator_states({"families": [again]}, states)
    assert len(restored) == 4
    np.testing.assert_array_equal(next(again.train)["label"], next(ds.train)["label"])
    with pytest.raises(ValueError, match=r"no saved position for \['families'\]\[0\].test"):
        lopt_core.restore_iterator_states(
            {"families": [again]}, {k: v for k, v in states.items() if not k.endswith("test")}
        )


def test_grain_reads_tfds_mock_data(mock_tfds):
    ds = grain_image_datasets("cifar10", batch_size=4, image_size=8, shuffle=False)
    batch = next(ds.train)
    assert batch["image"].shape == (4, 8, 8, 3) and batch["image"].dtype == np.float32
    assert ds.extra_info["num_classes"] == 10
