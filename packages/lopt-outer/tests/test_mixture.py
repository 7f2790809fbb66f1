"""Meta-training over mixtures of task families: MixtureEstimator and MixtureTaskFamily."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core
from lopt_core.testing import check_gradient_estimator
from lopt_learned import LearnableAdam
from lopt_optimizers import Adam
from lopt_outer import (
    ConstantTruncationSchedule,
    MixtureEstimator,
    SingleMachineGradientLearner,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
    mixture_estimator,
    truncated_unroll,
)
from lopt_tasks import augmentation
from lopt_tasks.mixture import MixtureTaskFamily
from lopt_tasks.quadratics import FixedDimQuadraticFamily, NoisyQuadraticFamily

LOPT = LearnableAdam(initial_learning_rate=0.03)
OUTER = lopt_core.OuterState(jnp.asarray(0, jnp.int32))


def _pes(family, num_tasks=2, length=10, unroll=5):
    step = VectorizedLOptTruncatedStep(
        family, LOPT, ConstantTruncationSchedule(length), num_tasks,
        random_initial_iteration_offset=length,
    )  # fmt: skip
    return TruncatedPES(step, unroll_length=unroll, std=0.01)


def _max_change(new, old, t):
    """The largest change of task `t`'s entries between two param trees."""
    leaves = zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(old))
    return max(float(jnp.max(jnp.abs(a[t] - b[t]))) for a, b in leaves)


@functools.cache
def _quad_families():
    return (FixedDimQuadraticFamily(4), NoisyQuadraticFamily(6))


def test_meta_training_over_three_families_samples_each_and_moves_theta():
    # Three families, two of them augmented (loss scale, per-tensor re-parametrisation).
    quad_a, quad_b = _quad_families()
    families = (
        augmentation.ScaleLossFamily(quad_a),
        augmentation.ReparamWeightsFamily(quad_b, level="tensor"),
        lopt_core.get_task_family("ImageMLPFamily_Digits8"),
    )
    mix = mixture_estimator(families, _pes)
    assert (
        lopt_core.REGISTRY.entry("outer_trainers", "MixtureEstimator").factory is MixtureEstimator
    )
    learner = SingleMachineGradientLearner(LOPT, [mix], Adam(0.05))
    state = learner.init(jax.random.PRNGKey(0))
    theta0 = learner.get_meta_params(state)
    prefix = mix.cfg_name()
    members = []
    steps = 6
    for i in range(steps):
        state, loss, metrics = learner.update(state, jax.random.PRNGKey(10 + i))
        assert np.isfinite(float(loss))
        members.append(int(metrics[f"{prefix}/member"]))
        name = mix.names[members[-1]]
        assert np.isfinite(float(metrics[f"{prefix}/meta_loss/{name}"]))
        # The member's normalised meta-loss is on the shared scale (quadratics and
        # classification alike read about 7 near their start).
        assert -5.0 < float(metrics[f"{prefix}/meta_loss/{name}"]) < 15.0
    counts = [int(metrics[f"{prefix}/count/{n}"]) for n in mix.names]
    assert sorted(set(members)) == [0, 1, 2], members  # every family was sampled
    assert counts == [members.count(j) for j in range(3)] and sum(counts) == steps
    theta = learner.get_meta_params(state)
    moved = max(float(jnp.max(jnp.abs(theta[k] - theta0[k]))) for k in theta)
    assert moved > 1e-3
    # Only the member that ran advanced: every member state is kept in the worker state.
    worker = state.gradient_estimator_states[0]
    assert len(worker.states) == 3 and int(worker.member) == members[-1]


def test_resampling_is_deterministic_and_resample_every_holds_the_member():
    ests = tuple(_pes(f) for f in _quad_families())
    key = jax.random.PRNGKey(7)
    every1 = MixtureEstimator(ests)
    seq = [every1.member_for(key, t) for t in range(40)]
    assert seq == [every1.member_for(key, t) for t in range(40)]  # same key, same sequence
    assert set(seq) == {0, 1}
    other = [every1.member_for(jax.random.PRNGKey(8), t) for t in range(40)]
    assert other != seq
    every2 = MixtureEstimator(ests, resample_every=2)
    seq2 = [every2.member_for(key, t) for t in range(40)]
    assert all(seq2[2 * k] == seq2[2 * k + 1] for k in range(20))
    assert len({seq2[2 * k] for k in range(20)}) == 2
    weighted = MixtureEstimator(ests, weights=(9.0, 1.0))
    frac = np.mean([weighted.member_for(key, t) == 0 for t in range(400)])
    assert 0.85 < frac < 0.95  # expected 0.9
    with pytest.raises(ValueError, match="2 estimators"):
        MixtureEstimator(ests, weights=(1.0,))
    with pytest.raises(TypeError, match="GradientEstimator"):
        MixtureEstimator((ests[0], "pes"))


