# ruff: noqa: B007, E741, RUF059  (the notebook cells are kept verbatim)
"""Part 1 of the reference notebooks, with only its imports changed.

The notebook meta-trains LearnableAdam on ImageMLP_FashionMnist8_Relu32; Fashion
MNIST needs a download, so the same MLP on the embedded 8x8 digits stands in. The
loop runs its full 2000 steps, as in the notebook (about 10 s on 2 CPU cores).
"""

import jax
import numpy as np

import lopt_core
from lopt_learned import LearnableAdam
from lopt_optimizers import Adam

# The notebook's outer-training imports resolve to lopt_outer modules.
from lopt_outer import eval_training, full_es, gradient_learner, truncated_pes, truncation_schedule


def test_part1_imports_resolve():
    assert full_es.FullES and truncated_pes.TruncatedPES
    assert gradient_learner.SingleMachineGradientLearner
    assert truncation_schedule.ConstantTruncationSchedule
    assert eval_training.single_task_training_curves


def test_part1_learnable_adam_meta_training_loop():
    task = lopt_core.get_task("ImageMLP_Digits8_Relu32")
    key = jax.random.PRNGKey(0)
    lopt = LearnableAdam()

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

    meta_value_and_grad = jax.jit(jax.value_and_grad(meta_loss))
    theta_opt = Adam(1e-2)

    key = jax.random.PRNGKey(0)
    theta = lopt.init(key)
    theta_opt_state = theta_opt.init(theta)

    learning_rates = []
    learnable_adam_meta_losses = []
    for i in range(2000):
        batch = next(task.datasets.train)
        key, key1 = jax.random.split(key)
        theta = theta_opt.get_params(theta_opt_state)
        ml, meta_grad = meta_value_and_grad(theta, key, batch)
        theta_opt_state = theta_opt.update(theta_opt_state, meta_grad, ml)
        learning_rates.append(theta["log_lr"])
        learnable_adam_meta_losses.append(ml)

    # As in the notebook: the meta-gradient raises the learning rate (measured: 0.001 to
    # about 0.06) and the meta-loss falls (measured: 2.25 to about 1.1; the notebook's
    # Fashion MNIST goes from 2.25 to about 1.15).
    assert np.exp(float(learning_rates[-1])) > 10 * np.exp(float(learning_rates[0]))
    assert np.mean(learnable_adam_meta_losses[:10]) > 2.0
    assert np.mean(learnable_adam_meta_losses[-100:]) < 1.5
