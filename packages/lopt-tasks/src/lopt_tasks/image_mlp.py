"""Image-classification MLP tasks, named as in the reference library."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import haiku as hk
import jax
import jax.numpy as jnp

from lopt_core import Datasets
from lopt_core.validation import check_choice, check_unit_interval
from lopt_tasks import tfds_data
from lopt_tasks._common import activation, check_sizes
from lopt_tasks._network import ImageClassifier
from lopt_tasks._plugin import CATALOG
from lopt_tasks.digits import digits_datasets


class ImageMLPTask(ImageClassifier):
    """A multilayer perceptron on flattened images, trained with softmax cross-entropy.

    The network is haiku's `hk.nets.MLP` (module name "mlp"), so parameters are
    named `mlp/~/linear_0`, `mlp/~/linear_1`, ... as in the reference library.

    Args:
      datasets: image Datasets with `extra_info["num_classes"]` and `abstract_batch`.
      hidden_sizes: widths of the hidden layers.
      act_fn: activation (a callable or a name such as "relu", "tanh").
      dropout_rate: dropout on hidden layers during the loss (driven by the loss key),
        in [0, 1).
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
        owner = type(self).__name__
        self.hidden_sizes = check_sizes(hidden_sizes, owner, "hidden_sizes")
        self.act_fn = activation(act_fn, owner)
        self.dropout_rate = float(check_unit_interval(dropout_rate, owner, "dropout_rate"))
        super().__init__(datasets, name)

    def _network(self, images: jax.Array) -> jax.Array:
        x = jnp.reshape(images, (images.shape[0], -1))
        mlp = hk.nets.MLP([*self.hidden_sizes, self.num_classes], activation=self.act_fn)
        if self.dropout_rate > 0.0:
            return mlp(x, dropout_rate=self.dropout_rate, rng=hk.next_rng_key())
        return mlp(x)


class ImageMLPNormTask(ImageClassifier):
    """An image MLP with layer norm or batch norm after every hidden linear layer.

    Batch-norm statistics are model state: use `init_with_state` and
    `loss_with_state`. The loss runs the network in training mode (batch statistics),
    as the reference does, and returns the updated moving averages.

    Args:
      datasets, hidden_sizes, act_fn, name: as for `ImageMLPTask`.
      norm_type: "layer_norm" or "batch_norm".
    """

    def __init__(
        self,
        datasets: Datasets,
        hidden_sizes: Sequence[int],
        norm_type: str,
        act_fn: Callable[[jax.Array], jax.Array] | str = jax.nn.relu,
        name: str | None = None,
    ) -> None:
        owner = type(self).__name__
        self.hidden_sizes = check_sizes(hidden_sizes, owner, "hidden_sizes")
        self.norm_type = check_choice(norm_type, owner, "norm_type", ("layer_norm", "batch_norm"))
        self.act_fn = activation(act_fn, owner)
        super().__init__(datasets, name, stateful=norm_type == "batch_norm")

    def _network(self, images: jax.Array) -> jax.Array:
        x = jnp.reshape(images, (images.shape[0], -1))
        for h in self.hidden_sizes:
            x = hk.Linear(h)(x)
            if self.norm_type == "layer_norm":
                x = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x)
            else:
                x = hk.BatchNorm(True, True, decay_rate=0.9)(x, is_training=True)
            x = self.act_fn(x)
        return hk.Linear(self.num_classes)(x)


# -- named tasks ------------------------------------------------------------------------


@CATALOG.task()
def ImageMLP_Digits8_Relu32() -> ImageMLPTask:
    """A 1 hidden layer, 32 unit ReLU MLP on the embedded 8x8 digits (no network needed)."""
    return ImageMLPTask(digits_datasets(batch_size=128), [32], name="ImageMLP_Digits8_Relu32")


@CATALOG.task()
def ImageMLP_Digits8_Tanh32() -> ImageMLPTask:
    """A 1 hidden layer, 32 unit tanh MLP on the embedded 8x8 digits."""
    return ImageMLPTask(
        digits_datasets(batch_size=128), [32], jnp.tanh, name="ImageMLP_Digits8_Tanh32"
    )


@CATALOG.task()
def ImageMLP_Digits8_Relu32x32_Dropout02() -> ImageMLPTask:
    """A 2 hidden layer, 32 unit ReLU MLP with dropout 0.2 on the embedded 8x8 digits."""
    return ImageMLPTask(
        digits_datasets(batch_size=128),
        [32, 32],
        dropout_rate=0.2,
        name="ImageMLP_Digits8_Relu32x32_Dropout02",
    )


@CATALOG.task()
def ImageMLP_Digits8_32_LayerNorm_Relu() -> ImageMLPNormTask:
    """A 1 hidden layer, 32 unit MLP with layer norm on the embedded 8x8 digits."""
    return ImageMLPNormTask(
        digits_datasets(batch_size=128),
        [32],
        "layer_norm",
        name="ImageMLP_Digits8_32_LayerNorm_Relu",
    )


