"""Continuous evaluation: RunConfig(evaluation=SuiteEvaluation(...)) scores theta during meta-training."""

import json

import numpy as np
import pytest
from outer_helpers import FixedQuadraticFamily, LearnableSGD, refused_cli

import lopt_core
from lopt_core import Suite, SuiteTask
from lopt_core.cli import main
from lopt_optimizers import Adam
from lopt_outer import (
    ConstantTruncationSchedule,
    RunConfig,
    SingleMachineGradientLearner,
    TruncatedGrad,
    VectorizedLOptTruncatedStep,
    meta_train,
)
from lopt_outer.bench import SuiteEvaluation, run_suite

TINY = Suite(
    "tiny_eval",
    "1",
    (SuiteTask("QuadraticTask", "synthetic"), SuiteTask("Rosenbrock_10D", "synthetic")),
    horizons=(20,),
    seeds=1,
    num_evals=4,
    eval_batches=1,
)


def _learner():
    step = VectorizedLOptTruncatedStep(
        FixedQuadraticFamily(), LearnableSGD(0.1), ConstantTruncationSchedule(100), 2
    )
    # A small learning rate, so SGD does not diverge on Rosenbrock.
    return SingleMachineGradientLearner(
        LearnableSGD(1e-4), [TruncatedGrad(step, unroll_length=2)], Adam(1e-2)
    )


def test_scores_are_written_on_due_steps_and_equal_a_direct_run(tmp_path):
    ev = SuiteEvaluation(TINY, every=2, cache_dir=str(tmp_path / "cache"))
    config = RunConfig(
        num_steps=3, output_dir=tmp_path / "run", log_every=10, progress=False, evaluation=ev
    )
    learner = _learner()
    result = meta_train(learner, config)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    # Steps 2 (every 2) and 3 (the last) are logged, though log_every is 10.
    assert [r["step"] for r in rows] == [2, 3]
    last = rows[-1]
    assert last["suite/tiny_eval/h20/win_fraction"] in (0.0, 0.5, 1.0)
    assert "suite/tiny_eval/Rosenbrock_10D/h20/final_test" in last
    # The scores at the last step are those of the final theta.
    direct = run_suite(
        TINY,
        learned_optimizer=learner.gradient_learner.learned_optimizer,
        theta=result.theta,
        cache_dir=tmp_path / "cache",
        compute_missing=False,
    )
    for task in TINY.task_names:
        expected = direct["tasks"][task]["20"]["final_test"]
        got = last[f"suite/tiny_eval/{task}/h20/final_test"]
        assert np.isfinite(expected), task
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert last["suite/tiny_eval/h20/win_fraction"] == direct["summary"]["20"]["win_fraction"]
    # The baselines were computed once and cached.
    assert len(list((tmp_path / "cache" / "tiny_eval-1").glob("*.json"))) == 2 * 8


def test_bad_evaluations_name_the_fix(tmp_path):
    with pytest.raises(TypeError, match="evaluation must have due"):
        RunConfig(num_steps=1, evaluation=object())
    with pytest.raises(TypeError, match="suite must be a registered suite name or a lopt_core"):
        SuiteEvaluation(3)
    with pytest.raises(lopt_core.UnknownComponentError, match="No suite named 'nope'"):
        SuiteEvaluation("nope")
    with pytest.raises(ValueError, match="every must be"):
        SuiteEvaluation(TINY, every=0)
    ev = SuiteEvaluation(TINY, every=5, cache_dir=str(tmp_path), compute_missing=False)
    assert [s for s in range(1, 13) if ev.due(s, 12)] == [5, 10, 12]
    config = RunConfig(num_steps=1, progress=False, evaluation=ev)
    with pytest.raises(FileNotFoundError, match="lopt bench baselines --suite tiny_eval"):
        meta_train(_learner(), config)
    assert SuiteEvaluation("offline", every=3).suite.name == "offline"


def _cli(out, *extra):
    return [
        "meta-train", "--task-family", "FixedDimQuadraticFamily", "--learned-optimizer",
        "LearnableAdam", "--num-tasks", "2", "--trunc-length", "2", "--max-length", "10",
        "--num-steps", "2", "--no-progress", "--output-dir", str(out), *extra,
    ]  # fmt: skip


def test_the_cli_evaluates_on_a_suite_subset(tmp_path, monkeypatch):
    from lopt_outer import bench

    monkeypatch.setattr(bench, "default_cache_dir", lambda: tmp_path / "cache")
    flags = ["--eval-suite", "offline", "--eval-tasks", "QuadraticTask", "--eval-horizons", "10"]
    assert main(_cli(tmp_path / "run", *flags, "--eval-every", "2")) == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2
    assert rows[-1]["suite/offline/h10/win_fraction"] in (0.0, 1.0)
    assert np.isfinite(rows[-1]["suite/offline/QuadraticTask/h10/final_test"])
    assert (tmp_path / "cache" / "offline-1" / "QuadraticTask__Adam.json").is_file()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--eval-tasks", "QuadraticTask"], "--eval-tasks need --eval-suite NAME"),
        (["--eval-suite", "nope"], "--eval-suite nope: no such suite; the suites are"),
        (["--eval-suite", "offline", "--eval-tasks", "Nope"], "--eval-tasks: Suite 'offline' has"),
        (["--eval-suite", "offline", "--eval-horizons", "a"], "--eval-horizons a: expected"),
        (["--eval-suite", "offline", "--eval-horizons", "20,10"], "--eval-horizons: Suite"),
    ],
)
def test_bad_eval_flags_are_one_line_naming_the_flag(tmp_path, capsys, monkeypatch, flags, message):
    refused_cli(_cli(tmp_path / "run", *flags), capsys, monkeypatch, message)
