# ruff: noqa: B007, E741, RUF059  (the notebook code is kept verbatim)
"""Part 1's LearnableAdam section, run with only its imports changed.

Imports: `lopt_base` is `lopt_learned` (LearnableAdam) and `opt_base` is
`lopt_optimizers` (Adam). The one other change: the task is a tiny synthetic
softmax regression from conftest.py instead of Fashion-MNIST, so that this
package's tests need neither lopt-tasks nor a download.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import lopt_learned as lopt_base
import lopt_optimizers as opt_base

key = jax.random.PRNGKey(0)


def test_learnable_adam_theta_prints_as_in_part1():
    lopt = lopt_base.LearnableAdam()
    theta = lopt.init(key)
    assert sorted(theta) == ["log_epsilon", "log_lr", "one_minus_beta1", "one_minus_beta2"]
    # The values Part 1 prints, exactly in float32 (log(1 - 0.999) computed in float32
    # would give -6.9077682 for one_minus_beta2).
    printed = {
        "log_epsilon": -18.420681,
        "log_lr": -6.9077554,
        "one_minus_beta1": -2.3025851,
        "one_minus_beta2": -6.9077554,
    }
    for name, value in printed.items():
        assert np.asarray(theta[name]).dtype == np.float32
        assert np.asarray(theta[name]) == np.float32(value), (name, float(theta[name]))
    opt = lopt.opt_fn(theta)
    opt_state = opt.init({"p": jnp.zeros([2])})
    assert opt.get_params(opt_state)["p"].shape == (2,)


def test_meta_loss_meta_gradient_and_meta_training(tiny_task):
    task = tiny_task
    key = jax.random.PRNGKey(0)

    lopt = lopt_base.LearnableAdam()

    def meta_loss(theta, key, batch):
        opt = lopt.opt_fn(theta)
        key1, key = jax.random.split(key)
        param = task.init(key1)
        opt_state = opt.init(param)
        for i in range(4):
            param = opt.get_params(opt_state)
            key1, key = jax.random.split(key)
            l, grad = jax.value_and_grad(task.loss)(param, key1, batch)
            opt_state = opt.update(opt_state, grad, l)

        param, state = opt.get_params_state(opt_state)
        key1, key = jax.random.split(key)
        final_loss = task.loss(param, key1, batch)
        return final_loss

    theta = lopt.init(key)
    batch = next(task.datasets.train)
    ml0 = meta_loss(theta, key, batch)
    # log(10) = 2.303 at init; four Adam steps at lr 1e-3 lower it a little.
    assert 2.0 < float(ml0) < 2.31

    meta_value_and_grad = jax.jit(jax.value_and_grad(meta_loss))

    ml, meta_grad = meta_value_and_grad(theta, key, batch)
    np.testing.assert_allclose(float(ml), float(ml0), rtol=1e-5)
    assert sorted(meta_grad) == sorted(theta)
    # As in Part 1: the meta-gradient says to raise the learning rate.
    assert float(meta_grad["log_lr"]) < 0

    theta_opt = opt_base.Adam(1e-2)

    key = jax.random.PRNGKey(0)
    theta = lopt.init(key)
    theta_opt_state = theta_opt.init(theta)

    learning_rates = []
    learnable_adam_meta_losses = []
    for i in range(200):
        batch = next(task.datasets.train)
        key, key1 = jax.random.split(key)
        theta = theta_opt.get_params(theta_opt_state)
        ml, meta_grad = meta_value_and_grad(theta, key, batch)
        theta_opt_state = theta_opt.update(theta_opt_state, meta_grad, ml)
        learning_rates.append(theta["log_lr"])
        learnable_adam_meta_losses.append(ml)

    losses = np.asarray(learnable_adam_meta_losses)
    rates = np.asarray(learning_rates)
    assert np.all(np.isfinite(losses))
    # Measured on CPU: log_lr -6.91 -> -3.94; mean meta-loss of the first and last 20
    # meta-steps 2.276 -> 1.929.
    assert rates[-1] > rates[0] + 2.0, (rates[0], rates[-1])
    assert losses[:20].mean() > 2.2
    assert losses[-20:].mean() < losses[:20].mean() - 0.2, (losses[:20].mean(), losses[-20:].mean())
