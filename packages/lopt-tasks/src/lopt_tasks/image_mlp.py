"""Image-classification MLP tasks, named as in the reference library."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp

from lopt_core import Batch, Datasets, Params, PRNGKey, Task
from lopt_tasks import tfds_data
from lopt_tasks._common import (
    StatefulImageClassifier,
    abstract_batch_of,
    activation,
    clipped_log_classes_normalizer,
    jit_transformed,
    num_classes_of,
    ones_like_abstract,
    softmax_cross_entropy,
)
from lopt_tasks.digits import digits_datasets


class ImageMLPTask(Task):
    """A multilayer perceptron on flattened images, trained with softmax cross-entropy.

    The network is haiku's `hk.nets.MLP` (module name "mlp"), so parameters are
    named `mlp/~/linear_0`, `mlp/~/linear_1`, ... as in the reference library.

    Args:
      datasets: image Datasets with `extra_info["num_classes"]` and `abstract_batch`.
      hidden_sizes: widths of the hidden layers.
      act_fn: activation (a callable or a name such as "relu", "tanh").
      dropout_rate: dropout on hidden layers during the loss (driven by the loss key).
      name: the task's name.
    """

    def __init__(
        self,
        datasets: Datasets,
        hidden_sizes: Sequence[int],
        act_fn: Callable[[jax.Array], jax.Array] | str = jax.nn.relu,
        dropout_rate: float = 0.0,
        name: str | None = None,
    ) -> None:
        self.datasets = datasets
        self.num_classes = num_classes_of(datasets)
        self._abstract = abstract_batch_of(datasets)
        sizes = [*hidden_sizes, self.num_classes]
        act = activation(act_fn)
        self._name = name

        def forward(images: jax.Array) -> jax.Array:
            x = jnp.reshape(images, (images.shape[0], -1))
            mlp = hk.nets.MLP(sizes, activation=act)
            if dropout_rate > 0.0:
                return mlp(x, dropout_rate=dropout_rate, rng=hk.next_rng_key())
            return mlp(x)

        self._mod = jit_transformed(hk.transform(forward))

    def init(self, key: PRNGKey) -> Params:
        return self._mod.init(key, ones_like_abstract(self._abstract)["image"])

    def loss(self, params: Params, key: PRNGKey, data: Batch) -> jax.Array:
        logits = self._mod.apply(params, key, data["image"])
        return softmax_cross_entropy(logits, data["label"])

    def normalizer(self, loss: Any) -> jax.Array:
        return clipped_log_classes_normalizer(loss, self.num_classes)


class ImageMLPNormTask(StatefulImageClassifier):
    """An image MLP with layer norm or batch norm after every hidden linear layer.

    Batch-norm statistics are model state: use `init_with_state` and
    `loss_with_state`. The loss runs the network in training mode (batch statistics),
    as the reference does, and returns the updated moving averages.

    Args:
      datasets: image Datasets.
      hidden_sizes: widths of the hidden layers.
      norm_type: "layer_norm" or "batch_norm".
      act_fn: activation.
      name: the task's name.
    """

    def __init__(
        self,
        datasets: Datasets,
        hidden_sizes: Sequence[int],
        norm_type: str,
        act_fn: Callable[[jax.Array], jax.Array] | str = jax.nn.relu,
        name: str | None = None,
    ) -> None:
        if norm_type not in ("layer_norm", "batch_norm"):
            raise ValueError(f"norm_type must be 'layer_norm' or 'batch_norm'; got {norm_type!r}.")
        self._setup_data(datasets)
        sizes = [*hidden_sizes, self.num_classes]
        act = activation(act_fn)
        self._name = name

        def forward(images: jax.Array) -> jax.Array:
            x = jnp.reshape(images, (images.shape[0], -1))
            for i, h in enumerate(sizes):
                x = hk.Linear(h)(x)
                if i == len(sizes) - 1:
                    break
                if norm_type == "layer_norm":
                    x = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x)
                else:
                    x = hk.BatchNorm(True, True, decay_rate=0.9)(x, is_training=True)
                x = act(x)
            return x

        self._mod = jit_transformed(hk.transform_with_state(forward))
        self._stateful = norm_type == "batch_norm"


# -- named tasks ------------------------------------------------------------------------


def ImageMLP_Digits8_Relu32() -> ImageMLPTask:
    """A 1 hidden layer, 32 unit ReLU MLP on the embedded 8x8 digits (no network needed)."""
    return ImageMLPTask(digits_datasets(batch_size=128), [32], name="ImageMLP_Digits8_Relu32")


def ImageMLP_Digits8_Tanh32() -> ImageMLPTask:
    """A 1 hidden layer, 32 unit tanh MLP on the embedded 8x8 digits."""
    return ImageMLPTask(
        digits_datasets(batch_size=128), [32], jnp.tanh, name="ImageMLP_Digits8_Tanh32"
    )


def ImageMLP_Digits8_Relu32x32_Dropout02() -> ImageMLPTask:
    """A 2 hidden layer, 32 unit ReLU MLP with dropout 0.2 on the embedded 8x8 digits."""
    return ImageMLPTask(
        digits_datasets(batch_size=128),
        [32, 32],
        dropout_rate=0.2,
        name="ImageMLP_Digits8_Relu32x32_Dropout02",
    )


def ImageMLP_Digits8_32_LayerNorm_Relu() -> ImageMLPNormTask:
    """A 1 hidden layer, 32 unit MLP with layer norm on the embedded 8x8 digits."""
    return ImageMLPNormTask(
        digits_datasets(batch_size=128),
        [32],
        "layer_norm",
        name="ImageMLP_Digits8_32_LayerNorm_Relu",
    )


def ImageMLP_Digits8_32_BatchNorm_Relu() -> ImageMLPNormTask:
    """A 1 hidden layer, 32 unit MLP with batch norm (state) on the embedded 8x8 digits."""
    return ImageMLPNormTask(
        digits_datasets(batch_size=128),
        [32],
        "batch_norm",
        name="ImageMLP_Digits8_32_BatchNorm_Relu",
    )


def ImageMLP_FashionMnist8_Relu32() -> ImageMLPTask:
    """A 1 hidden layer, 32 unit ReLU MLP on 8x8 Fashion-MNIST."""
    ds = tfds_data.fashion_mnist_datasets(batch_size=128, image_size=(8, 8))
    return ImageMLPTask(ds, [32], name="ImageMLP_FashionMnist8_Relu32")


def ImageMLP_FashionMnist16_Relu32() -> ImageMLPTask:
    """A 1 hidden layer, 32 unit ReLU MLP on 16x16 Fashion-MNIST."""
    ds = tfds_data.fashion_mnist_datasets(batch_size=128, image_size=(16, 16))
    return ImageMLPTask(ds, [32], name="ImageMLP_FashionMnist16_Relu32")


def ImageMLP_FashionMnist_Relu128x128() -> ImageMLPTask:
    """A 2 hidden layer, 128 unit ReLU MLP on 28x28 Fashion-MNIST."""
    ds = tfds_data.fashion_mnist_datasets(batch_size=128)
    return ImageMLPTask(ds, [128, 128], name="ImageMLP_FashionMnist_Relu128x128")


def ImageMLP_Mnist_128x128x128_Relu() -> ImageMLPTask:
    """A 3 hidden layer, 128 unit ReLU MLP on 28x28 MNIST."""
    ds = tfds_data.mnist_datasets(batch_size=128)
    return ImageMLPTask(ds, [128, 128, 128], name="ImageMLP_Mnist_128x128x128_Relu")


def ImageMLP_Cifar10_8_Relu32() -> ImageMLPTask:
    """A 1 hidden layer, 32 unit ReLU MLP on 8x8 color CIFAR-10."""
    ds = tfds_data.cifar10_datasets(batch_size=128, image_size=(8, 8))
    return ImageMLPTask(ds, [32], name="ImageMLP_Cifar10_8_Relu32")


def ImageMLP_Cifar10BW8_Relu32() -> ImageMLPTask:
    """A 1 hidden layer, 32 unit ReLU MLP on 8x8 black-and-white CIFAR-10."""
    ds = tfds_data.cifar10_datasets(
        batch_size=128, image_size=(8, 8), convert_to_black_and_white=True
    )
    return ImageMLPTask(ds, [32], name="ImageMLP_Cifar10BW8_Relu32")


def ImageMLP_Cifar10_128x128x128_Relu() -> ImageMLPTask:
    """A 3 hidden layer, 128 unit ReLU MLP on 32x32 CIFAR-10."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ImageMLPTask(ds, [128, 128, 128], name="ImageMLP_Cifar10_128x128x128_Relu")


