"""A run on data streamed through grain resumes to bit-identical theta.

The task family is an image MLP over `lopt_digits` prepared into array_record
files by the test and streamed by `lopt_tasks.streaming.GrainSplit`s (plain
iterators: every unroll pulls its batches on the host). The checkpoint records
each split's position, so a resumed run reads exactly the batches the
uninterrupted run read.
"""

import jax
import numpy as np
import pytest
from outer_helpers import LearnableSGD, MetaAdam

pytest.importorskip("grain")

import lopt_core
import lopt_tasks
from lopt_core.checkpoint import CheckpointError
from lopt_outer import (
    ConstantTruncationSchedule,
    RunConfig,
    SingleMachineGradientLearner,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
    meta_train,
)
from lopt_outer.run import CHECKPOINT_NAME, RunCounters, SavedRun

TRAIN = "gradient_estimators[0].truncated_step.task_family.datasets.train"


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    lopt_tasks.prepare_dataset("lopt_digits", data_dir)
    return data_dir


def _learner(data_dir):
    # Fresh splits for every run: each starts at the beginning of the stream.
    datasets = lopt_tasks.grain_image_datasets(
        "lopt_digits", batch_size=8, data_dir=data_dir, seed=7
    )
    task = lopt_tasks.ImageMLPTask(datasets, [8], name="StreamedDigitsMLP")
    step = VectorizedLOptTruncatedStep(
        lopt_core.single_task_to_family(task),
        LearnableSGD(0.1),
        ConstantTruncationSchedule(6),
        2,
        random_initial_iteration_offset=6,
    )
    return SingleMachineGradientLearner(
        LearnableSGD(0.1), [TruncatedPES(step, 3, std=0.05)], MetaAdam(0.05)
    )


def _run(learner, out, num_steps, callback=None):
    config = RunConfig(num_steps, seed=11, output_dir=out, checkpoint_every=2, progress=False)
    return meta_train(learner, config, callback=callback)


def test_a_streamed_run_resumed_halfway_ends_with_bit_identical_theta(tmp_path, digits_dir):
    n = 3
    straight_learner = _learner(digits_dir)
    at_n = {}

    def record(step, state, row):
        if step == n:
            at_n.update(lopt_core.iterator_states(straight_learner))

    straight = _run(straight_learner, tmp_path / "a", 2 * n, record)

    first = _run(_learner(digits_dir), tmp_path / "b", n)
    assert first.steps == n
    saved = lopt_core.load_metadata(tmp_path / "b" / CHECKPOINT_NAME)["data_state"]
    # The checkpoint holds every split's position at step n, as the straight run had it.
    assert saved == at_n
    assert saved[TRAIN]["iterator"]["next_index"] > 0
    resumed_learner = _learner(digits_dir)
    resumed = _run(resumed_learner, tmp_path / "b", 2 * n)
    assert resumed.resumed_from == n and resumed.steps == 2 * n
    for a, b in zip(
        jax.tree_util.tree_leaves(straight.state), jax.tree_util.tree_leaves(resumed.state)
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(straight.theta["log_lr"], resumed.theta["log_lr"])
    assert not np.array_equal(straight.theta["log_lr"], first.theta["log_lr"])
    # Both runs end having read the same batches.
    assert lopt_core.iterator_states(resumed_learner) == lopt_core.iterator_states(straight_learner)


def test_saved_data_positions_are_checked_before_they_are_used(tmp_path, digits_dir):
    learner = _learner(digits_dir)
    path = tmp_path / CHECKPOINT_NAME

    def saved(data_state):
        return SavedRun(path, None, {}, RunCounters(), data_state)

    with pytest.raises(CheckpointError, match=r"no saved position for .*datasets\.inner_valid"):
        saved({TRAIN: {}}).restore_data_state(learner)
    with pytest.raises(CheckpointError, match="must be a dict of split path to state, got list"):
        saved([1, 2]).restore_data_state(learner)
    states = lopt_core.iterator_states(learner)
    bad = {**states, TRAIN: {**states[TRAIN], "seed": 0}}
    with pytest.raises(CheckpointError, match="taken with seed=0, this split has seed=28"):
        saved(bad).restore_data_state(learner)
    with pytest.warns(RuntimeWarning, match="records no positions of the streamed data splits"):
        saved(None).restore_data_state(learner)
