"""The registered task families on Ray workers, and what the learner does when workers go silent."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest
import ray
from ray_helpers import (
    EstimatorWithAGenerator,
    SlowEstimator,
    family_results,
    leaves,
    make_learner,
)

import lopt_core
from lopt_outer import RunConfig, SingleMachineGradientLearner
from lopt_outer.meta_train import meta_train
from lopt_outer.ray import RayBackend


@ray.remote(num_cpus=1)
def _results_on_a_worker(families, seed):
    return [family_results(family, seed) for family in families]


def test_every_registered_family_computes_the_same_on_a_worker(ray_cluster):
    names = lopt_core.list_task_families()
    families = [lopt_core.get_task_family(name) for name in names]
    # Through the object store, as the backend ships its estimators: Ray's cloudpickle.
    pending = _results_on_a_worker.remote(ray.put(families), 7)
    expected_all = [family_results(family, 7) for family in families]  # meanwhile, here
    on_worker = ray.get(pending)
    assert len(on_worker) == len(names) >= 9
    for name, expected, got in zip(names, expected_all, on_worker, strict=True):
        assert jax.tree_util.tree_structure(expected) == jax.tree_util.tree_structure(got), name
        for a, b in zip(leaves(expected), leaves(got), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
        assert np.isfinite(got["loss"]), name


def test_a_data_backed_family_on_one_worker_equals_the_in_process_run(ray_cluster):
    # The digits are read by the worker's own (unpickled, unloaded) lazy splits.
    family = lopt_core.get_task_family("ImageMLPFamily_Digits8")
    learner = make_learner(num_tasks=2, trunc_length=4, family=family)
    config = RunConfig(2, seed=4, progress=False, metric_writers=())
    in_process = meta_train(learner, config)
    on_ray = meta_train(learner, config, RayBackend(num_workers=1))
    assert [r["meta_loss"] for r in on_ray.history] == [r["meta_loss"] for r in in_process.history]
    assert all(np.isfinite(r["meta_loss"]) for r in on_ray.history)
    for a, b in zip(leaves(in_process.theta), leaves(on_ray.theta), strict=True):
        np.testing.assert_array_equal(a, b)


def test_estimators_that_cannot_be_pickled_are_named_with_the_fix(ray_cluster):
    learner = make_learner()
    broken = [EstimatorWithAGenerator(learner.gradient_estimators[0])]
    with pytest.raises(TypeError, match=r"(?s)cannot be sent to the Ray workers.*generator"):
        meta_train(
            SingleMachineGradientLearner.from_gradient_learner(learner.gradient_learner, broken),
            RunConfig(1, progress=False, metric_writers=()),
            RayBackend(num_workers=1),
        )


def test_a_silent_worker_is_reported_and_then_stops_the_run(ray_cluster):
    learner = make_learner()
    hung = [SlowEstimator(learner.gradient_estimators[0], delay_s=120.0)]
    backend = RayBackend(num_workers=1, worker_silence_warn_s=1.0, worker_silence_timeout_s=4.0)
    config = RunConfig(2, progress=False, metric_writers=())
    silent = r"No Ray worker has returned an estimate for \d+ s"
    with (
        pytest.warns(RuntimeWarning, match=silent + r" \(worker_silence_warn_s=1\): ") as seen,
        pytest.raises(TimeoutError, match=silent) as stopped,
    ):
        meta_train(
            SingleMachineGradientLearner.from_gradient_learner(learner.gradient_learner, hung),
            config,
            backend,
        )
    warning = str(next(w.message for w in seen if "No Ray worker" in str(w.message)))
    assert re.search(r"worker 0 computing for (\d+) s", warning), warning
    assert "The run stops after worker_silence_timeout_s=4 s of silence." in warning
    message = str(stopped.value)
    waited = int(re.search(r"estimate for (\d+) s", message).group(1))
    assert 4 <= waited < 30, message
    assert "worker 0 computing for" in message
    assert "raise worker_silence_timeout_s" in message
