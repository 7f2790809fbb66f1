"""Behaviour the reference library pins and lopt follows (issue: reference parity, bugs 2, 3, 5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from outer_helpers import DataQuadraticFamily, LearnableSGD, QuadraticFamily

import lopt_core
from lopt_outer import (
    ConstantTruncationSchedule,
    FullES,
    FullGrad,
    TruncatedGrad,
    VectorizedLOptTruncatedStep,
)


def _weights(lopt):
    theta = lopt.init(jax.random.PRNGKey(0))
    return lopt_core.WorkerWeights(theta, None, lopt_core.OuterState(jnp.asarray(0)))


def test_a_meta_loss_split_on_a_family_without_data_is_the_loss_after_the_step():
    lopt = LearnableSGD(0.1)
    theta = lopt.init(jax.random.PRNGKey(0))
    sched = ConstantTruncationSchedule(10)
    outer = lopt_core.OuterState(jnp.asarray(0))
    plain = VectorizedLOptTruncatedStep(QuadraticFamily(), lopt, sched, num_tasks=3)
    split = VectorizedLOptTruncatedStep(
        QuadraticFamily(), lopt, sched, num_tasks=3, meta_loss_split="train"
    )
    state = plain.init_step_state(theta, outer, jax.random.PRNGKey(1))
    key = jax.random.PRNGKey(2)
    # It used to fail with "'NoneType' object is not subscriptable".
    new, ys = split.unroll_step(theta, state, key, None, outer)
    _, before = plain.unroll_step(theta, state, key, None, outer)
    assert ys.loss.shape == (3,) and np.all(np.isfinite(ys.loss))
    # The split's meta-loss is the loss of the updated params: 0.5 * sum(scale * x^2).
    expected = 0.5 * jnp.sum(new.task_param * new.inner_opt_state.params["x"] ** 2, axis=1)
    np.testing.assert_allclose(ys.loss, expected, rtol=1e-6)
    assert np.all(np.asarray(ys.loss) < np.asarray(before.loss))  # SGD went downhill


@pytest.mark.parametrize("make", [FullES, FullGrad])
def test_a_full_unroll_longer_than_the_steps_schedule_is_refused(make):
    lopt = LearnableSGD(0.1)
    step = VectorizedLOptTruncatedStep(
        QuadraticFamily(), lopt, ConstantTruncationSchedule(5), num_tasks=2
    )
    with pytest.raises(ValueError) as exc:
        make(step, truncation_schedule=ConstantTruncationSchedule(10))
    text = str(exc.value)
    assert "ends its tasks after at most 5 inner steps, inside this estimator's full unroll" in text
    assert "ConstantTruncationSchedule(10)" in text and "unroll_length=5" in text
    # Lengths that fit are accepted.
    assert make(step, unroll_length=5).length == 5


@pytest.mark.parametrize("keyed", [True, False])
def test_truncated_grad_takes_steps_per_jit_and_chunks_one_differentiated_unroll(keyed):
    lopt = LearnableSGD(0.05)
    step = VectorizedLOptTruncatedStep(
        DataQuadraticFamily(keyed=keyed), lopt, ConstantTruncationSchedule(100), num_tasks=2
    )
    weights = _weights(lopt)
    whole = TruncatedGrad(step, unroll_length=8)
    chunked = TruncatedGrad(step, unroll_length=8, steps_per_jit=4)
    state = whole.init_worker_state(weights, jax.random.PRNGKey(1))
    out, _ = chunked.compute_gradient_estimate(weights, jax.random.PRNGKey(2), state)
    ref, _ = whole.compute_gradient_estimate(weights, jax.random.PRNGKey(2), state)
    assert out.unroll_info.loss.shape == (8, 2)
    np.testing.assert_array_equal(out.unroll_state.inner_step, ref.unroll_state.inner_step)
    # Gradients flow through both chunks: a non-zero, finite meta-gradient.
    g = float(out.grad["log_lr"])
    assert np.isfinite(g) and g != 0.0
    with pytest.raises(ValueError, match=r"must be a multiple of steps_per_jit \(3\)"):
        TruncatedGrad(step, unroll_length=8, steps_per_jit=3)
