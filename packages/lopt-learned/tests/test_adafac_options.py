"""AdafacMLPLOpt's `concat_weights`, `make_separate_weights` and `split_weights` flags.

As in the reference: `concat_weights=False` computes the MLP as scalar
arithmetic (the same update up to float rounding), `make_separate_weights`
stores its weights as haiku scalars `w{layer}_{input}_{output}` and
`b{layer}_{output}`, and `split_weights` changes nothing.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt_learned import (
    AdafacMLPLOpt,
    MuAdafacMLPLOpt,
    load_learned_optimizer,
    save_learned_optimizer,
)

FULL_SHAPES = {
    "w0": (39, 4),
    "b0": (4,),
    "w1": (4, 4),
    "b1": (4,),
    "w2": (4, 2),
    "b2": (2,),
}

COMBINATIONS = [
    {},
    {"concat_weights": False},
    {"concat_weights": False, "split_weights": True},
    {"concat_weights": False, "make_separate_weights": True},
]
IDS = ["concat", "scalar", "scalar-split", "scalar-separate"]


def _separate(theta, lopt):
    """A full-matrix theta rewritten with one scalar entry per weight, as the reference names them."""
    nn = theta["nn"]["~"]
    out = {}
    for i in range(lopt.hidden_layers + 1):
        w, b = np.asarray(nn[f"w{i}"]), np.asarray(nn[f"b{i}"])
        for v in range(w.shape[0]):
            for o in range(w.shape[1]):
                out[f"w{i}_{v}_{o}"] = jnp.asarray(w[v, o])
        for o in range(b.shape[0]):
            out[f"b{i}_{o}"] = jnp.asarray(b[o])
    return {**theta, "nn": {"~": out}}


def _params():
    """A matrix (factored accumulators), a vector and a scalar (unfactored ones)."""
    k = jax.random.split(jax.random.PRNGKey(3), 3)
    return {
        "w": jax.random.normal(k[0], (4, 3)),
        "b": jax.random.normal(k[1], (3,)),
        "s": jnp.asarray(0.5),
    }


@functools.partial(jax.jit, static_argnums=0)
def _update(lopt, theta, state, grads):
    # One compilation per configuration, shared by every test that uses it.
    return lopt.opt_fn(theta).update(state, grads)


def _run(lopt, theta, params, steps, grad_fn=None):
    """The params after `steps` updates; gradients `sin(2p + i) + 0.1 p` unless `grad_fn`."""
    state = lopt.opt_fn(theta).init(params, num_steps=steps)
    for i in range(steps):
        if grad_fn is None:
            grads = jax.tree_util.tree_map(
                lambda p, i=i: jnp.sin(2.0 * p + i) + 0.1 * p, state.params
            )
        else:
            grads = grad_fn(state.params)
        state = _update(lopt, theta, state, grads)
    return state.params


@pytest.mark.parametrize("kwargs", COMBINATIONS[:3], ids=IDS[:3])
def test_full_weight_theta_shapes(kwargs):
    theta = AdafacMLPLOpt(**kwargs).init(jax.random.PRNGKey(0))
    assert sorted(theta) == ["adafactor_decays", "momentum_decays", "nn", "rms_decays"]
    assert {k: v.shape for k, v in theta["nn"]["~"].items()} == FULL_SHAPES
    assert theta["momentum_decays"].shape == (3,)
    assert theta["rms_decays"].shape == (1,)
    assert theta["adafactor_decays"].shape == (3,)


def test_full_weight_flags_share_default_init():
    key = jax.random.PRNGKey(1)
    base = AdafacMLPLOpt().init(key)["nn"]["~"]
    for kwargs in COMBINATIONS[1:3]:
        other = AdafacMLPLOpt(**kwargs).init(key)["nn"]["~"]
        for name in FULL_SHAPES:
            np.testing.assert_array_equal(other[name], base[name])


@pytest.mark.parametrize(("hidden_size", "hidden_layers"), [(4, 2), (3, 1), (4, 0)])
def test_separate_weights_theta_is_scalars_with_reference_names(hidden_size, hidden_layers):
    lopt = AdafacMLPLOpt(
        concat_weights=False,
        make_separate_weights=True,
        hidden_size=hidden_size,
        hidden_layers=hidden_layers,
    )
    theta = lopt.init(jax.random.PRNGKey(0))
    nn = theta["nn"]["~"]
    sizes = [39] + [hidden_size] * hidden_layers + [2]
    expected = set()
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        expected |= {f"w{i}_{v}_{o}" for v in range(n_in) for o in range(n_out)}
        expected |= {f"b{i}_{o}" for o in range(n_out)}
    assert set(nn) == expected
    assert all(x.shape == () and x.dtype == jnp.float32 for x in nn.values())
    assert len(nn) == sum(a * b + b for a, b in itertools.pairwise(sizes))
    # The decays are arrays as with full weights.
    assert theta["momentum_decays"].shape == (3,)
    # Biases start at zero, weights truncated at 2 std of 1/sqrt(fan_in).
    for i, n_in in enumerate(sizes[:-1]):
        w = np.asarray([x for k, x in nn.items() if k.startswith(f"w{i}_")])
        b = np.asarray([x for k, x in nn.items() if k.startswith(f"b{i}_")])
        assert np.all(b == 0.0)
        assert np.all(np.abs(w) <= 2.0 / np.sqrt(n_in) + 1e-6)
        assert np.std(w) > 0.2 / np.sqrt(n_in)


def test_default_separate_weights_count_is_190():
    lopt = AdafacMLPLOpt(concat_weights=False, make_separate_weights=True)
    assert len(lopt.init(jax.random.PRNGKey(0))["nn"]["~"]) == 39 * 4 + 4 + 4 * 4 + 4 + 4 * 2 + 2


# The reference test's step_mult=10 and exp_mult=1 (large steps, so agreement is
# not vacuous) for every run below, so each flag combination compiles once.
LOPTS = [AdafacMLPLOpt(step_mult=10.0, exp_mult=1.0, **kwargs) for kwargs in COMBINATIONS]
CONCAT, SCALAR, SCALAR_SPLIT, SEPARATE = LOPTS


def test_scalar_path_equals_concat_as_in_reference_test():
    """The reference's own check (concat vs split scalar path: mean difference < 1e-6), 3 steps."""
    theta = CONCAT.init(jax.random.PRNGKey(0))
    params = _params()
    ref = _run(CONCAT, theta, params, 3)
    got = _run(SCALAR_SPLIT, theta, params, 3)
    for name in params:
        assert float(jnp.mean(jnp.abs(got[name] - ref[name]))) < 1e-6
        np.testing.assert_allclose(got[name], ref[name], rtol=0, atol=1e-5)
        assert float(jnp.max(jnp.abs(ref[name] - params[name]))) > 1e-3


