"""The reference's optimizer options: NAdamW's switches, Fromage, PiecewiseLinearAdam, the
learning-rate schedules and `as_optax(opt, num_steps=...)`, each against hand-computed values.
"""

from __future__ import annotations

import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt_core
from lopt_core.testing import check_optimizer
from lopt_optimizers import (
    SGD,
    Adam,
    Fromage,
    GradientClipOptimizer,
    NAdamW,
    PiecewiseLinearAdam,
    as_optax,
    needs_num_steps,
    schedules,
)
from lopt_optimizers.schedules import (
    CosineLearningRateSchedule,
    ExponentialDecay,
    LinearRampupSqrtDecay,
    PiecewiseLinear,
    bind_num_steps,
)

P0 = [1.0, -2.0]


def _params() -> dict:
    return {"w": jnp.array(P0)}


def _grads(values) -> dict:
    return {"w": jnp.array(values, dtype=jnp.float32)}


def _run(opt, grad_values, **init) -> np.ndarray:
    state = opt.init(_params(), **init)
    for g in grad_values:
        state = opt.update(state, _grads(g))
    return np.asarray(opt.get_params(state)["w"])


# ---------------------------------------------------------------------------------------
# NAdamW(use_nesterov=..., use_bias_correction=...)

LR, B1, B2 = 0.1, 0.5, 0.96  # sqrt(1 - B2) = 0.2: step-1 values are simple fractions
G1, G2 = [0.5, 0.25], [-0.25, 1.0]


def _hand_nadamw(p, grads, nesterov, bias, l2=0.0, wd=0.0, eps=0.0):
    """The update rule, one float at a time, as the NAdamW docstring writes it."""
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        g = g + l2 * p
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        if bias:
            if nesterov:
                m_hat = B1 * m / (1 - B1 ** (t + 1)) + (1 - B1) * g / (1 - B1**t)
            else:
                m_hat = m / (1 - B1**t)
            u = m_hat / (math.sqrt(v / (1 - B2**t)) + eps)
        else:
            numerator = B1 * m + (1 - B1) * g if nesterov else m
            u = numerator / (math.sqrt(v) + eps)
        p = p - LR * (u + wd * p)
    return p


#: (use_nesterov, use_bias_correction) -> step 1 in units of LR * sign(g1):
#: corrected Nesterov (0.25 g / 0.75 + g) / |g| = 4/3; corrected plain m_hat / |g| = 1;
#: uncorrected Nesterov (0.25 g + 0.5 g) / (0.2 |g|) = 3.75; uncorrected plain 0.5 / 0.2 = 2.5.
FIRST_STEP = {(True, True): 4 / 3, (False, True): 1.0, (True, False): 3.75, (False, False): 2.5}


@pytest.mark.parametrize(("nesterov", "bias"), list(FIRST_STEP))
def test_nadamw_options_match_the_hand_computed_first_and_second_steps(nesterov, bias):
    opt = NAdamW(LR, b1=B1, b2=B2, eps=0.0, use_nesterov=nesterov, use_bias_correction=bias)
    one = _run(opt, [G1])
    np.testing.assert_allclose(one, np.array(P0) - LR * FIRST_STEP[nesterov, bias], rtol=1e-6)
    two = _run(opt, [G1, G2])
    hand = [_hand_nadamw(p, [g1, g2], nesterov, bias) for p, g1, g2 in zip(P0, G1, G2)]
    np.testing.assert_allclose(two, hand, rtol=1e-6)


@pytest.mark.parametrize(("nesterov", "bias"), list(FIRST_STEP))
def test_nadamw_options_with_both_weight_decays_and_eps(nesterov, bias):
    opt = NAdamW(
        LR,
        b1=B1,
        b2=B2,
        eps=1e-3,
        l2_weight_decay=0.1,
        adamw_weight_decay=0.2,
        use_nesterov=nesterov,
        use_bias_correction=bias,
    )
    got = _run(opt, [G1, G2, G1])
    hand = [
        _hand_nadamw(p, [a, b, a], nesterov, bias, l2=0.1, wd=0.2, eps=1e-3)
        for p, a, b in zip(P0, G1, G2)
    ]
    np.testing.assert_allclose(got, hand, rtol=1e-6)


