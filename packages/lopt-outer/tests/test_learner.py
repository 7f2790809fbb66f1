import jax
import jax.numpy as jnp
import numpy as np
import pytest
from outer_helpers import FixedQuadraticFamily, LearnableSGD, MetaAdam

import lopt_core
from lopt_outer import (
    AggregatedGradient,
    ConstantTruncationSchedule,
    GradientLearner,
    SingleMachineGradientLearner,
    TruncatedES,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
    gradient_worker_compute,
)

OUTER = lopt_core.OuterState(jnp.asarray(0, jnp.int32))


def _agg(value):
    return AggregatedGradient({"log_lr": jnp.asarray(value, jnp.float32)}, None, jnp.asarray(1.0))


def test_nonfinite_meta_gradients_are_dropped_and_counted():
    learner = GradientLearner(LearnableSGD(0.1), MetaAdam(0.1))
    state = learner.init(jax.random.PRNGKey(0))
    theta0 = learner.get_meta_params(state)
    for bad in (np.nan, np.inf):
        new, metrics = learner.update(state, [_agg(bad)])
        np.testing.assert_array_equal(learner.get_meta_params(new)["log_lr"], theta0["log_lr"])
        assert int(new.theta_opt_state.iteration) == 0  # the meta-optimizer never saw it
        assert int(metrics["nonfinite_grads"]) == 1
    # A NaN beside a finite gradient: only the finite one is applied.
    mixed, metrics = learner.update(state, [_agg(np.nan), _agg(2.0)])
    clean, _ = learner.update(state, [_agg(2.0)])
    np.testing.assert_array_equal(
        learner.get_meta_params(mixed)["log_lr"], learner.get_meta_params(clean)["log_lr"]
    )
    assert int(metrics["nonfinite_grads"]) == 1
    assert int(mixed.num_dropped) == 1
    # The running total keeps counting across updates.
    s = state
    for _ in range(3):
        s, m = learner.update(s, [_agg(np.nan)])
    assert int(m["nonfinite_grads_total"]) == 3
    with pytest.raises(ValueError, match="grads_list is empty"):
        learner.update(state, [])


def test_worker_compute_averages_estimators_and_checks_lengths():
    step = VectorizedLOptTruncatedStep(
        FixedQuadraticFamily(), LearnableSGD(0.1), ConstantTruncationSchedule(50), 8
    )
    ests = [TruncatedPES(step, 5), TruncatedES(step, 5)]
    theta = step.outer_init(jax.random.PRNGKey(0))
    w = lopt_core.WorkerWeights(theta, None, OUTER)
    states = [e.init_worker_state(w, jax.random.PRNGKey(0)) for e in ests]
    out = gradient_worker_compute(w, ests, states, jax.random.PRNGKey(1))
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    singles = [e.compute_gradient_estimate(w, k, s)[0] for e, s, k in zip(ests, states, keys)]
    np.testing.assert_allclose(
        out.to_put.theta_grads["log_lr"],
        (singles[0].grad["log_lr"] + singles[1].grad["log_lr"]) / 2,
        rtol=1e-6,
    )
    assert any(k.startswith("TruncatedPES_") for k in out.metrics)
    with pytest.raises(ValueError, match="one state per estimator"):
        gradient_worker_compute(w, ests, states[:1], jax.random.PRNGKey(1))


def test_meta_training_raises_a_too_small_learning_rate_and_lowers_the_meta_loss():
    step = VectorizedLOptTruncatedStep(
        FixedQuadraticFamily(),
        LearnableSGD(0.01),
        ConstantTruncationSchedule(20),
        8,
        random_initial_iteration_offset=20,
    )
    learner = SingleMachineGradientLearner(
        LearnableSGD(0.01), [TruncatedPES(step, 5, std=0.05)], MetaAdam(0.05)
    )
    state = learner.init(jax.random.PRNGKey(0))
    losses = []
    for i in range(40):
        state, loss, metrics = learner.update(state, jax.random.PRNGKey(i))
        losses.append(float(loss))
    assert float(learner.get_meta_params(state)["log_lr"]) > np.log(0.01) + 0.5
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    assert {"mean_loss", "theta_grad_norm", "nonfinite_grads"} <= set(metrics)


def test_bad_learner_arguments_name_the_problem():
    with pytest.raises(TypeError, match="theta_opt must be a lopt Optimizer"):
        GradientLearner(LearnableSGD(), object())
    with pytest.raises(ValueError, match="gradient_estimators is empty"):
        SingleMachineGradientLearner(LearnableSGD(), [], MetaAdam())
