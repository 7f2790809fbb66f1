"""Helpers shared by lopt-tasks' tests."""

import jax
import optax


def adam_train(task, params, key, steps, learning_rate):
    """`steps` Adam steps on keyed train batches, as one jitted lax.scan.

    Returns:
      `(params, losses)`: the trained params and the train loss of every step.
    """
    opt = optax.adam(learning_rate)

    @jax.jit
    def train(params, key):
        def step(carry, k):
            p, s = carry
            k_data, k_loss = jax.random.split(k)
            batch = task.datasets.sample("train", k_data)
            loss, g = jax.value_and_grad(task.loss)(p, k_loss, batch)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        (p, _), losses = jax.lax.scan(
            step, (params, opt.init(params)), jax.random.split(key, steps)
        )
        return p, losses

    return train(params, key)