def test_split_weights_changes_nothing():
    theta = CONCAT.init(jax.random.PRNGKey(4))
    params = _params()
    a = _run(SCALAR, theta, params, 2)
    b = _run(SCALAR_SPLIT, theta, params, 2)
    for name in params:
        np.testing.assert_array_equal(a[name], b[name])


def test_separate_weights_equal_full_weights_set_equivalently():
    """Each scalar `w{i}_{v}_{o}` set to `w{i}[v, o]` gives the full-matrix update."""
    theta = CONCAT.init(jax.random.PRNGKey(5))
    params = _params()
    full = _run(SCALAR, theta, params, 2)
    separate = _run(SEPARATE, _separate(theta, SEPARATE), params, 2)
    concat = _run(CONCAT, theta, params, 2)
    for name in params:
        np.testing.assert_allclose(separate[name], full[name], rtol=0, atol=1e-6)
        np.testing.assert_allclose(separate[name], concat[name], rtol=0, atol=1e-5)
        assert float(jnp.max(jnp.abs(concat[name] - params[name]))) > 1e-3


def test_mu_lopt_takes_the_flags():
    lopt = MuAdafacMLPLOpt(concat_weights=False, make_separate_weights=True)
    assert lopt.concat_weights is False and lopt.make_separate_weights is True
    theta = lopt.init(jax.random.PRNGKey(0))
    assert set(theta["nn"]["~"]) == set(SEPARATE.init(jax.random.PRNGKey(0))["nn"]["~"])
    assert len(theta["nn"]["~"]) == 190


def _descent_theta(lopt):
    """A theta whose MLP outputs 0.002 x the normalised gradient as direction, 0 as magnitude.

    Hidden unit 0 is relu(c g), unit 1 relu(-c g) (g the first feature), carried
    through the hidden layers; the direction is unit 0 - unit 1 = c g. With
    step_mult=10 the step is 0.02 g.
    """
    theta = AdafacMLPLOpt().init(jax.random.PRNGKey(0))
    nn = {k: jnp.zeros_like(v) for k, v in theta["nn"]["~"].items()}
    nn["w0"] = nn["w0"].at[0, 0].set(0.002).at[0, 1].set(-0.002)
    nn["w1"] = nn["w1"].at[0, 0].set(1.0).at[1, 1].set(1.0)
    nn["w2"] = nn["w2"].at[0, 0].set(1.0).at[1, 0].set(-1.0)
    theta = {**theta, "nn": {"~": nn}}
    return _separate(theta, lopt) if lopt.make_separate_weights else theta


