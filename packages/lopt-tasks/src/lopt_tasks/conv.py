"""Convolutional image-classification tasks, named as in the reference library."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import haiku as hk
import jax
import jax.numpy as jnp

from lopt_core import Datasets
from lopt_core.validation import check_choice
from lopt_tasks import tfds_data
from lopt_tasks._common import activation, check_sizes
from lopt_tasks._network import ImageClassifier
from lopt_tasks._plugin import CATALOG
from lopt_tasks.compat import with_old_spellings
from lopt_tasks.digits import digits_datasets


@with_old_spellings
class ConvTask(ImageClassifier):
    """A convnet: 3x3 convolutions (the first with stride 2), pooling, a linear head.

    With `norm="batch_norm"` the batch statistics are model state: use
    `init_with_state` and `loss_with_state`, which runs in training mode and returns
    the updated moving averages.

    Args:
      datasets: image Datasets with `extra_info["num_classes"]` and `abstract_batch`.
      hidden_sizes: channels of each conv layer (`hidden_units` is the older spelling).
      act_fn: activation (callable or name).
      norm: None, "batch_norm" or "layer_norm", applied after each activation.
      pool: "avg" or "max" global pooling.
      name: the task's name.
    """

    def __init__(
        self,
        datasets: Datasets,
        hidden_sizes: Sequence[int],
        act_fn: Callable[[jax.Array], jax.Array] | str = jax.nn.relu,
        norm: str | None = None,
        pool: str = "avg",
        name: str | None = None,
    ) -> None:
        owner = type(self).__name__
        self.hidden_sizes = check_sizes(hidden_sizes, owner, "hidden_sizes")
        self.act_fn = activation(act_fn, owner)
        self.norm = check_choice(norm, owner, "norm", (None, "batch_norm", "layer_norm"))
        self.pool = check_choice(pool, owner, "pool", ("avg", "max"))
        super().__init__(datasets, name, stateful=norm == "batch_norm")

    def _network(self, images: jax.Array) -> jax.Array:
        x = images
        for i, ch in enumerate(self.hidden_sizes):
            x = self.act_fn(hk.Conv2D(ch, 3, stride=2 if i == 0 else 1)(x))
            if self.norm == "batch_norm":
                x = hk.BatchNorm(True, True, decay_rate=0.9)(x, is_training=True)
            elif self.norm == "layer_norm":
                x = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x)
        x = jnp.mean(x, axis=(1, 2)) if self.pool == "avg" else jnp.max(x, axis=(1, 2))
        return hk.Linear(self.num_classes)(x)


@CATALOG.task()
def Conv_Digits8_16x32() -> ConvTask:
    """A 2 layer (16, 32 channel) convnet on the embedded 8x8 digits (no network needed)."""
    return ConvTask(digits_datasets(batch_size=128), [16, 32], name="Conv_Digits8_16x32")


@CATALOG.task()
def Conv_Digits8_16x32_BatchNorm() -> ConvTask:
    """`Conv_Digits8_16x32` with batch norm; its statistics are model state."""
    return ConvTask(
        digits_datasets(batch_size=128),
        [16, 32],
        norm="batch_norm",
        name="Conv_Digits8_16x32_BatchNorm",
    )


@CATALOG.task()
def Conv_Cifar10_8_16x32() -> ConvTask:
    """A 2 layer (16, 32 channel) convnet on 8x8 CIFAR-10."""
    ds = tfds_data.cifar10_datasets(batch_size=128, image_size=(8, 8))
    return ConvTask(ds, [16, 32], name="Conv_Cifar10_8_16x32")


@CATALOG.task()
def Conv_Cifar10_16_32x64x64() -> ConvTask:
    """A 3 layer (32, 64, 64 channel) convnet on 16x16 CIFAR-10."""
    ds = tfds_data.cifar10_datasets(batch_size=128, image_size=(16, 16))
    return ConvTask(ds, [32, 64, 64], name="Conv_Cifar10_16_32x64x64")


@CATALOG.task()
def Conv_Cifar10_32x64x64() -> ConvTask:
    """A 3 layer (32, 64, 64 channel) convnet on 32x32 CIFAR-10."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ConvTask(ds, [32, 64, 64], name="Conv_Cifar10_32x64x64")


@CATALOG.task()
def Conv_Cifar10_32x64x64_Tanh() -> ConvTask:
    """`Conv_Cifar10_32x64x64` with tanh activations."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ConvTask(ds, [32, 64, 64], jnp.tanh, name="Conv_Cifar10_32x64x64_Tanh")


@CATALOG.task()
def Conv_Cifar10_32x64x64_batchnorm() -> ConvTask:
    """`Conv_Cifar10_32x64x64` with batch norm; its statistics are model state."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ConvTask(ds, [32, 64, 64], norm="batch_norm", name="Conv_Cifar10_32x64x64_batchnorm")


@CATALOG.task()
def Conv_Cifar10_32x64x64_layernorm() -> ConvTask:
    """`Conv_Cifar10_32x64x64` with layer norm."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ConvTask(ds, [32, 64, 64], norm="layer_norm", name="Conv_Cifar10_32x64x64_layernorm")


@CATALOG.task()
def Conv_Cifar100_32x64x64() -> ConvTask:
    """A 3 layer (32, 64, 64 channel) convnet on 32x32 CIFAR-100."""
    ds = tfds_data.cifar100_datasets(batch_size=128)
    return ConvTask(ds, [32, 64, 64], name="Conv_Cifar100_32x64x64")
