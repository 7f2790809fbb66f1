"""Horizon curricula (GrowingLogUniformSchedule) and the truncated step's meta-loss options."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from outer_helpers import FixedQuadraticFamily, LearnableSGD, QuadraticFamily, sgd_quadratic_losses

import lopt_core
from lopt_outer import (
    ConstantTruncationSchedule,
    GrowingLogUniformSchedule,
    TruncatedES,
    TruncatedGrad,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
)


def _outer(t: int) -> lopt_core.OuterState:
    return lopt_core.OuterState(jnp.asarray(t, jnp.int32))


# -- GrowingLogUniformSchedule ----------------------------------------------------------
def _formula(sched, key, t):
    """The length the docstring's formula gives, in float32 as the schedule computes it."""
    frac = min(t / sched.growth_steps, 1.0)
    lo, hi = np.log(np.float32(sched.start_max_length)), np.log(np.float32(sched.end_max_length))
    bound = np.exp(np.float32(lo + np.float32(frac) * (hi - lo)), dtype=np.float32)
    u = jax.random.uniform(
        key, (), jnp.float32, minval=jnp.log(float(sched.min_length)), maxval=jnp.log(bound)
    )
    return int(np.clip(int(np.exp(np.float32(u))), sched.min_length, sched.end_max_length)), bound


def test_growing_schedule_lengths_follow_the_formula_at_0_half_and_end():
    sched = GrowingLogUniformSchedule(10, 200, 5000, growth_steps=1000)
    assert sched.max_length == 5000
    assert lopt_core.config_of(sched) == {
        "min_length": 10,
        "start_max_length": 200,
        "end_max_length": 5000,
        "growth_steps": 1000,
    }
    bounds = [float(sched.current_max_length(t)) for t in (0, 500, 1000, 2000)]
    np.testing.assert_allclose(bounds, [200.0, 1000.0, 5000.0, 5000.0], rtol=1e-5)
    key = jax.random.PRNGKey(3)
    for t in (0, 500, 1000):
        got = int(sched.init(key, _outer(t)).length)
        want, bound = _formula(sched, key, t)
        assert got == want, (t, got, want)
        assert 10 <= got < bound
    # The same key gives a longer length as the bound grows (u is a fixed quantile).
    lengths = [int(sched.init(key, _outer(t)).length) for t in (0, 500, 1000)]
    assert lengths[0] < lengths[1] < lengths[2], lengths
    # Over many keys: every draw below the bound of its iteration, and the maximum grows.
    keys = jax.random.split(jax.random.PRNGKey(0), 256)
    draws = {
        t: np.asarray(jax.vmap(lambda k, t=t: sched.init(k, _outer(t)).length)(keys))
        for t in (0, 500, 1000)
    }
    assert draws[0].max() < 200 and draws[500].max() < 1000 and draws[1000].max() < 5000
    assert draws[0].min() >= 10 and draws[0].max() < draws[500].max() < draws[1000].max()
    assert draws[1000].max() > 1000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_length": 0}, "min_length"),
        ({"growth_steps": 0}, "growth_steps"),
        ({"start_max_length": 5}, "min_length (10) <= start_max_length (5)"),
        ({"end_max_length": 100}, "start_max_length (200) <= end_max_length (100)"),
    ],
)
def test_growing_schedule_refuses_bad_fields(kwargs, message):
    args = {"min_length": 10, "start_max_length": 200, "end_max_length": 5000, "growth_steps": 4}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GrowingLogUniformSchedule(**{**args, **kwargs})


def test_growing_schedule_is_a_registered_outer_trainer():
    sched = lopt_core.get_outer_trainer(
        "GrowingLogUniformSchedule",
        min_length=2,
        start_max_length=3,
        end_max_length=12,
        growth_steps=2,
    )
    assert isinstance(sched, GrowingLogUniformSchedule)


@pytest.mark.parametrize("estimator", [TruncatedPES, TruncatedES])
def test_truncation_lengths_grow_with_the_outer_iteration_under_es(estimator):
    # min 2, start 3: every length drawn at iteration 0 is 2; lengths above 3 can only
    # come from later, wider bounds.
    sched = GrowingLogUniformSchedule(2, 3, 12, growth_steps=2)
    lopt = LearnableSGD(0.1)
    step = VectorizedLOptTruncatedStep(QuadraticFamily(2), lopt, sched, num_tasks=4)
    est = estimator(step, unroll_length=4, std=0.01)
    theta = lopt.init(jax.random.PRNGKey(0))
    weights = lambda t: lopt_core.WorkerWeights(theta, None, _outer(t))  # noqa: E731
    state = est.init_worker_state(weights(0), jax.random.PRNGKey(1))

    def lengths(s):
        s = s.pos_state if hasattr(s, "pos_state") else s
        return np.asarray(s.truncation_state.length)

    assert (lengths(state) == 2).all()
    seen = {}
    for t in range(8):
        out, _ = est.compute_gradient_estimate(weights(t), jax.random.PRNGKey(10 + t), state)
        state = out.unroll_state
        assert np.isfinite(float(out.mean_loss))
        seen[t] = lengths(state)
        bound = float(sched.current_max_length(t))
        # a length held after iteration t was drawn at an iteration <= t
        assert (seen[t] >= 2).all() and (seen[t] < bound + 1).all(), (t, seen[t], bound)
    assert (seen[0] == 2).all()
    assert max(v.max() for v in seen.values()) > 3, seen


