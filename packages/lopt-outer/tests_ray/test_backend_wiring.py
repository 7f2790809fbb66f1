"""`meta_train(backend="ray")` and `lopt meta-train --backend ray` on a real local cluster."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ray_helpers import leaves, make_learner

from lopt_core import cli
from lopt_outer import InProcessBackend, RunConfig
from lopt_outer.meta_train import meta_train
from lopt_outer.ray import RayBackend, RayMetaTrainResult


def test_meta_train_ray_backend_matches_in_process_and_writes_metrics(ray_cluster, tmp_path):
    learner = make_learner()
    single = meta_train(learner, 4, seed=1, progress=False)
    seen = []
    result = meta_train(
        learner,
        4,
        seed=1,
        output_dir=tmp_path,
        checkpoint_every=2,
        progress=False,
        metric_writers=[],
        backend="ray",
        num_workers=1,
        callback=lambda step, state, row: seen.append(step),
    )
    assert result.steps == 4 and result.stopped_by == "num_steps"
    for a, b in zip(leaves(single.theta), leaves(result.theta)):
        np.testing.assert_array_equal(a, b)
    assert seen == [1, 2, 3, 4]
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["meta_loss"] for r in rows] == [r["meta_loss"] for r in single.history]
    assert rows[-1]["ray/num_workers"] == 1.0
    # A second call with more steps resumes from the learner checkpoint.
    more = meta_train(
        learner,
        6,
        seed=1,
        output_dir=tmp_path,
        progress=False,
        metric_writers=[],
        backend="ray",
        num_workers=1,
    )
    assert more.resumed_from == 4 and more.steps == 6
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]


def test_bad_backend_arguments_are_named():
    learner = make_learner()
    with pytest.raises(ValueError, match="Unknown backend 'mpi'"):
        meta_train(learner, 1, backend="mpi", progress=False)
    with pytest.raises(ValueError, match="apply to backend='ray' only"):
        meta_train(learner, 1, num_workers=2, progress=False)


def _cli_args(out, *extra):
    return [
        "meta-train",
        "--task-family",
        "FixedDimQuadraticFamily",
        "--learned-optimizer",
        "LearnableSGD",
        "--output-dir",
        str(out),
        *extra,
    ]


def test_cli_meta_train_on_two_ray_workers(ray_cluster, tmp_path, capsys):
    small = ["--num-tasks", "2", "--trunc-length", "5", "--max-length", "20", "--no-progress"]
    on_ray = ["--backend", "ray", "--workers", "2", "--address", ray_cluster]
    args = _cli_args(tmp_path, *small, "--num-steps", "4", *on_ray)
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "meta-trained 4 steps" in out
    assert (tmp_path / "theta.lopt").exists()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["ray/num_workers"] == 2.0
    # --resume continues the finished run's checkpoint to more steps.
    assert cli.main(_cli_args(tmp_path, *small, "--resume", "--num-steps", "5", *on_ray)) == 0
    assert "meta-trained 5 steps" in capsys.readouterr().out


def test_cli_resume_without_a_checkpoint_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(_cli_args(tmp_path / "empty", "--resume"))
    # lopt prints the refusal as one line on stderr and exits with status 2.
    assert exc.value.code == 2
    assert "holds no checkpoint.lopt to resume from" in capsys.readouterr().err


def test_both_backends_log_rows_from_the_one_builder(ray_cluster, tmp_path):
    learner = make_learner()
    config = RunConfig(3, seed=2, progress=False, metric_writers=())
    single = meta_train(learner, config, InProcessBackend())
    result = meta_train(learner, config, RayBackend(num_workers=1))
    assert isinstance(result, RayMetaTrainResult) and result.learner_state is result.state
    ray_keys = {
        "ray/staleness",
        "ray/dropped_stale",
        "ray/worker_replacements",
        "ray/num_workers",
        "ray/learner_s",
    }
    for in_process, on_ray in zip(single.history, result.history, strict=True):
        assert set(on_ray) == set(in_process) | ray_keys
        assert on_ray["meta_loss"] == in_process["meta_loss"]
    for a, b in zip(leaves(single.theta), leaves(result.theta)):
        np.testing.assert_array_equal(a, b)


def test_ray_backend_options_are_checked_and_named():
    with pytest.raises(ValueError, match="RayBackend: num_workers must be a positive integer"):
        RayBackend(num_workers=0)
    with pytest.raises(ValueError, match="RayBackend: max_staleness must be >= 0 or None"):
        RayBackend(max_staleness=-1)
    with pytest.raises(ValueError, match="RayBackend: cpus_per_worker must be a finite number > 0"):
        RayBackend(cpus_per_worker=0)
    with pytest.raises(TypeError, match="RayBackend: worker_options must be a dict"):
        RayBackend(worker_options=[("num_gpus", 1)])
    with pytest.raises(
        ValueError, match="RayBackend: worker_silence_warn_s must be a finite number > 0"
    ):
        RayBackend(worker_silence_warn_s=0)
    with pytest.raises(
        ValueError, match="RayBackend: worker_silence_timeout_s must be a finite number > 0"
    ):
        RayBackend(worker_silence_timeout_s=float("inf"))
    with pytest.raises(
        ValueError,
        match=r"worker_silence_timeout_s \(60 s\) must be greater than worker_silence_warn_s "
        r"\(120 s\).*raise worker_silence_timeout_s",
    ):
        RayBackend(worker_silence_warn_s=120, worker_silence_timeout_s=60)
    quiet = RayBackend(worker_silence_warn_s=5, worker_silence_timeout_s=None)
    assert quiet.worker_silence_warn_s == 5.0 and quiet.worker_silence_timeout_s is None
    assert RayBackend().worker_silence_warn_s == 300.0
    assert RayBackend().worker_silence_timeout_s == 1800.0
    assert RayBackend(num_workers=2) == RayBackend(num_workers=2)
    assert RayBackend(num_workers=3).staleness_bound == 3
    assert RayBackend(num_workers=3, max_staleness=0).staleness_bound == 0


def test_loopback_addresses_are_recognised_for_joining():
    from lopt_outer.ray.backend import _is_loopback_address

    for address in ("127.0.0.1:6379", "localhost:6379", "[::1]:6379", "127.0.0.1"):
        assert _is_loopback_address(address), address
    for address in ("auto", "10.0.0.2:6379", "head-node:6379", "[2001:db8::1]:6379"):
        assert not _is_loopback_address(address), address
