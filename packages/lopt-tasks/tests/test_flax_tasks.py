import pickle

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from task_helpers import adam_train

import lopt_core
from lopt_core.testing import check_task
from lopt_tasks.flax_tasks import LinenMLP


def test_the_linen_mlp_task_has_linen_parameters_and_logits():
    task = lopt_core.get_task("FlaxLinenMLP_Digits8_32x32")
    params = task.init(jax.random.PRNGKey(0))
    shapes = jax.tree_util.tree_map(jnp.shape, params)
    assert shapes == {
        "Dense_0": {"kernel": (64, 32), "bias": (32,)},
        "LayerNorm_0": {"scale": (32,), "bias": (32,)},
        "Dense_1": {"kernel": (32, 32), "bias": (32,)},
        "LayerNorm_1": {"scale": (32,), "bias": (32,)},
        "Dense_2": {"kernel": (32, 10), "bias": (10,)},
    }
    batch = next(task.datasets.train)
    # The task's loss is the module's cross-entropy, exactly.
    logits = LinenMLP((32, 32), 10).apply({"params": params}, batch["image"])
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    loss = task.loss(params, jax.random.PRNGKey(1), batch)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-6)
    assert float(loss) == pytest.approx(np.log(10), rel=0.2)
    check_task(task)
    assert pickle.loads(pickle.dumps(task)).name == "FlaxLinenMLP_Digits8_32x32"


def test_adam_lowers_its_train_and_test_loss():
    task = lopt_core.get_task("FlaxLinenMLP_Digits8_32x32")
    ds = task.datasets
    params = task.init(jax.random.PRNGKey(0))
    test = ds.sample("test", jax.random.PRNGKey(5))
    before = float(task.loss(params, jax.random.PRNGKey(0), test))
    trained, losses = adam_train(task, params, jax.random.PRNGKey(1), 200, 3e-3)
    assert float(losses[-10:].mean()) < 0.3 < float(losses[0])
    assert float(task.loss(trained, jax.random.PRNGKey(0), test)) < before / 4
    assert isinstance(LinenMLP((4,), 2), nn.Module)
