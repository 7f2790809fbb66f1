"""Task families: parametric image MLPs, convnets, MLP autoencoders and MLP VAEs, and
samplers over their structure.

A family's `sample(key)` returns a pytree of arrays (vmappable); `task_fn(cfg)` works
with a traced cfg, so `jax.vmap` over cfgs vectorizes the tasks. Structure (widths,
depths, datasets) is fixed per family; the samplers `sample_image_mlp`,
`sample_image_conv`, `sample_image_mlp_ae` and `sample_image_mlp_vae` draw that
structure, log-uniformly as the reference does.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from lopt_core import Datasets, Task, TaskFamily
from lopt_core.typing import Batch, Params, PRNGKey, TaskCfg
from lopt_core.validation import check_choice, check_positive_int
from lopt_tasks import tfds_data
from lopt_tasks._common import (
    RebuiltOnUnpickle,
    abstract_batch_of,
    capped_normalizer,
    check_sizes,
    extra_info_of,
)
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
from lopt_tasks.conv import Size2D, conv_layers
from lopt_tasks.digits import digits_datasets
from lopt_tasks.generative import gaussian_kl, quantized_normal_log_prob


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
        return self.family._task_loss(self.cfg, outputs, data)

    def normalizer(self, loss: Any) -> jax.Array:
        return self.family._task_normalizer(self.cfg, loss)


class _HaikuFamily(RebuiltOnUnpickle, TaskFamily):
    """A family whose tasks are one haiku network `_forward(cfg, inputs)` under a sampled cfg.

    The cfg is an explicit argument of one family-wide jitted init and apply, so
    every sample (and every vmapped batch of samples) reuses one compiled program.
    A pickled family holds its configuration and datasets; the copy jits its own.
    The tasks' loss is `loss_fn(outputs, batch)` and their normalizer
    `parametric_classification_normalizer` over `num_classes` outputs; a family whose
    loss or normalizer depends on the sample overrides `_task_loss` / `_task_normalizer`.

    Args:
      datasets: Datasets whose `abstract_batch` holds the network input under `input_key`.
      num_classes: number of output classes (None for a family that classifies nothing).
      loss_fn: `loss_fn(outputs, batch) -> scalar`.
      name: the family's name.
    """

    #: the batch key holding the network input.
    input_key: str = "image"
    _derived = ("_init_jit", "_apply_jit")

    def __init__(
        self, datasets: Datasets, num_classes: int | None, loss_fn: LossFn, name: str | None
    ) -> None:
        owner = type(self).__name__
        abstract_batch_of(datasets, owner)  # raises unless the datasets give an abstract batch
        self.datasets = datasets
        self.num_classes = (
            None if num_classes is None else check_positive_int(num_classes, owner, "num_classes")
        )
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

    def _task_loss(self, cfg: TaskCfg, outputs: Any, batch: Batch) -> jax.Array:
        """The loss of sample `cfg`'s task given the network's `outputs` on `batch`."""
        return self.loss_fn(outputs, batch)

    def _task_normalizer(self, cfg: TaskCfg, loss: Any) -> jax.Array:
        """The normalizer of sample `cfg`'s task."""
        return parametric_classification_normalizer(loss, self.num_classes)

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
    """Image convnets (convs with "SAME" padding, mean pooling, linear head) with a
    sampled activation and initializer, as `ParametricImageMLP`.

    By default the convs are 3x3 and the first has stride 2; `kernel_sizes` and
    `strides` (the reference's options) set them per layer. A layer with stride s maps
    an H x W feature map to ceil(H / s) x ceil(W / s). The sampled initializer applies
    to the conv layers; the linear head keeps haiku's default initializer, as in the
    reference library.

    Args:
      datasets, num_classes: as for `ParametricImageMLP`.
      hidden_sizes: channels of the conv layers, (32, 64, 64) by default
        (`hidden_units` is the reference's spelling).
      kernel_sizes: one kernel size per conv layer (an int or a (height, width) pair);
        None gives 3 for every layer.
      strides: one stride per conv layer (an int or a pair); None gives 2 for the first
        layer and 1 for the others.
      name: the family's name.

    Raises:
      ValueError: `kernel_sizes` or `strides` does not have one entry per conv layer.
    """

    default_hidden_sizes = (32, 64, 64)

    def __init__(
        self,
        datasets: Datasets,
        num_classes: int | None = None,
        hidden_sizes: Sequence[int] | None = None,
        kernel_sizes: Sequence[Size2D] | None = None,
        strides: Sequence[Size2D] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(datasets, num_classes, hidden_sizes, name)
        _, self.kernel_sizes, self.strides = conv_layers(
            self.hidden_sizes, kernel_sizes, strides, type(self).__name__
        )

    def _forward(self, cfg: TaskCfg, inputs: jax.Array) -> jax.Array:
        act = switched_activation(cfg["activation"])
        init = SwitchedInitializer(cfg["initializer"])
        x = inputs
        for ch, kernel, stride in zip(self.hidden_sizes, self.kernel_sizes, self.strides):
            x = act(hk.Conv2D(ch, kernel, stride=stride, w_init=init)(x))
        # The reference samples the conv initializer only; the head keeps haiku's default.
        return hk.Linear(self.num_classes)(jnp.mean(x, axis=(1, 2)))


class _ImageGenerativeFamily(_ImageFamily):
    """Families of image models (labels unused) with a sampled activation and initializer.

    Beside `_ImageFamily`'s activation and initializer, each sample draws the booleans
    named in `flags`, each True with probability 1/2, as scalar bool arrays. With
    `center_data` the tasks see the images mapped from [0, 1] to [-1, 1] (2x - 1).
    """

    #: the boolean options a sample draws.
    flags: ClassVar[tuple[str, ...]]

    def _setup(self, datasets: Datasets, name: str | None) -> None:
        _HaikuFamily.__init__(self, datasets, None, _mean, name)
        self.num_pixels = int(np.prod(self.datasets.abstract_batch["image"].shape[1:]))

    def sample(self, key: PRNGKey) -> TaskCfg:
        """`_ImageFamily`'s cfg plus one scalar bool per name in `flags`."""
        k_base, k_flags = jax.random.split(key)
        draws = jax.random.bernoulli(k_flags, 0.5, (len(self.flags),))
        return {**super().sample(k_base), **{f: draws[i] for i, f in enumerate(self.flags)}}


def _mean(outputs: jax.Array, batch: Batch) -> jax.Array:
    del batch
    return jnp.mean(outputs)


def _centered(cfg: TaskCfg, images: jax.Array) -> jax.Array:
    return jnp.where(cfg["center_data"], 2.0 * (images - 0.5), images)


class ParametricImageMLPAE(_ImageGenerativeFamily):
    """MLP autoencoders of images with a sampled activation, initializer and loss form.

    The network maps the flattened image through `hk.nets.MLP(hidden_sizes + (pixels,))`
    (module "mlp"; the sampled initializer on every layer) back to the image's shape.
    Each sample draws, beside the activation and the initializer of
    `ParametricImageMLP`, three booleans:

    - `center_data`: the images (input and target) are 2x - 1, in [-1, 1];
    - `constrain_output`: the outputs pass through tanh (centered data) or a sigmoid;
    - `log_loss`: the loss takes the log of the squared errors (plus 1e-8).

    The loss is the squared error averaged over axis 1 of the (B, H, W, C) images
    (the image rows, as the reference library computes it), logged when `log_loss`,
    then averaged over everything else. The normalizer takes the log of the loss
    (unless `log_loss` already did), maps NaN and +-inf to 1, clips to [-12, 1], and
    returns `0.5 * x + 10`, in [4, 10.5].

    Args:
      datasets: image Datasets with `abstract_batch` (labels are unused).
      hidden_sizes: widths of the hidden layers, (32, 32) by default.
      name: the family's name.
    """

    default_hidden_sizes = (32, 32)
    flags = ("log_loss", "center_data", "constrain_output")

    def __init__(
        self,
        datasets: Datasets,
        hidden_sizes: Sequence[int] | None = None,
        name: str | None = None,
    ) -> None:
        sizes = self.default_hidden_sizes if hidden_sizes is None else hidden_sizes
        self.hidden_sizes = check_sizes(sizes, type(self).__name__, "hidden_sizes")
        self._setup(datasets, name)

    def _forward(self, cfg: TaskCfg, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        images = _centered(cfg, inputs)
        mlp = hk.nets.MLP(
            (*self.hidden_sizes, self.num_pixels),
            w_init=SwitchedInitializer(cfg["initializer"]),
            activation=switched_activation(cfg["activation"]),
        )
        out = jnp.reshape(mlp(jnp.reshape(images, (images.shape[0], -1))), images.shape)
        squashed = jnp.where(cfg["center_data"], jnp.tanh(out), jax.nn.sigmoid(out))
        return jnp.where(cfg["constrain_output"], squashed, out), images

    def _task_loss(self, cfg: TaskCfg, outputs: Any, batch: Batch) -> jax.Array:
        predicted, images = outputs
        err = jnp.mean(jnp.square(predicted - images), axis=1)
        return jnp.mean(jnp.where(cfg["log_loss"], jnp.log(err + 1e-8), err))

    def _task_normalizer(self, cfg: TaskCfg, loss: Any) -> jax.Array:
        out = jnp.where(cfg["log_loss"], loss, jnp.log(loss + 1e-8))
        out = jnp.nan_to_num(out, nan=1.0, posinf=1.0, neginf=1.0)
        return jnp.clip(out, -12.0, 1.0) * 0.5 + 10.0


@with_old_spellings
class ParametricImageMLPVAE(_ImageGenerativeFamily):
    """MLP variational autoencoders of images with a sampled activation and initializer.

    The encoder `hk.nets.MLP(enc_hidden_sizes + (2 * latent_size,))` (module
    "mlp_encoder") gives the mean and log standard deviation of a diagonal Gaussian
    q(z|x); one reparameterized z is drawn from the loss key. The decoder
    `hk.nets.MLP(dec_hidden_sizes + (2 * pixels,))` (module "mlp_decoder"), clipped to
    [-10, 10], gives the mean and log standard deviation of a Gaussian per pixel,
    whose likelihood is that of the pixel's 1/255 quantization bin (the pixel
    dequantized with uniform noise, `generative.quantized_normal_log_prob`). Both
    MLPs use the sampled activation and initializer. The loss is the negative ELBO,
    `KL(q(z|x) || N(0, I)) - log p(x|z)`, averaged over the batch.

    Each sample draws, beside the activation and initializer, two booleans:
    `center_data` (the images are 2x - 1) and `per_dim_loss` (the loss is divided by
    the pixel count). The normalizer is the loss per pixel (divided by the pixel count
    unless `per_dim_loss` did), NaN and +-inf mapped to 10, clipped to [0, 10].

    Args:
      datasets: image Datasets with `abstract_batch` (labels are unused).
      enc_hidden_sizes: widths of the encoder's hidden layers, (32, 32) by default.
      dec_hidden_sizes: widths of the decoder's hidden layers, (32, 32) by default.
      latent_size: dimension of z, 32 by default (the reference's `n_z`).
      name: the family's name.

    References:
      Kingma and Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
    """

    default_hidden_sizes = (32, 32)
    flags = ("center_data", "per_dim_loss")

    def __init__(
        self,
        datasets: Datasets,
        enc_hidden_sizes: Sequence[int] = (32, 32),
        dec_hidden_sizes: Sequence[int] = (32, 32),
        latent_size: int = 32,
        name: str | None = None,
    ) -> None:
        owner = type(self).__name__
        self.enc_hidden_sizes = check_sizes(enc_hidden_sizes, owner, "enc_hidden_sizes")
        self.dec_hidden_sizes = check_sizes(dec_hidden_sizes, owner, "dec_hidden_sizes")
        self.hidden_sizes = self.enc_hidden_sizes
        self.latent_size = check_positive_int(latent_size, owner, "latent_size")
        self._setup(datasets, name)

    def _forward(self, cfg: TaskCfg, inputs: jax.Array) -> jax.Array:
        x = jnp.reshape(_centered(cfg, inputs), (inputs.shape[0], -1))
        act = switched_activation(cfg["activation"])
        init = SwitchedInitializer(cfg["initializer"])
        encoded = hk.nets.MLP(
            (*self.enc_hidden_sizes, 2 * self.latent_size),
            w_init=init,
            activation=act,
            name="mlp_encoder",
        )(x)
        mean, log_std = jnp.split(encoded, 2, axis=-1)
        z = mean + jnp.exp(log_std) * jax.random.normal(hk.next_rng_key(), mean.shape)
        decoded = hk.nets.MLP(
            (*self.dec_hidden_sizes, 2 * self.num_pixels),
            w_init=init,
            activation=act,
            name="mlp_decoder",
        )(z)
        x_mean, x_log_std = jnp.split(jnp.clip(decoded, -10.0, 10.0), 2, axis=-1)
        log_p_x = quantized_normal_log_prob(x, x_mean, x_log_std, hk.next_rng_key())
        negative_elbo = gaussian_kl(mean, log_std) - log_p_x
        return jnp.where(cfg["per_dim_loss"], negative_elbo / self.num_pixels, negative_elbo)

    def _task_normalizer(self, cfg: TaskCfg, loss: Any) -> jax.Array:
        out = jnp.where(cfg["per_dim_loss"], loss, loss / self.num_pixels)
        return capped_normalizer(out, 10.0)


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
      kind: "mlp", "conv", "mlp_ae" (`ParametricImageMLPAE`) or "mlp_vae"
        (`ParametricImageMLPVAE`).
      dataset: a key of `IMAGE_DATASETS`.
      image_size: images are resized to (image_size, image_size).
      batch_size: examples per batch.
      hidden: hidden widths (MLP, autoencoder, VAE encoder) or conv channels.
      decoder_hidden: the VAE decoder's hidden widths ("mlp_vae" only).
      latent_size: the VAE's latent dimension ("mlp_vae" only).
      kernel_sizes: the convnet's kernel size per layer ("conv" only; None: 3 each).
      strides: the convnet's stride per layer ("conv" only; None: 2, then 1).
    """

    kind: str
    dataset: str
    image_size: int
    batch_size: int
    hidden: tuple[int, ...]
    decoder_hidden: tuple[int, ...] | None = None
    latent_size: int | None = None
    kernel_sizes: tuple[Size2D, ...] | None = None
    strides: tuple[Size2D, ...] | None = None

    def make(self) -> TaskFamily:
        """Builds the family this config describes."""
        check_choice(self.kind, "ImageFamilyConfig", "kind", ("mlp", "conv", "mlp_ae", "mlp_vae"))
        factory, num_classes = IMAGE_DATASETS[self.dataset]
        datasets = factory(batch_size=self.batch_size, image_size=(self.image_size,) * 2)
        name = (
            f"Parametric{self.kind.upper()}_{self.dataset}{self.image_size}_bs{self.batch_size}_"
            + _widths(self.hidden)
        )
        if self.kind == "mlp":
            return ParametricImageMLP(datasets, num_classes, self.hidden, name=name)
        if self.kind == "mlp_ae":
            return ParametricImageMLPAE(datasets, self.hidden, name=name)
        if self.kind == "mlp_vae":
            if self.decoder_hidden is None or self.latent_size is None:
                raise ValueError(
                    "ImageFamilyConfig: kind 'mlp_vae' needs decoder_hidden and latent_size; "
                    "draw the config with sample_image_mlp_vae or pass both."
                )
            name += f"_dec{_widths(self.decoder_hidden)}_z{self.latent_size}"
            return ParametricImageMLPVAE(
                datasets, self.hidden, self.decoder_hidden, self.latent_size, name=name
            )
        for tag, values in (("k", self.kernel_sizes), ("s", self.strides)):
            if values is not None:
                name += f"_{tag}" + "x".join(str(v).replace(" ", "") for v in values)
        return ParametricImageConv(
            datasets, num_classes, self.hidden, self.kernel_sizes, self.strides, name=name
        )


def _widths(sizes: Sequence[int]) -> str:
    return "x".join(map(str, sizes)) or "linear"


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


def sample_image_mlp_ae(key: PRNGKey, datasets: Sequence[str] = ("digits",)) -> ImageFamilyConfig:
    """Samples an MLP-autoencoder family structure like the reference's `sample_image_mlp_ae`.

    The draws are `sample_image_mlp`'s (the reference's two samplers draw the same
    ranges): hidden width log-uniform in [8, 128], depth uniform in 0..4, image
    size log-uniform in [4, 32], batch size log-uniform in [4, 512], dataset
    uniform over `datasets`; only the kind differs.
    """
    return replace(sample_image_mlp(key, datasets), kind="mlp_ae")


def sample_image_mlp_vae(key: PRNGKey, datasets: Sequence[str] = ("digits",)) -> ImageFamilyConfig:
    """Samples an MLP-VAE family structure like the reference's `sample_image_mlp_vae`.

    Encoder and decoder widths each log-uniform in [4, 128] and depths each uniform
    in 0..4, latent size log-uniform in [2, 128], image size log-uniform in [4, 32],
    batch size log-uniform in [4, 512], dataset uniform over `datasets`.
    """
    names = check_names(datasets, IMAGE_DATASETS, "image datasets")
    keys = jax.random.split(key, 8)
    enc_width, dec_width = log_uniform_int(keys[0], 4, 128), log_uniform_int(keys[1], 4, 128)
    enc_depth, dec_depth = choice(keys[2], range(5)), choice(keys[3], range(5))
    return ImageFamilyConfig(
        "mlp_vae",
        choice(keys[7], names),
        log_uniform_int(keys[4], 4, 32),
        log_uniform_int(keys[5], 4, 512),
        (enc_width,) * enc_depth,
        decoder_hidden=(dec_width,) * dec_depth,
        latent_size=log_uniform_int(keys[6], 2, 128),
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


@CATALOG.task_family()
def SampledImageMLPAEFamily(seed: int = 0, datasets: Sequence[str] = ("digits",)) -> TaskFamily:
    """An MLP-autoencoder family whose structure is drawn by `sample_image_mlp_ae` from `seed`."""
    seed = check_positive_int(seed, "SampledImageMLPAEFamily", "seed", minimum=0)
    return sample_image_mlp_ae(jax.random.PRNGKey(seed), datasets).make()


@CATALOG.task_family()
def SampledImageMLPVAEFamily(seed: int = 0, datasets: Sequence[str] = ("digits",)) -> TaskFamily:
    """An MLP-VAE family whose structure is drawn by `sample_image_mlp_vae` from `seed`."""
    seed = check_positive_int(seed, "SampledImageMLPVAEFamily", "seed", minimum=0)
    return sample_image_mlp_vae(jax.random.PRNGKey(seed), datasets).make()


@CATALOG.task_family()
def ImageMLPAEFamily_Digits8() -> TaskFamily:
    """ParametricImageMLPAE on the embedded 8x8 digits, hidden (32, 32), batch 128 (offline)."""
    return ParametricImageMLPAE(
        digits_datasets(batch_size=128, image_size=(8, 8)),
        (32, 32),
        name="ImageMLPAEFamily_Digits8",
    )


@CATALOG.task_family()
def ImageMLPVAEFamily_Digits8() -> TaskFamily:
    """ParametricImageMLPVAE on the embedded 8x8 digits: encoder and decoder (32,), latent 8,
    batch 128 (offline)."""
    return ParametricImageMLPVAE(
        digits_datasets(batch_size=128, image_size=(8, 8)),
        (32,),
        (32,),
        8,
        name="ImageMLPVAEFamily_Digits8",
    )