# -- meta-loss options ------------------------------------------------------------------
LOG_LR = float(np.log(0.1))
L = sgd_quadratic_losses(LOG_LR, np.arange(7))  # exact losses after 0..6 SGD updates


def _mean_loss(steps: int, **options) -> float:
    lopt = LearnableSGD(0.1)
    step = VectorizedLOptTruncatedStep(
        FixedQuadraticFamily(), lopt, ConstantTruncationSchedule(3), num_tasks=2, **options
    )
    est = TruncatedGrad(step, unroll_length=steps)
    theta = lopt.init(jax.random.PRNGKey(0))
    weights = lopt_core.WorkerWeights(theta, None, _outer(0))
    state = est.init_worker_state(weights, jax.random.PRNGKey(0))
    out, _ = est.compute_gradient_estimate(weights, jax.random.PRNGKey(1), state)
    return float(out.mean_loss)


# Unrolls of 3 steps, length-3 truncations: step k (1..3) sees the loss after k-1
# updates (split None, before its update) or after k updates ("same_data"). Six steps:
# steps 1-3, the reset step 4 (masked out), steps 5-6 (a new unroll that does not end).
CASES = [
    ("mean (today's)", 3, {}, np.mean(L[[0, 1, 2]])),
    ("mean, same_data", 3, {"meta_loss_split": "same_data"}, np.mean(L[[1, 2, 3]])),
    ("final", 3, {"meta_loss_type": "final"}, L[2]),
    ("final, same_data", 3, {"meta_loss_type": "final", "meta_loss_split": "same_data"}, L[3]),
    ("mean over a reset", 6, {}, np.mean(L[[0, 1, 2, 0, 1]])),
    ("final over a reset", 6, {"meta_loss_type": "final"}, L[2]),
    ("clip", 3, {"meta_loss_clip": 2.0}, np.mean(np.minimum(L[[0, 1, 2]], 2.0))),
    ("clip above all", 3, {"meta_loss_clip": 100.0}, np.mean(L[[0, 1, 2]])),
    (
        "final, clipped",
        3,
        {"meta_loss_type": "final", "meta_loss_clip": 1.0},
        1.0,
    ),
]


@pytest.mark.parametrize(
    ("label", "steps", "options", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_meta_loss_options_give_the_exact_quadratic_losses(label, steps, options, expected):
    assert L[0] == pytest.approx(2.5) and L[0] > 2.0 > L[1] > L[2] > 1.0  # clips bite
    assert _mean_loss(steps, **options) == pytest.approx(float(expected), rel=1e-5)


def test_meta_loss_options_default_to_todays_and_are_checked():
    step = VectorizedLOptTruncatedStep(
        FixedQuadraticFamily(), LearnableSGD(), ConstantTruncationSchedule(3), num_tasks=1
    )
    assert (step.meta_loss_type, step.meta_loss_clip) == ("mean", None)
    make = lambda **kw: VectorizedLOptTruncatedStep(  # noqa: E731
        FixedQuadraticFamily(), LearnableSGD(), ConstantTruncationSchedule(3), 1, **kw
    )
    assert make(meta_loss_clip=2).meta_loss_clip == 2.0
    with pytest.raises(ValueError, match="meta_loss_type"):
        make(meta_loss_type="last")
    with pytest.raises(TypeError, match="meta_loss_clip"):
        make(meta_loss_clip="big")


def test_growing_schedule_passes_the_schedule_contract_of_test_components():
    # What test_components checks of every registered schedule (its example table lives
    # there): declared, equal and hash-equal, repr of the configuration, jit-able states.
    a, b = GrowingLogUniformSchedule(2, 4, 8, 10), GrowingLogUniformSchedule(2, 4, 8, 10)
    assert a == b and hash(a) == hash(b)
    assert repr(a) == (
        "GrowingLogUniformSchedule(min_length=2, start_max_length=4, end_max_length=8, "
        "growth_steps=10)"
    )
    key = jax.random.PRNGKey(0)
    state = a.init(key, _outer(0))
    assert state.length.dtype == jnp.int32 and state.length.shape == ()
    new_state, done = jax.jit(lambda s, k: a.next_state(s, 3, k, _outer(0)))(state, key)
    assert done.dtype == jnp.bool_ and new_state.length.dtype == jnp.int32
    assert a.max_length >= int(state.length)
