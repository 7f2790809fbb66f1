import jax
import jax.numpy as jnp
import numpy as np
import pytest
from outer_helpers import (
    DataQuadraticFamily,
    FixedQuadraticFamily,
    LearnableSGD,
    MetaAdam,
    sgd_quadratic_grad,
)

import lopt_core
from lopt_core.testing import check_gradient_estimator, count_compiles
from lopt_outer import (
    ConstantTruncationSchedule,
    FullES,
    FullGrad,
    SingleMachineGradientLearner,
    TruncatedES,
    TruncatedGrad,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
)
from lopt_outer._es import es_gradient
from lopt_outer._plugin import CATALOG
from lopt_outer.cli import build_estimator
from lopt_outer.truncated_pes import compute_pes_grad

OUTER = lopt_core.OuterState(jnp.asarray(0, jnp.int32))
LOG_LR = float(np.log(0.1))
T = 10


def _ours(kind):
    return {
        name: factory
        for name, factory in CATALOG.factories("outer_trainers").items()
        if isinstance(factory, type) and issubclass(factory, kind)
    }


def test_every_registered_estimator_passes_the_contract_check():
    entries = _ours(lopt_core.GradientEstimator)
    assert set(entries) == {
        "FullES",
        "TruncatedES",
        "TruncatedPES",
        "TruncatedGrad",
        "FullGrad",
        "MixtureEstimator",
    }
    sched = ConstantTruncationSchedule(8)
    step = VectorizedLOptTruncatedStep(
        DataQuadraticFamily(), LearnableSGD(0.05), sched, 4, random_initial_iteration_offset=8
    )
    members = []
    for name in sorted(set(entries) - {"MixtureEstimator"}):
        est = build_estimator(name, step, trunc_length=4, std=0.01, schedule=sched)
        check_gradient_estimator(est)
        members.append(est)
    # The mixture runs one member per outer step; it has no truncated step of its own.
    mixture = entries["MixtureEstimator"](tuple(members[:2]), resample_every=2)
    check_gradient_estimator(mixture, theta=step.learned_opt.init(jax.random.PRNGKey(0)))


def test_chunked_steps_per_jit_and_loss_types_pass_the_contract_check():
    sched = ConstantTruncationSchedule(6)
    step = VectorizedLOptTruncatedStep(DataQuadraticFamily(), LearnableSGD(0.05), sched, 3)
    check_gradient_estimator(TruncatedPES(step, unroll_length=6, steps_per_jit=3))
    check_gradient_estimator(FullES(step, sched, loss_type="min", steps_per_jit=2))
    check_gradient_estimator(FullES(step, sched, loss_type="last_recompute", recompute_samples=3))
    with pytest.raises(ValueError, match="multiple of steps_per_jit"):
        TruncatedPES(step, unroll_length=6, steps_per_jit=4)
    with pytest.raises(ValueError, match="loss_type must be one of"):
        FullES(step, sched, loss_type="median")


def _fixed_step(num_tasks):
    # The schedule is longer than any unroll here, so no task resets.
    return VectorizedLOptTruncatedStep(
        FixedQuadraticFamily(), LearnableSGD(0.1), ConstantTruncationSchedule(100), num_tasks
    )


def _estimate(est, key=None):
    key = jax.random.PRNGKey(3) if key is None else key
    theta = est.truncated_step.outer_init(key)
    weights = lopt_core.WorkerWeights(theta, None, OUTER)
    state = est.init_worker_state(weights, jax.random.PRNGKey(1))
    out, _ = est.compute_gradient_estimate(weights, key, state)
    return float(out.grad["log_lr"]), float(out.mean_loss)


def test_backprop_estimators_equal_the_analytic_gradient():
    # Losses of steps 1..T are measured before each update: after 0..T-1 updates.
    exact = sgd_quadratic_grad(LOG_LR, np.arange(T))
    for est in (
        TruncatedGrad(_fixed_step(2), unroll_length=T),
        FullGrad(_fixed_step(2), unroll_length=T),
    ):
        grad, _ = _estimate(est)
        np.testing.assert_allclose(grad, exact, rtol=1e-4)


