"""The reference's named MLP autoencoders (sigmoid-MSE loss) and the one-hot MSE image MLPs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_tasks
from lopt_tasks.generative import ImageMLPAutoencoderTask
from lopt_tasks.image_mlp import ImageMLPMSETask


def _batch(task):
    return next(task.datasets.train)


def test_mse_image_mlp_loss_is_mean_squared_error_to_one_hot_labels():
    task = lopt_tasks.ImageMLP_Digits8_Relu32_MSE()
    assert isinstance(task, ImageMLPMSETask)
    params = task.init(jax.random.key(0))
    batch = _batch(task)
    loss = task.loss(params, jax.random.key(1), batch)
    logits = jnp.zeros((3, 10)).at[0, 2].set(1.0)
    labels = {"label": jnp.array([2, 0, 9])}
    # Row 0 is exact; rows 1 and 2 miss one class each: 2 / 30.
    np.testing.assert_allclose(task.loss_fn(logits, labels), 2.0 / 30.0, rtol=1e-6)
    assert 0.0 < float(loss) < 10.0


@pytest.mark.parametrize(
    ("loss", "want"), [(0.25, 2.5), (3.0, 10.0), (float("nan"), 10.0), (float("inf"), 10.0)]
)
def test_mse_image_mlp_normalizer(loss, want):
    task = lopt_tasks.ImageMLP_Digits8_Relu32_MSE()
    assert float(task.normalizer(jnp.asarray(loss))) == pytest.approx(want)


def test_named_autoencoder_uses_sigmoid_mse_and_clips_its_normalizer():
    task = lopt_tasks.ImageMLPAE_Digits8_32x32x32_bs128()
    assert isinstance(task, ImageMLPAutoencoderTask)
    assert task.loss_type == "mse"
    assert list(task.hidden_sizes) == [32, 32, 32]
    params = task.init(jax.random.key(0))
    loss = float(task.loss(params, jax.random.key(1), _batch(task)))
    # Sigmoid outputs and pixels in [0, 1]: the squared error lies in [0, 1].
    assert 0.0 < loss < 1.0
    for value, want in [(0.3, 0.3), (2.0, 1.0), (float("nan"), 1.0), (-1.0, 0.0)]:
        assert float(task.normalizer(jnp.asarray(value))) == pytest.approx(want)


def test_autoencoder_mse_loss_goes_down_with_adam():
    import optax

    task = lopt_tasks.ImageMLPAE_Digits8_32x32x32_bs128()
    params = task.init(jax.random.key(0))
    opt = optax.adam(3e-3)
    state = opt.init(params)
    batch = _batch(task)

    @jax.jit
    def step(params, state):
        loss, grad = jax.value_and_grad(task.loss)(params, jax.random.key(0), batch)
        updates, state = opt.update(grad, state, params)
        return optax.apply_updates(params, updates), state, loss

    first = None
    for _ in range(50):
        params, state, loss = step(params, state)
        first = loss if first is None else first
    assert float(loss) < 0.8 * float(first)


def test_autoencoder_loss_type_is_checked():
    ds = lopt_tasks.ImageMLPAE_Digits8_32x32x32_bs128().datasets
    with pytest.raises(ValueError, match="loss_type"):
        ImageMLPAutoencoderTask(ds, [8], loss_type="l1")
