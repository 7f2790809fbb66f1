"""Learned optimizers in a plain Flax + optax training loop, through `as_optax`."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt_learned import HParamControllerLOPT, LearnableAdam, MLPLOpt, RNNMLPLOpt, as_optax


class MLP(nn.Module):
    hidden: int = 16

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(1)(x)[..., 0]


def _problem():
    x = jax.random.normal(jax.random.PRNGKey(1), (128, 4))
    y = jnp.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2]
    model = MLP()
    params = model.init(jax.random.PRNGKey(0), x)

    def loss_fn(p):
        return jnp.mean(jnp.square(model.apply(p, x) - y))

    return params, loss_fn


def _train(tx, params, loss_fn, steps):
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params, loss=loss)
        return optax.apply_updates(params, updates), opt_state, loss, updates

    losses = []
    for _ in range(steps):
        params, opt_state, loss, updates = step(params, opt_state)
        losses.append(float(loss))
    return params, losses, updates


def test_flax_mlp_trains_with_learnable_adam_through_as_optax():
    params, loss_fn = _problem()
    lopt = LearnableAdam(initial_learning_rate=1e-2)
    tx = as_optax(lopt, lopt.init(jax.random.PRNGKey(0)))
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    params, losses, _ = _train(tx, params, loss_fn, 150)
    final = float(loss_fn(params))
    # Measured on CPU: 0.482 -> 0.029 over 150 steps (as lopt_optimizers.Adam(1e-2)).
    assert losses[0] > 0.4
    assert losses[50] < losses[0]
    assert final < 0.1 * losses[0], (losses[0], final)


def test_learnable_adam_matches_optax_adam():
    params, loss_fn = _problem()
    lopt = LearnableAdam(initial_learning_rate=1e-2)
    ours, _, _ = _train(as_optax(lopt, lopt.init(jax.random.PRNGKey(0))), params, loss_fn, 20)
    ref, _, _ = _train(optax.adam(1e-2, eps_root=1e-8), params, loss_fn, 20)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5), ours, ref)


def test_mlp_lopt_through_as_optax_gives_finite_small_updates():
    params, loss_fn = _problem()
    lopt = MLPLOpt()
    tx = as_optax(lopt, lopt.init(jax.random.PRNGKey(0)))
    new_params, losses, updates = _train(tx, params, loss_fn, 10)
    leaves = jax.tree_util.tree_leaves(updates)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in leaves)
    biggest = max(float(jnp.max(jnp.abs(u))) for u in leaves)
    # Untrained: steps of about step_mult = 1e-3 times an O(1) network output.
    assert 1e-6 < biggest < 1e-2, biggest
    assert all(np.isfinite(losses))
    moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new_params, params)
    assert max(jax.tree_util.tree_leaves(moved)) > 0


@pytest.mark.parametrize("cls", [RNNMLPLOpt, HParamControllerLOPT])
def test_architectures_that_need_the_loss_say_so_through_optax(cls):
    params, loss_fn = _problem()
    lopt = cls()
    tx = as_optax(lopt, lopt.init(jax.random.PRNGKey(0)))
    state = tx.init(params)
    grads = jax.grad(loss_fn)(params)
    update = jax.jit(tx.update)
    with pytest.raises(ValueError, match="needs the loss"):
        update(grads, state, params)
    updates, _ = update(grads, state, params, loss=loss_fn(params))
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree_util.tree_leaves(updates))


def test_as_optax_rejects_a_class():
    with pytest.raises(TypeError, match="Instantiate it first"):
        as_optax(MLPLOpt, {})