def test_nadamw_defaults_keep_todays_update_and_state():
    default = NAdamW(LR, b1=B1, b2=B2)
    explicit = NAdamW(LR, b1=B1, b2=B2, use_nesterov=True, use_bias_correction=True)
    assert default == explicit and default.name == explicit.name
    assert default.name == "NAdamW_lr0.1_b10.5_b20.96_eps1e-08_wd0.0_l20.0"
    today = optax.chain(
        optax.add_decayed_weights(0.0),
        optax.scale_by_adam(b1=B1, b2=B2, eps=1e-8, nesterov=True),
        optax.add_decayed_weights(0.0),
        optax.scale_by_learning_rate(LR),
    )
    params, ostate = _params(), today.init(_params())
    for g in (G1, G2):
        updates, ostate = today.update(_grads(g), ostate, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(_run(default, [G1, G2]), np.asarray(params["w"]))
    # Every combination keeps one state layout: (.., ScaleByAdamState, ..).
    for nesterov, bias in FIRST_STEP:
        opt = NAdamW(use_nesterov=nesterov, use_bias_correction=bias)
        state = opt.init(_params())
        assert isinstance(state.optax_opt_state[1], optax.ScaleByAdamState)
        assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(
            default.init(_params())
        )


def test_nadamw_corrected_plain_adam_equals_the_references_lr_scaled_correction_at_eps_0():
    # The reference scales lr by sqrt(1 - b2^t) / (1 - b1^t) and divides m by sqrt(v):
    # with eps = 0 and no Nesterov term that is exactly optax's m_hat / sqrt(v_hat).
    m = v = 0.0
    p = P0[0]
    for t, g in enumerate([G1[0], G2[0]], start=1):
        m, v = B1 * m + (1 - B1) * g, B2 * v + (1 - B2) * g * g
        p -= LR * math.sqrt(1 - B2**t) / (1 - B1**t) * m / math.sqrt(v)
    got = _run(NAdamW(LR, B1, B2, 0.0, use_nesterov=False), [G1, G2])
    np.testing.assert_allclose(got[0], p, rtol=1e-6)


def test_nadamw_names_options_and_accepts_reference_spellings():
    opt = NAdamW(beta1=0.8, epsilon=1e-6, use_nesterov=False, use_bias_correction=False)
    assert opt.b1 == 0.8 and opt.beta1 == 0.8 and opt.eps == 1e-6
    assert opt.name.endswith("_nesterovFalse_biascorrFalse")
    assert NAdamW(use_bias_correction=False).name.endswith("_l20.0_biascorrFalse")
    # Positional order is the reference's: lr, b1, b2, eps, adamw wd, l2 wd, nesterov, bias.
    assert NAdamW(1e-3, 0.9, 0.99, 1e-8, 0.0, 0.0, False, False) == NAdamW(
        1e-3, b2=0.99, use_nesterov=False, use_bias_correction=False
    )
    assert lopt_core.config_of(opt)["use_bias_correction"] is False
    with pytest.raises(TypeError, match=r"NAdamW: use_nesterov must be True or False, got 1"):
        NAdamW(use_nesterov=1)
    with pytest.raises(TypeError, match=r"use_bias_correction must be True or False"):
        NAdamW(use_bias_correction="no")


@pytest.mark.parametrize(("nesterov", "bias"), [(False, True), (True, False), (False, False)])
def test_nadamw_options_pass_the_optimizer_contract(nesterov, bias):
    # The defaults (True, True) are checked with every registered optimizer in test_contracts.
    check_optimizer(NAdamW(1e-2, use_nesterov=nesterov, use_bias_correction=bias))


# ---------------------------------------------------------------------------------------
# Fromage


def test_fromage_two_steps_match_the_hand_computation():
    # ||a|| = 5, ||g_a|| = 1: a <- (a - 0.1 * 5 * g_a) / sqrt(1.01) = (2.7, 3.6) / sqrt(1.01);
    # step 2 (||a|| = 4.5 / sqrt(1.01)): ((2.7, 3.6) - 0.45 * g_a) / 1.01 = (2.43, 3.24) / 1.01.
    # A zero gradient is not moved, only shrunk by 1 / sqrt(1.01).
    opt = Fromage(0.1)
    params = {"a": jnp.array([3.0, 4.0]), "b": jnp.array(2.0)}
    grads = {"a": jnp.array([0.6, 0.8]), "b": jnp.array(0.0)}
    state = opt.update(opt.init(params), grads)
    got = opt.get_params(state)
    np.testing.assert_allclose(got["a"], np.array([2.7, 3.6]) / math.sqrt(1.01), rtol=1e-6)
    np.testing.assert_allclose(got["b"], 2.0 / math.sqrt(1.01), rtol=1e-6)
    state = opt.update(state, grads)
    got = opt.get_params(state)
    np.testing.assert_allclose(got["a"], np.array([2.43, 3.24]) / 1.01, rtol=1e-6)
    np.testing.assert_allclose(got["b"], 2.0 / 1.01, rtol=1e-6)


def test_fromage_min_norm_bounds_the_step_from_zero_params():
    # ||p|| = 0 is clipped to min_norm: the step is lr * min_norm * g / ||g||.
    opt = Fromage(0.5, min_norm=1e-3)
    state = opt.update(opt.init({"w": jnp.zeros(2)}), {"w": jnp.array([3.0, 4.0])})
    expected = -0.5 * 1e-3 * np.array([0.6, 0.8]) / math.sqrt(1.25)
    np.testing.assert_allclose(opt.get_params(state)["w"], expected, rtol=1e-5)


def test_fromage_name_config_and_errors():
    assert Fromage(0.1).name == "Fromage_lr0.1_mn1e-06"
    assert Fromage() == Fromage(0.01, 1e-6)
    assert lopt_core.config_of(Fromage(0.1)) == {"learning_rate": 0.1, "min_norm": 1e-6}
    with pytest.raises(ValueError, match=r"Fromage: learning_rate must be a finite number >= 0"):
        Fromage(-0.1)
    with pytest.raises(ValueError, match=r"Fromage: min_norm must be a finite number >= 0"):
        Fromage(0.1, min_norm=-1.0)


# ---------------------------------------------------------------------------------------
# PiecewiseLinearAdam


def test_piecewise_linear_adam_steps_follow_the_schedule():
    # A constant gradient with eps = eps_root = 0 makes every Adam step exactly sign(g),
    # so each step moves by the learning rate at steps 0, 1, 2, 3, 4: 0.1, 0.1, 0.05, 0, 0.
    opt = PiecewiseLinearAdam(times=(1, 3), lrs=(0.1, 0.0), eps=0.0, eps_root=0.0)
    sign = np.array([1.0, -1.0])
    state = opt.init(_params())
    for moved in (0.1, 0.2, 0.25, 0.25, 0.25):
        state = opt.update(state, _grads([0.5, -0.25]))
        # float32 rounding of Adam's bias corrections (1 - 0.999^t) is about 2e-6.
        np.testing.assert_allclose(
            opt.get_params(state)["w"], np.array(P0) - moved * sign, rtol=0, atol=1e-5
        )


def test_piecewise_linear_adam_first_step_is_adam_with_the_first_rate():
    opt = PiecewiseLinearAdam(times=[5, 10], lrs=[0.01, 0.001])
    adam = Adam(0.01)
    np.testing.assert_allclose(_run(opt, [G1, G2]), _run(adam, [G1, G2]), rtol=1e-6)


def test_piecewise_linear_adam_defaults_spellings_and_errors():
    opt = PiecewiseLinearAdam()
    assert (opt.times, opt.lrs, opt.b1, opt.b2, opt.eps, opt.eps_root) == (
        (10000, 20000),
        (1e-4, 1e-5),
        0.9,
        0.999,
        1e-8,
        1e-8,
    )
    assert opt.name == "PiecewiseLinearAdam_times10000-20000_lrs0.0001-1e-05_b10.9_b20.999_eps1e-08"
    assert PiecewiseLinearAdam(times=[1, 2], lrs=[0.1, 0.2]) == PiecewiseLinearAdam(
        (1, 2), (0.1, 0.2)
    )
    assert PiecewiseLinearAdam(beta1=0.8, epsilon_root=0.0).b1 == 0.8
    assert lopt_core.config_of(opt)["times"] == [10000, 20000]
    assert hash(opt) == hash(PiecewiseLinearAdam())
    with pytest.raises(ValueError, match=r"times and vals must have the same length, got 2 times"):
        PiecewiseLinearAdam(times=(1, 2), lrs=(0.1,))
    with pytest.raises(ValueError, match=r"times must be non-decreasing"):
        PiecewiseLinearAdam(times=(2, 1), lrs=(0.1, 0.1))
    with pytest.raises(ValueError, match=r"PiecewiseLinearAdam: lrs\[1\] must be a finite number"):
        PiecewiseLinearAdam(times=(1, 2), lrs=(0.1, -0.1))
    with pytest.raises(TypeError, match=r"times and lrs must be sequences of numbers"):
        PiecewiseLinearAdam(times=3, lrs=(0.1,))


# ---------------------------------------------------------------------------------------
# Schedules: table-driven, values computed by hand.

COS = CosineLearningRateSchedule
SCHEDULE_TABLE = [
    # (schedule, step, max_steps, expected)
    (COS(1.0, 0.0, 0.5, 0.0), 0, 100, 1.0),
    (COS(1.0, 0.0, 0.5, 0.0), 50, 100, 1.0),
    (COS(1.0, 0.0, 0.5, 0.0), 75, 100, 0.5),
    (COS(1.0, 0.0, 0.5, 0.0), 100, 100, 0.0),
    (COS(1.0, 0.0, 0.5, 0.0), 150, 100, 0.0),  # past the horizon: held at the end
    (COS(2.0, 0.1, 0.5, 0.0), 75, 100, 1.1),  # 0.2 + 1.8 * 0.5
    (COS(2.0, 0.1, 0.5, 0.0), 100, 100, 0.2),
    (COS(1.0, 0.0, 0.0, 0.0), 1, 4, 0.5 + math.cos(math.pi / 4) / 2),
    (COS(1.0, 0.0, 0.0, 0.0), 2, 4, 0.5),
    # Defaults: warmup over max(0.01, 0.5) * 100 = 50 steps, then the decay.
    (COS(1.0), 0, 100, 0.0),
    (COS(1.0), 25, 100, 0.5),
    (COS(1.0), 49, 100, 0.98),
    (COS(1.0), 50, 100, 1.0),
    (COS(1.0), 75, 100, 0.5),
    # A warmup longer than the constant stretch ends inside the decay.
    (COS(1.0, 0.0, 0.5, 0.8), 70, 100, 0.875),
    (COS(1.0, 0.0, 0.5, 0.8), 80, 100, 0.5 + math.cos(0.6 * math.pi) / 2),
    (LinearRampupSqrtDecay(1e-3, 100), 0, None, 1e-5),  # t = max(0, 1) = 1
    (LinearRampupSqrtDecay(1e-3, 100), 50, None, 5e-4),
    (LinearRampupSqrtDecay(1e-3, 100), 100, None, 1e-3),
    (LinearRampupSqrtDecay(1e-3, 100), 400, None, 5e-4),  # sqrt(100 / 400) = 0.5
    (PiecewiseLinear((10, 20), (1.0, 0.0)), -5, None, 1.0),
    (PiecewiseLinear((10, 20), (1.0, 0.0)), 10, None, 1.0),
    (PiecewiseLinear((10, 20), (1.0, 0.0)), 15, None, 0.5),
    (PiecewiseLinear((10, 20), (1.0, 0.0)), 20, None, 0.0),
    (PiecewiseLinear((10, 20), (1.0, 0.0)), 30, None, 0.0),
    (PiecewiseLinear((5,), (0.3,)), 0, None, 0.3),
    (PiecewiseLinear((5,), (0.3,)), 9, None, 0.3),
    (PiecewiseLinear((0, 5, 5, 10), (0.0, 1.0, 3.0, 4.0)), 2.5, None, 0.5),
    (PiecewiseLinear((0, 5, 5, 10), (0.0, 1.0, 3.0, 4.0)), 5, None, 1.0),  # a jump: left value
    (PiecewiseLinear((0, 5, 5, 10), (0.0, 1.0, 3.0, 4.0)), 7.5, None, 3.5),
    (PiecewiseLinear((0, 5, 5, 10), (0.0, 1.0, 3.0, 4.0)), 12, None, 4.0),
    (ExponentialDecay(0.5, 0.1), 0, None, 0.5),
    (ExponentialDecay(0.5, 0.1), 1, None, 0.45),
    (ExponentialDecay(0.5, 0.1), 2, None, 0.405),
    (ExponentialDecay(0.5, 0.1), 10, None, 0.5 * 0.9**10),
]


@pytest.mark.parametrize(("schedule", "step", "max_steps", "expected"), SCHEDULE_TABLE)
def test_schedule_values(schedule, step, max_steps, expected):
    got = schedule(step, max_steps)
    assert got.dtype == jnp.float32 and got.shape == ()
    np.testing.assert_allclose(float(got), expected, rtol=1e-6, atol=1e-7)


def test_schedules_give_the_same_values_under_jit_with_traced_steps():
    for schedule in {row[0] for row in SCHEDULE_TABLE}:
        rows = [r for r in SCHEDULE_TABLE if r[0] == schedule]
        steps = jnp.array([r[1] for r in rows], jnp.float32)
        horizon = rows[0][2]
        fn = jax.jit(jax.vmap(lambda s, sched=schedule, n=horizon: sched(s, n)))
        np.testing.assert_allclose(fn(steps), [r[3] for r in rows], rtol=1e-6, atol=1e-7)
    traced_horizon = jax.jit(lambda n: COS(1.0, 0.0, 0.5, 0.0)(75, n))(jnp.int32(100))
    np.testing.assert_allclose(traced_horizon, 0.5, rtol=1e-6)


def test_schedules_without_a_horizon_are_optax_schedules():
    sched = PiecewiseLinear((0, 2), (0.1, 0.0))
    assert not needs_num_steps(sched)
    tx = optax.sgd(sched)
    params, state = {"w": jnp.zeros(())}, tx.init({"w": jnp.zeros(())})
    for _ in range(3):
        updates, state = tx.update({"w": jnp.ones(())}, state)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params["w"], -(0.1 + 0.05 + 0.0), rtol=1e-6)
    assert bind_num_steps(sched, 10) is sched


