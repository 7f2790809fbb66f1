"""A TFDS builder for the embedded 8x8 digits that writes array_record without TensorFlow.

Importing this module registers the builder with TFDS under the name `lopt_digits`.
Its `train` split holds the 1438 non-test digits and its `test` split the 359
held-out ones, in the order of `lopt_tasks.digits.digits_split_indices` (shuffling
is disabled), so TFDS's `train[0:80%]`, `train[80%:90%]`, `train[90%:]` and `test`
are exactly the in-memory splits of `digits_datasets`. Pixels are stored as uint8
0..16, as scikit-learn ships them.

Prepare it with `lopt data prepare lopt_digits` (no TensorFlow needed).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from lopt_tasks.digits import _raw_digits, digits_split_indices

NAME = "lopt_digits"


class LoptDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), pixels 0..16."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Fixed split: numpy PCG64 permutation seed 0, 359 test images."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            # Keep generation order so TFDS percent slices equal lopt's in-memory splits.
            disable_shuffling=True,
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        del dl_manager  # the data ships inside scikit-learn's wheel
        idx = digits_split_indices()
        train = np.concatenate([idx["train"], idx["inner_valid"], idx["outer_valid"]])
        return {
            "train": self._generate_examples(train),
            "test": self._generate_examples(idx["test"]),
        }

    def _generate_examples(self, indices: np.ndarray) -> Iterator[tuple[int, dict]]:
        images, labels = _raw_digits()
        for position, i in enumerate(indices):
            yield position, {"image": images[i].astype(np.uint8), "label": int(labels[i])}
