"""Every registered optimizer passes the lopt contract and lowers two standard losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt_core
from lopt_core.testing import check_optimizer
from lopt_optimizers import CATALOG, SGD, Adam

PLUGIN = "lopt-optimizers"

#: Constructor arguments for registered entries that cannot be built without them.
#: Entries not listed here are built with their defaults.
REQUIRED_ARGS = {
    "OptaxOptimizer": lambda: {"opt": optax.adam(0.01)},
    "GradientClipOptimizer": lambda: {"opt": Adam(0.01), "grad_clip": 1.0},
    "WeightDecayWrapper": lambda: {"opt": Adam(0.01), "weight_decay": 1e-3},
    "GraftedOptimizer": lambda: {"magnitude_opt": Adam(0.01), "direction_opt": SGD(0.01)},
    "GradientAccumulator": lambda: {"opt": Adam(0.01), "num_steps": 2},
}


def registered_names() -> list[str]:
    """Names of every optimizer that this package declares in its catalog."""
    return CATALOG.names("optimizers")


def build(name: str, **overrides):
    """Builds the registered optimizer `name` through the registry."""
    kwargs = REQUIRED_ARGS.get(name, lambda: {})()
    kwargs.update(overrides)
    return lopt_core.get_optimizer(name, **kwargs)


EXPECTED = {
    "AdaBelief",
    "AdaGrad",
    "Adafactor",
    "Adam",
    "AdamW",
    "DoG",
    "Fromage",
    "GradientAccumulator",
    "GradientClipOptimizer",
    "GraftedOptimizer",
    "Lamb",
    "Lars",
    "Mechanic",
    "NAdamW",
    "OptaxOptimizer",
    "PiecewiseLinearAdam",
    "Prodigy",
    "RAdam",
    "RMSProp",
    "SGD",
    "SGDM",
    "SM3",
    "ScheduleFreeAdamW",
    "WeightDecayWrapper",
    "Yogi",
}

# Per-optimizer settings for the two problems below, each `(learning_rate, factor)`:
# after STEPS steps from the fixed start, the loss must be below `factor * initial`.
# Wrappers get the learning rate through their inner optimizer (see `_build_for`).
SETTINGS = {
    #                  10-D quadratic   2-D Rosenbrock
    "SGD": ((0.03, 1e-3), (1e-3, 0.3)),
    "SGDM": ((0.01, 1e-3), (1e-3, 0.02)),
    "Adam": ((0.1, 1e-3), (0.3, 0.1)),
    "AdamW": ((0.1, 1e-3), (0.3, 0.1)),
    "NAdamW": ((0.1, 1e-3), (0.3, 0.1)),
    "RMSProp": ((0.03, 1e-3), (0.1, 0.3)),
    "AdaBelief": ((0.1, 1e-3), (0.3, 0.1)),
    "AdaGrad": ((0.3, 1e-3), (1.0, 0.3)),
    "Adafactor": ((0.3, 1e-3), (0.3, 0.2)),
    "Lamb": ((0.1, 0.03), (0.03, 0.2)),
    "Lars": ((3e-3, 0.5), (1.0, 0.3)),
    "RAdam": ((0.1, 1e-3), (1e-3, 0.5)),
    "Yogi": ((0.1, 1e-3), (0.3, 0.1)),
    "SM3": ((0.3, 1e-2), (1.0, 0.3)),
    # Fromage from the quadratic's all-zero start first grows the params' norm.
    "Fromage": ((0.3, 0.1), (0.3, 0.03)),
    # Its learning rate goes linearly from lr at step 0 to lr / 10 at step STEPS.
    "PiecewiseLinearAdam": ((0.1, 1e-3), (0.3, 0.15)),
    "OptaxOptimizer": ((0.1, 1e-3), (0.3, 0.1)),
    "GradientClipOptimizer": ((0.1, 1e-3), (0.3, 0.25)),
    "WeightDecayWrapper": ((0.1, 1e-3), (0.3, 0.1)),
    "GraftedOptimizer": ((0.1, 1e-3), (0.3, 0.25)),
    "GradientAccumulator": ((0.1, 1e-2), (0.3, 0.2)),
    # Tuning-free: the learning rate multiplies the step size they estimate (1.0: untuned).
    "Prodigy": ((1.0, 1e-3), (1.0, 0.2)),
    "DoG": ((1.0, 0.15), (1.0, 0.25)),
    "Mechanic": ((1.0, 1e-3), (1.0, 0.25)),
    # Schedule-free AdamW's learning rate is Adam's; the loss is at the training point.
    "ScheduleFreeAdamW": ((0.3, 1e-3), (1.0, 0.05)),
}
STEPS = 100


def _build_for(name: str, learning_rate: float):
    if name == "PiecewiseLinearAdam":
        return build(name, times=(0, STEPS), lrs=(learning_rate, learning_rate / 10))
    if name not in REQUIRED_ARGS:
        return build(name, learning_rate=learning_rate)
    if name == "OptaxOptimizer":
        return build(name, opt=optax.adam(learning_rate))
    if name == "GraftedOptimizer":
        return build(name, magnitude_opt=Adam(learning_rate), direction_opt=SGD(learning_rate))
    return build(name, opt=Adam(learning_rate))


def _quadratic(params):
    x = params["x"]
    scales = jnp.linspace(1.0, 10.0, 10)
    return jnp.sum(scales * jnp.square(x - 1.0))


def _rosenbrock(params):
    x, y = params["xy"][0], params["xy"][1]
    return jnp.square(1.0 - x) + 100.0 * jnp.square(y - x * x)


def _run(opt, loss_fn, params, steps: int = STEPS):
    @jax.jit
    def train(state):
        def body(s, _):
            p = opt.get_params(s)
            loss, grads = jax.value_and_grad(loss_fn)(p)
            return opt.update(s, grads, loss=loss), loss

        return jax.lax.scan(body, state, None, length=steps)

    state = opt.init(params, num_steps=steps, key=jax.random.PRNGKey(0))
    final_state, _ = train(state)
    return float(loss_fn(params)), float(loss_fn(opt.get_params(final_state)))


def test_this_package_registers_every_expected_optimizer():
    assert set(registered_names()) == EXPECTED
    entries = lopt_core.REGISTRY.entries("optimizers")
    for name in EXPECTED:
        assert entries[name].plugin == PLUGIN
        assert entries[name].description and "\n" not in entries[name].description


def test_settings_cover_every_registered_optimizer():
    assert set(SETTINGS) == set(registered_names())


@pytest.mark.parametrize("registered_name", registered_names())
def test_check_optimizer(registered_name):
    check_optimizer(build(registered_name))


@pytest.mark.parametrize("registered_name", registered_names())
def test_lowers_10d_quadratic(registered_name):
    learning_rate, factor = SETTINGS[registered_name][0]
    opt = _build_for(registered_name, learning_rate)
    initial, final = _run(opt, _quadratic, {"x": jnp.zeros(10)})
    assert initial == pytest.approx(55.0)
    assert np.isfinite(final)
    assert final < factor * initial, (registered_name, initial, final)


@pytest.mark.parametrize("registered_name", registered_names())
def test_lowers_2d_rosenbrock(registered_name):
    learning_rate, factor = SETTINGS[registered_name][1]
    opt = _build_for(registered_name, learning_rate)
    initial, final = _run(opt, _rosenbrock, {"xy": jnp.array([-1.2, 1.0])})
    assert initial == pytest.approx(24.2)
    assert np.isfinite(final)
    assert final < factor * initial, (registered_name, initial, final)
