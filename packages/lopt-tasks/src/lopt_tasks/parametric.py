"""Task families: parametric image MLPs and convnets, and samplers over their structure.

A family's `sample(key)` returns a pytree of arrays (vmappable); `task_fn(cfg)` works
with a traced cfg, so `jax.vmap` over cfgs vectorizes the tasks. Structure (widths,
depths, datasets) is fixed per family; the samplers `sample_image_mlp` and
`sample_image_conv` draw that structure, log-uniformly as the reference does.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from lopt_core import Datasets, Task, TaskFamily
from lopt_core.typing import Batch, Params, PRNGKey, TaskCfg
from lopt_core.validation import check_positive_int
from lopt_tasks import tfds_data
from lopt_tasks._common import RebuiltOnUnpickle, abstract_batch_of, check_sizes, extra_info_of
from lopt_tasks._plugin import CATALOG
from lopt_tasks._sampling import (
    SwitchedInitializer,
    check_names,
    choice,
    log_uniform_int,
    sample_activation,
    sample_initializer,
    switched_activation,
)
from lopt_tasks.adapters import LossFn, cross_entropy_loss
from lopt_tasks.compat import with_old_spellings
from lopt_tasks.digits import digits_datasets


def parametric_classification_normalizer(loss: Any, num_classes: int) -> jax.Array:
    """The reference's normalizer for sampled classification tasks.

    Clips the loss to [0, log(2K)] (NaN and inf map to that maximum), then maps it
    affinely so that log(K/5) goes to 0 and each log(K) of loss spans 10 units.
    """
    max_class = float(np.log(2 * num_classes))
    loss = jnp.nan_to_num(loss, nan=max_class, neginf=max_class, posinf=max_class)
    return (jnp.clip(loss, 0.0, max_class) - np.log(num_classes / 5)) * 10 / np.log(num_classes)


class _SampledTask(Task):
    """The task of one sample `cfg` of a `_HaikuFamily`: the family's network under `cfg`."""

    def __init__(self, family: _HaikuFamily, cfg: TaskCfg) -> None:
        self.datasets = family.datasets
        self.num_classes = family.num_classes
        self.family = family
        self.cfg = cfg
        self._name = f"{family.name}_sample"

    def init(self, key: PRNGKey) -> Params:
        return self.family._init_jit(self.cfg, key)

    def loss(self, params: Params, key: PRNGKey, data: Batch) -> jax.Array:
        outputs = self.family._apply_jit(self.cfg, params, key, data[self.family.input_key])
        return self.family.loss_fn(outputs, data)

    def normalizer(self, loss: Any) -> jax.Array:
        return parametric_classification_normalizer(loss, self.num_classes)


class _HaikuFamily(RebuiltOnUnpickle, TaskFamily):
    """A family whose tasks are one haiku network `_forward(cfg, inputs)` under a sampled cfg.

    The cfg is an explicit argument of one family-wide jitted init and apply, so
    every sample (and every vmapped batch of samples) reuses one compiled program.
    A pickled family holds its configuration and datasets; the copy jits its own.
    The tasks' loss is `loss_fn(outputs, batch)` and their normalizer
    `parametric_classification_normalizer` over `num_classes` outputs.

    Args:
      datasets: Datasets whose `abstract_batch` holds the network input under `input_key`.
      num_classes: number of output classes.
      loss_fn: `loss_fn(outputs, batch) -> scalar`.
      name: the family's name.
    """

    #: the batch key holding the network input.
    input_key: str = "image"
    _derived = ("_init_jit", "_apply_jit")

    def __init__(
        self, datasets: Datasets, num_classes: int, loss_fn: LossFn, name: str | None
    ) -> None:
        owner = type(self).__name__
        abstract_batch_of(datasets, owner)  # raises unless the datasets give an abstract batch
        self.datasets = datasets
        self.num_classes = check_positive_int(num_classes, owner, "num_classes")
        self.loss_fn = loss_fn
        self._name = name
        self._build()

    def _build(self) -> None:
        # Also called on unpickling: a copy (on a Ray worker) jits its own init and apply.
        example = self.datasets.abstract_batch[self.input_key]

        def init(cfg: TaskCfg, key: PRNGKey) -> Params:
            inputs = jnp.ones(example.shape, example.dtype)
            return hk.transform(lambda x: self._forward(cfg, x)).init(key, inputs)

        def apply(cfg: TaskCfg, params: Params, key: PRNGKey, inputs: jax.Array) -> Any:
            return hk.transform(lambda x: self._forward(cfg, x)).apply(params, key, inputs)

        self._init_jit = jax.jit(init)
        self._apply_jit = jax.jit(apply)

    @abc.abstractmethod
    def _forward(self, cfg: TaskCfg, inputs: jax.Array) -> Any:
        """The network's outputs for `inputs` under sample `cfg` (inside hk.transform)."""

    def task_fn(self, cfg: TaskCfg) -> Task:
        return _SampledTask(self, cfg)


