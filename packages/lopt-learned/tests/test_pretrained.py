"""The meta-trained MLPLOpt that ships with the package trains a Flax classifier."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt_learned import Celo2, MLPLOpt, as_optax, list_pretrained, load_pretrained, pretrained


class Classifier(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10)(nn.relu(nn.Dense(32)(x.reshape(x.shape[0], -1))))


def _clusters():
    """10 Gaussian clusters in 64 dimensions, 8x8 'images' in [0, 1] like the digits."""
    k_c, k_x, k_y = jax.random.split(jax.random.PRNGKey(3), 3)
    centers = jax.random.uniform(k_c, (10, 64))
    y = jax.random.randint(k_y, (512,), 0, 10)
    x = jnp.clip(centers[y] + 0.3 * jax.random.normal(k_x, (512, 64)), 0.0, 1.0)
    return x.reshape(512, 8, 8, 1), y


def _train(tx, steps=200):
    x, y = _clusters()
    model = Classifier()
    params = model.init(jax.random.PRNGKey(0), x[:1])

    def loss_fn(p, idx):
        logits = model.apply(p, x[idx])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

    @jax.jit
    def run(params):
        def step(carry, key):
            params, opt_state = carry
            idx = jax.random.randint(key, (128,), 0, 512)
            loss, grads = jax.value_and_grad(loss_fn)(params, idx)
            updates, opt_state = tx.update(grads, opt_state, params, loss=loss)
            return (optax.apply_updates(params, updates), opt_state), loss

        keys = jax.random.split(jax.random.PRNGKey(1), steps)
        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), keys)
        return losses, loss_fn(params, jnp.arange(512))

    return run(params)


def test_list_pretrained_gives_one_line_per_shipped_optimizer():
    listed = list_pretrained()
    assert list(listed) == ["Celo2_General", "MLPLOpt_Digits8"]
    assert listed["Celo2_General"].startswith("Celo2; trained on ")
    assert "100-2000 steps" in listed["Celo2_General"]
    assert listed["MLPLOpt_Digits8"].startswith("MLPLOpt; trained on ImageMLPFamily_Digits8")
    assert all("\n" not in line for line in listed.values())


def test_pretrained_celo2_is_an_optax_transform_with_its_recipe_and_version():
    loaded = load_pretrained("Celo2_General")
    assert isinstance(loaded.lopt, Celo2)
    assert loaded.metadata["lopt_version"]
    assert "[learned_optimizer]" in loaded.metadata["recipe"]
    assert 'name = "Celo2"' in loaded.metadata["recipe"]
    assert loaded.metadata["outer_steps"] == 4000
    report = loaded.metadata["suite_report"]
    assert report["suite"] == "offline" and report["horizons"] == [200, 1000, 5000]
    assert len(report["tasks"]) == 13
    assert all(s["diverged"] == 0 for per in report["tasks"].values() for s in per.values())
    tx = pretrained("Celo2_General")
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros((2,))}
    state = tx.init(params)
    grads = {"w": jnp.full((3, 2), 0.5), "b": jnp.ones((2,))}
    updates, _ = tx.update(grads, state, params)  # no loss= needed
    # The step is RMS-normalised per tensor: bounded by lr * exp(max_log_lr_change).
    bound = loaded.lopt.learning_rate * np.exp(loaded.lopt.max_log_lr_change)
    for u in jax.tree_util.tree_leaves(updates):
        rms = float(jnp.sqrt(jnp.mean(u**2)))
        assert 0 < rms <= bound * (1 + 1e-5)
        assert float(jnp.max(u)) < 0  # positive gradients: every step goes down


def test_pretrained_celo2_trains_a_flax_classifier_better_than_adam_1e3():
    losses, final = _train(pretrained("Celo2_General"), steps=300)
    _, adam_final = _train(optax.adam(1e-3), steps=300)
    assert np.all(np.isfinite(losses))
    assert float(final) < float(adam_final), (float(final), float(adam_final))
    assert float(final) < float(losses[0]) / 10


def test_pretrained_mlp_lopt_is_listed_and_rebuilt_from_its_file():
    loaded = load_pretrained("MLPLOpt_Digits8")
    assert isinstance(loaded.lopt, MLPLOpt)
    assert loaded.metadata["task_family"] == "ImageMLPFamily_Digits8"
    assert loaded.metadata["outer_steps"] > 1000
    fresh = MLPLOpt().init(jax.random.PRNGKey(0))
    assert jax.tree_util.tree_structure(fresh) == jax.tree_util.tree_structure(loaded.theta)


def test_meta_trained_mlp_lopt_trains_a_flax_classifier_far_better_than_untrained():
    loaded = load_pretrained("MLPLOpt_Digits8")
    losses, final = _train(as_optax(loaded.lopt, loaded.theta))
    _, untrained_final = _train(as_optax(MLPLOpt(), MLPLOpt().init(jax.random.PRNGKey(0))))
    assert np.all(np.isfinite(losses))
    # Measured on CPU: 2.39 -> 0.0068 in 200 steps (optax.adam(1e-3): 0.17); the
    # untrained MLPLOpt stays near log(10) = 2.3.
    assert float(losses[0]) > 2.0
    assert float(final) < 0.05, float(final)
    assert float(untrained_final) > 1.5, float(untrained_final)


def test_unknown_pretrained_name_suggests():
    with pytest.raises(KeyError, match="Did you mean MLPLOpt_Digits8"):
        load_pretrained("MLPLOpt_Digit8")
    with pytest.raises(KeyError, match="Did you mean Celo2_General"):
        pretrained("Celo2_Generl")