# ES estimates mean_i (z_i^2) * g for z_i ~ N(0, 1): with 128 tasks its relative
# standard deviation is sqrt(2 / 128) = 0.125, so [0.6, 1.4] is a ~3 sigma band.
ES_TOLERANCE = (0.6, 1.4)


@pytest.mark.parametrize(
    "make, steps",
    [
        (lambda s: TruncatedPES(s, unroll_length=T, std=0.01), np.arange(T)),
        (lambda s: TruncatedES(s, unroll_length=T, std=0.01), np.arange(T)),
        (lambda s: FullES(s, unroll_length=T, std=0.01, loss_type="avg"), np.arange(T)),
        # The unroll's loss falls monotonically: its minimum is the last step's.
        (lambda s: FullES(s, unroll_length=T, std=0.01, loss_type="min"), np.asarray([T - 1])),
        # The final params (after T updates), re-evaluated.
        (
            lambda s: FullES(
                s, unroll_length=T, std=0.01, loss_type="last_recompute", recompute_samples=2
            ),
            np.asarray([T]),
        ),
    ],
    ids=["TruncatedPES", "TruncatedES", "FullES-avg", "FullES-min", "FullES-last_recompute"],
)
def test_es_estimators_agree_with_the_exact_gradient_of_the_same_unroll(make, steps):
    exact = sgd_quadratic_grad(LOG_LR, steps)
    grad, _ = _estimate(make(_fixed_step(128)))
    assert np.sign(grad) == np.sign(exact)
    assert ES_TOLERANCE[0] < grad / exact < ES_TOLERANCE[1], (grad, exact)


def _ys(is_done, pos, neg):
    steps = len(is_done)

    def mk(loss):
        return lopt_core.TruncatedUnrollOut(
            loss=jnp.asarray(loss, jnp.float32).reshape(steps, 1),
            is_done=jnp.asarray(is_done).reshape(steps, 1),
            task_param=jnp.zeros((steps, 1)),
            iteration=jnp.zeros((steps, 1), jnp.int32),
            mask=jnp.ones((steps, 1), bool),
        )

    return mk(pos), mk(neg)


def test_pes_credits_past_perturbations_and_resets_its_accumulator_when_a_task_is_done():
    std = 0.5
    acc = {"w": jnp.asarray([[2.0]])}
    eps = {"w": jnp.asarray([[1.0]])}
    # No reset: grad = delta / (2 std^2) * (acc + eps), accumulator becomes acc + eps.
    p, n = _ys([False, False], [3.0, 3.0], [2.0, 2.0])
    (loss, grad, _delta, _), new_acc = compute_pes_grad(p, n, acc, eps, std)
    np.testing.assert_allclose(float(grad["w"][0]), 1.0 / 0.5 * 3.0)
    np.testing.assert_allclose(new_acc["w"], [[3.0]])
    np.testing.assert_allclose(float(loss), 2.5)
    # Done at the first of 2 steps: both steps come after the reset began, only eps is
    # credited, and the accumulator restarts from eps.
    p, n = _ys([True, False], [3.0, 3.0], [2.0, 2.0])
    (_, grad, _, _), new_acc = compute_pes_grad(p, n, acc, eps, std)
    np.testing.assert_allclose(float(grad["w"][0]), 1.0 / 0.5 * 1.0)
    np.testing.assert_allclose(new_acc["w"], [[1.0]])


def test_pes_accumulator_grows_until_a_reset_then_restarts():
    step = VectorizedLOptTruncatedStep(
        FixedQuadraticFamily(), LearnableSGD(0.1), ConstantTruncationSchedule(5), 256
    )
    est = TruncatedPES(step, unroll_length=3, std=0.01)
    theta = step.outer_init(jax.random.PRNGKey(0))
    weights = lopt_core.WorkerWeights(theta, None, OUTER)
    state = est.init_worker_state(weights, jax.random.PRNGKey(0))
    spread = []
    for i in range(2):
        out, _ = est.compute_gradient_estimate(weights, jax.random.PRNGKey(i), state)
        state = out.unroll_state
        spread.append(float(jnp.std(state.accumulator["log_lr"])))
    # Call 1 (steps 1-3): one perturbation, std ~ 0.01. Call 2 (steps 4-6) finishes the
    # truncation at step 5: the accumulator is this call's perturbation alone, not a sum.
    np.testing.assert_allclose(spread, [0.01, 0.01], rtol=0.15)
    assert bool(jnp.all(state.pos_state.inner_step == 0))  # step 6 was the reset


