"""The older argument spellings that `lopt_tasks.compat` keeps working."""

import haiku as hk
import jax
import pytest

from lopt_tasks import (
    ConvTask,
    HaikuTask,
    LinenTask,
    ParametricImageConv,
    ParametricImageMLP,
    ParametricImageMLPVAE,
    cross_entropy_loss,
    digits_datasets,
)


def test_reference_spellings_of_the_hidden_sizes():
    ds = digits_datasets(batch_size=8)
    assert ParametricImageMLP(ds, 10, hidden_layers=(16,)).hidden_sizes == (16,)
    assert ParametricImageMLP(ds, 10, hidden_sizes=(16,)).hidden_sizes == (16,)
    assert ParametricImageMLP(ds).hidden_sizes == (32, 32)
    assert ParametricImageConv(ds, 10, hidden_units=(8, 4)).hidden_sizes == (8, 4)
    assert ParametricImageConv(ds).hidden_sizes == (32, 64, 64)
    conv = ConvTask(ds, hidden_units=[8])
    assert conv.hidden_sizes == (8,)
    params = conv.init(jax.random.PRNGKey(0))
    assert params["conv2_d"]["w"].shape == (3, 3, 1, 8)
    with pytest.raises(TypeError, match="got both 'hidden_layers' and 'hidden_sizes'"):
        ParametricImageMLP(ds, hidden_layers=(8,), hidden_sizes=(8,))
    assert ParametricImageMLPVAE(ds, n_z=8).latent_size == 8
    with pytest.raises(TypeError, match="'n_z' is the older spelling of 'latent_size'"):
        ParametricImageMLPVAE(ds, n_z=8, latent_size=3)


def test_older_spellings_of_the_adapter_model():
    import flax.linen as nn

    def mlp(x):
        return hk.Linear(10)(x.reshape(x.shape[0], -1))

    task = HaikuTask(
        transformed=hk.transform(mlp), loss_fn=cross_entropy_loss, datasets=digits_datasets(8)
    )
    assert task.init(jax.random.PRNGKey(0))["linear"]["w"].shape == (64, 10)
    linen = LinenTask(
        module=nn.Dense(10),
        loss_fn=cross_entropy_loss,
        datasets=digits_datasets(8),
        inputs=lambda batch: batch["image"].reshape(8, -1),
    )
    assert linen.name == "Dense"
    assert linen.init(jax.random.PRNGKey(0))["kernel"].shape == (64, 10)