def ImageMLP_Cifar10_128x128x128_Tanh_bs128() -> ImageMLPTask:
    """A 3 hidden layer, 128 unit tanh MLP on 32x32 CIFAR-10, batch 128."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ImageMLPTask(
        ds, [128, 128, 128], jnp.tanh, name="ImageMLP_Cifar10_128x128x128_Tanh_bs128"
    )


def ImageMLP_Cifar10_128x128_Dropout05_Relu() -> ImageMLPTask:
    """A 2 hidden layer, 128 unit ReLU MLP with dropout 0.5 on 32x32 CIFAR-10."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ImageMLPTask(
        ds, [128, 128], dropout_rate=0.5, name="ImageMLP_Cifar10_128x128_Dropout05_Relu"
    )


def ImageMLP_Cifar10_128x128x128_LayerNorm_Relu() -> ImageMLPNormTask:
    """A 3 hidden layer, 128 unit ReLU MLP with layer norm on 32x32 CIFAR-10."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ImageMLPNormTask(
        ds, [128, 128, 128], "layer_norm", name="ImageMLP_Cifar10_128x128x128_LayerNorm_Relu"
    )


def ImageMLP_Cifar10_128x128x128_LayerNorm_Tanh() -> ImageMLPNormTask:
    """A 3 hidden layer, 128 unit tanh MLP with layer norm on 32x32 CIFAR-10."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ImageMLPNormTask(
        ds,
        [128, 128, 128],
        "layer_norm",
        jnp.tanh,
        name="ImageMLP_Cifar10_128x128x128_LayerNorm_Tanh",
    )


