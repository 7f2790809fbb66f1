"""Image generative tasks: an MLP autoencoder and an MLP variational autoencoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from lopt_core import Datasets
from lopt_core.typing import Batch
from lopt_core.validation import check_choice, check_positive_int
from lopt_tasks import tfds_data
from lopt_tasks._common import capped_normalizer, check_sizes
from lopt_tasks._network import NetworkTask
from lopt_tasks._plugin import CATALOG
from lopt_tasks.adapters import LossFn
from lopt_tasks.digits import digits_datasets


def _bernoulli_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-pixel sigmoid cross-entropy; targets in [0, 1]."""
    return jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def _flat_images(batch: Batch) -> jax.Array:
    return jnp.reshape(batch["image"], (batch["image"].shape[0], -1))


def _autoencoder_loss(logits: jax.Array, batch: Batch) -> jax.Array:
    return jnp.mean(jnp.sum(_bernoulli_nll(logits, _flat_images(batch)), axis=-1))


def _autoencoder_mse_loss(logits: jax.Array, batch: Batch) -> jax.Array:
    # The reference's fixed autoencoders: squared error of sigmoid outputs, mean over pixels.
    return jnp.mean(jnp.square(_flat_images(batch) - jax.nn.sigmoid(logits)))


def gaussian_kl(mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """KL(N(mean, exp(log_std)^2) || N(0, 1)) per example, summed over the last axis."""
    return 0.5 * jnp.sum(jnp.exp(2 * log_std) + mean**2 - 1.0 - 2 * log_std, axis=-1)


def quantized_normal_log_prob(
    x: jax.Array, mean: jax.Array, log_std: jax.Array, key: jax.Array, bin_size: float = 1 / 255
) -> jax.Array:
    """log p(x) per example of pixels quantized to `bin_size` under N(mean, exp(log_std)^2).

    Dequantizes `x` with uniform noise in [-bin_size / 2, bin_size / 2] (from `key`),
    then sums the Gaussian log density plus log(bin_size) over the last axis: the
    density approximation of the probability of each pixel's bin (the reference's
    `HKQuantizedNormal`).
    """
    x = x + jax.random.uniform(key, x.shape, x.dtype, -0.5 * bin_size, 0.5 * bin_size)
    z = (x - mean) * jnp.exp(-log_std)
    log_density = -0.5 * jnp.square(z) - log_std - 0.5 * np.log(2 * np.pi)
    return jnp.sum(log_density + np.log(bin_size), axis=-1)


def _negative_elbo(outputs: tuple[jax.Array, jax.Array, jax.Array], batch: Batch) -> jax.Array:
    logits, mean, log_std = outputs
    recon = jnp.sum(_bernoulli_nll(logits, _flat_images(batch)), axis=-1)
    return jnp.mean(recon + gaussian_kl(mean, log_std))


class _ImageGenerativeTask(NetworkTask):
    """A network of `batch["image"]` whose loss is per image, summed over pixels."""

    def __init__(self, datasets: Datasets, loss_fn: LossFn, name: str | None) -> None:
        super().__init__(datasets, loss_fn, inputs="image", name=name)
        self._num_pixels = int(np.prod(self._example.shape[1:]))

    def normalizer(self, loss: Any) -> jax.Array:
        """The loss per pixel, clipped to [0, 1]; NaN and +-inf map to 1."""
        return capped_normalizer(loss / self._num_pixels, 1.0)


class ImageMLPAutoencoderTask(_ImageGenerativeTask):
    """An MLP autoencoder on flattened images (ReLU hidden layers, one logit per pixel).

    With `loss_type="bernoulli"` (the default) the loss is the per-pixel sigmoid
    cross-entropy summed over pixels and averaged over the batch; the normalizer
    divides by the pixel count and clips to [0, 1] (predicting 0.5 everywhere costs
    log 2 = 0.69 per pixel). With `loss_type="mse"` (the reference library's fixed
    `ImageMLPAE_*` tasks) the loss is the squared error between the pixels and the
    sigmoid of the logits, averaged over pixels and batch; the normalizer clips it
    to [0, 1] (NaN and +-inf map to 1).

    Args:
      datasets: image Datasets (labels unused).
      hidden_sizes: widths of the encoder and decoder layers; the middle one is the code.
      name: the task's name.
      loss_type: "bernoulli" or "mse".
    """

    def __init__(
        self,
        datasets: Datasets,
        hidden_sizes: Sequence[int],
        name: str | None = None,
        loss_type: str = "bernoulli",
    ) -> None:
        owner = type(self).__name__
        self.hidden_sizes = check_sizes(hidden_sizes, owner, "hidden_sizes")
        self.loss_type = check_choice(loss_type, owner, "loss_type", ("bernoulli", "mse"))
        loss_fn = _autoencoder_mse_loss if self.loss_type == "mse" else _autoencoder_loss
        super().__init__(datasets, loss_fn, name)

    def normalizer(self, loss: Any) -> jax.Array:
        """See the class docstring: per pixel (bernoulli) or as is (mse), clipped to [0, 1]."""
        if self.loss_type == "mse":
            return capped_normalizer(loss, 1.0)  # already a mean over pixels
        return super().normalizer(loss)

    def _network(self, images: jax.Array) -> jax.Array:
        mlp = hk.nets.MLP([*self.hidden_sizes, self._num_pixels], activation=jax.nn.relu)
        return mlp(jnp.reshape(images, (images.shape[0], -1)))


class ImageMLPVAETask(_ImageGenerativeTask):
    """A variational autoencoder with MLP encoder and decoder and a Gaussian latent.

    The loss is the negative ELBO per example (Bernoulli likelihood on pixels in
    [0, 1], KL to a standard normal prior), with one reparameterized sample drawn
    from the loss key.

    Args:
      datasets: image Datasets (labels unused).
      hidden_sizes: encoder widths (the decoder mirrors them).
      latent_size: dimension of the latent.
      name: the task's name.

    References:
      Kingma and Welling, "Auto-Encoding Variational Bayes", ICLR 2014, section 2.4.
    """

    def __init__(
        self,
        datasets: Datasets,
        hidden_sizes: Sequence[int],
        latent_size: int,
        name: str | None = None,
    ) -> None:
        owner = type(self).__name__
        self.hidden_sizes = check_sizes(hidden_sizes, owner, "hidden_sizes")
        self.latent_size = check_positive_int(latent_size, owner, "latent_size")
        super().__init__(datasets, _negative_elbo, name)

    def _network(self, images: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        hidden, latent = list(self.hidden_sizes), self.latent_size
        x = jnp.reshape(images, (images.shape[0], -1))
        h = hk.nets.MLP(hidden, activate_final=True, name="encoder")(x)
        mean = hk.Linear(latent, name="mean")(h)
        log_std = hk.Linear(latent, name="log_std")(h)
        z = mean + jnp.exp(log_std) * jax.random.normal(hk.next_rng_key(), mean.shape)
        logits = hk.nets.MLP([*reversed(hidden), self._num_pixels], name="decoder")(z)
        return logits, mean, log_std


@CATALOG.task()
def ImageMLPAE_Digits8_32x8x32() -> ImageMLPAutoencoderTask:
    """An MLP autoencoder (32, 8, 32) on the embedded 8x8 digits, batch 128."""
    return ImageMLPAutoencoderTask(
        digits_datasets(batch_size=128), [32, 8, 32], name="ImageMLPAE_Digits8_32x8x32"
    )


@CATALOG.task()
def ImageMLPVAE_Digits8_32_Latent8() -> ImageMLPVAETask:
    """An MLP VAE (hidden 32, latent 8) on the embedded 8x8 digits, batch 128."""
    return ImageMLPVAETask(
        digits_datasets(batch_size=128), [32], 8, name="ImageMLPVAE_Digits8_32_Latent8"
    )


def _reference_ae(
    datasets: Datasets, hidden_sizes: Sequence[int], name: str
) -> ImageMLPAutoencoderTask:
    return ImageMLPAutoencoderTask(datasets, hidden_sizes, name=name, loss_type="mse")


@CATALOG.task()
def ImageMLPAE_Digits8_32x32x32_bs128() -> ImageMLPAutoencoderTask:
    """A (32, 32, 32) MLP autoencoder with the reference's sigmoid-MSE loss on 8x8 digits."""
    return _reference_ae(
        digits_datasets(batch_size=128), [32, 32, 32], "ImageMLPAE_Digits8_32x32x32_bs128"
    )


@CATALOG.task()
def ImageMLPAE_Mnist_128x32x128_bs128() -> ImageMLPAutoencoderTask:
    """A (128, 32, 128) MLP autoencoder (sigmoid-MSE loss) on 28x28 MNIST, batch 128."""
    return _reference_ae(
        tfds_data.mnist_datasets(batch_size=128),
        [128, 32, 128],
        "ImageMLPAE_Mnist_128x32x128_bs128",
    )


@CATALOG.task()
def ImageMLPAE_FashionMnist_128x32x128_bs128() -> ImageMLPAutoencoderTask:
    """A (128, 32, 128) MLP autoencoder (sigmoid-MSE loss) on 28x28 Fashion-MNIST."""
    return _reference_ae(
        tfds_data.fashion_mnist_datasets(batch_size=128),
        [128, 32, 128],
        "ImageMLPAE_FashionMnist_128x32x128_bs128",
    )


@CATALOG.task()
def ImageMLPAE_Cifar10_32x32x32_bs128() -> ImageMLPAutoencoderTask:
    """A (32, 32, 32) MLP autoencoder (sigmoid-MSE loss) on 32x32 CIFAR-10, batch 128."""
    return _reference_ae(
        tfds_data.cifar10_datasets(batch_size=128),
        [32, 32, 32],
        "ImageMLPAE_Cifar10_32x32x32_bs128",
    )


@CATALOG.task()
def ImageMLPAE_Cifar10_256x256x256_bs128() -> ImageMLPAutoencoderTask:
    """A (256, 256, 256) MLP autoencoder (sigmoid-MSE loss) on 32x32 CIFAR-10, batch 128."""
    return _reference_ae(
        tfds_data.cifar10_datasets(batch_size=128),
        [256, 256, 256],
        "ImageMLPAE_Cifar10_256x256x256_bs128",
    )


@CATALOG.task()
def ImageMLPAE_Cifar10_256x256x256_bs1024() -> ImageMLPAutoencoderTask:
    """A (256, 256, 256) MLP autoencoder (sigmoid-MSE loss) on 32x32 CIFAR-10, batch 1024."""
    return _reference_ae(
        tfds_data.cifar10_datasets(batch_size=1024),
        [256, 256, 256],
        "ImageMLPAE_Cifar10_256x256x256_bs1024",
    )


@CATALOG.task()
def ImageMLPAE_Cifar10_128x32x128_bs256() -> ImageMLPAutoencoderTask:
    """A (128, 32, 128) MLP autoencoder (sigmoid-MSE loss) on 32x32 CIFAR-10, batch 256."""
    return _reference_ae(
        tfds_data.cifar10_datasets(batch_size=256),
        [128, 32, 128],
        "ImageMLPAE_Cifar10_128x32x128_bs256",
    )


@CATALOG.task()
def ImageMLPVAE_Mnist_128_Latent32() -> ImageMLPVAETask:
    """An MLP VAE (hidden 128, latent 32) on 28x28 MNIST, batch 128."""
    return ImageMLPVAETask(
        tfds_data.mnist_datasets(batch_size=128), [128], 32, name="ImageMLPVAE_Mnist_128_Latent32"
    )