def test_horizon_schedules_need_max_steps_or_a_binding():
    cos = COS(1.0, 0.0, 0.5, 0.0)
    assert needs_num_steps(cos)
    with pytest.raises(ValueError, match=r"depends on the number of training steps"):
        cos(3)
    bound = bind_num_steps(cos, 100)
    assert not needs_num_steps(bound)
    np.testing.assert_allclose(float(bound(75)), 0.5, rtol=1e-6)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match=r"must be a positive integer"):
            bind_num_steps(cos, bad)
    with pytest.raises(ValueError, match=r"max_steps must be a positive integer, got 0"):
        cos(1, 0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: COS(1.0, constant_fraction=1.0), r"constant_fraction must be a finite number"),
        (lambda: COS(1.0, warmup_fraction=1.5), r"warmup_fraction must be a finite number"),
        (lambda: COS(-1.0), r"CosineLearningRateSchedule: learning_rate must be"),
        (
            lambda: LinearRampupSqrtDecay(warmup_steps=0),
            r"warmup_steps must be a finite number > 0",
        ),
        (
            lambda: ExponentialDecay(0.1, 1.0),
            r"decay_amount must be a finite number >= 0.0 and < 1",
        ),
        (lambda: PiecewiseLinear((), ()), r"times is empty"),
        (lambda: PiecewiseLinear((1, 2), (0.1,)), r"same length, got 2 times and 1 vals"),
        (lambda: PiecewiseLinear((3, 1), (0.1, 0.2)), r"times\[0\]=3 > times\[1\]=1"),
    ],
)
def test_schedule_arguments_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_schedules_are_components_recorded_in_an_optimizers_config():
    opt = Adam(PiecewiseLinear([0, 10], [1e-3, 1e-4]))
    assert opt == Adam(PiecewiseLinear((0, 10), (1e-3, 1e-4)))
    assert hash(opt) == hash(Adam(PiecewiseLinear((0, 10), (1e-3, 1e-4))))
    recorded = lopt_core.config_of(opt)["learning_rate"]
    assert recorded["class"] == "lopt_optimizers.schedules:PiecewiseLinear"
    assert recorded["config"] == {"times": [0, 10], "vals": [1e-3, 1e-4]}
    assert lopt_core.config_of(NAdamW(COS(1e-3)))["learning_rate"]["config"] == {
        "learning_rate": 1e-3,
        "min_learning_rate_mult": 0.0,
        "constant_fraction": 0.5,
        "warmup_fraction": 0.01,
    }


