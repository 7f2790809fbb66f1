"""The Ray backend on a real local Ray cluster (2 CPUs), shared by the whole module."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import ray
from ray_helpers import EstimatorThatCannotStart, SlowEstimator, leaves, make_learner

import lopt_core
from lopt_outer import distributed
from lopt_outer.distributed import RayMetaTrainer, meta_train_ray
from lopt_outer.meta_train import meta_train

HERE = Path(__file__).parent


def test_two_workers_train_theta_and_report_metrics(ray_cluster):
    learner = make_learner()
    theta0 = learner.gradient_learner.get_meta_params(
        learner.gradient_learner.init(jax.random.PRNGKey(0))
    )
    result = meta_train_ray(
        learner.gradient_learner, learner.gradient_estimators, 6, num_workers=2, seed=0
    )
    assert result.steps == 6
    assert len(result.history) == 6
    assert [row["step"] for row in result.history] == [1, 2, 3, 4, 5, 6]
    # Both workers had an estimate in flight from the start, so at least 7 were handed out.
    assert result.estimates >= 7
    for before, after in zip(leaves(theta0), leaves(result.theta)):
        assert np.all(np.isfinite(after))
        assert not np.array_equal(before, after)
    last = result.history[-1]
    for key in ("meta_loss", "theta_grad_norm", "ray/staleness", "ray/dropped_stale"):
        assert np.isfinite(last[key]), key
    assert last["ray/num_workers"] == 2.0
    assert last["ray/worker_replacements"] == 0.0
    # Applied estimates respect the default bound (num_workers); whether one is
    # dropped depends on how far one worker's first compilation lags the other's.
    assert all(row["ray/staleness"] <= 2.0 for row in result.history)
    assert result.history[-1]["ray/dropped_stale"] <= result.dropped_stale
    assert result.estimates >= result.steps + result.dropped_stale


def test_one_worker_matches_single_machine_meta_train(ray_cluster):
    learner = make_learner()
    single = meta_train(learner, 5, seed=3, progress=False)
    result = meta_train_ray(
        learner.gradient_learner, learner.gradient_estimators, 5, num_workers=1, seed=3
    )
    for a, b in zip(leaves(single.theta), leaves(result.theta)):
        np.testing.assert_array_equal(a, b)
    assert [r["meta_loss"] for r in single.history] == [r["meta_loss"] for r in result.history]
    assert all(row["ray/staleness"] == 0.0 for row in result.history)


def test_killed_worker_is_replaced_and_the_run_completes(ray_cluster):
    learner = make_learner()
    trainer = RayMetaTrainer(learner.gradient_learner, learner.gradient_estimators, num_workers=2)
    pids: dict[str, list[int]] = {}

    def kill_worker_0(step, state, row):
        if step == 2:
            pids["before"] = ray.get([w.pid.remote() for w in trainer.workers])
            victim = trainer.workers[0]
            ray.kill(victim)
            # Wait until Ray reports the death, so the learner sees it within this run.
            # ray.kill is asynchronous: a call sent right after it may still be served.
            deadline = time.monotonic() + 60
            while True:
                try:
                    ray.get(victim.pid.remote(), timeout=10)
                except ray.exceptions.RayActorError:
                    break
                assert time.monotonic() < deadline, "the killed worker is still answering"
                time.sleep(0.1)
        elif row["ray/worker_replacements"] == 1 and "after" not in pids:
            pids["after"] = ray.get([w.pid.remote() for w in trainer.workers])

    with pytest.warns(RuntimeWarning, match="Ray worker 0 died"):
        result = trainer.run(8, callback=kill_worker_0)
    assert result.steps == 8
    assert result.worker_replacements == 1
    assert result.history[-1]["ray/worker_replacements"] == 1.0
    # Slot 0 runs in a new process after the kill; slot 1 kept its process.
    assert pids["after"][0] != pids["before"][0]
    assert pids["after"][1] == pids["before"][1]
    assert all(np.all(np.isfinite(x)) for x in leaves(result.theta))


def test_stale_estimates_are_dropped_and_counted(ray_cluster):
    learner = make_learner()
    # Both workers start their first estimate on theta 0 at the same time and take
    # at least two seconds each: the one that arrives second is one update stale.
    slow = [SlowEstimator(learner.gradient_estimators[0], delay_s=2.0)]
    result = meta_train_ray(learner.gradient_learner, slow, 3, num_workers=2, max_staleness=0)
    assert result.steps == 3
    assert result.dropped_stale >= 1
    assert result.history[-1]["ray/dropped_stale"] >= 1.0
    assert all(row["ray/staleness"] == 0.0 for row in result.history)
    assert result.estimates >= result.steps + result.dropped_stale


_LEARNER_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from ray_helpers import make_learner
from lopt_outer.distributed import meta_train_ray

def die_at_step_4(step, state, row):
    if step == 4:
        os.kill(os.getpid(), signal.SIGKILL)

learner = make_learner()
meta_train_ray(learner.gradient_learner, learner.gradient_estimators, 8, num_workers=1,
               seed=5, address={address!r}, output_dir={out!r}, checkpoint_every=2,
               callback=die_at_step_4)
"""