@CATALOG.task()
def ImageMLP_Digits8_32_BatchNorm_Relu() -> ImageMLPNormTask:
    """A 1 hidden layer, 32 unit MLP with batch norm (state) on the embedded 8x8 digits."""
    return ImageMLPNormTask(
        digits_datasets(batch_size=128),
        [32],
        "batch_norm",
        name="ImageMLP_Digits8_32_BatchNorm_Relu",
    )


@CATALOG.task()
def ImageMLP_FashionMnist8_Relu32() -> ImageMLPTask:
    """A 1 hidden layer, 32 unit ReLU MLP on 8x8 Fashion-MNIST."""
    ds = tfds_data.fashion_mnist_datasets(batch_size=128, image_size=(8, 8))
    return ImageMLPTask(ds, [32], name="ImageMLP_FashionMnist8_Relu32")


@CATALOG.task()
def ImageMLP_FashionMnist16_Relu32() -> ImageMLPTask:
    """A 1 hidden layer, 32 unit ReLU MLP on 16x16 Fashion-MNIST."""
    ds = tfds_data.fashion_mnist_datasets(batch_size=128, image_size=(16, 16))
    return ImageMLPTask(ds, [32], name="ImageMLP_FashionMnist16_Relu32")


@CATALOG.task()
def ImageMLP_FashionMnist_Relu128x128() -> ImageMLPTask:
    """A 2 hidden layer, 128 unit ReLU MLP on 28x28 Fashion-MNIST."""
    ds = tfds_data.fashion_mnist_datasets(batch_size=128)
    return ImageMLPTask(ds, [128, 128], name="ImageMLP_FashionMnist_Relu128x128")


@CATALOG.task()
def ImageMLP_Mnist_128x128x128_Relu() -> ImageMLPTask:
    """A 3 hidden layer, 128 unit ReLU MLP on 28x28 MNIST."""
    ds = tfds_data.mnist_datasets(batch_size=128)
    return ImageMLPTask(ds, [128, 128, 128], name="ImageMLP_Mnist_128x128x128_Relu")


@CATALOG.task()
def ImageMLP_Cifar10_8_Relu32() -> ImageMLPTask:
    """A 1 hidden layer, 32 unit ReLU MLP on 8x8 color CIFAR-10."""
    ds = tfds_data.cifar10_datasets(batch_size=128, image_size=(8, 8))
    return ImageMLPTask(ds, [32], name="ImageMLP_Cifar10_8_Relu32")


@CATALOG.task()
def ImageMLP_Cifar10BW8_Relu32() -> ImageMLPTask:
    """A 1 hidden layer, 32 unit ReLU MLP on 8x8 black-and-white CIFAR-10."""
    ds = tfds_data.cifar10_datasets(
        batch_size=128, image_size=(8, 8), convert_to_black_and_white=True
    )
    return ImageMLPTask(ds, [32], name="ImageMLP_Cifar10BW8_Relu32")


@CATALOG.task()
def ImageMLP_Cifar10_128x128x128_Relu() -> ImageMLPTask:
    """A 3 hidden layer, 128 unit ReLU MLP on 32x32 CIFAR-10."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ImageMLPTask(ds, [128, 128, 128], name="ImageMLP_Cifar10_128x128x128_Relu")


@CATALOG.task()
def ImageMLP_Cifar10_128x128x128_Tanh_bs128() -> ImageMLPTask:
    """A 3 hidden layer, 128 unit tanh MLP on 32x32 CIFAR-10, batch 128."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ImageMLPTask(
        ds, [128, 128, 128], jnp.tanh, name="ImageMLP_Cifar10_128x128x128_Tanh_bs128"
    )


@CATALOG.task()
def ImageMLP_Cifar10_128x128_Dropout05_Relu() -> ImageMLPTask:
    """A 2 hidden layer, 128 unit ReLU MLP with dropout 0.5 on 32x32 CIFAR-10."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ImageMLPTask(
        ds, [128, 128], dropout_rate=0.5, name="ImageMLP_Cifar10_128x128_Dropout05_Relu"
    )


@CATALOG.task()
def ImageMLP_Cifar10_128x128x128_LayerNorm_Relu() -> ImageMLPNormTask:
    """A 3 hidden layer, 128 unit ReLU MLP with layer norm on 32x32 CIFAR-10."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ImageMLPNormTask(
        ds, [128, 128, 128], "layer_norm", name="ImageMLP_Cifar10_128x128x128_LayerNorm_Relu"
    )


@CATALOG.task()
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


@CATALOG.task()
def ImageMLP_Cifar10_128x128x128_BatchNorm_Relu() -> ImageMLPNormTask:
    """A 3 hidden layer, 128 unit ReLU MLP with batch norm (model state) on 32x32 CIFAR-10."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ImageMLPNormTask(
        ds, [128, 128, 128], "batch_norm", name="ImageMLP_Cifar10_128x128x128_BatchNorm_Relu"
    )