def ImageMLP_Cifar10_128x128x128_BatchNorm_Relu() -> ImageMLPNormTask:
    """A 3 hidden layer, 128 unit ReLU MLP with batch norm (model state) on 32x32 CIFAR-10."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ImageMLPNormTask(
        ds, [128, 128, 128], "batch_norm", name="ImageMLP_Cifar10_128x128x128_BatchNorm_Relu"
    )


NAMED_TASKS = [
    ImageMLP_Digits8_Relu32,
    ImageMLP_Digits8_Tanh32,
    ImageMLP_Digits8_Relu32x32_Dropout02,
    ImageMLP_Digits8_32_LayerNorm_Relu,
    ImageMLP_Digits8_32_BatchNorm_Relu,
    ImageMLP_FashionMnist8_Relu32,
    ImageMLP_FashionMnist16_Relu32,
    ImageMLP_FashionMnist_Relu128x128,
    ImageMLP_Mnist_128x128x128_Relu,
    ImageMLP_Cifar10_8_Relu32,
    ImageMLP_Cifar10BW8_Relu32,
    ImageMLP_Cifar10_128x128x128_Relu,
    ImageMLP_Cifar10_128x128x128_Tanh_bs128,
    ImageMLP_Cifar10_128x128_Dropout05_Relu,
    ImageMLP_Cifar10_128x128x128_LayerNorm_Relu,
    ImageMLP_Cifar10_128x128x128_LayerNorm_Tanh,
    ImageMLP_Cifar10_128x128x128_BatchNorm_Relu,
]