# ---------------------------------------------------------------------------------------
# Optimizers whose state needs the horizon


def _cosine_nadamw():
    # lr(0) = 1, lr(1) = 0.5 for a horizon of 2; constant grads and eps = 0 give sign steps.
    sched = COS(1.0, 0.0, 0.0, 0.0)
    return NAdamW(sched, b1=B1, b2=B2, eps=0.0, use_nesterov=False)


def test_nadamw_with_a_horizon_schedule_keeps_num_steps_and_steps_by_it():
    opt = _cosine_nadamw()
    assert opt.needs_num_steps and needs_num_steps(GradientClipOptimizer(opt))
    state = opt.init(_params(), num_steps=2)
    assert int(state.optax_opt_state.num_steps) == 2
    step = jax.jit(opt.update)
    state = step(state, _grads([0.5, -0.25]))
    np.testing.assert_allclose(opt.get_params(state)["w"], [0.0, -1.0], atol=1e-6)
    state = step(state, _grads([0.5, -0.25]))
    np.testing.assert_allclose(opt.get_params(state)["w"], [-0.5, -0.5], atol=1e-6)
    # A traced horizon (as inside a jitted truncated step) works too.
    traced = jax.jit(lambda n: opt.update(opt.init(_params(), num_steps=n), _grads([1.0, 1.0])))
    np.testing.assert_allclose(opt.get_params(traced(jnp.int32(2)))["w"], [0.0, -3.0], atol=1e-6)