def test_estimates_run_the_drawn_member_and_pass_the_contract():
    ests = tuple(_pes(f) for f in _quad_families())
    mix = MixtureEstimator(ests, resample_every=2)
    theta = LOPT.init(jax.random.PRNGKey(0))
    # The learner's precompile: every member compiles from shapes alone.
    shapes = lopt_core.WorkerWeights(jax.eval_shape(LOPT.init, jax.random.PRNGKey(0)), None, OUTER)
    assert mix.warm_up(shapes, jax.random.PRNGKey(1)) is True
    check_gradient_estimator(mix, theta=theta)
    state = mix.init_worker_state(
        lopt_core.WorkerWeights(theta, None, OUTER), jax.random.PRNGKey(1)
    )
    ran = []
    for t in range(4):
        weights = lopt_core.WorkerWeights(theta, None, lopt_core.OuterState(jnp.asarray(t)))
        out, metrics = mix.compute_gradient_estimate(weights, jax.random.PRNGKey(t), state)
        i = int(metrics["member"])
        assert i == mix.member_for(state.key, t)
        untouched = out.unroll_state.states[1 - i]
        assert untouched is state.states[1 - i]  # the other member's state is kept as is
        state = out.unroll_state
        ran.append(i)
    assert ran[0] == ran[1] and ran[2] == ran[3]
    assert list(np.asarray(state.counts)) == [ran.count(0), ran.count(1)]


def test_normalize_divides_by_the_running_meta_loss_scale():
    ests = tuple(_pes(f) for f in _quad_families())
    theta = LOPT.init(jax.random.PRNGKey(0))
    weights = lopt_core.WorkerWeights(theta, None, OUTER)
    plain, scaled = MixtureEstimator(ests), MixtureEstimator(ests, normalize=True)
    s0 = plain.init_worker_state(weights, jax.random.PRNGKey(1))
    a, _ = plain.compute_gradient_estimate(weights, jax.random.PRNGKey(2), s0)
    b, _ = scaled.compute_gradient_estimate(weights, jax.random.PRNGKey(2), s0)
    div = max(1.0, abs(float(a.mean_loss)))  # the first estimate sets the scale
    assert float(b.mean_loss) == pytest.approx(float(a.mean_loss) / div, rel=1e-5)
    for k in theta:
        np.testing.assert_allclose(np.asarray(b.grad[k]), np.asarray(a.grad[k]) / div, rtol=1e-5)
    i = int(b.unroll_state.member)
    assert float(b.unroll_state.loss_scale[i]) == pytest.approx(abs(float(a.mean_loss)), rel=1e-5)


def test_mixture_task_family_unrolls_in_one_jit_with_unused_members_untouched():
    digits = lopt_core.get_task_family("ImageMLPFamily_Digits8")
    family = MixtureTaskFamily((FixedDimQuadraticFamily(3), digits))
    num_tasks = 6
    step = VectorizedLOptTruncatedStep(family, LOPT, ConstantTruncationSchedule(50), num_tasks)
    assert step.keyed  # one key draws every member's batch inside the jit
    theta = LOPT.init(jax.random.PRNGKey(0))
    state0 = step.init_step_state(theta, OUTER, jax.random.PRNGKey(4))
    index = np.asarray(state0.task_param["family"])
    assert set(index.tolist()) == {0, 1}, index  # the switch index varies over tasks

    @jax.jit
    def unroll(theta, state, key):
        return truncated_unroll(step, theta, state, key, None, OUTER, 5)

    state, ys = unroll(theta, state0, jax.random.PRNGKey(5))
    losses = np.asarray(ys.loss)
    assert losses.shape == (5, num_tasks) and np.all(np.isfinite(losses))
    p0 = LOPT.opt_fn(theta).get_params(state0.inner_opt_state)
    p1 = LOPT.opt_fn(theta).get_params(state.inner_opt_state)
    for t in range(num_tasks):
        used, unused = f"f{index[t]}", f"f{1 - index[t]}"
        assert _max_change(p1[unused], p0[unused], t) == 0.0, (
            t,
            unused,
        )  # zero gradients, zero Adam updates
        assert _max_change(p1[used], p0[used], t) > 0.0, (t, used)
    # The normalised meta-losses of both members are on the shared scale.
    assert np.all((losses[1:] > -5.0) & (losses[1:] < 15.0))
