import dataclasses
import json
import re

import jax
import numpy as np
import pytest
from outer_helpers import DataQuadraticFamily, LearnableSGD, MetaAdam

import lopt_core
from lopt_outer import (
    ConstantTruncationSchedule,
    InProcessBackend,
    MetaTrainResult,
    RunConfig,
    SingleMachineGradientLearner,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
    meta_train,
)
from lopt_outer.backends import BACKENDS, backend_named
from lopt_outer.run import (
    CHECKPOINT_NAME,
    RAY_CHECKPOINT_NAME,
    Backend,
    RunCounters,
    find_checkpoint,
    metrics_row,
    save_checkpoint,
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


# -- RunConfig, backends and the one run layer ---------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_steps", -1, "RunConfig: num_steps must be an integer >= 0, got -1."),
        ("seed", -3, "RunConfig: seed must be an integer >= 0, got -3."),
        ("seed", 1.5, "RunConfig: seed must be an integer >= 0, got 1.5."),
        ("checkpoint_every", 0, "RunConfig: checkpoint_every must be a positive integer, got 0."),
        ("log_every", True, "RunConfig: log_every must be a positive integer, got True."),
        ("time_budget_s", -1.0, "RunConfig: time_budget_s must be a finite number >= 0.0"),
    ],
)
def test_run_config_errors_name_the_field(field, value, message):
    kwargs = {"num_steps": 10, field: value}
    with pytest.raises(ValueError, match=re.escape(message)):
        RunConfig(**kwargs)


def test_run_config_is_a_hashable_normalised_declaration(tmp_path):
    a = RunConfig(5, output_dir=str(tmp_path), metric_writers=["jsonl"])
    b = RunConfig(num_steps=5, output_dir=tmp_path, metric_writers=("jsonl",))
    assert a == b and hash(a) == hash(b)
    assert a.output_dir == tmp_path and a.metric_writers == ("jsonl",)
    assert "num_steps=5" in repr(a)
    with pytest.raises(TypeError, match=r"metric_writers must be a sequence.*\['tensorboard'\]"):
        RunConfig(5, metric_writers="tensorboard")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.num_steps = 6


def test_a_backend_without_run_fails_at_instantiation_naming_it():
    class NoRun(Backend):
        checkpoint_name = CHECKPOINT_NAME
        resumes_from = (CHECKPOINT_NAME,)

    with pytest.raises(TypeError, match=r"NoRun cannot be instantiated: it must override run\(\)"):
        NoRun()


def test_backend_names_and_their_options_are_checked():
    assert set(BACKENDS) == {"inprocess", "ray"}
    assert backend_named("inprocess") == InProcessBackend()
    with pytest.raises(ValueError, match="Unknown backend 'mpi'; expected 'inprocess' or 'ray'"):
        backend_named("mpi")
    with pytest.raises(ValueError, match="num_workers apply to backend='ray' only"):
        backend_named("inprocess", num_workers=2)


def test_run_config_and_backend_log_the_one_metrics_row(tmp_path):
    learner = _learner()
    calls = []
    config = RunConfig(5, seed=2, output_dir=tmp_path, log_every=2, progress=False)
    res = meta_train(
        learner, config, InProcessBackend(), callback=lambda s, st, row: calls.append((s, row))
    )
    assert isinstance(res, MetaTrainResult) and res.steps == 5 and res.stopped_by == "num_steps"
    # Logged every second step and at the last; the callback sees the last logged row.
    assert [r["step"] for r in res.history] == [2, 4, 5]
    assert [(s, row.get("step")) for s, row in calls] == [
        (1, None), (2, 2), (3, 2), (4, 4), (5, 5)
    ]  # fmt: skip
    # Every key of a row comes from metrics_row: the learner's and the estimator's
    # metrics, then meta_loss, steps_per_s and elapsed_s.
    row = res.history[-1]
    built = metrics_row(
        {
            k: v
            for k, v in row.items()
            if k not in ("step", "meta_loss", "steps_per_s", "elapsed_s")
        },
        row["meta_loss"],
        steps_per_s=row["steps_per_s"],
        elapsed_s=row["elapsed_s"],
    )
    assert {"step", *built} == set(row) and built == {k: v for k, v in row.items() if k != "step"}
    estimator = learner.gradient_estimators[0].cfg_name()
    assert {"mean_loss", "theta_grad_norm", "nonfinite_grads", "meta_loss"} <= set(row)
    assert any(k.startswith(estimator + "/") for k in row)
    file_rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["meta_loss"] for r in file_rows] == [r["meta_loss"] for r in res.history]
    # The same run in the keyword style gives the same theta.
    again = meta_train(learner, 5, seed=2, log_every=2, progress=False)
    np.testing.assert_array_equal(res.theta["log_lr"], again.theta["log_lr"])


class _BothFiles(Backend):
    """A backend that resumes from either checkpoint file, for `find_checkpoint`."""

    checkpoint_name = RAY_CHECKPOINT_NAME
    resumes_from = (CHECKPOINT_NAME, RAY_CHECKPOINT_NAME)

    def run(self, learner, config, callback=None):
        raise AssertionError("not run")


def test_find_checkpoint_reads_both_layouts_and_takes_the_further_one(tmp_path):
    learner_state = {"theta": np.arange(3.0, dtype=np.float32)}
    states = {"0": (np.ones(2, np.float32),), "1": (np.zeros(2, np.float32),)}
    config = RunConfig(10, seed=4, output_dir=tmp_path)
    save_checkpoint(config, CHECKPOINT_NAME, learner_state, states, RunCounters(3, 3), None)
    ray_counters = RunCounters(5, 7, 1, 0)
    save_checkpoint(
        config, RAY_CHECKPOINT_NAME, learner_state, states, ray_counters, None, num_workers=2
    )
    saved = find_checkpoint(config, _BothFiles())
    assert saved.path.name == RAY_CHECKPOINT_NAME and saved.step == 5
    assert saved.counters == ray_counters and sorted(saved.worker_states) == ["0", "1"]
    # The in-process file holds one worker's states; its step t was estimate t.
    only = find_checkpoint(config, InProcessBackend())
    assert only.path.name == CHECKPOINT_NAME and only.counters == RunCounters(3, 3)
    np.testing.assert_array_equal(only.worker_states["0"]["0"], np.ones(2))
    np.testing.assert_array_equal(only.learner_state["theta"], np.arange(3.0))
    assert find_checkpoint(dataclasses.replace(config, resume=False), _BothFiles()) is None
    with pytest.raises(ValueError, match="seed 4, not 5; pass the same seed"):
        find_checkpoint(dataclasses.replace(config, seed=5), _BothFiles())