def test_an_optimizer_needing_the_horizon_refuses_init_without_it():
    opt = _cosine_nadamw()
    with pytest.raises(
        ValueError,
        match=r"NAdamW: its learning_rate is a schedule over the "
        r"training horizon, so init needs num_steps.*opt.init\(params, num_steps=N\)",
    ):
        opt.init(_params())
    with pytest.raises(ValueError, match=r"NAdamW: num_steps must be a positive integer, got 0"):
        opt.init(_params(), num_steps=0)
    assert not NAdamW().needs_num_steps and not needs_num_steps(SGD())


def test_an_optimizer_with_a_horizon_schedule_passes_the_contract():
    check_optimizer(NAdamW(COS(1e-2)))  # check_optimizer inits with num_steps=100
    check_optimizer(GradientClipOptimizer(Adam(COS(1e-2, warmup_fraction=0.0))))


# ---------------------------------------------------------------------------------------
# as_optax(opt, num_steps=...)


@flax.struct.dataclass
class _RecorderState:
    params: Any
    model_state: Any
    told: Any


class _Recorder(lopt_core.Optimizer):
    """SGD that records the num_steps its init was given (-1 for none)."""

    def init(self, params, model_state=None, num_steps=None, key=None, **kwargs):
        told = jnp.asarray(-1 if num_steps is None else num_steps, jnp.int32)
        return _RecorderState(params, model_state, told)

    def update(self, opt_state, grads, loss=None, model_state=None, key=None, **kwargs):
        new = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, opt_state.params, grads)
        return opt_state.replace(params=new)