def test_a_second_outer_step_compiles_nothing():
    sched = ConstantTruncationSchedule(20)
    step = VectorizedLOptTruncatedStep(
        DataQuadraticFamily(), LearnableSGD(0.05), sched, 4, random_initial_iteration_offset=20
    )
    for est in (TruncatedPES(step, 5), FullES(step, sched), TruncatedGrad(step, 5)):
        learner = SingleMachineGradientLearner(LearnableSGD(0.05), [est], MetaAdam(1e-2))
        state = learner.init(jax.random.PRNGKey(0))
        state, _, _ = learner.update(state, jax.random.PRNGKey(1))
        jax.block_until_ready(state)
        with count_compiles() as c:
            state, loss, _ = learner.update(state, jax.random.PRNGKey(2))
            jax.block_until_ready(state)
        assert c["n"] == 0, type(est).__name__
        assert np.isfinite(float(loss))


def test_plain_iterator_data_is_pulled_once_per_unroll():
    fam = DataQuadraticFamily(keyed=False)
    step = VectorizedLOptTruncatedStep(fam, LearnableSGD(0.05), ConstantTruncationSchedule(20), 4)
    calls = {"n": 0}
    it = fam.datasets.train
    orig = type(it).__next__

    class Counting(type(it)):
        def __next__(self):
            calls["n"] += 1
            return orig(self)

    it.__class__ = Counting
    est = TruncatedPES(step, unroll_length=5)
    weights = lopt_core.WorkerWeights(step.outer_init(jax.random.PRNGKey(0)), None, OUTER)
    state = est.init_worker_state(weights, jax.random.PRNGKey(0))
    out, _ = est.compute_gradient_estimate(weights, jax.random.PRNGKey(1), state)
    assert calls["n"] == 5 * 4  # one batch per step and task, all pulled before the one jitted call
    assert np.isfinite(float(out.mean_loss))


def test_init_precompiles_so_the_first_outer_step_compiles_nothing():
    sched = ConstantTruncationSchedule(20)
    step = VectorizedLOptTruncatedStep(DataQuadraticFamily(), LearnableSGD(0.05), sched, 4)
    for est in (TruncatedPES(step, 5), FullES(step, sched)):
        learner = SingleMachineGradientLearner(LearnableSGD(0.05), [est], MetaAdam(1e-2))
        state = jax.block_until_ready(learner.init(jax.random.PRNGKey(0)))
        with count_compiles() as c:
            jax.block_until_ready(learner.update(state, jax.random.PRNGKey(1)))
        assert c["n"] == 0, type(est).__name__
    # Without precompile the first step compiles the estimate itself. (A new step:
    # an estimator equal to one above would share its compiled estimate.)
    step = VectorizedLOptTruncatedStep(DataQuadraticFamily(), LearnableSGD(0.05), sched, 4)
    est = TruncatedPES(step, 5)
    learner = SingleMachineGradientLearner(
        LearnableSGD(0.05), [est], MetaAdam(1e-2), precompile=False
    )
    state = jax.block_until_ready(learner.init(jax.random.PRNGKey(0)))
    with count_compiles() as c:
        jax.block_until_ready(learner.update(state, jax.random.PRNGKey(1)))
    assert c["n"] >= 1


@pytest.mark.parametrize(
    "make",
    [
        lambda s: TruncatedPES(s, unroll_length=T, std=0.01, antithetic=False),
        lambda s: TruncatedES(s, unroll_length=T, std=0.01, antithetic=False),
        lambda s: FullES(s, unroll_length=T, std=0.01, antithetic=False),
    ],
    ids=["TruncatedPES", "TruncatedES", "FullES"],
)
def test_one_sided_es_estimators_agree_with_the_exact_gradient(make):
    exact = sgd_quadratic_grad(LOG_LR, np.arange(T))
    est = make(_fixed_step(128))
    grad, _ = _estimate(est)
    assert np.sign(grad) == np.sign(exact)
    assert ES_TOLERANCE[0] < grad / exact < ES_TOLERANCE[1], (grad, exact)
    # One copy per task: the worker state holds no negative copy.
    key = jax.random.PRNGKey(0)
    weights = lopt_core.WorkerWeights(est.truncated_step.outer_init(key), None, OUTER)
    state = est.init_worker_state(weights, key)
    if isinstance(est, TruncatedPES):
        assert state.neg_state is None
        assert state.pos_state.inner_step.shape == (128,)