class _ImageFamily(_HaikuFamily):
    """Image classifiers with a sampled activation and a sampled weight initializer.

    Args:
      datasets: image Datasets with `abstract_batch`.
      num_classes: number of classes (defaults to `datasets.extra_info["num_classes"]`).
      hidden_sizes: widths of the hidden layers (MLP) or channels (convnet); the
        class's `default_hidden_sizes` when None.
      name: the family's name.
    """

    default_hidden_sizes: tuple[int, ...]

    def __init__(
        self,
        datasets: Datasets,
        num_classes: int | None = None,
        hidden_sizes: Sequence[int] | None = None,
        name: str | None = None,
    ) -> None:
        owner = type(self).__name__
        if num_classes is None:
            num_classes = extra_info_of(datasets, "num_classes", owner)
        sizes = self.default_hidden_sizes if hidden_sizes is None else hidden_sizes
        self.hidden_sizes = check_sizes(sizes, owner, "hidden_sizes")
        super().__init__(datasets, num_classes, cross_entropy_loss, name)

    def sample(self, key: PRNGKey) -> TaskCfg:
        """`{"activation": int32, "initializer": {"index": int32, "init_scale": float32}}`."""
        k_act, k_init = jax.random.split(key)
        return {"activation": sample_activation(k_act), "initializer": sample_initializer(k_init)}


@with_old_spellings
class ParametricImageMLP(_ImageFamily):
    """Image MLPs with a sampled activation and a sampled weight initializer.

    Activation: one of 12 (ReLU, ReLU6, SELU, tanh, cos, sin, sigmoid, SiLU, swish,
    GELU, leaky ReLU with slope -0.5; ReLU counted twice). Initializer: orthogonal,
    uniform scaling, or variance scaling (truncated normal, normal, uniform), with a
    scale uniform in [0.5, 2]. Parameters are `mlp/~/linear_i` as in haiku's MLP.

    Args:
      datasets: image Datasets with `abstract_batch`.
      num_classes: number of classes (defaults to `datasets.extra_info["num_classes"]`).
      hidden_sizes: widths of the hidden layers, (32, 32) by default
        (`hidden_layers` is the reference's spelling).
      name: the family's name.
    """

    default_hidden_sizes = (32, 32)

    def _forward(self, cfg: TaskCfg, inputs: jax.Array) -> jax.Array:
        x = jnp.reshape(inputs, (inputs.shape[0], -1))
        mlp = hk.nets.MLP(
            (*self.hidden_sizes, self.num_classes),
            w_init=SwitchedInitializer(cfg["initializer"]),
            activation=switched_activation(cfg["activation"]),
        )
        return mlp(x)


@with_old_spellings
class ParametricImageConv(_ImageFamily):
    """Image convnets (3x3 convs, first with stride 2, mean pooling, linear head) with a
    sampled activation and initializer, as `ParametricImageMLP`.

    The sampled initializer applies to the conv layers; the linear head keeps haiku's
    default initializer, as in the reference library.

    Args:
      datasets, num_classes, name: as for `ParametricImageMLP`.
      hidden_sizes: channels of the conv layers, (32, 64, 64) by default
        (`hidden_units` is the reference's spelling).
    """

    default_hidden_sizes = (32, 64, 64)

    def _forward(self, cfg: TaskCfg, inputs: jax.Array) -> jax.Array:
        act = switched_activation(cfg["activation"])
        init = SwitchedInitializer(cfg["initializer"])
        x = inputs
        for i, ch in enumerate(self.hidden_sizes):
            x = act(hk.Conv2D(ch, 3, stride=2 if i == 0 else 1, w_init=init)(x))
        # The reference samples the conv initializer only; the head keeps haiku's default.
        return hk.Linear(self.num_classes)(jnp.mean(x, axis=(1, 2)))


# -- structure samplers -------------------------------------------------------------------

#: Datasets the structure samplers draw from: name -> (factory, num_classes).
IMAGE_DATASETS: dict[str, tuple[Any, int]] = {
    "digits": (digits_datasets, 10),
    "mnist": (tfds_data.mnist_datasets, 10),
    "fashion_mnist": (tfds_data.fashion_mnist_datasets, 10),
    "cifar10": (tfds_data.cifar10_datasets, 10),
    "cifar100": (tfds_data.cifar100_datasets, 100),
    "svhn_cropped": (tfds_data.svhn_cropped_datasets, 10),
}


