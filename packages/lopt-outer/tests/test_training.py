"""lopt_outer.training: batches for several tasks, stacked along leading axes."""

import doctest

import jax
import numpy as np
import pytest

from lopt_core import ArraySplit, Datasets
from lopt_outer import training
from lopt_tasks import quadratics


class _Counting:
    """A task-like object whose train split yields batches 0, 1, 2, ... in order."""

    def __init__(self):
        def it(offset):
            i = offset
            while True:
                yield {"x": np.full((2, 3), i, np.float32), "y": np.int32(i)}
                i += 1

        self.datasets = Datasets(it(0), it(100), it(200), it(300))


def test_vec_get_batch_stacks_consecutive_batches_along_a_task_axis():
    batch = training.vec_get_batch(_Counting(), 4, split="train")
    assert isinstance(batch["x"], jax.Array)
    assert batch["x"].shape == (4, 2, 3) and batch["y"].shape == (4,)
    np.testing.assert_array_equal(batch["y"], [0, 1, 2, 3])
    np.testing.assert_array_equal(batch["x"][2], np.full((2, 3), 2))


def test_vec_get_batch_reads_the_named_split_and_numpy_stays_on_host():
    task = _Counting()
    batch = training.vec_get_batch(task, 3, split="outer_valid", numpy=True)
    assert isinstance(batch["x"], np.ndarray)
    np.testing.assert_array_equal(batch["y"], [200, 201, 202])
    # The iterator moves on: the next call continues where this one stopped.
    np.testing.assert_array_equal(
        training.vec_get_batch(task, 2, split="outer_valid")["y"], [203, 204]
    )


def test_get_batches_fills_a_two_dimensional_leading_shape_row_major():
    batch = training.get_batches(_Counting(), (2, 3), split="test")
    assert batch["x"].shape == (2, 3, 2, 3)
    np.testing.assert_array_equal(batch["y"], [[300, 301, 302], [303, 304, 305]])


def test_tasks_without_data_give_none():
    task = quadratics.QuadraticTask()
    assert task.datasets is None
    assert training.vec_get_batch(task, 5, split="train") is None
    assert training.get_batches(task, (2, 5), split="train") is None


def test_keyed_datasets_are_drawn_by_next():
    split = ArraySplit({"x": np.arange(10.0)}, batch_size=4, seed=1)
    batch = training.vec_get_batch(
        type("T", (), {"datasets": Datasets(split, split, split, split)})(), 2, "train"
    )
    assert batch["x"].shape == (2, 4)
    again = ArraySplit({"x": np.arange(10.0)}, batch_size=4, seed=1)
    np.testing.assert_array_equal(batch["x"], np.stack([next(again)["x"], next(again)["x"]]))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_sizes_are_rejected(bad):
    with pytest.raises(ValueError, match="positive integer"):
        training.vec_get_batch(_Counting(), bad, split="train")


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="Unknown split"):
        training.vec_get_batch(_Counting(), 2, split="validation")


def test_docstring_examples():
    result = doctest.testmod(training, optionflags=doctest.ELLIPSIS, report=True)
    assert result.attempted > 0 and result.failed == 0
