"""MuAdafacMLPLOpt (muLO): the muP per-tensor step scaling, its state, a Flax loop."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt_learned import AdafacMLPLOpt, MuAdafacMLPLOpt, as_optax, mup_lr_scales

WIDTHS = (32, 128, 512)


def _mlp_params(width):
    """A 16 -> width -> width -> 10 MLP named as haiku names it (input, hidden, output)."""
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    shapes = [(16, width), (width, width), (width, 10)]
    return {
        f"mlp/~/linear_{i}": {
            "w": jax.random.normal(k, s) / np.sqrt(s[0]),
            "b": jnp.zeros((s[1],)),
        }
        for i, (k, s) in enumerate(zip(keys, shapes))
    }


def _first_step_rms(params):
    """Per-tensor RMS of MuAdafacMLPLOpt's first step: (muP scales, all scales 1).

    With every multiplier 1 the step is AdafacMLPLOpt's; both runs share one
    compilation, as the multipliers are state.
    """
    lopt = MuAdafacMLPLOpt()
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(5), len(leaves))
    grads = jax.tree_util.tree_unflatten(
        treedef, [jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    )
    step = jax.jit(lambda s, g: opt.get_params(opt.update(s, g)))
    ones = jax.tree_util.tree_map(lambda _: 1.0, params)
    out = []
    for state in (opt.init(params), opt.init(params, mup_lr_scales=ones)):
        new = step(state, grads)
        out.append(
            {
                (layer, k): float(jnp.sqrt(jnp.mean(jnp.square(new[layer][k] - params[layer][k]))))
                for layer in params
                for k in params[layer]
            }
        )
    return out


def test_default_scales_follow_mup():
    scales = mup_lr_scales(_mlp_params(128), base_fan_in=32)
    assert scales["mlp/~/linear_0"] == {"w": 1.0, "b": 1.0}
    assert scales["mlp/~/linear_1"] == {"w": 0.25, "b": 1.0}
    assert scales["mlp/~/linear_2"] == {"w": 1.0, "b": 1.0}


def test_per_tensor_step_follows_the_mup_scaling_with_width():
    """Input, output and bias steps keep their size; hidden steps shrink as 1 / width."""
    runs = {w: _first_step_rms(_mlp_params(w)) for w in WIDTHS}
    mu = {w: runs[w][0] for w in WIDTHS}
    plain = {w: runs[w][1] for w in WIDTHS}
    hidden = ("mlp/~/linear_1", "w")
    for key in mu[32]:
        sizes = np.asarray([mu[w][key] for w in WIDTHS])
        if key == hidden:
            # muP: hidden steps times width / 32 are width-independent ...
            sizes = sizes * np.asarray(WIDTHS) / 32.0
            raw = np.asarray([plain[w][key] for w in WIDTHS])
            # ... because AdafacMLPLOpt's own hidden step is (and muLO divides it).
            assert raw.max() / raw.min() < 1.5, raw
            np.testing.assert_allclose(sizes, raw, rtol=1e-4)
        assert sizes.max() / sizes.min() < 1.5, (key, sizes)
    # At the base width every multiplier is 1; with all multipliers 1 the step is
    # AdafacMLPLOpt's own.
    for key in mu[32]:
        assert mu[32][key] == pytest.approx(plain[32][key], rel=1e-5)
    params = _mlp_params(32)
    opt = AdafacMLPLOpt().opt_fn(AdafacMLPLOpt().init(jax.random.PRNGKey(0)))
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    mu_opt = MuAdafacMLPLOpt().opt_fn(MuAdafacMLPLOpt().init(jax.random.PRNGKey(0)))
    a = jax.jit(lambda: opt.get_params(opt.update(opt.init(params), grads)))()
    b = jax.jit(lambda: mu_opt.get_params(mu_opt.update(mu_opt.init(params), grads)))()
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-6)
    assert mu[512][hidden] == pytest.approx(plain[512][hidden] / 16.0, rel=1e-4)


def test_explicit_scales_and_a_wrong_tree():
    lopt = MuAdafacMLPLOpt()
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    params = {"a": jnp.ones((4, 4)), "b": jnp.ones((4,))}
    state = opt.init(params, mup_lr_scales={"a": 0.5, "b": 2.0})
    np.testing.assert_allclose(state.lr_scales, [0.5, 2.0])
    with pytest.raises(ValueError, match=r"MuAdafacMLPLOpt: mup_lr_scales must be a tree"):
        opt.init(params, mup_lr_scales={"a": 0.5})


def test_state_is_four_floats_per_parameter_plus_factors():
    """3 momenta and the second moment per parameter; 3 (rows + cols) factors; 1 scale."""
    lopt = MuAdafacMLPLOpt()
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    state = jax.eval_shape(lambda: opt.init({"w": jnp.zeros((1024, 512))}))
    rest = state.replace(params=None, model_state=None, iteration=None)
    floats = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(rest))
    assert floats == 4 * 1024 * 512 + 3 * (1024 + 512) + 1


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(64)(x))
        x = nn.relu(nn.Dense(64)(x))
        return nn.Dense(1)(x)[..., 0]


def test_flax_mlp_trains_through_as_optax():
    """Untrained theta with the sign-guarded `step_bound`: 100 steps reduce the loss."""
    x = jax.random.normal(jax.random.PRNGKey(1), (128, 4))
    y = jnp.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2]
    model = _MLP()
    params = model.init(jax.random.PRNGKey(0), x)

    def loss_fn(p):
        return jnp.mean(jnp.square(model.apply(p, x) - y))

    lopt = MuAdafacMLPLOpt(step_mult=1e-2, step_bound=1e-2)
    tx = as_optax(lopt, lopt.init(jax.random.PRNGKey(0)), num_steps=100)
    state = tx.init(params)
    np.testing.assert_allclose(sorted(np.asarray(state.lr_scales))[:1], [0.5])

    @jax.jit
    def step(params, state):
        grads = jax.grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    first = float(loss_fn(params))
    for _ in range(100):
        params, state = step(params, state)
    final = float(loss_fn(params))
    assert final < 0.7 * first, (first, final)