def test_as_optax_gives_num_steps_to_init():
    assert int(as_optax(_Recorder(), num_steps=7).init(_params()).told) == 7
    assert int(as_optax(_Recorder()).init(_params()).told) == -1
    assert int(as_optax(_Recorder(), num_steps=np.int64(9)).init(_params()).told) == 9


def test_as_optax_with_num_steps_steps_as_the_lopt_optimizer_does():
    opt = _cosine_nadamw()
    tx = as_optax(opt, num_steps=2)
    params, state = _params(), tx.init(_params())
    assert int(state.optax_opt_state.num_steps) == 2
    update = jax.jit(tx.update)
    for expected in ([0.0, -1.0], [-0.5, -0.5]):
        updates, state = update(_grads([0.5, -0.25]), state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(params["w"], expected, atol=1e-6)
    np.testing.assert_allclose(_run(opt, [[0.5, -0.25]] * 2, num_steps=2), params["w"], atol=1e-6)


def test_as_optax_refuses_an_optimizer_needing_the_horizon_without_num_steps():
    for opt in (_cosine_nadamw(), GradientClipOptimizer(_cosine_nadamw())):
        with pytest.raises(
            ValueError, match=r"as_optax\(.*\): \w+ needs the number of steps .*num_steps=N"
        ):
            as_optax(opt)
    tx = as_optax(GradientClipOptimizer(_cosine_nadamw(), 10.0), num_steps=2)
    updates, _ = tx.update(_grads([0.5, -0.25]), tx.init(_params()), _params())
    np.testing.assert_allclose(updates["w"], [-1.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_as_optax_refuses_a_bad_num_steps(bad):
    with pytest.raises(ValueError, match=r"as_optax\(.*\): num_steps must be a positive integer"):
        as_optax(Adam(), num_steps=bad)


# ---------------------------------------------------------------------------------------
# The losses go down


def _regression():
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 4))
    y = x @ jnp.array([1.0, -2.0, 0.5, 3.0])

    def loss_fn(params):
        return jnp.mean(jnp.square(x @ params["w"] - y))

    return loss_fn, {"w": jnp.full(4, 0.5)}


@pytest.mark.parametrize(
    ("opt", "num_steps", "factor"),
    [
        (Fromage(0.1), None, 0.05),
        (PiecewiseLinearAdam(times=(0, 100), lrs=(0.1, 0.01)), None, 1e-3),
        (NAdamW(COS(0.1)), 100, 1e-3),
        (NAdamW(0.1, use_nesterov=False, use_bias_correction=False), None, 1e-3),
    ],
    ids=["Fromage", "PiecewiseLinearAdam", "NAdamW-cosine", "NAdamW-plain-uncorrected"],
)
def test_losses_go_down_in_an_optax_loop(opt, num_steps, factor):
    loss_fn, params = _regression()
    tx = as_optax(opt, num_steps=num_steps)
    state = tx.init(params)

    @jax.jit
    def train(params, state):
        def body(carry, _):
            p, s = carry
            loss, grads = jax.value_and_grad(loss_fn)(p)
            updates, s = tx.update(grads, s, p, loss=loss)
            return (optax.apply_updates(p, updates), s), loss

        return jax.lax.scan(body, (params, state), None, length=100)

    (final, _), losses = train(params, state)
    initial = float(loss_fn(params))
    assert float(losses[0]) == pytest.approx(initial)
    assert float(losses[50]) < initial
    assert float(loss_fn(final)) < factor * initial, (initial, float(loss_fn(final)))


def test_schedules_module_is_reachable_from_the_package():
    assert schedules.CosineLearningRateSchedule is COS
