"""Image-classification MLP tasks, named as in the reference library."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp

from lopt_core import Datasets
from lopt_core.typing import Batch, Params
from lopt_core.validation import check_choice, check_positive_int, check_unit_interval
from lopt_tasks import tfds_data
from lopt_tasks._common import activation, capped_normalizer, check_sizes
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
      mup_base_width: None (the default: the reference's standard parametrisation),
        or the base width of a maximal-update (muP) parametrisation. With it, the
        output layer's weights start with standard deviation
        `1 / sqrt(mup_base_width)` instead of `1 / sqrt(fan_in)` and the logits
        are multiplied by `mup_base_width / fan_in` (the output multiplier), the
        hidden and input layers keeping haiku's `1 / sqrt(fan_in)` initialisation.
        At width `mup_base_width` the network is exactly the standard one; wider,
        the initial logits shrink as `sqrt(mup_base_width / width)` (as muP
        prescribes) and, with the per-tensor Adam learning-rate multipliers of
        `mup_lr_scales`, the change of every layer's output in one step is
        width-independent. The parameters are named as without it.

    References (muP):
      Yang, Hu, Babuschkin, Sidor, Liu, Farhi, Ryder, Pachocki, Chen and Gao,
      "Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter
      Transfer", 2022 (the multiplier form of muP for Adam); Therien, Joseph,
      Knyazev, Oyallon, Rish and Belilovsky, "muLO: Compute-Efficient
      Meta-Generalization of Learned Optimizers", 2024.
    """

    def __init__(
        self,
        datasets: Datasets,
        hidden_sizes: Sequence[int],
        act_fn: Callable[[jax.Array], jax.Array] | str = jax.nn.relu,
        dropout_rate: float = 0.0,
        name: str | None = None,
        mup_base_width: int | None = None,
    ) -> None:
        owner = type(self).__name__
        self.hidden_sizes = check_sizes(hidden_sizes, owner, "hidden_sizes")
        self.act_fn = activation(act_fn, owner)
        self.dropout_rate = float(check_unit_interval(dropout_rate, owner, "dropout_rate"))
        self.mup_base_width = (
            None
            if mup_base_width is None
            else check_positive_int(mup_base_width, owner, "mup_base_width")
        )
        super().__init__(datasets, name)

    def _network(self, images: jax.Array) -> jax.Array:
        x = jnp.reshape(images, (images.shape[0], -1))
        sizes = [*self.hidden_sizes, self.num_classes]
        if self.mup_base_width is not None:
            mlp = _MuPMLP(sizes, self.act_fn, self.mup_base_width)
        else:
            mlp = hk.nets.MLP(sizes, activation=self.act_fn)
        if self.dropout_rate > 0.0:
            return mlp(x, dropout_rate=self.dropout_rate, rng=hk.next_rng_key())
        return mlp(x)

    def mup_lr_scales(self, params: Params) -> Params:
        """Per-tensor multipliers of an Adam-like learning rate for muP (a tree of floats).

        Hidden weight matrices (every `w` but the first and the last layer's) get
        `mup_base_width / fan_in`; the input and output weights and all biases get
        1. Without `mup_base_width` every multiplier is 1.

        Args:
          params: this task's parameters (from `init`).
        """
        names = [f"mlp/~/linear_{i}" for i in range(len(self.hidden_sizes) + 1)]
        out = {}
        for i, layer in enumerate(names):
            scales = {k: 1.0 for k in params[layer]}
            if self.mup_base_width is not None and 0 < i < len(names) - 1:
                scales["w"] = self.mup_base_width / int(params[layer]["w"].shape[0])
            out[layer] = scales
        return out


class _MuPMLP(hk.Module):
    """`hk.nets.MLP` in muP form: the output layer's init and multiplier (see ImageMLPTask)."""

    def __init__(
        self,
        sizes: Sequence[int],
        act_fn: Callable[[jax.Array], jax.Array],
        base_width: int,
        name: str = "mlp",
    ) -> None:
        super().__init__(name=name)
        self.act_fn = act_fn
        self.base_width = base_width
        out_init = hk.initializers.TruncatedNormal(stddev=1.0 / base_width**0.5)
        last = len(sizes) - 1
        self.layers = [
            hk.Linear(size, w_init=out_init if i == last else None, name=f"linear_{i}")
            for i, size in enumerate(sizes)
        ]

    def __call__(
        self, x: jax.Array, dropout_rate: float | None = None, rng: jax.Array | None = None
    ) -> jax.Array:
        rngs = hk.PRNGSequence(rng) if rng is not None else None
        for i, layer in enumerate(self.layers):
            if i == len(self.layers) - 1:
                return layer(x) * (self.base_width / x.shape[-1])
            x = self.act_fn(layer(x))
            if dropout_rate is not None and rngs is not None:
                x = hk.dropout(next(rngs), dropout_rate, x)
        return x