def test_es_gradient_one_sided_uses_the_other_tasks_mean_as_baseline():
    pos = jnp.asarray([1.0, 2.0, 6.0, jnp.nan])
    eps = {"w": jnp.asarray([[1.0], [2.0], [3.0], [4.0]])}
    mean_loss, grad, delta, num_nonfinite = es_gradient(pos, None, eps, std=0.5)
    # Baselines over the other finite losses: 4, 3.5, 1.5; the NaN task adds nothing.
    np.testing.assert_allclose(delta, [-3.0, -1.5, 4.5, 0.0])
    # The NaN task is masked out: the mean is over the 3 finite tasks,
    # (-3 * 1 - 1.5 * 2 + 4.5 * 3) / 3 / 0.25.
    np.testing.assert_allclose(float(grad["w"][0]), 10.0, rtol=1e-6)
    np.testing.assert_allclose(float(mean_loss), 3.0)
    assert int(num_nonfinite) == 1
    # Antithetic: (pos - neg) / (2 std^2), clipped where asked.
    _, grad, delta, _ = es_gradient(pos[:3], pos[:3] - 1.0, eps["w"][:3], 0.5, clip_loss_diff=0.5)
    np.testing.assert_allclose(delta, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(float(grad[0]), 0.5 / 0.5 * 2.0, rtol=1e-6)


def test_one_sided_pes_credits_the_accumulated_perturbations():
    acc = {"w": jnp.asarray([[2.0], [0.0]])}
    eps = {"w": jnp.asarray([[1.0], [1.0]])}
    steps = 2

    def ys(losses):
        return lopt_core.TruncatedUnrollOut(
            loss=jnp.asarray(losses, jnp.float32).reshape(steps, 2),
            is_done=jnp.zeros((steps, 2), bool),
            task_param=jnp.zeros((steps, 2)),
            iteration=jnp.zeros((steps, 2), jnp.int32),
            mask=jnp.ones((steps, 2), bool),
        )

    (loss, grad, delta, _), new_acc = compute_pes_grad(ys([[3.0, 1.0]] * 2), None, acc, eps, 0.5)
    # delta = (3 - 1, 1 - 3); credited = acc + eps = (3, 1); grad = mean(delta * c) / std^2.
    np.testing.assert_allclose(delta, [2.0, -2.0])
    np.testing.assert_allclose(float(grad["w"][0]), (2.0 * 3.0 - 2.0 * 1.0) / 2 / 0.25)
    np.testing.assert_allclose(new_acc["w"], [[3.0], [1.0]])
    np.testing.assert_allclose(float(loss), 2.0)


def test_antithetic_unroll_handles_state_leaves_with_a_zero_sized_axis():
    # AdafacMLPLOpt's factored accumulators of a vector parameter have a zero-sized
    # axis; merging the antithetic copies once inferred a -1 from it (ZeroDivisionError).
    import lopt_learned

    lopt = lopt_learned.AdafacMLPLOpt()
    step = VectorizedLOptTruncatedStep(
        DataQuadraticFamily(), lopt, ConstantTruncationSchedule(20), num_tasks=2
    )
    est = TruncatedPES(step, unroll_length=3)
    theta = lopt.init(jax.random.PRNGKey(0))
    weights = lopt_core.WorkerWeights(theta, None, lopt_core.OuterState(jnp.asarray(0)))
    state = est.init_worker_state(weights, jax.random.PRNGKey(1))
    assert any(0 in np.shape(x) for x in jax.tree_util.tree_leaves(state))
    out, _ = est.compute_gradient_estimate(weights, jax.random.PRNGKey(2), state)
    assert np.isfinite(float(out.mean_loss))
    assert jax.tree_util.tree_structure(out.unroll_state) == jax.tree_util.tree_structure(state)
