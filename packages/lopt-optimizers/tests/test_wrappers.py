"""The wrappers: exact semantics, any inner optimizer, jit, and bad input."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core
from lopt_core.testing import check_optimizer
from lopt_optimizers import (
    SGD,
    Adam,
    GradientAccumulator,
    GradientClipOptimizer,
    GraftedOptimizer,
    WeightDecayWrapper,
)


@flax.struct.dataclass
class _PlainState:
    params: Any
    model_state: Any
    iteration: jax.Array


class PlainSGD(lopt_core.Optimizer):
    """A hand-written optimizer (no optax), as in Part 6, for the wrappers to wrap."""

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def init(self, params, model_state=None, **kwargs):
        return _PlainState(params, model_state, jnp.asarray(0, jnp.int32))

    def update(self, opt_state, grads, loss=None, model_state=None, **kwargs):
        new = jax.tree_util.tree_map(lambda p, g: p - self.lr * g, opt_state.params, grads)
        return _PlainState(new, model_state, opt_state.iteration + 1)


def _step(opt, params, grads, loss=None):
    state = opt.init(params)
    return opt.get_params(jax.jit(lambda s: opt.update(s, grads, loss=loss))(state))


def test_gradient_clip_clips_by_value():
    out = _step(
        GradientClipOptimizer(SGD(1.0), grad_clip=0.5),
        {"w": jnp.zeros(3)},
        {"w": jnp.array([2.0, -0.1, -7.0])},
    )
    np.testing.assert_allclose(np.asarray(out["w"]), [-0.5, 0.1, 0.5])


def test_weight_decay_adds_the_l2_gradient_and_loss():
    seen = {}

    class Spy(PlainSGD):
        def update(self, opt_state, grads, loss=None, model_state=None, **kwargs):
            seen["loss"] = loss
            return super().update(opt_state, grads, loss, model_state, **kwargs)

    opt = WeightDecayWrapper(Spy(1.0), weight_decay=0.1)
    state = opt.init({"w": jnp.array([2.0, -4.0])})
    state = opt.update(state, {"w": jnp.array([1.0, 1.0])}, loss=jnp.asarray(3.0))
    out = opt.get_params(state)
    # grads + 0.1 * params = [1.2, 0.6]; loss + 0.05 * ||p||^2 = 3 + 0.05 * 20 = 4.
    np.testing.assert_allclose(np.asarray(out["w"]), [0.8, -4.6], rtol=1e-6)
    assert float(seen["loss"]) == pytest.approx(4.0)


def test_grafted_takes_norm_from_magnitude_and_direction_from_direction():
    magnitude = PlainSGD(2.0)  # step norm 2 * ||g||
    direction = Adam(0.01)  # first Adam step ~ -0.01 * sign(g)
    params = {"a": jnp.zeros(2), "b": jnp.zeros(())}
    grads = {"a": jnp.array([3.0, -1.0]), "b": jnp.asarray(0.5)}
    opt = GraftedOptimizer(magnitude, direction)
    state = opt.init(params)
    state = jax.jit(opt.update)(state, grads)
    step = jnp.concatenate([state.params["a"], state.params["b"][None]])
    g = jnp.array([3.0, -1.0, 0.5])
    np.testing.assert_allclose(
        float(jnp.linalg.norm(step)), 2.0 * float(jnp.linalg.norm(g)), rtol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(step / jnp.linalg.norm(step)),
        np.asarray(-jnp.sign(g) / jnp.sqrt(3.0)),
        rtol=1e-4,
    )
    # Both inner states continue from the grafted params.
    np.testing.assert_array_equal(
        np.asarray(state.mag_opt_state.params["a"]), np.asarray(state.params["a"])
    )
    np.testing.assert_array_equal(
        np.asarray(state.dir_opt_state.params["a"]), np.asarray(state.params["a"])
    )
    assert int(state.iteration) == 1


def test_grafted_zero_direction_takes_no_step():
    opt = GraftedOptimizer(SGD(1.0), SGD(1.0))
    out = _step(opt, {"w": jnp.ones(2)}, {"w": jnp.zeros(2)})
    np.testing.assert_array_equal(np.asarray(out["w"]), [1.0, 1.0])


def test_gradient_accumulator_averages_k_gradients_then_steps_once():
    opt = GradientAccumulator(PlainSGD(1.0), num_steps=3)
    state = opt.init({"w": jnp.zeros(2)}, num_steps=9)
    update = jax.jit(opt.update)
    grads = [jnp.array([1.0, 0.0]), jnp.array([2.0, 3.0]), jnp.array([3.0, 6.0])]
    seen = []
    for g in grads:
        state = update(state, {"w": g}, loss=jnp.asarray(1.0))
        seen.append(np.asarray(opt.get_params(state)["w"]))
    np.testing.assert_array_equal(seen[0], [0.0, 0.0])
    np.testing.assert_array_equal(seen[1], [0.0, 0.0])
    np.testing.assert_allclose(seen[2], [-2.0, -3.0])  # one step on the mean gradient
    np.testing.assert_array_equal(np.asarray(state.grad_accum["w"]), [0.0, 0.0])
    assert int(state.iteration) == 3 and int(state.inner_opt_state.iteration) == 1
    # Compiled once: the choice is a lax.cond, not Python control flow.
    assert update._cache_size() == 1


def test_gradient_accumulator_matches_big_batch_adam():
    # Two half-batch gradients accumulated give the same Adam step as the full batch.
    params = {"w": jnp.array([0.5, -0.5])}
    g1, g2 = jnp.array([1.0, 2.0]), jnp.array([3.0, -2.0])
    acc = GradientAccumulator(Adam(0.1), num_steps=2)
    s = acc.init(params)
    s = acc.update(acc.update(s, {"w": g1}), {"w": g2})
    ref = Adam(0.1)
    r = ref.update(ref.init(params), {"w": (g1 + g2) / 2})
    np.testing.assert_allclose(
        np.asarray(acc.get_params(s)["w"]), np.asarray(ref.get_params(r)["w"]), rtol=1e-6
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda inner: GradientClipOptimizer(inner, 1.0),
        lambda inner: WeightDecayWrapper(inner, 1e-2),
        lambda inner: GraftedOptimizer(inner, SGD(0.1)),
        lambda inner: GradientAccumulator(inner, 3),
        lambda inner: GradientClipOptimizer(
            WeightDecayWrapper(GradientAccumulator(inner, 2), 1e-3), 2.0
        ),
    ],
    ids=["clip", "weight_decay", "grafted", "accumulate", "nested"],
)
def test_wrappers_work_on_any_lopt_optimizer(make):
    check_optimizer(make(PlainSGD(0.1)))
    check_optimizer(make(Adam(0.1)))


def test_wrappers_keep_model_state():
    for opt in (
        GradientClipOptimizer(Adam(0.1), 1.0),
        GraftedOptimizer(Adam(0.1), SGD(0.1)),
        GradientAccumulator(Adam(0.1), 2),
    ):
        state = opt.init({"w": jnp.ones(2)}, model_state={"bn": jnp.zeros(2)})
        state = opt.update(state, {"w": jnp.ones(2)}, model_state={"bn": jnp.ones(2)})
        np.testing.assert_array_equal(np.asarray(opt.get_state(state)["bn"]), [1.0, 1.0])


def test_wrapper_bad_input():
    with pytest.raises(TypeError, match=r"got the class Adam. Call it first"):
        GradientClipOptimizer(Adam, 1.0)
    with pytest.raises(
        ValueError, match=r"GradientClipOptimizer: grad_clip must be a finite number > 0.0"
    ):
        GradientClipOptimizer(Adam(), 0.0)
    with pytest.raises(
        ValueError, match=r"WeightDecayWrapper: weight_decay must be a finite number >= 0.0"
    ):
        WeightDecayWrapper(Adam(), -1.0)
    with pytest.raises(
        ValueError, match=r"GradientAccumulator: num_steps must be a positive integer"
    ):
        GradientAccumulator(Adam(), 0)
    with pytest.raises(
        TypeError, match=r"GraftedOptimizer: direction_opt must be a lopt Optimizer"
    ):
        GraftedOptimizer(Adam(), "sgd")
    opt = GradientAccumulator(Adam(), 2)
    state = opt.init({"w": jnp.ones(2)})
    with pytest.raises(
        ValueError,
        match=r"GradientAccumulator: the gradients do not match the parameters: path \['w'\] is expected but missing",
    ):
        opt.update(state, {"v": jnp.ones(2)})


def test_wrapper_names():
    assert GradientClipOptimizer(SGD(), 3.0).name == "GradientClip3.0_SGD_lr0.01"
    assert WeightDecayWrapper(SGD(), 0.1).name == "WeightDecay0.1_SGD_lr0.01"
    assert (
        GraftedOptimizer(Adam(), SGD()).name
        == "Grafted_Adam_lr0.01_b10.9_b20.999_eps1e-08_SGD_lr0.01"
    )
    assert GradientAccumulator(SGD(), 4).name == "GradientAccumulator4_SGD_lr0.01"


class MinimalSGD(lopt_core.Optimizer):
    """Declares only what it uses, like many hand-written optimizers."""

    def init(self, params):
        return _PlainState(params, None, jnp.asarray(0, jnp.int32))

    def update(self, opt_state, grads, loss):
        new = jax.tree_util.tree_map(lambda p, g: p - 0.5 * g, opt_state.params, grads)
        return _PlainState(new, None, opt_state.iteration + 1)


def test_wrappers_and_as_optax_drive_minimal_optimizers():
    from lopt_optimizers import as_optax

    params = {"w": jnp.ones(2)}
    grads = {"w": jnp.array([4.0, -0.5])}
    for opt in (
        GradientClipOptimizer(MinimalSGD(), 1.0),
        WeightDecayWrapper(MinimalSGD(), 0.0),
        GraftedOptimizer(MinimalSGD(), MinimalSGD()),
        GradientAccumulator(MinimalSGD(), 1),
    ):
        state = opt.update(opt.init(params), grads)
        expected = [0.5, 1.25] if isinstance(opt, GradientClipOptimizer) else [-1.0, 1.25]
        np.testing.assert_allclose(np.asarray(opt.get_params(state)["w"]), expected, rtol=1e-6)
    tx = as_optax(MinimalSGD())
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["w"]), [-2.0, 0.25])
