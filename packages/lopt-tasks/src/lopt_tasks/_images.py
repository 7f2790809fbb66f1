"""Image helpers shared by the embedded and the TFDS image datasets."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lopt_core.validation import check_positive_int


def as_image_size(image_size: int | Sequence[int] | None, owner: str) -> tuple[int, int] | None:
    """Normalizes `image_size` (an int, an (H, W) pair or None) to a pair or None.

    Raises:
      ValueError: it is neither a positive int nor a pair of positive ints.
    """
    if image_size is None:
        return None
    if isinstance(image_size, int | np.integer):
        side = check_positive_int(image_size, owner, "image_size")
        return (side, side)
    if isinstance(image_size, str) or not isinstance(image_size, Sequence) or len(image_size) != 2:
        raise ValueError(
            f"{owner}: image_size must be a positive int or a (height, width) pair, "
            f"got {image_size!r}."
        )
    h, w = (check_positive_int(s, owner, "image_size") for s in image_size)
    return (h, w)


@functools.partial(jax.jit, static_argnums=1)
def _bilinear(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of `(N, H, W, C)` images without antialiasing, as the reference does.

    Half-pixel centres (output pixel i samples input position `(i + 0.5) * H / H' - 0.5`)
    and no low-pass filter when shrinking: `jax.image.resize(..., "linear")` would
    antialias, which changes what a shrunk image holds (on 28x28 images shrunk to 8x8,
    pixel std 0.057 instead of 0.179).
    """
    h, w = x.shape[1:3]
    scale = jnp.asarray([size[0] / h, size[1] / w], jnp.float32)
    return jax.image.scale_and_translate(
        x,
        (x.shape[0], *size, x.shape[-1]),
        spatial_dims=(1, 2),
        scale=scale,
        translation=jnp.zeros(2, jnp.float32),
        method="linear",
        antialias=False,
    )


@jax.jit
def _to_gray(images: jax.Array) -> jax.Array:
    return jnp.mean(images, axis=-1, keepdims=True)


def prepare_images(
    images: np.ndarray,
    max_value: float,
    image_size: tuple[int, int] | None,
    black_and_white: bool,
    chunk: int = 4096,
) -> np.ndarray:
    """Scales `images` (N, H, W, C) to float32 in [0, 1], resizes, optionally converts to gray.

    Work is done on the device in chunks so that large splits do not need one huge
    intermediate buffer.

    Returns:
      float32 array (N, H', W', C') with H', W' = `image_size` (or unchanged) and C' = 1
      when `black_and_white`.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"Expected images of shape (N, H, W, C); got {images.shape}.")
    out = []
    for start in range(0, images.shape[0], chunk):
        x = jnp.asarray(images[start : start + chunk], jnp.float32) / float(max_value)
        if black_and_white and x.shape[-1] != 1:
            x = _to_gray(x)
        if image_size is not None and tuple(x.shape[1:3]) != tuple(image_size):
            x = _bilinear(x, image_size)
        out.append(np.asarray(jnp.clip(x, 0.0, 1.0)))
    if not out:
        h, w = image_size or images.shape[1:3]
        c = 1 if black_and_white else images.shape[-1]
        return np.zeros((0, h, w, c), np.float32)
    return np.concatenate(out, axis=0)
