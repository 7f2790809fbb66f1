"""VectorizedLOptTruncatedStep's `meta_loss_with_aux_key` and `task_name` (the reference's options).

`meta_loss_with_aux_key` makes the meta-loss a task's aux value (here the "l2" and
"l1" of `FixedDimQuadraticFamilyData`'s tasks, `mean(p**2)` and `mean(|p|)`)
instead of its loss, while the inner training still follows the loss. `task_name`
(stored as the field `family_name`) is what `task_name()` returns.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core
import lopt_learned
from lopt_outer import (
    ConstantTruncationSchedule,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
    gradient_worker_compute,
)
from lopt_tasks.quadratics import FixedDimQuadraticFamily, FixedDimQuadraticFamilyData

OUTER = lopt_core.OuterState(jnp.asarray(0, jnp.int32))
KEY = jax.random.PRNGKey(0)


class _VectorAuxTask(lopt_core.Task):
    def __init__(self, target):
        self.target = target

    def init(self, key):
        return jax.random.normal(key, self.target.shape)

    def loss(self, params, key, data):
        return jnp.sum(jnp.square(params - self.target))

    def loss_and_aux(self, params, key, data):
        return self.loss(params, key, data), {"params": params}


class _VectorAuxFamily(FixedDimQuadraticFamily):
    def task_fn(self, cfg):
        return _VectorAuxTask(cfg)


def _step(**kwargs):
    return VectorizedLOptTruncatedStep(
        FixedDimQuadraticFamilyData(4),
        lopt_learned.LearnableSGD(1e-1),
        ConstantTruncationSchedule(5),
        3,
        **kwargs,
    )


def _params(step, theta, state):
    return step.learned_opt.opt_fn(theta).get_params(state.inner_opt_state)


def _one_step(step):
    theta = step.outer_init(KEY)
    state0 = step.init_step_state(theta, OUTER, KEY)
    state1, ys = jax.jit(lambda s, k: step.unroll_step(theta, s, k, None, OUTER))(
        state0, jax.random.PRNGKey(1)
    )
    return theta, state0, state1, ys


def test_the_meta_loss_is_the_aux_value_at_the_trained_params():
    theta, state0, state1, ys = _one_step(_step(meta_loss_with_aux_key="l2"))
    p0 = np.asarray(_params(_step(), theta, state0))
    # The step's meta-loss is mean(p**2) at the params the loss was taken at (before
    # the update), through the family's normalizer (a clip to [0, 1000]).
    np.testing.assert_allclose(ys.loss, np.mean(p0**2, axis=1), rtol=1e-6)
    assert ys.loss.shape == (3,) and bool(jnp.all(ys.mask))

    # The inner training is unchanged: it follows the loss, not the aux value.
    _, _, plain_state1, plain_ys = _one_step(_step())
    np.testing.assert_array_equal(
        _params(_step(), theta, state1), _params(_step(), theta, plain_state1)
    )
    assert not np.allclose(ys.loss, plain_ys.loss)

    # "l1" is mean(|p|) (meta_loss_batch, not normalised, gives it directly).
    step_l1 = _step(meta_loss_with_aux_key="l1")
    np.testing.assert_allclose(
        step_l1.meta_loss_batch(theta, state0, KEY, None, OUTER),
        np.mean(np.abs(p0), axis=1),
        rtol=1e-6,
    )


def test_with_a_meta_loss_split_the_aux_value_is_taken_after_the_update():
    theta, _, state1, ys = _one_step(_step(meta_loss_with_aux_key="l2", meta_loss_split="train"))
    p1 = np.asarray(_params(_step(), theta, state1))
    np.testing.assert_allclose(ys.loss, np.mean(p1**2, axis=1), rtol=1e-6)


def test_meta_loss_batch_returns_the_aux_value_unnormalised():
    step = _step(meta_loss_with_aux_key="l2")
    theta = step.outer_init(KEY)
    state = step.init_step_state(theta, OUTER, KEY)
    # A family whose normalizer is not the identity shows the difference: the
    # reference returns aux values from meta_loss_batch without normalising them.
    losses = step.meta_loss_batch(theta, state, KEY, None, OUTER)
    p = np.asarray(_params(step, theta, state))
    np.testing.assert_allclose(losses, np.mean(p**2, axis=1), rtol=1e-6)
    assert losses.shape == (3,) and losses.dtype == jnp.float32


def test_a_missing_aux_key_names_the_ones_there_are():
    step = _step(meta_loss_with_aux_key="l3")
    theta = step.outer_init(KEY)
    state = step.init_step_state(theta, OUTER, KEY)
    with pytest.raises(ValueError, match=r"meta_loss_with_aux_key='l3'.*\['l1', 'l2'\]"):
        step.unroll_step(theta, state, KEY, None, OUTER)
    with pytest.raises(ValueError, match=r"meta_loss_with_aux_key='l3'.*\['l1', 'l2'\]"):
        step.meta_loss_batch(theta, state, KEY, None, OUTER)
    # A family whose tasks have no aux values at all: the list is empty.
    plain = VectorizedLOptTruncatedStep(
        FixedDimQuadraticFamily(4),
        lopt_learned.LearnableSGD(),
        ConstantTruncationSchedule(5),
        2,
        meta_loss_with_aux_key="l2",
    )
    theta = plain.outer_init(KEY)
    state = plain.init_step_state(theta, OUTER, KEY)
    with pytest.raises(ValueError, match=r"return the aux values \[\]"):
        plain.meta_loss_batch(theta, state, KEY, None, OUTER)
    # An aux value that is not a scalar cannot be a meta-loss.
    vector = VectorizedLOptTruncatedStep(
        _VectorAuxFamily(4),
        lopt_learned.LearnableSGD(),
        ConstantTruncationSchedule(5),
        2,
        meta_loss_with_aux_key="params",
    )
    theta = vector.outer_init(KEY)
    state = vector.init_step_state(theta, OUTER, KEY)
    with pytest.raises(ValueError, match=r"'params' names an aux value of shape \(4,\)"):
        vector.meta_loss_batch(theta, state, KEY, None, OUTER)
    with pytest.raises(TypeError, match="meta_loss_with_aux_key must be a non-empty string"):
        _step(meta_loss_with_aux_key=3)
    with pytest.raises(TypeError, match="meta_loss_with_aux_key must be a non-empty string"):
        _step(meta_loss_with_aux_key="")


def test_task_name_names_the_step_its_estimator_and_their_metrics():
    default = _step()
    assert default.task_name() == "FixedDimQuadraticFamilyData"
    assert default.cfg_name() == "FixedDimQuadraticFamilyData_LearnableSGD"

    step = _step(task_name="quad4")
    assert step.family_name == "quad4" and step.task_name() == "quad4"
    assert step.cfg_name() == "quad4_LearnableSGD"
    assert _step(family_name="quad4").family_name == "quad4"

    assert lopt_core.config_of(step, strict=False)["family_name"] == "quad4"


def test_an_estimate_on_aux_values_is_labelled_with_the_task_name():
    step = _step(task_name="quad4", meta_loss_with_aux_key="l2")
    est = TruncatedPES(step, unroll_length=4, std=0.01)
    assert est.task_name() == "quad4" and est.cfg_name() == "TruncatedPES_quad4_LearnableSGD"
    weights = lopt_core.WorkerWeights(step.outer_init(KEY), None, OUTER)
    out = gradient_worker_compute(weights, [est], [est.init_worker_state(weights, KEY)], KEY)
    names = sorted(out.metrics)
    assert names and all(n.startswith("TruncatedPES_quad4_LearnableSGD/") for n in names)
    # The meta-loss is mean(p**2), about 1 for the standard-normal params (the
    # quadratic's own loss, |target - p|**2, is about 8 in 4 dimensions).
    mean_loss = float(out.to_put.mean_loss)
    assert 0.2 < mean_loss < 3.0
    assert np.isfinite(out.to_put.theta_grads["log_lr"])


def test_bad_task_names_are_refused():
    with pytest.raises(TypeError, match="got both 'task_name' and 'family_name'"):
        _step(task_name="a", family_name="b")
    with pytest.raises(TypeError, match="task_name must be a non-empty string or None, got 7"):
        _step(task_name=7)
