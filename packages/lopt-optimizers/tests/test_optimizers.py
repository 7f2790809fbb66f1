"""Names, defaults, schedules and bad input of the optax-backed optimizers."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt_optimizers as lo
from lopt_core.testing import check_optimizer
from lopt_optimizers import SGD, SGDM, SM3, Adam, OptaxOptimizer, OptaxState, RMSProp

OPTAX_BACKED = [
    lo.SGD,
    lo.SGDM,
    lo.Adam,
    lo.AdamW,
    lo.NAdamW,
    lo.RMSProp,
    lo.AdaBelief,
    lo.AdaGrad,
    lo.Adafactor,
    lo.Lamb,
    lo.Lars,
    lo.RAdam,
    lo.Yogi,
    lo.SM3,
]


def test_names_follow_the_reference():
    assert SGD().name == "SGD_lr0.01"
    assert SGD(1e-4).name == "SGD_lr0.0001"
    assert SGDM().name == "SGDM_lr0.01_m0.9"
    assert Adam().name == "Adam_lr0.01_b10.9_b20.999_eps1e-08"
    assert Adam(eps_root=0.0).name == "Adam_lr0.01_b10.9_b20.999_eps1e-08_epsroot0.0"
    assert RMSProp().name == "RMSProp_lr0.01_d0.9_eps1e-08_m0.0_nesterovFalse"
    assert OptaxOptimizer(optax.sgd(0.1)).name == "OptaxOptimizer"
    names = {cls().name for cls in OPTAX_BACKED}
    assert len(names) == len(OPTAX_BACKED)
    for cls in OPTAX_BACKED:
        assert cls().name.startswith(cls.__name__ + "_lr")


def test_reference_defaults():
    adam = Adam()
    assert (adam.learning_rate, adam.b1, adam.b2, adam.eps, adam.eps_root) == (
        0.01,
        0.9,
        0.999,
        1e-8,
        1e-8,
    )
    assert SGD().learning_rate == 0.01
    assert (SGDM().learning_rate, SGDM().momentum) == (0.01, 0.9)


@pytest.mark.parametrize("cls", OPTAX_BACKED, ids=lambda c: c.__name__)
def test_bad_learning_rate_raises_at_construction_naming_the_argument(cls):
    for bad in (-1e-3, math.nan, math.inf):
        with pytest.raises(
            ValueError, match=rf"{cls.__name__}: learning_rate must be a finite number >= 0"
        ):
            cls(learning_rate=bad)
    with pytest.raises(TypeError, match="learning_rate must be a scalar number"):
        cls(learning_rate=jnp.ones(3))


def test_bad_hyperparameters_name_the_argument():
    with pytest.raises(ValueError, match=r"Adam: b1 must be a finite number >= 0.0 and < 1.0"):
        Adam(b1=1.0)
    with pytest.raises(ValueError, match="Adam: eps must be a finite number >= 0.0"):
        Adam(eps=-1.0)
    with pytest.raises(ValueError, match="SGDM: momentum"):
        SGDM(momentum=math.nan)


def test_optax_optimizer_rejects_an_uncalled_optax_function():
    with pytest.raises(TypeError, match=r"got function\. Call it first, e.g\. adam\(1e-3\)"):
        OptaxOptimizer(optax.adam)


def test_learning_rate_schedule():
    schedule = optax.piecewise_constant_schedule(1.0, {2: 0.1})
    opt = SGD(schedule)
    assert opt.name == "SGD_lrschedule"
    state = opt.init({"w": jnp.zeros(())})
    steps = []
    update = jax.jit(opt.update)
    for _ in range(4):
        new = update(state, {"w": jnp.ones(())})
        steps.append(float(opt.get_params(state)["w"] - opt.get_params(new)["w"]))
        state = new
    np.testing.assert_allclose(steps, [1.0, 1.0, 0.1, 0.1], rtol=1e-6)
    check_optimizer(Adam(optax.cosine_decay_schedule(1e-2, 100)))


def test_learning_rate_from_meta_parameters_inside_jit():
    # Learned optimizers build optimizers from traced theta; that must not trip
    # the construction-time checks, and the step must be differentiable in theta.
    params = {"w": jnp.ones(3)}

    def after_two_steps(log_lr):
        opt = Adam(jnp.exp(log_lr))
        state = opt.init(params)
        for _ in range(2):
            grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(opt.get_params(state))
            state = opt.update(state, grads)
        return jnp.sum(opt.get_params(state)["w"] ** 2)

    value, grad = jax.jit(jax.value_and_grad(after_two_steps))(jnp.log(0.1))
    assert float(value) < 3.0
    assert float(grad) < 0  # a larger step lowers this loss


def test_update_increments_iteration_and_keeps_model_state():
    opt = Adam(0.1)
    state = opt.init({"w": jnp.ones(2)}, model_state={"bn": jnp.zeros(2)})
    assert isinstance(state, OptaxState)
    assert state.iteration.dtype == jnp.int32
    update = jax.jit(opt.update)
    state = update(state, {"w": jnp.ones(2)})
    assert int(state.iteration) == 1
    np.testing.assert_array_equal(np.asarray(opt.get_state(state)["bn"]), [0.0, 0.0])
    state = update(state, {"w": jnp.ones(2)}, model_state={"bn": jnp.ones(2)})
    params, model_state = opt.get_params_state(state)
    np.testing.assert_array_equal(np.asarray(model_state["bn"]), [1.0, 1.0])
    assert int(state.iteration) == 2
    assert params["w"].shape == (2,)
    moved = opt.set_params(state, {"w": jnp.zeros(2)})
    np.testing.assert_array_equal(np.asarray(opt.get_params(moved)["w"]), [0.0, 0.0])


@pytest.mark.parametrize(
    ("grads", "message"),
    [
        ({"w": jnp.ones(2)}, r"path \['b'\] is expected but missing"),
        ({"w": jnp.ones(2), "b": jnp.ones(()), "c": jnp.ones(())}, r"path \['c'\] is present"),
        ({"w": jnp.ones(3), "b": jnp.ones(())}, r"path \['w'\] has shape \(3,\), expected \(2,\)"),
    ],
)
def test_mismatched_grads_name_the_first_differing_path(grads, message):
    opt = Adam()
    state = opt.init({"w": jnp.ones(2), "b": jnp.ones(())})
    with pytest.raises(
        ValueError, match=r"Adam: the gradients do not match the parameters: " + message
    ):
        opt.update(state, grads)


def test_sm3_handles_scalar_params():
    # optax's SM3 itself fails on rank-0 leaves; the wrapper runs them as shape (1,).
    opt = SM3(0.1)
    params = {"s": jnp.asarray(2.0), "m": jnp.ones((3, 2))}
    state = opt.init(params)
    state = jax.jit(opt.update)(state, {"s": jnp.asarray(1.0), "m": jnp.ones((3, 2))})
    new = opt.get_params(state)
    assert new["s"].shape == () and new["m"].shape == (3, 2)
    assert float(new["s"]) < 2.0


def test_extra_args_transforms_receive_the_loss_as_value():
    # reduce_on_plateau reads optax's `value` extra argument; the loss goes there.
    tx = optax.chain(
        optax.sgd(1.0),
        optax.contrib.reduce_on_plateau(factor=0.5, patience=0, accumulation_size=1),
    )
    opt = OptaxOptimizer(tx, needs_loss=True)
    assert opt.needs_loss and not OptaxOptimizer(optax.sgd(1.0)).needs_loss
    state = opt.init({"w": jnp.zeros(())})
    with pytest.raises(
        ValueError, match=r"needs the loss at every step \(needs_loss=True\).*loss=loss"
    ):
        opt.update(state, {"w": jnp.ones(())})
    for _ in range(3):
        state = opt.update(state, {"w": jnp.ones(())}, loss=jnp.asarray(5.0))
    # The loss never improves, so the plateau halves the step scale: 3 steps of 0.5.
    assert float(state.optax_opt_state[1].scale) == 0.5
    assert float(opt.get_params(state)["w"]) == -1.5
