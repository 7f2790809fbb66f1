"""The 8x8 handwritten digits that ship inside scikit-learn's wheel: real data, no network.

Splits (fixed and deterministic, the same on every machine):

* A permutation of the 1797 examples is drawn with `numpy.random.default_rng(0)`
  (PCG64, whose stream numpy guarantees to be stable).
* The last 20% of the permuted examples form `test` (359 = round(0.2 * 1797)).
* The remaining 1438 follow the reference's split of a TFDS train split:
  `train` is their first 80% (1150), `inner_valid` the next 10% (144) and
  `outer_valid` the rest (144).

Pixels take values 0..16 in scikit-learn and are scaled to [0, 1].

The same data can go through TFDS: `lopt data prepare lopt_digits` writes it as
array_record with the builder in `lopt_tasks.digits_tfds` (no TensorFlow needed), and
`digits_datasets(source="tfds")` reads it with `tfds.data_source` and TFDS's
percent slices, which give exactly the splits above.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from lopt_core import Datasets
from lopt_core.validation import check_choice, check_positive_int
from lopt_tasks._images import as_image_size, prepare_images
from lopt_tasks._lazy import abstract_image_batch, lazy_datasets
from lopt_tasks.tfds_data import image_classification_datasets

NUM_CLASSES = 10
NUM_EXAMPLES = 1797
_PERMUTATION_SEED = 0
_TEST_FRACTION = 0.2


@functools.cache
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, np.float32)[..., None]
    labels = np.asarray(bunch.target, np.int32)
    return images, labels


def digits_split_indices() -> dict[str, np.ndarray]:
    """Indices into scikit-learn's `load_digits()` arrays for each of the four splits."""
    perm = np.random.default_rng(_PERMUTATION_SEED).permutation(NUM_EXAMPLES)
    num_test = round(NUM_EXAMPLES * _TEST_FRACTION)
    rest, test = perm[:-num_test], perm[-num_test:]
    n = len(rest)
    a, b = int(n * 0.8), int(n * 0.9)
    return {"train": rest[:a], "inner_valid": rest[a:b], "outer_valid": rest[b:], "test": test}


@functools.cache
def _load_split(split: str, image_size: tuple[int, int]) -> dict[str, np.ndarray]:
    images, labels = _raw_digits()
    idx = digits_split_indices()[split]
    return {
        "image": prepare_images(images[idx], 16.0, image_size, False),
        "label": labels[idx],
    }


def digits_datasets(
    batch_size: int = 128,
    image_size: int | Sequence[int] = (8, 8),
    *,
    convert_to_black_and_white: bool = True,
    seed: int = 0,
    source: str = "memory",
    data_dir: str | None = None,
) -> Datasets:
    """The 8x8 digits as `Datasets` of four in-memory, key-sampled splits.

    Nothing is read until the first batch is drawn.

    Args:
      batch_size: examples per batch.
      image_size: output (height, width); bilinear resizing when not (8, 8).
      convert_to_black_and_white: accepted for interface parity with the other
        image datasets; the digits have one channel either way.
      seed: seed of the `next()` key sequences.
      source: "memory" reads scikit-learn's arrays directly; "tfds" reads the
        array_record files prepared by `lopt data prepare lopt_digits` through
        `tfds.data_source` (same splits, same values).
      data_dir: where the TFDS data lives (source="tfds" only).

    Returns:
      Datasets with batches `{"image": float32 (B, H, W, 1) in [0, 1], "label": int32 (B,)}`
      and `extra_info["num_classes"] == 10`.

    Example:
      >>> ds = digits_datasets(batch_size=4)
      >>> next(ds.train)["image"].shape
      (4, 8, 8, 1)
    """
    owner = "digits_datasets"
    batch_size = check_positive_int(batch_size, owner, "batch_size")
    size = as_image_size(image_size, owner) or (8, 8)
    if check_choice(source, owner, "source", ("memory", "tfds")) == "tfds":
        return image_classification_datasets(
            "lopt_digits", batch_size, size, data_dir=data_dir, in_memory=True, seed=seed
        )
    return lazy_datasets(
        # The digits have one channel, so convert_to_black_and_white changes nothing.
        # A partial of a module-level function, so the datasets pickle (for Ray workers).
        functools.partial(_load_split, image_size=size),
        batch_size,
        abstract_image_batch(batch_size, (*size, 1)),
        {"num_classes": NUM_CLASSES, "name": "digits", "image_size": size},
        seed=seed,
    )