@dataclass(frozen=True)
class ImageFamilyConfig:
    """The structure of a sampled image family; `make()` builds it (reading no data).

    Attributes:
      kind: "mlp" or "conv".
      dataset: a key of `IMAGE_DATASETS`.
      image_size: images are resized to (image_size, image_size).
      batch_size: examples per batch.
      hidden: hidden widths (MLP) or conv channels.
    """

    kind: str
    dataset: str
    image_size: int
    batch_size: int
    hidden: tuple[int, ...]

    def make(self) -> TaskFamily:
        """Builds the family this config describes."""
        factory, num_classes = IMAGE_DATASETS[self.dataset]
        datasets = factory(batch_size=self.batch_size, image_size=(self.image_size,) * 2)
        name = (
            f"Parametric{self.kind.upper()}_{self.dataset}{self.image_size}_bs{self.batch_size}_"
            + ("x".join(map(str, self.hidden)) or "linear")
        )
        if self.kind == "mlp":
            return ParametricImageMLP(datasets, num_classes, self.hidden, name=name)
        return ParametricImageConv(datasets, num_classes, self.hidden, name=name)


def sample_image_mlp(key: PRNGKey, datasets: Sequence[str] = ("digits",)) -> ImageFamilyConfig:
    """Samples an image-MLP family structure like the reference's `sample_image_mlp`.

    Hidden width log-uniform in [8, 128], depth uniform in 0..4, image size
    log-uniform in [4, 32], batch size log-uniform in [4, 512], dataset uniform over
    `datasets` (only the embedded digits by default, which need no download).
    """
    names = check_names(datasets, IMAGE_DATASETS, "image datasets")
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    width = log_uniform_int(k1, 8, 128)
    depth = choice(k2, range(5))
    return ImageFamilyConfig(
        "mlp",
        choice(k5, names),
        log_uniform_int(k3, 4, 32),
        log_uniform_int(k4, 4, 512),
        (width,) * depth,
    )


def sample_image_conv(key: PRNGKey, datasets: Sequence[str] = ("digits",)) -> ImageFamilyConfig:
    """Samples an image-convnet family structure: channels log-uniform in [8, 64] per
    layer, 1 to 3 layers, image size log-uniform in [8, 32], batch size in [4, 256]."""
    names = check_names(datasets, IMAGE_DATASETS, "image datasets")
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    depth = choice(k2, (1, 2, 3))
    channels = tuple(log_uniform_int(k, 8, 64) for k in jax.random.split(k1, depth))
    return ImageFamilyConfig(
        "conv",
        choice(k5, names),
        log_uniform_int(k3, 8, 32),
        log_uniform_int(k4, 4, 256),
        channels,
    )


@CATALOG.task_family()
def SampledImageMLPFamily(seed: int = 0, datasets: Sequence[str] = ("digits",)) -> TaskFamily:
    """An image-MLP family whose structure is drawn by `sample_image_mlp` from `seed`."""
    seed = check_positive_int(seed, "SampledImageMLPFamily", "seed", minimum=0)
    return sample_image_mlp(jax.random.PRNGKey(seed), datasets).make()


@CATALOG.task_family()
def SampledImageConvFamily(seed: int = 0, datasets: Sequence[str] = ("digits",)) -> TaskFamily:
    """An image-convnet family whose structure is drawn by `sample_image_conv` from `seed`."""
    seed = check_positive_int(seed, "SampledImageConvFamily", "seed", minimum=0)
    return sample_image_conv(jax.random.PRNGKey(seed), datasets).make()


@CATALOG.task_family()
def ImageMLPFamily_Digits8() -> TaskFamily:
    """ParametricImageMLP on the embedded 8x8 digits, hidden (32,), batch 128 (offline)."""
    return ParametricImageMLP(
        digits_datasets(batch_size=128, image_size=(8, 8)),
        10,
        (32,),
        name="ImageMLPFamily_Digits8",
    )


@CATALOG.task_family()
def ImageConvFamily_Digits8() -> TaskFamily:
    """ParametricImageConv on the embedded 8x8 digits, channels (16, 32), batch 128."""
    return ParametricImageConv(
        digits_datasets(batch_size=128, image_size=(8, 8)),
        10,
        (16, 32),
        name="ImageConvFamily_Digits8",
    )
