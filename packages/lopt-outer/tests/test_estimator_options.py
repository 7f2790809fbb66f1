"""The estimator options the reference library has: their values, semantics and errors.

`stack_antithetic_samples` (the ES family), `sign_delta_loss_scalar` (the ES
family), `loss_type` of FullES ("last"), FullGrad ("avg", "last") and TruncatedGrad
("avg", "last_recompute"), and FullES's `recompute_split`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from outer_helpers import (
    DataQuadraticFamily,
    FixedQuadraticFamily,
    LearnableSGD,
    sgd_quadratic_grad,
    sgd_quadratic_losses,
)

import lopt_core
from lopt_outer import (
    ConstantTruncationSchedule,
    FullES,
    FullGrad,
    TruncatedES,
    TruncatedGrad,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
)
from lopt_outer._es import es_gradient, loss_difference
from lopt_outer._estimator import GradientEstimatorState
from lopt_outer.full_es import FullESState
from lopt_outer.truncated_grad import FullGradState
from lopt_outer.truncated_pes import PESWorkerState, compute_pes_grad
from lopt_outer.truncated_step import VectorizedTruncatedStep

OUTER = lopt_core.OuterState(jnp.asarray(0, jnp.int32))
LOG_LR = float(np.log(0.1))
T = 6


def _data_step(num_tasks=3, length=4, **kwargs):
    """Least squares on keyed data; tasks start at random inner steps and reset every 4."""
    sched = ConstantTruncationSchedule(length)
    return VectorizedLOptTruncatedStep(
        DataQuadraticFamily(), LearnableSGD(0.05), sched, num_tasks,
        random_initial_iteration_offset=length, **kwargs,
    )  # fmt: skip


def _fixed_step(num_tasks):
    """SGD on a fixed quadratic from x0 = 1; the schedule outlasts every unroll here."""
    return VectorizedLOptTruncatedStep(
        FixedQuadraticFamily(), LearnableSGD(0.1), ConstantTruncationSchedule(100), num_tasks
    )


class _SplitsFamily(DataQuadraticFamily):
    """Least squares whose four splits hold different targets (x @ w_split), keyed."""

    def __init__(self) -> None:
        rng = np.random.RandomState(0)
        x = rng.randn(64, 3).astype(np.float32)
        splits = []
        for i in range(4):
            y = (x @ np.array([1.0, -2.0, 0.5 + i], np.float32)).astype(np.float32)
            splits.append(lopt_core.ArraySplit({"x": x, "y": y}, batch_size=16, seed=i))
        self.datasets = lopt_core.Datasets(*splits)


def _run(est, estimates=1, key=3):
    """`estimates` consecutive estimates (the state carried on); returns the outputs and metrics."""
    theta = est.truncated_step.outer_init(jax.random.PRNGKey(0))
    weights = lopt_core.WorkerWeights(theta, None, OUTER)
    state = est.init_worker_state(weights, jax.random.PRNGKey(1))
    results = []
    for i in range(estimates):
        out, metrics = est.compute_gradient_estimate(weights, jax.random.PRNGKey(key + i), state)
        state = out.unroll_state
        results.append((out, metrics))
    return results


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# -- stack_antithetic_samples ---------------------------------------------------------


@pytest.mark.parametrize(
    "make, family",
    [
        (lambda s, **k: TruncatedPES(s, unroll_length=4, std=0.05, **k), DataQuadraticFamily),
        (
            lambda s, **k: FullES(
                s, unroll_length=4, std=0.05, loss_type="last_recompute", recompute_samples=2,
                **k,
            ),
            _SplitsFamily,
        ),
    ],
    ids=["TruncatedPES-host-data", "FullES-last_recompute-keyed-data"],
)  # fmt: skip
def test_unstacked_antithetic_pairs_give_the_stacked_estimate(make, family):
    # PES on host batches (plain iterators), with resets inside the truncations
    # (random initial steps, schedule of 4); FullES's recompute on keyed batches.
    def step():
        # A fresh family each time: its plain iterators then yield the same batches.
        fam = family(keyed=False) if family is DataQuadraticFamily else family()
        return VectorizedLOptTruncatedStep(
            fam, LearnableSGD(0.05), ConstantTruncationSchedule(4), 3,
            random_initial_iteration_offset=4,
        )  # fmt: skip

    stacked = _run(make(step()), estimates=2)
    unstacked_est = make(step(), stack_antithetic_samples=False)
    assert unstacked_est.stack_antithetic_samples is False and unstacked_est._sequential
    unstacked = _run(unstacked_est, estimates=2)
    for (out_s, m_s), (out_u, m_u) in zip(stacked, unstacked):
        # Gradient, mean loss, next state (PES: both copies and the accumulator),
        # per-step outputs and metrics all agree.
        _assert_trees_close(out_s.grad, out_u.grad)
        np.testing.assert_allclose(out_s.mean_loss, out_u.mean_loss, rtol=1e-6)
        _assert_trees_close(out_s.unroll_state, out_u.unroll_state)
        _assert_trees_close(out_s.unroll_info, out_u.unroll_info)
        assert set(m_s) == set(m_u)
        _assert_trees_close(m_s, m_u)
        assert np.all(np.isfinite(out_u.mean_loss)) and out_u.mean_loss > 0
    if isinstance(unstacked_est, TruncatedPES):
        assert int(stacked[0][1]["resets"]) + int(stacked[1][1]["resets"]) > 0
    # The estimates are not trivially zero.
    assert any(abs(float(g)) > 0 for g in jax.tree_util.tree_leaves(stacked[0][0].grad))


class _NoAntitheticKeyword(lopt_core.TruncatedStep):
    """A user's vectorised step whose unroll_step has the reference's signature (no `antithetic=`)."""

    def __init__(self, inner):
        self.inner = inner
        self.num_tasks = inner.num_tasks
        self.datasets = inner.datasets
        self.keyed = inner.keyed

    def outer_init(self, key):
        return self.inner.outer_init(key)

    def init_step_state(self, theta, outer_state, key, theta_is_vector=False, **kwargs):
        return self.inner.init_step_state(theta, outer_state, key, theta_is_vector, **kwargs)

    def unroll_step(self, theta, unroll_state, key, data, outer_state, theta_is_vector=False):
        return self.inner.unroll_step(theta, unroll_state, key, data, outer_state, theta_is_vector)

    def meta_loss_batch(self, theta, unroll_state, key, data, outer_state, theta_is_vector=False):
        return self.inner.meta_loss_batch(
            theta, unroll_state, key, data, outer_state, theta_is_vector
        )

    def get_batch(self, steps=None):
        return self.inner.get_batch(steps)

    def get_outer_batch(self, steps=None):
        return self.inner.get_outer_batch(steps)

    def task_name(self):
        return self.inner.task_name()


def test_unstacked_pairs_run_a_step_without_the_antithetic_keyword():
    inner = _fixed_step(3)
    user_step = _NoAntitheticKeyword(inner)
    with pytest.raises(TypeError, match="antithetic"):
        _run(TruncatedES(user_step, unroll_length=4, std=0.05))
    (out, _), = _run(TruncatedES(user_step, unroll_length=4, std=0.05, stack_antithetic_samples=False))  # fmt: skip
    (want, _), = _run(TruncatedES(inner, unroll_length=4, std=0.05))  # fmt: skip
    _assert_trees_close(out.grad, want.grad)
    np.testing.assert_allclose(out.mean_loss, want.mean_loss, rtol=1e-6)


def test_stack_antithetic_samples_is_checked():
    step = _data_step()
    for cls in (TruncatedPES, TruncatedES, FullES):
        est = cls(step, unroll_length=4)
        assert est.stack_antithetic_samples is True and est.sign_delta_loss_scalar is None
        with pytest.raises(TypeError, match="stack_antithetic_samples must be True or False"):
            cls(step, unroll_length=4, stack_antithetic_samples="no")
        with pytest.raises(ValueError, match="only applies to antithetic pairs"):
            cls(step, unroll_length=4, antithetic=False, stack_antithetic_samples=False)
    # Keyword-only, like `antithetic`.
    with pytest.raises(TypeError):
        TruncatedPES(step, 4, 0.01, None, False)
    # Part of the configuration: equal settings compare equal, others differ.
    assert TruncatedPES(step, 4, stack_antithetic_samples=False) == TruncatedPES(
        step, 4, stack_antithetic_samples=False
    )
    assert TruncatedPES(step, 4, stack_antithetic_samples=False) != TruncatedPES(step, 4)


# -- sign_delta_loss_scalar -----------------------------------------------------------


def test_sign_delta_loss_scalar_replaces_each_difference_by_its_sign_times_the_scalar():
    pos = jnp.asarray([3.0, 1.0, 2.0, 5.0])
    neg = jnp.asarray([1.0, 2.0, 2.0, 4.0])
    directions = {"a": jnp.asarray([[1.0], [2.0], [3.0], [4.0]])}
    np.testing.assert_allclose(loss_difference(pos, neg), [2.0, -1.0, 0.0, 1.0])
    np.testing.assert_allclose(loss_difference(pos, neg, None, 0.1), [0.1, -0.1, 0.0, 0.1])
    # The sign is taken after clipping (as the reference does): the same signs.
    np.testing.assert_allclose(loss_difference(pos, neg, 0.5, 0.1), [0.1, -0.1, 0.0, 0.1])
    est = es_gradient(pos, neg, directions, std=0.5, sign_delta_loss_scalar=0.1)
    # coef_i = 0.1 * sign_i / (2 * 0.5**2) = 0.2 * sign_i; grad = mean_i coef_i * d_i.
    np.testing.assert_allclose(est.grad["a"], [(0.2 * 1 - 0.2 * 2 + 0 + 0.2 * 4) / 4], rtol=1e-6)
    np.testing.assert_allclose(est.delta, [0.1, -0.1, 0.0, 0.1])
    # The mean loss stays the real one.
    np.testing.assert_allclose(est.mean_loss, np.mean((pos + neg) / 2), rtol=1e-6)
    # A diverged task (NaN loss) still adds nothing.
    bad = es_gradient(pos.at[0].set(jnp.nan), neg, directions, 0.5, sign_delta_loss_scalar=0.1)
    np.testing.assert_allclose(bad.grad["a"], [(-0.2 * 2 + 0 + 0.2 * 4) / 3], rtol=1e-6)
    assert int(bad.num_nonfinite) == 1


def test_pes_takes_the_sign_of_the_truncations_mean_difference():
    # Two tasks, three steps: task 0's per-step differences are (+3, -1, -1) (mean
    # +1/3 > 0), task 1's (-1, -1, +1) (mean -1/3); nobody is reset.
    p_loss = jnp.asarray([[4.0, 1.0], [1.0, 1.0], [1.0, 3.0]])
    n_loss = jnp.asarray([[1.0, 2.0], [2.0, 2.0], [2.0, 2.0]])
    out = lopt_core.TruncatedUnrollOut
    zeros = jnp.zeros((3, 2), bool)

    def ys(loss):
        return out(loss=loss, is_done=zeros, task_param=None, iteration=None, mask=~zeros)

    acc = {"a": jnp.asarray([[1.0], [1.0]])}
    eps = {"a": jnp.asarray([[0.5], [2.0]])}
    est, new_acc = compute_pes_grad(ys(p_loss), ys(n_loss), acc, eps, 0.5, 0.25)
    # credited_i = eps_i + acc_i = (1.5, 3.0); coef_i = 0.25 * sign_i / (2 * 0.25).
    np.testing.assert_allclose(est.delta, [0.25, -0.25])
    np.testing.assert_allclose(est.grad["a"], [(0.5 * 1.5 - 0.5 * 3.0) / 2], rtol=1e-6)
    np.testing.assert_allclose(new_acc["a"], [[1.5], [3.0]])


@pytest.mark.parametrize(
    "make",
    [
        lambda s, **k: TruncatedPES(s, unroll_length=T, std=0.01, **k),
        lambda s, **k: FullES(s, unroll_length=T, std=0.01, **k),
    ],
    ids=["TruncatedPES", "FullES"],
)
def test_sign_delta_loss_scalar_scales_a_one_task_estimate_exactly(make):
    # One task: the plain estimate is delta * g, the signed one c * sign(delta) * g,
    # for the same perturbation g (same keys): their ratio is c / |delta|.
    step = _fixed_step(1)
    plain = _run(make(step), estimates=2)
    signed = _run(make(step, sign_delta_loss_scalar=2e-4), estimates=2)
    for (p_out, p_m), (s_out, s_m) in zip(plain, signed):
        delta = float(p_m["delta_loss_abs_mean"])
        assert delta > 0
        np.testing.assert_allclose(float(s_m["delta_loss_abs_mean"]), 2e-4, rtol=1e-6)
        for name in p_out.grad:
            want = float(p_out.grad[name]) * 2e-4 / delta
            np.testing.assert_allclose(float(s_out.grad[name]), want, rtol=1e-4, atol=1e-9)
        # The sign is the one of the raw estimate: a larger lr lowers the loss.
        assert float(s_out.grad["log_lr"]) < 0
        np.testing.assert_allclose(s_out.mean_loss, p_out.mean_loss, rtol=1e-6)


def test_sign_delta_loss_scalar_is_checked():
    step = _data_step()
    for cls in (TruncatedPES, TruncatedES, FullES):
        assert cls(step, unroll_length=4, sign_delta_loss_scalar=1).sign_delta_loss_scalar == 1.0
        for bad in (0, -0.1, float("nan")):
            with pytest.raises(ValueError, match="sign_delta_loss_scalar"):
                cls(step, unroll_length=4, sign_delta_loss_scalar=bad)
        with pytest.raises(TypeError, match="sign_delta_loss_scalar must be None or a number"):
            cls(step, unroll_length=4, sign_delta_loss_scalar=True)


# -- loss_type ------------------------------------------------------------------------


def _grad_and_loss(est):
    ((out, _),) = _run(est)
    return float(out.grad["log_lr"]), float(out.mean_loss)


def test_fullgrad_last_is_the_gradient_of_the_last_steps_loss():
    # The loss of step T is measured before its update: after T - 1 updates.
    grad, loss = _grad_and_loss(FullGrad(_fixed_step(2), unroll_length=T, loss_type="last"))
    np.testing.assert_allclose(grad, sgd_quadratic_grad(LOG_LR, np.asarray([T - 1])), rtol=1e-4)
    np.testing.assert_allclose(loss, sgd_quadratic_losses(LOG_LR, np.asarray([T - 1]))[0], 1e-5)
    # "avg" (tests/test_estimators.py) differentiates the mean over steps 1..T.
    avg = sgd_quadratic_grad(LOG_LR, np.arange(T))
    assert abs(grad - avg) > 0.1 * abs(avg)


def test_truncatedgrad_last_recompute_is_the_gradient_of_the_final_params_loss():
    est = TruncatedGrad(_fixed_step(2), unroll_length=T, loss_type="last_recompute",
                        recompute_samples=3)  # fmt: skip
    grad, loss = _grad_and_loss(est)
    # The final params are those after T updates.
    np.testing.assert_allclose(grad, sgd_quadratic_grad(LOG_LR, np.asarray([T])), rtol=1e-4)
    np.testing.assert_allclose(loss, sgd_quadratic_losses(LOG_LR, np.asarray([T]))[0], 1e-5)
    # Chunked: the same gradient.
    chunked = TruncatedGrad(_fixed_step(2), unroll_length=T, steps_per_jit=2,
                            loss_type="last_recompute", recompute_samples=3)  # fmt: skip
    np.testing.assert_allclose(_grad_and_loss(chunked)[0], grad, rtol=1e-5)


def test_truncatedgrad_last_recompute_on_data_averages_outer_batches():
    step = _data_step()
    ((out, metrics),) = _run(TruncatedGrad(step, unroll_length=4, loss_type="last_recompute",
                                           recompute_samples=4))  # fmt: skip
    assert np.isfinite(float(out.mean_loss)) and float(out.mean_loss) > 0
    assert int(metrics["nonfinite_tasks"]) == 0
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(out.grad))
    np.testing.assert_array_equal(np.asarray(out.unroll_info.loss).shape, (4, 3))
    assert any(float(g) != 0.0 for g in jax.tree_util.tree_leaves(out.grad))
    # The meta-loss is the final params' loss, not the truncation's mean training loss.
    train_mean = float(np.mean(np.asarray(out.unroll_info.loss)[np.asarray(out.unroll_info.mask)]))
    assert float(out.mean_loss) != pytest.approx(train_mean, rel=1e-3)


def test_fulles_last_is_the_last_steps_loss():
    # The quadratic's loss falls at every step, so the lowest loss is the last one:
    # "min" and "last" give the same estimate.
    step = _fixed_step(4)
    (last, _), = _run(FullES(step, unroll_length=T, std=0.01, loss_type="last"))  # fmt: skip
    (low, _), = _run(FullES(step, unroll_length=T, std=0.01, loss_type="min"))  # fmt: skip
    _assert_trees_close(last.grad, low.grad, rtol=1e-6, atol=0)
    assert float(last.grad["log_lr"]) < 0
    # Its mean loss is the loss after T - 1 updates (both copies, +-eps, averaged).
    want = sgd_quadratic_losses(LOG_LR, np.asarray([T - 1]))[0]
    np.testing.assert_allclose(last.mean_loss, want, rtol=1e-3)
    assert isinstance(last.unroll_state, FullESState)


def test_loss_types_are_checked():
    step = _fixed_step(2)
    with pytest.raises(ValueError, match="loss_type must be one of 'avg', 'last_recompute'"):
        TruncatedGrad(step, unroll_length=4, loss_type="last")
    with pytest.raises(ValueError, match="loss_type must be one of 'avg', 'last', got 'min'"):
        FullGrad(step, unroll_length=4, loss_type="min")
    with pytest.raises(ValueError, match="'avg', 'min', 'last', 'last_recompute', got 'mean'"):
        FullES(step, unroll_length=4, loss_type="mean")
    with pytest.raises(ValueError, match="recompute_samples"):
        TruncatedGrad(step, unroll_length=4, loss_type="last_recompute", recompute_samples=0)
    # The defaults keep what the estimators computed before.
    assert TruncatedGrad(step).loss_type == FullGrad(step, unroll_length=4).loss_type == "avg"
    # The reference's positional order: TruncatedGrad(step, unroll_length, steps_per_jit, loss_type).
    assert TruncatedGrad(step, 4, 2, "last_recompute").loss_type == "last_recompute"


# -- recompute_split ------------------------------------------------------------------


def test_recompute_split_evaluates_the_final_params_on_that_split():
    kw = dict(unroll_length=2, std=0.05, loss_type="last_recompute", recompute_samples=2)

    def step(**k):
        return VectorizedLOptTruncatedStep(
            _SplitsFamily(), LearnableSGD(0.05), ConstantTruncationSchedule(8), 2, **k
        )

    on_train = step()
    est = FullES(on_train, recompute_split="test", **kw)
    assert est._recompute_step.outer_data_split == "test"
    assert est.truncated_step is on_train and on_train.outer_data_split == "train"
    # The same estimate as a step whose outer_data_split is "test".
    (got, _), = _run(est)  # fmt: skip
    (want, _), = _run(FullES(step(outer_data_split="test"), **kw))  # fmt: skip
    _assert_trees_close(got.grad, want.grad)
    np.testing.assert_allclose(got.mean_loss, want.mean_loss, rtol=1e-6)
    # None (the default), or the step's own split: the step's outer_data_split.
    assert FullES(on_train, **kw)._recompute_step is on_train
    assert FullES(on_train, recompute_split="train", **kw)._recompute_step is on_train
    # The splits' targets differ, so the recomputed losses do: the same params and
    # keys give another meta_loss_batch on "test" than on "train".
    theta = on_train.outer_init(jax.random.PRNGKey(0))
    state = on_train.init_step_state(theta, OUTER, jax.random.PRNGKey(1))
    k = jax.random.PRNGKey(2)
    on_test = np.asarray(est._recompute_step.meta_loss_batch(theta, state, k, None, OUTER))
    on_tr = np.asarray(on_train.meta_loss_batch(theta, state, k, None, OUTER))
    assert on_test.shape == on_tr.shape == (2,) and np.all(np.abs(on_test - on_tr) > 1e-3)


def test_recompute_split_is_checked():
    step = _data_step()
    kw = dict(unroll_length=4, loss_type="last_recompute")
    with pytest.raises(ValueError, match="recompute_split must be one of 'train', 'inner_valid'"):
        FullES(step, recompute_split="validation", **kw)
    with pytest.raises(ValueError, match='only applies to loss_type="last_recompute"'):
        FullES(step, unroll_length=4, recompute_split="test")
    wrapped = VectorizedTruncatedStep(_NoAntitheticKeyword(step), 3)
    with pytest.raises(TypeError, match="needs a truncated step with an outer_data_split field"):
        FullES(wrapped, recompute_split="test", **kw)


def test_estimator_states_derive_from_gradient_estimator_state():
    assert issubclass(FullESState, GradientEstimatorState)
    assert issubclass(FullGradState, GradientEstimatorState)
    assert issubclass(PESWorkerState, GradientEstimatorState)
    # An empty pytree, as in the reference.
    assert jax.tree_util.tree_leaves(GradientEstimatorState()) == []