def _one_hot_mse_loss(logits: jax.Array, batch: Batch) -> jax.Array:
    labels = jax.nn.one_hot(batch["label"], logits.shape[-1])
    return jnp.mean(jnp.square(logits - labels))


class ImageMLPMSETask(ImageMLPTask):
    """`ImageMLPTask` trained with squared error to one-hot labels (the reference's `_MSE` tasks).

    The loss is the mean over batch and classes of `(logits - one_hot(label))**2`;
    the normalizer is `10 * min(loss, 1)` (NaN and +-inf map to 10).

    Args: as for `ImageMLPTask`.
    """

    classification_loss = staticmethod(_one_hot_mse_loss)

    def normalizer(self, loss: Any) -> jax.Array:
        return 10 * capped_normalizer(loss, 1.0)


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


def _digits8_mup(width: int) -> ImageMLPTask:
    return ImageMLPTask(
        digits_datasets(batch_size=128),
        [width, width],
        name=f"ImageMLP_Digits8_Relu{width}x{width}_MuP",
        mup_base_width=32,
    )


@CATALOG.task()
def ImageMLP_Digits8_Relu32x32_MuP() -> ImageMLPTask:
    """A 2 hidden layer, 32 unit ReLU MLP on 8x8 digits in muP form, base width 32."""
    return _digits8_mup(32)


@CATALOG.task()
def ImageMLP_Digits8_Relu128x128_MuP() -> ImageMLPTask:
    """A 2 hidden layer, 128 unit ReLU MLP on 8x8 digits in muP form, base width 32."""
    return _digits8_mup(128)


@CATALOG.task()
def ImageMLP_Digits8_Relu512x512_MuP() -> ImageMLPTask:
    """A 2 hidden layer, 512 unit ReLU MLP on 8x8 digits in muP form, base width 32."""
    return _digits8_mup(512)


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


@CATALOG.task()
def ImageMLP_Digits8_Relu32_MSE() -> ImageMLPMSETask:
    """`ImageMLP_Digits8_Relu32` trained with squared error to one-hot labels."""
    return ImageMLPMSETask(
        digits_datasets(batch_size=128), [32], name="ImageMLP_Digits8_Relu32_MSE"
    )


@CATALOG.task()
def ImageMLP_Cifar10_128x128x128_Relu_MSE() -> ImageMLPMSETask:
    """A 3 hidden layer, 128 unit ReLU MLP on 32x32 CIFAR-10 with a one-hot squared-error loss."""
    ds = tfds_data.cifar10_datasets(batch_size=128)
    return ImageMLPMSETask(ds, [128, 128, 128], name="ImageMLP_Cifar10_128x128x128_Relu_MSE")


def _cifar10_dropout_mse(rate: float, tag: str) -> ImageMLPMSETask:
    ds = tfds_data.cifar10_datasets(batch_size=128)
    name = f"ImageMLP_Cifar10_128x128_Dropout{tag}_Relu_MSE"
    return ImageMLPMSETask(ds, [128, 128], dropout_rate=rate, name=name)


@CATALOG.task()
def ImageMLP_Cifar10_128x128_Dropout02_Relu_MSE() -> ImageMLPMSETask:
    """A 2 hidden layer, 128 unit ReLU MLP, dropout 0.2, one-hot squared error, CIFAR-10."""
    return _cifar10_dropout_mse(0.2, "02")


@CATALOG.task()
def ImageMLP_Cifar10_128x128_Dropout05_Relu_MSE() -> ImageMLPMSETask:
    """A 2 hidden layer, 128 unit ReLU MLP, dropout 0.5, one-hot squared error, CIFAR-10."""
    return _cifar10_dropout_mse(0.5, "05")


@CATALOG.task()
def ImageMLP_Cifar10_128x128_Dropout08_Relu_MSE() -> ImageMLPMSETask:
    """A 2 hidden layer, 128 unit ReLU MLP, dropout 0.8, one-hot squared error, CIFAR-10."""
    return _cifar10_dropout_mse(0.8, "08")
