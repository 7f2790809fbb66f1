import json

import jax
import numpy as np
import pytest
from outer_helpers import DataQuadraticFamily, LearnableSGD, MetaAdam

import lopt_core
from lopt_outer import (
    ConstantTruncationSchedule,
    SingleMachineGradientLearner,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
    meta_train,
)


def _learner():
    step = VectorizedLOptTruncatedStep(
        DataQuadraticFamily(),
        LearnableSGD(0.02),
        ConstantTruncationSchedule(12),
        4,
        random_initial_iteration_offset=12,
    )
    return SingleMachineGradientLearner(
        LearnableSGD(0.02), [TruncatedPES(step, 4, std=0.05)], MetaAdam(0.05)
    )


class _Killed(Exception):
    pass


def test_a_killed_run_resumes_to_bit_identical_theta(tmp_path):
    n, k = 7, 4
    straight = meta_train(_learner(), n, seed=3, output_dir=tmp_path / "a", progress=False)

    def kill(step, state, metrics):
        if step == k + 2:  # two steps of work after the checkpoint at k are lost
            raise _Killed

    with pytest.raises(_Killed):
        meta_train(
            _learner(),
            n,
            seed=3,
            output_dir=tmp_path / "b",
            checkpoint_every=k,
            progress=False,
            callback=kill,
        )
    assert lopt_core.load_metadata(tmp_path / "b" / "checkpoint.lopt")["step"] == k
    resumed = meta_train(
        _learner(), n, seed=3, output_dir=tmp_path / "b", checkpoint_every=k, progress=False
    )
    assert resumed.resumed_from == k and resumed.steps == n
    for a, b in zip(
        jax.tree_util.tree_leaves(straight.state), jax.tree_util.tree_leaves(resumed.state)
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(straight.theta["log_lr"], resumed.theta["log_lr"])
    # The metrics file has each step once, lost work removed.
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(1, n + 1))
    with pytest.raises(ValueError, match="seed 3, not 4"):
        meta_train(_learner(), n, seed=4, output_dir=tmp_path / "b", progress=False)


def test_metrics_go_to_jsonl_and_every_writer(tmp_path):
    seen = []

    class Recorder:
        def write(self, step, metrics):
            seen.append((step, metrics["meta_loss"]))

        def close(self):
            seen.append("closed")

    res = meta_train(
        _learner(),
        3,
        output_dir=tmp_path,
        metric_writers=[Recorder(), "tensorboard"],
        progress=False,
    )
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert {"meta_loss", "steps_per_s", "mean_loss", "nonfinite_grads"} <= set(rows[0])
    assert [s for s, _ in seen[:-1]] == [1, 2, 3] and seen[-1] == "closed"
    assert res.history[-1]["meta_loss"] == rows[-1]["meta_loss"]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert {"jsonl", "tensorboard"} <= set(lopt_core.list_metric_writers())


def test_time_budget_stops_the_run_with_a_checkpoint(tmp_path):
    res = meta_train(_learner(), 10_000, output_dir=tmp_path, time_budget_s=0.0, progress=False)
    assert res.stopped_by == "time_budget" and res.steps == 1
    assert lopt_core.load_metadata(tmp_path / "checkpoint.lopt")["step"] == 1


def test_progress_bar_shows_meta_loss(tmp_path, capsys):
    meta_train(_learner(), 2, output_dir=None, progress=True)
    err = capsys.readouterr().err
    assert "meta_loss=" in err and "step/s" in err
