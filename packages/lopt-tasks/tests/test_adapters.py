import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lopt_core.testing import check_task
from lopt_tasks import (
    cross_entropy_loss,
    digits_datasets,
    task_from_haiku,
    task_from_linen,
    task_from_nnx,
)


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Dense(16)(x.reshape(x.shape[0], -1))
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.Dropout(0.1, deterministic=not train)(nn.relu(x))
        return nn.Dense(10)(x)


class NNXMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(64, 16, rngs=rngs)
        self.bn = nnx.BatchNorm(16, rngs=rngs)
        self.l2 = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        return self.l2(nnx.relu(self.bn(self.l1(x.reshape(x.shape[0], -1)))))


def _sgd_improves(task, steps=30, lr=0.2):
    params, state = task.init_with_state(jax.random.PRNGKey(0))
    batch = next(task.datasets.train)

    @jax.jit
    def step(p, s, k):
        (loss, s), g = jax.value_and_grad(task.loss_with_state, has_aux=True)(p, s, k, batch)
        return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g), s, loss

    losses = []
    for i in range(steps):
        params, state, loss = step(params, state, jax.random.PRNGKey(i))
        losses.append(float(loss))
    return losses[0], losses[-1], state


def test_linen_adapter_with_batch_stats_and_dropout():
    task = task_from_linen(
        LinenMLP(), cross_entropy_loss, digits_datasets(32), apply_kwargs={"train": True}
    )
    check_task(task)
    params, state = task.init_with_state(jax.random.PRNGKey(0))
    assert params["Dense_0"]["kernel"].shape == (64, 16)
    assert state["batch_stats"]["BatchNorm_0"]["mean"].shape == (16,)
    first, last, new_state = _sgd_improves(task)
    assert last < first
    assert not np.allclose(new_state["batch_stats"]["BatchNorm_0"]["mean"], 0.0)


def test_nnx_adapter_from_factory_and_from_module():
    task = task_from_nnx(NNXMLP, cross_entropy_loss, digits_datasets(32))
    check_task(task)
    p0, state = task.init_with_state(jax.random.PRNGKey(0))
    p1, _ = task.init_with_state(jax.random.PRNGKey(1))
    assert p0["l1"]["kernel"].shape == (64, 16)
    assert state["bn"]["mean"].shape == (16,)
    assert not np.allclose(p0["l1"]["kernel"], p1["l1"]["kernel"])
    first, last, _ = _sgd_improves(task)
    assert last < first
    ready = task_from_nnx(NNXMLP(nnx.Rngs(3)), cross_entropy_loss, digits_datasets(32))
    check_task(ready)


def test_haiku_adapter_with_and_without_state():
    def mlp(x):
        return hk.nets.MLP([16, 10])(x.reshape(x.shape[0], -1))

    task = task_from_haiku(hk.transform(mlp), cross_entropy_loss, digits_datasets(32))
    check_task(task)
    assert task.init(jax.random.PRNGKey(0))["mlp/~/linear_0"]["w"].shape == (64, 16)

    def bn_mlp(x):
        h = hk.Linear(16)(x.reshape(x.shape[0], -1))
        h = hk.BatchNorm(True, True, 0.9)(h, is_training=True)
        return hk.Linear(10)(jax.nn.relu(h))

    stateful = task_from_haiku(
        hk.transform_with_state(bn_mlp), cross_entropy_loss, digits_datasets(32)
    )
    check_task(stateful)
    first, last, _ = _sgd_improves(stateful)
    assert last < first


def test_adapter_errors_are_clear():
    with pytest.raises(TypeError, match="hk.transform"):
        task_from_haiku(lambda x: x, cross_entropy_loss, digits_datasets(8))
    with pytest.raises(TypeError, match="flax.linen.Module"):
        task_from_linen(object(), cross_entropy_loss, digits_datasets(8))
    task = task_from_haiku(
        hk.transform(lambda x: hk.Linear(10)(x.reshape(x.shape[0], -1))),
        cross_entropy_loss,
        digits_datasets(8),
        inputs=lambda b: b["image"] * 2.0,
    )
    params = task.init(jax.random.PRNGKey(0))
    assert jnp.isfinite(task.loss(params, jax.random.PRNGKey(0), next(task.datasets.train)))
    with pytest.raises(ValueError, match="has no model state but was given one"):
        task.loss_with_state(
            params,
            {"bn": 1.0},
            jax.random.PRNGKey(0),
            task.datasets.train.sample(jax.random.PRNGKey(0)),
        )
    with pytest.raises(KeyError, match="no key 'pixels'"):
        task_from_haiku(
            hk.transform(lambda x: x), cross_entropy_loss, digits_datasets(8), inputs="pixels"
        )
