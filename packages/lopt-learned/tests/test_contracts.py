"""Every learned optimizer of the catalog passes the lopt contract, plus shared properties."""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core
from lopt_core.testing import check_learned_optimizer
from lopt_learned import CATALOG

PLUGIN = "lopt-learned"
NEEDS_LOSS = {"RNNMLPLOpt", "HParamControllerLOPT", "HyperV2"}
NEEDS_HORIZON = {"Celo", "HyperV2"}  # opt.init(params, num_steps=N) is required


def registered_names() -> list[str]:
    """Names of every learned optimizer declared in this package's catalog."""
    return sorted(CATALOG.names("learned_optimizers"))


def test_the_registry_holds_exactly_the_catalog():
    entries = lopt_core.REGISTRY.entries("learned_optimizers")
    assert sorted(n for n, e in entries.items() if e.plugin == PLUGIN) == registered_names()
    for name, factory in CATALOG.factories("learned_optimizers").items():
        assert entries[name].factory is factory


def test_every_architecture_is_registered():
    assert registered_names() == [
        "AdafacMLPLOpt",
        "Celo",
        "Celo2",
        "HParamControllerLOPT",
        "HyperV2",
        "LearnableAdam",
        "LearnableSGD",
        "LearnableSGDM",
        "MLPLOpt",
        "MetaSGDWD",
        "MuAdafacMLPLOpt",
        "NNAdam",
        "PerParamMLP",
        "RNNMLPLOpt",
    ]


@pytest.mark.parametrize("name", registered_names())
def test_contract(name):
    check_learned_optimizer(lopt_core.get_learned_optimizer(name))


def _mixed_params():
    return {
        "w": jnp.full((4, 3), 0.5, jnp.bfloat16),
        "b": jnp.linspace(-1.0, 1.0, 3).astype(jnp.float16),
        "s": jnp.asarray(0.25, jnp.float32),
        "k": jnp.ones((2, 3, 2), jnp.float32),
    }


@pytest.mark.parametrize("name", registered_names())
def test_dtypes_scalars_and_opt_class(name):
    """Half-precision params keep their dtype, 0-d params work, state keeps its dtypes."""
    lopt = lopt_core.get_learned_optimizer(name)
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(1)), is_training=True)
    # opt_fn returns an instance of a module-level class, never a local one.
    assert "<locals>" not in type(opt).__qualname__
    assert opt.is_training is True
    params = _mixed_params()
    state = opt.init(params, num_steps=10)
    grads = jax.tree_util.tree_map(lambda p: jnp.full(p.shape, 0.1, p.dtype), params)

    @jax.jit
    def step(s):
        return opt.update(s, grads, loss=jnp.asarray(1.5))

    new = step(step(state))
    new_params = opt.get_params(new)
    for k, p in params.items():
        assert new_params[k].dtype == p.dtype, k
        assert new_params[k].shape == p.shape, k
        assert bool(jnp.all(jnp.isfinite(new_params[k].astype(jnp.float32)))), k
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(new)):
        assert jnp.result_type(a) == jnp.result_type(b)
    # Every architecture moves the float32 scalar parameter.
    assert float(new_params["s"]) != 0.25
    assert int(new.iteration) == 2


@pytest.mark.parametrize("name", sorted(NEEDS_LOSS))
def test_missing_loss_is_a_clear_error(name):
    lopt = lopt_core.get_learned_optimizer(name)
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    assert opt.needs_loss is True
    state = opt.init({"w": jnp.ones(3)}, num_steps=10)
    with pytest.raises(
        ValueError, match=rf"{name} needs the loss at every step \(needs_loss=True\)"
    ):
        opt.update(state, {"w": jnp.ones(3)})


@pytest.mark.parametrize("name", sorted(set(registered_names()) - NEEDS_LOSS))
def test_loss_is_optional_elsewhere(name):
    lopt = lopt_core.get_learned_optimizer(name)
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    assert getattr(opt, "needs_loss", False) is False
    state = opt.update(opt.init({"w": jnp.ones(3)}, num_steps=10), {"w": jnp.ones(3)})
    assert np.all(np.isfinite(np.asarray(opt.get_params(state)["w"])))


@pytest.mark.parametrize("name", sorted(NEEDS_HORIZON))
def test_a_missing_horizon_is_a_clear_error(name):
    lopt = lopt_core.get_learned_optimizer(name)
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    with pytest.raises(ValueError, match=r"num_steps"):
        opt.init({"w": jnp.ones(3)})


@pytest.mark.parametrize("name", sorted(set(registered_names()) - NEEDS_HORIZON))
def test_the_horizon_is_optional_elsewhere(name):
    lopt = lopt_core.get_learned_optimizer(name)
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    state = opt.update(opt.init({"w": jnp.ones(3)}), {"w": jnp.ones(3)}, loss=1.0)
    assert int(state.iteration) == 1


def test_wrong_grads_and_wrong_theta_are_clear_errors():
    mlp = lopt_core.get_learned_optimizer("MLPLOpt")
    opt = mlp.opt_fn(mlp.init(jax.random.PRNGKey(0)))
    state = opt.init({"w": jnp.ones(3)})
    with pytest.raises(
        ValueError,
        match=r"MLPLOpt: the gradients do not match the parameters: path \['w'\] has shape \(4,\)",
    ):
        opt.update(state, {"w": jnp.ones(4)})
    adam = lopt_core.get_learned_optimizer("LearnableAdam")
    with pytest.raises(ValueError, match="theta lacks"):
        mlp.opt_fn(adam.init(jax.random.PRNGKey(0)))


@pytest.mark.parametrize("name", registered_names())
def test_grads_of_another_shape_are_refused(name):
    """A gradient that would broadcast against its parameter must not reshape the params."""
    lopt = lopt_core.get_learned_optimizer(name)
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    state = opt.init({"w": jnp.ones((3, 1))}, num_steps=10)
    with pytest.raises(
        ValueError,
        match=rf"{name}: the gradients do not match .* has shape \(3,\), expected \(3, 1\)",
    ):
        opt.update(state, {"w": jnp.ones(3)}, loss=1.0)


@pytest.mark.parametrize("name", registered_names())
def test_instances_stay_picklable_after_init(name):
    """Worker pools pickle the learned optimizer; calling init first must not prevent it."""
    lopt = lopt_core.get_learned_optimizer(name)
    theta = lopt.init(jax.random.PRNGKey(0))
    copy = pickle.loads(pickle.dumps(lopt))
    again = copy.init(jax.random.PRNGKey(0))
    for a, b in zip(jax.tree_util.tree_leaves(theta), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", registered_names())
def test_theta_missing_any_key_is_named(name):
    """opt_fn names whichever top-level theta entry is missing, not only some of them."""
    lopt = lopt_core.get_learned_optimizer(name)
    theta = lopt.init(jax.random.PRNGKey(0))
    for key in theta:
        partial = {k: v for k, v in theta.items() if k != key}
        with pytest.raises(ValueError, match=f"theta lacks \\['{key}'\\]"):
            lopt.opt_fn(partial)
