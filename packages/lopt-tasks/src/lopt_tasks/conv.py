"""Convolutional image-classification tasks, named as in the reference library."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from lopt_core import Datasets
from lopt_core.validation import check_choice, check_positive_int
from lopt_tasks import tfds_data
from lopt_tasks._common import activation, check_sizes
from lopt_tasks._network import ImageClassifier
from lopt_tasks._plugin import CATALOG
from lopt_tasks.compat import with_old_spellings
from lopt_tasks.digits import digits_datasets

#: A conv layer's kernel size or stride: one int for both spatial dimensions, or a pair.
Size2D = int | tuple[int, int]


def _check_size_2d(value: Any, owner: str, argument: str) -> Size2D:
    if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(
                f"{owner}: {argument} must be a positive integer or a (height, width) pair of "
                f"them, got {value!r}."
            )
        return tuple(check_positive_int(v, owner, f"{argument}[{i}]") for i, v in enumerate(value))
    return check_positive_int(value, owner, argument)


def conv_layers(
    hidden_sizes: Sequence[int],
    kernel_sizes: Sequence[Size2D] | None,
    strides: Sequence[Size2D] | None,
    owner: str,
) -> tuple[tuple[int, ...], tuple[Size2D, ...], tuple[Size2D, ...]]:
    """The checked `(hidden_sizes, kernel_sizes, strides)` of a convnet, one entry per layer.

    `kernel_sizes=None` gives 3 for every layer and `strides=None` gives 2 for the first
    layer and 1 for the others (the reference library's fixed convnets). An entry is an
    int (both spatial dimensions) or a (height, width) pair.

    Raises:
      TypeError: a list is not a sequence.
      ValueError: an entry is not a positive integer (or pair of them), or
        `kernel_sizes` or `strides` has a different length from `hidden_sizes`.
    """
    sizes = check_sizes(hidden_sizes, owner, "hidden_sizes")
    n = len(sizes)
    layout = {"kernel_sizes": (3,) * n, "strides": (2,) + (1,) * (n - 1) if n else ()}
    for argument, values in (("kernel_sizes", kernel_sizes), ("strides", strides)):
        if values is None:
            continue
        if isinstance(values, str) or not isinstance(values, Sequence | np.ndarray):
            raise TypeError(
                f"{owner}: {argument} must be a sequence with one entry per conv layer, "
                f"such as {layout[argument] or (3,)}, got {values!r}."
            )
        if len(values) != n:
            raise ValueError(
                f"{owner}: {argument} has {len(values)} entries but hidden_sizes has {n} "
                f"({sizes}); give one entry per conv layer, or None for the default "
                f"{layout[argument]}."
            )
        layout[argument] = tuple(
            _check_size_2d(v, owner, f"{argument}[{i}]") for i, v in enumerate(values)
        )
    return sizes, layout["kernel_sizes"], layout["strides"]


@with_old_spellings
class ConvTask(ImageClassifier):
    """A convnet: convolutions ("SAME" padding; by default 3x3, the first with stride 2),
    global pooling, a linear head.

    A layer with stride s maps an H x W feature map to ceil(H / s) x ceil(W / s).

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
      kernel_sizes: one kernel size per conv layer (an int or a (height, width) pair);
        None gives 3 for every layer.
      strides: one stride per conv layer (an int or a pair); None gives 2 for the first
        layer and 1 for the others.

    Raises:
      ValueError: `kernel_sizes` or `strides` does not have one entry per conv layer.
    """

    def __init__(
        self,
        datasets: Datasets,
        hidden_sizes: Sequence[int],
        act_fn: Callable[[jax.Array], jax.Array] | str = jax.nn.relu,
        norm: str | None = None,
        pool: str = "avg",
        name: str | None = None,
        kernel_sizes: Sequence[Size2D] | None = None,
        strides: Sequence[Size2D] | None = None,
    ) -> None:
        owner = type(self).__name__
        self.hidden_sizes, self.kernel_sizes, self.strides = conv_layers(
            hidden_sizes, kernel_sizes, strides, owner
        )
        self.act_fn = activation(act_fn, owner)
        self.norm = check_choice(norm, owner, "norm", (None, "batch_norm", "layer_norm"))
        self.pool = check_choice(pool, owner, "pool", ("avg", "max"))
        super().__init__(datasets, name, stateful=norm == "batch_norm")

    def _network(self, images: jax.Array) -> jax.Array:
        x = images
        for ch, kernel, stride in zip(self.hidden_sizes, self.kernel_sizes, self.strides):
            x = self.act_fn(hk.Conv2D(ch, kernel, stride=stride)(x))
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