def test_learner_killed_then_resumed_matches_an_uninterrupted_run(ray_cluster, tmp_path):
    script = _LEARNER_SCRIPT.format(tests=str(HERE), address=ray_cluster, out=str(tmp_path))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    ckpt = tmp_path / distributed.CHECKPOINT_NAME
    assert lopt_core.load_metadata(ckpt)["ray"]["step"] == 4

    learner = make_learner()
    resumed = meta_train_ray(
        learner.gradient_learner,
        learner.gradient_estimators,
        8,
        num_workers=1,
        seed=5,
        output_dir=tmp_path,
        checkpoint_every=2,
    )
    assert resumed.resumed_from == 4
    assert resumed.steps == 8
    assert [row["step"] for row in resumed.history] == [5, 6, 7, 8]
    uninterrupted = meta_train(learner, 8, seed=5, progress=False)
    for a, b in zip(leaves(uninterrupted.theta), leaves(resumed.theta)):
        np.testing.assert_array_equal(a, b)
    assert lopt_core.load_metadata(ckpt)["ray"]["step"] == 8


def test_worker_that_cannot_start_fails_fast(ray_cluster):
    learner = make_learner()
    broken = [EstimatorThatCannotStart(learner.gradient_estimators[0].truncated_step)]
    with pytest.raises(RuntimeError, match="(?s)failed to start.*cannot build a worker state"):
        meta_train_ray(learner.gradient_learner, broken, 3, num_workers=2)


def test_two_worker_checkpoint_holds_both_workers_and_resumes(ray_cluster, tmp_path):
    learner = make_learner()
    two_workers = dict(num_workers=2, output_dir=tmp_path, checkpoint_every=2)
    first = meta_train_ray(learner.gradient_learner, learner.gradient_estimators, 4, **two_workers)
    ck = lopt_core.load(tmp_path / distributed.CHECKPOINT_NAME)
    assert ck.metadata["ray"]["step"] == 4
    # The other slot had an estimate in flight when its states were read.
    assert sorted(ck.tree["workers"]) == ["0", "1"]
    resumed = meta_train_ray(
        learner.gradient_learner, learner.gradient_estimators, 6, **two_workers
    )
    assert resumed.resumed_from == 4
    assert [row["step"] for row in resumed.history] == [5, 6]
    assert resumed.estimates >= first.estimates + 2
    assert not all(np.array_equal(a, b) for a, b in zip(leaves(first.theta), leaves(resumed.theta)))


def test_resumes_an_in_process_checkpoint_exactly(ray_cluster, tmp_path):
    learner = make_learner()
    meta_train(learner, 3, seed=7, output_dir=tmp_path, progress=False, metric_writers=[])
    resumed = meta_train_ray(
        learner.gradient_learner, learner.gradient_estimators, 6, seed=7, output_dir=tmp_path
    )
    assert resumed.resumed_from == 3
    uninterrupted = meta_train(learner, 6, seed=7, progress=False)
    for a, b in zip(leaves(uninterrupted.theta), leaves(resumed.theta)):
        np.testing.assert_array_equal(a, b)


def test_workers_that_cannot_be_placed_time_out_with_a_clear_error(ray_cluster):
    learner = make_learner()
    # No node offers this resource, so Ray can never place the workers.
    with pytest.raises(TimeoutError, match=r"2 of 2 Ray workers did not start within 3 s"):
        meta_train_ray(
            learner.gradient_learner,
            learner.gradient_estimators,
            2,
            num_workers=2,
            startup_timeout_s=3,
            worker_options={"resources": {"accelerator_that_does_not_exist": 1}},
        )


def test_resume_with_another_seed_is_refused(ray_cluster, tmp_path):
    learner = make_learner()
    meta_train_ray(
        learner.gradient_learner, learner.gradient_estimators, 1, seed=1, output_dir=tmp_path
    )
    with pytest.raises(ValueError, match="seed 1, not 2"):
        meta_train_ray(
            learner.gradient_learner, learner.gradient_estimators, 2, seed=2, output_dir=tmp_path
        )


def test_bad_arguments_are_named():
    learner = make_learner()
    with pytest.raises(ValueError, match="num_workers must be a positive integer"):
        RayMetaTrainer(learner.gradient_learner, learner.gradient_estimators, num_workers=0)
    with pytest.raises(ValueError, match="max_staleness must be >= 0"):
        RayMetaTrainer(learner.gradient_learner, learner.gradient_estimators, max_staleness=-1)
    with pytest.raises(ValueError, match="gradient_estimators is empty"):
        RayMetaTrainer(learner.gradient_learner, [])


def test_missing_ray_names_the_extra(monkeypatch):
    # A None entry in sys.modules makes `import ray` raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'lopt-outer\[ray\]'"):
        distributed.require_ray()
    learner = make_learner()
    with pytest.raises(ImportError, match=r"lopt-outer\[ray\]"):
        meta_train_ray(learner.gradient_learner, learner.gradient_estimators, 1)


def test_estimate_keys_are_the_in_process_step_keys():
    from lopt_outer.run import estimate_keys, step_key

    for seed in (0, 3, 2**31 + 5, 2**40 + 1):
        for index in (0, 1, 12345, 2**31 - 1):
            expected = jax.random.split(step_key(seed, index))
            got = estimate_keys(seed, index)
            np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(expected[0]))
            np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(expected[1]))
