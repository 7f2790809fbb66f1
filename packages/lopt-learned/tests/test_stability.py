"""Stability at any horizon: every learned optimizer, untrained, for 5,000 inner steps.

Each registered learned optimizer of this package runs 5,000 steps on a
quadratic and on an 8x8-image MLP (64 -> 32 -> 10 on synthetic 8x8 "digits"),
with its initial theta and with a perturbed theta
(`theta + 0.1 * N(0, 1) * (|theta| + 0.01)`, fixed key), all steps inside one
`lax.scan` under one `jit`. The loss must stay finite and never exceed 10x the
initial loss. Architectures whose reference step is unbounded run with their
`step_bound` option (see `BOUNDED`); the others with their defaults.

Also here, on the same two problems: the architectures that start as a sensible
optimizer (Celo, Celo2, MuAdafacMLPLOpt's muP-scaled step aside) train about as
well as Adam(1e-3) in 500 steps with their initial theta.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt_learned import CATALOG
from lopt_optimizers import Adam

STEPS = 5000
MAX_RATIO = 10.0

BOUNDED: dict[str, dict[str, Any]] = {
    # Measured without the bound (max loss / initial loss over 5,000 steps, MLP task):
    # MLPLOpt 1.0e3, AdafacMLPLOpt 246, RNNMLPLOpt 12 (31 perturbed), PerParamMLP
    # 2.2e8 (and 6e5 on the quadratic); MuAdafacMLPLOpt is AdafacMLPLOpt's step.
    "MLPLOpt": {"step_bound": 1e-3},
    "AdafacMLPLOpt": {"step_bound": 1e-3},
    "MuAdafacMLPLOpt": {"step_bound": 1e-3},
    "RNNMLPLOpt": {"step_bound": 1e-3},
    "PerParamMLP": {"step_bound": 1e-2},
    # HyperV2's random initial theta reaches 18.8x on the MLP (1.02x perturbed).
    "HyperV2": {"step_bound": 1e-3},
}
"""The configuration each architecture with an unbounded reference step runs with."""

Problem = tuple[Any, Callable[[Any, jax.Array], jax.Array]]


def quadratic_problem() -> Problem:
    """`0.5 sum a (p - t)^2` over a (4, 5) matrix and a (5,) vector, curvatures 0.1..10."""
    rng = np.random.RandomState(0)
    curv = {
        "w": jnp.asarray(np.logspace(-1, 1, 20).reshape(4, 5), jnp.float32),
        "b": jnp.asarray(np.logspace(-1, 1, 5), jnp.float32),
    }
    target = {k: jnp.asarray(rng.randn(*v.shape), jnp.float32) for k, v in curv.items()}
    params = {k: jnp.zeros(v.shape, jnp.float32) for k, v in curv.items()}

    def loss(p: Any, key: jax.Array) -> jax.Array:
        del key
        return sum(0.5 * jnp.sum(curv[k] * jnp.square(p[k] - target[k])) for k in p)

    return params, loss


def mlp_problem(batch_size: int = 128) -> Problem:
    """A 64 -> 32 -> 10 ReLU MLP on 1024 noisy 8x8 images of 10 prototypes, minibatched."""
    rng = np.random.RandomState(0)
    prototypes = rng.rand(10, 64).astype(np.float32)
    labels = rng.randint(0, 10, 1024)
    images = np.clip(prototypes[labels] + 0.3 * rng.randn(1024, 64), 0.0, 1.0)
    x, y = jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32)
    k0, k1 = jax.random.split(jax.random.PRNGKey(0))
    params = {
        "w0": jax.random.normal(k0, (64, 32)) / 8.0,
        "b0": jnp.zeros(32),
        "w1": jax.random.normal(k1, (32, 10)) / np.sqrt(32.0),
        "b1": jnp.zeros(10),
    }

    def loss(p: Any, key: jax.Array) -> jax.Array:
        i = jax.random.randint(key, (batch_size,), 0, x.shape[0])
        logits = jax.nn.relu(x[i] @ p["w0"] + p["b0"]) @ p["w1"] + p["b1"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[i]).mean()

    return params, loss


PROBLEMS = {"quadratic": quadratic_problem, "mlp": mlp_problem}


def losses_of(opt: Any, problem: Problem, steps: int) -> jax.Array:
    """The loss at every step of `steps` steps of `opt` (a lopt Optimizer), in one scan."""
    params, loss = problem

    def body(state: Any, key: jax.Array) -> tuple[Any, jax.Array]:
        value, grads = jax.value_and_grad(loss)(opt.get_params(state), key)
        return opt.update(state, grads, loss=value, key=key), value

    state = opt.init(params, num_steps=steps)
    return jax.lax.scan(body, state, jax.random.split(jax.random.PRNGKey(1), steps))[1]


def perturbed(theta: Any, key: jax.Array) -> Any:
    """`theta + 0.1 * N(0, 1) * (|theta| + 0.01)`, leaf by leaf."""
    leaves, treedef = jax.tree_util.tree_flatten(theta)
    keys = jax.random.split(key, len(leaves))
    noisy = [
        x + 0.1 * jax.random.normal(k, jnp.shape(x)) * (jnp.abs(x) + 0.01)
        for x, k in zip(leaves, keys)
    ]
    return jax.tree_util.tree_unflatten(treedef, noisy)


def architecture(name: str) -> Any:
    """The registered learned optimizer `name`, with its `BOUNDED` configuration if any."""
    return CATALOG.factories("learned_optimizers")[name](**BOUNDED.get(name, {}))


@pytest.mark.parametrize("name", sorted(CATALOG.names("learned_optimizers")))
def test_untrained_and_perturbed_theta_never_diverge_in_5000_steps(name):
    lopt = architecture(name)
    theta = lopt.init(jax.random.PRNGKey(0))
    thetas = [theta, jax.jit(perturbed)(theta, jax.random.PRNGKey(42))]
    ratios = {}
    for task, make in PROBLEMS.items():
        problem = make()
        run = jax.jit(lambda th, problem=problem: losses_of(lopt.opt_fn(th), problem, STEPS))
        for which, th in zip(("initial", "perturbed"), thetas):
            losses = np.asarray(run(th))
            assert losses.shape == (STEPS,)
            assert np.all(np.isfinite(losses)), (name, task, which)
            ratios[task, which] = float(losses.max() / losses[0])
    print(f"{name}: max loss / initial loss {ratios}")
    for key, ratio in ratios.items():
        assert ratio <= MAX_RATIO, (name, key, ratio)


def test_the_bound_is_what_makes_mlplopt_stable():
    """Without `step_bound` the reference MLPLOpt diverges on the MLP (measured 1e3x)."""
    lopt = CATALOG.factories("learned_optimizers")["MLPLOpt"]()
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    losses = np.asarray(jax.jit(lambda: losses_of(opt, mlp_problem(), STEPS))())
    assert not (np.all(np.isfinite(losses)) and losses.max() <= MAX_RATIO * losses[0])


@pytest.mark.parametrize("name", ["Celo", "Celo2"])
def test_initial_theta_trains_like_adam_1e3(name):
    """500 steps at the initial theta reduce the loss about as much as Adam(1e-3)."""
    lopt = architecture(name)
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    adam = Adam(1e-3)
    for make in PROBLEMS.values():
        run = jax.jit(lambda o, make=make: losses_of(o, make(), 500), static_argnums=0)
        ours, ref = np.asarray(run(opt)), np.asarray(run(adam))
        final, ref_final = ours[-20:].mean(), ref[-20:].mean()
        print(f"{name}: {ours[0]:.4g} -> {final:.4g}; Adam(1e-3) -> {ref_final:.4g}")
        assert final < 0.6 * ours[0], (name, ours[0], final)
        # Within a factor 2 of Adam's final loss, or better.
        assert final < 2.0 * ref_final, (name, final, ref_final)


STATE_FLOATS_PER_PARAM = {
    # Per parameter of one (1024, 512) matrix, besides params, model state and
    # iteration (per-tensor and factored parts included, hence the decimals).
    "AdafacMLPLOpt": 4.0088,
    "Celo": 4.0,
    "Celo2": 4.0,
    "HParamControllerLOPT": 0.0005,
    "LearnableAdam": 2.0,
    "LearnableSGD": 0.0,
    "LearnableSGDM": 1.0,
    "MLPLOpt": 6.0,
    "MetaSGDWD": 0.0,
    "MuAdafacMLPLOpt": 4.0088,
    "NNAdam": 2.0001,
    "PerParamMLP": 1.0,
    "RNNMLPLOpt": 10.0003,
}
"""State floats per parameter, measured; the docstrings state the per-parameter part."""


@pytest.mark.parametrize("name", sorted(STATE_FLOATS_PER_PARAM))
def test_state_floats_per_parameter(name):
    lopt = CATALOG.factories("learned_optimizers")[name]()
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    state = jax.eval_shape(lambda: opt.init({"w": jnp.zeros((1024, 512))}, num_steps=10))
    rest = state.replace(params=None, model_state=None, iteration=None)
    floats = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(rest))
    assert floats / (1024 * 512) == pytest.approx(STATE_FLOATS_PER_PARAM[name], abs=1e-4)
