"""Celo and Celo2: an Adam-like start, a bounded step, the horizon, optax and Flax loops."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt_learned import Celo, Celo2, as_optax

LARGE = {"w": jnp.zeros((1024, 512)), "b": jnp.zeros((512,))}


def _grads(key, params):
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    )


def _state_floats(state):
    rest = state.replace(params=None, model_state=None, iteration=None)
    return sum(int(np.prod(np.shape(x))) for x in jax.tree_util.tree_leaves(rest))


def test_first_step_at_initial_theta_is_the_normalised_adam_step():
    """With init_noise=0 the first step is exactly -1e-3 * sign(g) (Adam's first step)."""
    params = {"w": jnp.ones((6, 4)), "b": jnp.zeros((4,))}
    grads = _grads(jax.random.PRNGKey(3), params)
    for lopt in (Celo2(init_noise=0.0), Celo(init_noise=0.0)):
        opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
        new = opt.get_params(opt.update(opt.init(params, num_steps=100), grads))
        for k in params:
            np.testing.assert_allclose(
                new[k] - params[k], -1e-3 * np.sign(grads[k]), rtol=1e-4, atol=1e-9
            )
    # With the default init_noise (0.01) the step stays within a few percent of it.
    lopt = Celo2()
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    new = opt.get_params(opt.update(opt.init(params), grads))
    step = np.concatenate([np.ravel(new[k] - params[k]) for k in params])
    adam = np.concatenate([np.ravel(-1e-3 * np.sign(grads[k])) for k in params])
    assert np.corrcoef(step, adam)[0, 1] > 0.99


def test_every_tensor_step_is_bounded_whatever_theta():
    """A wild theta gives per-tensor step RMS at most lr * exp(max_log_lr_change)."""
    lopt = Celo2()
    theta = lopt.init(jax.random.PRNGKey(0))
    theta = jax.tree_util.tree_map(
        lambda x: x + 100.0 * jax.random.normal(jax.random.PRNGKey(7), x.shape), theta
    )
    opt = lopt.opt_fn(theta)
    params = {"w": jnp.ones((32, 16)), "b": jnp.ones((16,))}
    state = opt.init(params)
    for i in range(3):
        old = opt.get_params(state)
        state = opt.update(state, _grads(jax.random.PRNGKey(i), params))
        for k in params:
            rms = float(jnp.sqrt(jnp.mean(jnp.square(opt.get_params(state)[k] - old[k]))))
            assert rms <= 1e-3 * np.exp(3.0) * (1 + 1e-4), (k, rms)


def test_celo2_needs_neither_loss_nor_horizon_in_optax():
    lopt = Celo2()
    tx = as_optax(lopt, lopt.init(jax.random.PRNGKey(0)))
    params = {"w": jnp.ones((3, 2))}
    state = tx.init(params)
    updates, state = tx.update({"w": jnp.ones((3, 2))}, state, params)
    np.testing.assert_allclose(updates["w"], -1e-3 * np.ones((3, 2)), rtol=1e-2)


def test_celo_needs_the_horizon_and_as_optax_passes_it():
    lopt = Celo()
    theta = lopt.init(jax.random.PRNGKey(0))
    params = {"w": jnp.ones((3, 2))}
    with pytest.raises(
        ValueError, match=r"Celo schedules over the fraction of training.*num_steps=N"
    ):
        as_optax(lopt, theta).init(params)
    with pytest.raises(ValueError, match=r"Celo: num_steps must be a finite number > 0"):
        lopt.opt_fn(theta).init(params, num_steps=0)
    state = as_optax(lopt, theta, num_steps=250).init(params)
    assert float(state.num_steps) == 250.0


def test_celo_schedule_reads_the_fraction_of_training():
    """A scheduler that depends on its input gives other steps at other horizons."""
    lopt = Celo()
    theta = lopt.init(jax.random.PRNGKey(0))
    theta["scheduler"]["w1"] = jnp.ones_like(theta["scheduler"]["w1"])
    opt = lopt.opt_fn(theta)
    params = {"w": jnp.ones((3, 2))}
    lrs = []
    for horizon in (10, 10_000):
        state = opt.init(params, num_steps=horizon)
        state = state.replace(iteration=jnp.asarray(9, jnp.int32))
        lrs.append(float(lopt.learning_rate_at(theta, state)))
    assert lrs[0] != pytest.approx(lrs[1], rel=1e-3)
    # Celo2's schedule, over the iteration count, ignores the horizon.
    lopt2 = Celo2()
    theta2 = lopt2.init(jax.random.PRNGKey(0))
    opt2 = lopt2.opt_fn(theta2)
    a, b = (opt2.init(params, num_steps=n) for n in (10, 10_000))
    assert float(lopt2.learning_rate_at(theta2, a)) == float(lopt2.learning_rate_at(theta2, b))


@pytest.mark.parametrize("cls", [Celo, Celo2])
def test_state_is_four_floats_per_parameter(cls):
    """3 momenta and the second moment: 4 floats per parameter (plus the horizon scalar)."""
    lopt = cls()
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    state = jax.eval_shape(lambda: opt.init(LARGE, num_steps=10))
    total = 1024 * 512 + 512
    assert _state_floats(state) == 4 * total + 1


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Celo2: hidden_size must be >= 2"):
        Celo2(hidden_size=1)
    with pytest.raises(ValueError, match=r"Celo2: learning_rate must be a finite number > 0"):
        Celo2(learning_rate=0.0)


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.relu(nn.Dense(16)(x)))[..., 0]


@pytest.mark.parametrize("cls", [Celo, Celo2])
def test_flax_mlp_trains_through_as_optax(cls):
    x = jax.random.normal(jax.random.PRNGKey(1), (128, 4))
    y = jnp.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2]
    model = _MLP()
    params = model.init(jax.random.PRNGKey(0), x)

    def loss_fn(p):
        return jnp.mean(jnp.square(model.apply(p, x) - y))

    lopt = cls(learning_rate=1e-2)
    tx = as_optax(lopt, lopt.init(jax.random.PRNGKey(0)), num_steps=100)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    first = float(loss_fn(params))
    for _ in range(100):
        params, state, _ = step(params, state)
    final = float(loss_fn(params))
    assert final < 0.5 * first, (first, final)
