"""The tuning-free optimizers match optax.contrib step for step, and are evaluated at eval_params."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt_core
import lopt_optimizers
from lopt_optimizers import (
    TUNING_FREE,
    Adam,
    DoG,
    GradientAccumulator,
    GradientClipOptimizer,
    Mechanic,
    Prodigy,
    ScheduleFreeAdamW,
)

SCALES = jnp.array([1.0, 2.0, 3.0])
TARGET = jnp.array([0.5, -1.0, 2.0])


def _loss(params):
    return jnp.sum(SCALES * jnp.square(params["w"] - TARGET))


def _start():
    return {"w": jnp.array([1.0, -2.0, 0.0])}


#: (lopt optimizer, the same optax.contrib transform).
PAIRS = {
    "Prodigy": (
        lambda: Prodigy(0.5, betas=(0.8, 0.99), weight_decay=0.01),
        lambda: optax.contrib.prodigy(0.5, betas=(0.8, 0.99), weight_decay=0.01),
    ),
    "ScheduleFreeAdamW": (
        lambda: ScheduleFreeAdamW(0.1, warmup_steps=2, weight_decay=0.01),
        lambda: optax.contrib.schedule_free_adamw(0.1, warmup_steps=2, weight_decay=0.01),
    ),
    "DoG": (
        lambda: DoG(init_step=("distance", 0.1), weight_decay=1e-3),
        lambda: optax.contrib.dog(1.0, init_step=("distance", 0.1), weight_decay=1e-3),
    ),
    "Mechanic": (
        lambda: Mechanic(),
        lambda: optax.contrib.mechanize(optax.adam(1.0, eps_root=0.0)),
    ),
}


def _optax_run(tx, steps):
    params = _start()
    state = tx.init(params)
    for _ in range(steps):
        loss, grads = jax.value_and_grad(_loss)(params)
        updates, state = tx.update(grads, state, params, value=loss)
        params = optax.apply_updates(params, updates)
    return params, state


def _lopt_run(opt, steps):
    state = opt.init(_start())
    for _ in range(steps):
        loss, grads = jax.value_and_grad(_loss)(opt.get_params(state))
        state = opt.update(state, grads, loss=loss)
    return state


def test_tuning_free_names_are_registered_and_exported():
    assert TUNING_FREE == ("Prodigy", "ScheduleFreeAdamW", "DoG", "Mechanic")
    for name in TUNING_FREE:
        assert type(lopt_core.get_optimizer(name)) is getattr(lopt_optimizers, name)
        assert name in lopt_optimizers.__all__


@pytest.mark.parametrize("name", TUNING_FREE)
def test_matches_optax_contrib_for_five_steps(name):
    make_lopt, make_optax = PAIRS[name]
    state = _lopt_run(make_lopt(), 5)
    expected, _ = _optax_run(make_optax(), 5)
    got = state.params["w"]
    assert not np.allclose(got, _start()["w"])  # it moved
    np.testing.assert_allclose(got, expected["w"], rtol=1e-6)
    assert int(state.iteration) == 5


@pytest.mark.parametrize(
    "opt, factor",
    [
        (Prodigy(), 0.05),
        (ScheduleFreeAdamW(0.1), 0.02),
        # DoG's first step is 1e-6 * (1 + ||params||): its step size grows from there.
        (DoG(), 0.95),
        (Mechanic(), 0.15),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_loss_goes_down_over_50_steps(opt, factor):
    start_loss = float(_loss(_start()))
    state = _lopt_run(opt, 50)
    final = float(_loss(opt.get_params(state)))
    final_eval = float(_loss(opt.eval_params(state)))
    assert start_loss == pytest.approx(14.25)
    assert np.isfinite(final) and final < factor * start_loss, (final, start_loss)
    assert final_eval < start_loss


def test_schedule_free_evaluates_at_the_averaged_point():
    make_lopt, make_optax = PAIRS["ScheduleFreeAdamW"]
    opt = make_lopt()
    state = _lopt_run(opt, 5)
    eval_params = opt.eval_params(state)
    assert not np.allclose(eval_params["w"], opt.get_params(state)["w"])
    params, optax_state = _optax_run(make_optax(), 5)
    expected = optax.contrib.schedule_free_eval_params(optax_state, params)
    np.testing.assert_allclose(eval_params["w"], expected["w"], rtol=1e-6)
    p, s = opt.eval_params_state(state)
    np.testing.assert_array_equal(p["w"], eval_params["w"])
    assert s is None
    # At init, z equals the params, so both points coincide.
    fresh = opt.init(_start())
    np.testing.assert_allclose(opt.eval_params(fresh)["w"], _start()["w"], rtol=1e-6)


def test_schedule_free_eval_params_under_jit():
    opt = ScheduleFreeAdamW(0.1)
    state = _lopt_run(opt, 3)
    np.testing.assert_allclose(
        jax.jit(opt.eval_params)(state)["w"], opt.eval_params(state)["w"], rtol=1e-6
    )


def test_default_eval_params_is_get_params():
    opt = Adam(0.1)
    state = _lopt_run(opt, 3)
    np.testing.assert_array_equal(opt.eval_params(state)["w"], opt.get_params(state)["w"])
    p, s = opt.eval_params_state(state)
    np.testing.assert_array_equal(p["w"], opt.get_params(state)["w"])
    assert s is opt.get_state(state)
    for name in ("Prodigy", "DoG", "Mechanic"):
        tf = lopt_core.get_optimizer(name)
        tf_state = _lopt_run(tf, 2)
        np.testing.assert_array_equal(tf.eval_params(tf_state)["w"], tf_state.params["w"])


def test_wrappers_forward_eval_params():
    inner = ScheduleFreeAdamW(0.1)
    clipped = GradientClipOptimizer(inner, grad_clip=100.0)
    state = _lopt_run(clipped, 4)
    np.testing.assert_array_equal(clipped.eval_params(state)["w"], inner.eval_params(state)["w"])
    assert not np.allclose(clipped.eval_params(state)["w"], clipped.get_params(state)["w"])
    acc = GradientAccumulator(inner, num_steps=1)
    acc_state = _lopt_run(acc, 4)
    np.testing.assert_allclose(
        acc.eval_params(acc_state)["w"], inner.eval_params(state)["w"], rtol=1e-6
    )


def test_evaluation_point_falls_back_for_duck_typed_optimizers():
    inner = ScheduleFreeAdamW(0.1)
    state = _lopt_run(inner, 4)
    p, s = lopt_core.evaluation_point(inner, state)
    np.testing.assert_array_equal(p["w"], inner.eval_params(state)["w"])

    class Duck:  # init/update/get_params/get_params_state only, as lopt accepts
        def get_params(self, st):
            return st.params

        def get_params_state(self, st):
            return st.params, None

    p, s = lopt_core.evaluation_point(Duck(), state)
    np.testing.assert_array_equal(p["w"], state.params["w"])
    assert s is None
    wrapped = GradientClipOptimizer(inner, grad_clip=100.0)
    np.testing.assert_array_equal(wrapped.eval_params(state)["w"], inner.eval_params(state)["w"])


def test_names_and_value_semantics():
    assert Prodigy().name == "Prodigy_lr1.0_b10.9_b20.999_wd0.0"
    assert DoG().name == "DoG_lr1.0_initheuristic1e-06"
    assert Mechanic().name == "Mechanic_lr1.0_wd0.01_sinit1e-06"
    assert ScheduleFreeAdamW().name == (
        "ScheduleFreeAdamW_lr0.0025_b10.9_b20.999_eps1e-08_wd0.0_warmupNone"
    )
    assert Prodigy(betas=[0.9, 0.999]) == Prodigy()  # a list is converted
    assert DoG(init_step=["heuristic", 1e-6]) == DoG()
    assert hash(Mechanic()) == hash(Mechanic())


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: Prodigy(-1.0), ValueError, r"Prodigy: learning_rate must be .*>= 0"),
        (lambda: Prodigy(betas=(0.9, 1.0)), ValueError, r"Prodigy: betas\[1\] must be .*< 1"),
        (lambda: Prodigy(betas=0.9), ValueError, r"betas must be a pair .*betas=\(0.9, 0.999\)"),
        (lambda: Prodigy(estim_lr0=0.0), ValueError, r"Prodigy: estim_lr0 must be .*> 0"),
        (lambda: Prodigy(safeguard_warmup=1), TypeError, r"safeguard_warmup must be True or False"),
        (lambda: ScheduleFreeAdamW(b1=1.5), ValueError, r"ScheduleFreeAdamW: b1 must be .*< 1"),
        (lambda: ScheduleFreeAdamW(b1=0.0), ValueError, r"ScheduleFreeAdamW: b1 must be .*> 0"),
        (lambda: ScheduleFreeAdamW(b2=-0.1), ValueError, r"b2 must be a finite number >= 0"),
        (lambda: ScheduleFreeAdamW(warmup_steps=0), ValueError, r"warmup_steps must be a posi"),
        (lambda: ScheduleFreeAdamW(-1e-3), ValueError, r"Pass a value such as learning_rate="),
        (lambda: DoG(init_step=("guess", 1.0)), ValueError, r"DoG: init_step\[0\]"),
        (lambda: DoG(init_step=("distance", 0.0)), ValueError, r"init_step\[1\] must be .*> 0"),
        (lambda: DoG(init_step=1e-6), ValueError, r"init_step=\('heuristic', 1e-6\)"),
        (lambda: DoG(eps=-1.0), ValueError, r"DoG: eps must be a finite number >= 0"),
        (lambda: Mechanic(s_init=0.0), ValueError, r"Mechanic: s_init must be .*> 0"),
        (lambda: Mechanic(num_betas=0), ValueError, r"Mechanic: num_betas must be a positive"),
        (lambda: Mechanic(base_optimizer=optax.sgd), TypeError, r"optax.sgd\(1.0\)"),
        (
            lambda: Mechanic(0.1, base_optimizer=optax.sgd(1.0)),
            ValueError,
            r"Leave learning_rate at 1.0",
        ),
    ],
)
def test_bad_arguments_name_the_fix(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_mechanic_with_a_base_optimizer_matches_optax():
    opt = Mechanic(base_optimizer=optax.sgd(1.0), s_init=1e-4)
    state = _lopt_run(opt, 5)
    expected, _ = _optax_run(optax.contrib.mechanize(optax.sgd(1.0), s_init=1e-4), 5)
    np.testing.assert_allclose(state.params["w"], expected["w"], rtol=1e-6)
    assert opt.name.endswith("_custombase")