TARGET = {"w": jnp.full((4, 3), 0.5), "b": jnp.full((3,), -0.5), "s": jnp.asarray(1.0)}


def _quadratic(p):
    return float(sum(jnp.sum(jnp.square(p[k] - TARGET[k])) for k in TARGET))


@pytest.mark.parametrize("lopt", LOPTS, ids=IDS)
def test_loss_goes_down_on_a_quadratic(lopt):
    params = {"w": jnp.zeros((4, 3)), "b": jnp.zeros((3,)), "s": jnp.asarray(0.0)}

    def grad_fn(p):
        return jax.tree_util.tree_map(lambda x, t: 2.0 * (x - t), p, TARGET)

    losses = [_quadratic(params)]
    for _ in range(4):
        params = _run(lopt, _descent_theta(lopt), params, 10, grad_fn)
        losses.append(_quadratic(params))
    assert losses[0] == pytest.approx(4.75)
    assert all(np.isfinite(losses))
    assert all(b < a for a, b in itertools.pairwise(losses))
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize("lopt", LOPTS, ids=IDS)
def test_untrained_updates_are_finite_and_small(lopt):
    params = _params()
    new = _run(lopt, lopt.init(jax.random.PRNGKey(0)), params, 3)
    moved = {k: float(jnp.max(jnp.abs(new[k] - params[k]))) for k in params}
    assert all(bool(jnp.all(jnp.isfinite(new[k]))) for k in params)
    assert all(new[k].shape == params[k].shape for k in params)
    assert max(moved.values()) > 1e-3


def test_flags_in_repr_equality_and_checkpoint(tmp_path):
    lopt = AdafacMLPLOpt(concat_weights=False, make_separate_weights=True)
    assert repr(lopt) == "AdafacMLPLOpt(concat_weights=False, make_separate_weights=True)"
    assert repr(AdafacMLPLOpt()) == "AdafacMLPLOpt()"
    assert lopt != AdafacMLPLOpt(concat_weights=False)
    assert AdafacMLPLOpt(concat_weights=np.False_) == AdafacMLPLOpt(concat_weights=False)
    assert type(AdafacMLPLOpt(concat_weights=np.False_).concat_weights) is bool
    theta = lopt.init(jax.random.PRNGKey(0))
    save_learned_optimizer(tmp_path / "sep.lopt", lopt, theta)
    loaded = load_learned_optimizer(tmp_path / "sep.lopt", expected=AdafacMLPLOpt)
    assert loaded.lopt == lopt
    assert set(loaded.theta["nn"]["~"]) == set(theta["nn"]["~"])
    np.testing.assert_array_equal(loaded.theta["nn"]["~"]["w1_2_3"], theta["nn"]["~"]["w1_2_3"])


@pytest.mark.parametrize("flag", ["concat_weights", "make_separate_weights", "split_weights"])
@pytest.mark.parametrize("value", ["yes", 1, None])
def test_non_bool_flag_is_refused(flag, value):
    with pytest.raises(TypeError, match=f"AdafacMLPLOpt: {flag} must be True or False"):
        AdafacMLPLOpt(**{flag: value})


@pytest.mark.parametrize("flag", ["make_separate_weights", "split_weights"])
def test_scalar_flag_with_concat_weights_is_refused(flag):
    with pytest.raises(
        ValueError, match=f"{flag}=True applies to the scalar .* concat_weights=False"
    ):
        AdafacMLPLOpt(**{flag: True})
    with pytest.raises(ValueError, match=f"MuAdafacMLPLOpt: {flag}=True"):
        MuAdafacMLPLOpt(**{flag: True})


def test_separate_and_split_together_are_refused():
    with pytest.raises(ValueError, match="nothing for split_weights to split"):
        AdafacMLPLOpt(concat_weights=False, make_separate_weights=True, split_weights=True)


def test_theta_of_the_other_weight_layout_is_refused():
    full_theta = AdafacMLPLOpt().init(jax.random.PRNGKey(0))
    separate = AdafacMLPLOpt(concat_weights=False, make_separate_weights=True)
    with pytest.raises(ValueError, match="AdafacMLPLOpt.opt_fn: theta does not match"):
        separate.opt_fn(full_theta)
    with pytest.raises(ValueError, match="AdafacMLPLOpt.opt_fn: theta does not match"):
        AdafacMLPLOpt().opt_fn(separate.init(jax.random.PRNGKey(0)))
