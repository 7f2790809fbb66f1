"""TFDS datasets read through `tfds.data_source`: array_record files, no TensorFlow.

Splits follow the reference library:

=============  ==================
lopt split     TFDS split
=============  ==================
train          ``train[0:80%]``
inner_valid    ``train[80%:90%]``
outer_valid    ``train[90%:]``
test           ``test``
=============  ==================

Preparing data (downloading and writing array_record files) needs TensorFlow and is
a separate step: ``pip install 'lopt-tasks[prepare]'`` then ``lopt data prepare NAME``.
Reading prepared data needs neither.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lopt_core import Datasets
from lopt_core.typing import Batch
from lopt_core.validation import check_positive_int
from lopt_tasks._images import as_image_size, prepare_images
from lopt_tasks._lazy import abstract_image_batch, lazy_datasets

TFDS_SPLITS: dict[str, str] = {
    "train": "train[0:80%]",
    "inner_valid": "train[80%:90%]",
    "outer_valid": "train[90%:]",
    "test": "test",
}

#: Datasets in memory up to this many bytes of float32 images per split by default.
MAX_IN_MEMORY_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class ImageDatasetInfo:
    """What is known about an image dataset without reading it.

    Attributes:
      height, width, channels: the stored image shape.
      num_classes: number of label classes.
      num_train: examples in TFDS's `train` split (None when unknown).
      max_value: the largest stored pixel value (255 for uint8 images).
    """

    height: int
    width: int
    channels: int
    num_classes: int
    num_train: int | None = None
    max_value: float = 255.0


KNOWN_IMAGE_DATASETS: dict[str, ImageDatasetInfo] = {
    "mnist": ImageDatasetInfo(28, 28, 1, 10, 60000),
    "fashion_mnist": ImageDatasetInfo(28, 28, 1, 10, 60000),
    "cifar10": ImageDatasetInfo(32, 32, 3, 10, 50000),
    "cifar100": ImageDatasetInfo(32, 32, 3, 100, 50000),
    "svhn_cropped": ImageDatasetInfo(32, 32, 3, 10, 73257),
    "lopt_digits": ImageDatasetInfo(8, 8, 1, 10, 1438, max_value=16.0),
}

#: TFDS builders that ship with lopt-tasks: name -> module that registers the builder.
#: They prepare without TensorFlow, from data inside installed wheels.
LOCAL_BUILDERS: dict[str, str] = {"lopt_digits": "lopt_tasks.digits_tfds"}


def _register_local_builder(name: str) -> None:
    if name in LOCAL_BUILDERS:
        importlib.import_module(LOCAL_BUILDERS[name])


class DatasetNotPreparedError(RuntimeError):
    """A TFDS dataset has no prepared array_record data in the searched data_dir."""


@contextlib.contextmanager
def mock_tfds_data(num_examples: int = 24) -> Iterator[None]:
    """Within the block, every TFDS read gives `tfds.testing.mock_data`'s random examples.

    For tests of TFDS-backed tasks on a machine without the data (set
    `$LOPT_DATA_DIR` to an empty folder too, so nothing real is read). The cache
    of loaded splits is emptied on entry and on exit, so no mock data outlives the
    block and no real data leaks into it.

    Args:
      num_examples: the number of mock examples of each split.
    """
    import tensorflow_datasets as tfds

    _load_split.cache_clear()
    try:
        with tfds.testing.mock_data(
            num_examples=check_positive_int(num_examples, "mock_tfds_data", "num_examples")
        ):
            yield
    finally:
        _load_split.cache_clear()


def default_data_dir() -> str:
    """`$LOPT_DATA_DIR`, else `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`."""
    return os.environ.get("LOPT_DATA_DIR") or os.environ.get(
        "TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
    )


def prepare_command(name: str, data_dir: str | None = None) -> str:
    """The shell command that prepares dataset `name`."""
    extra = f" --data-dir {data_dir}" if data_dir else ""
    return f"lopt data prepare {name}{extra}"


def open_data_source(name: str, split: str, data_dir: str | None = None) -> Any:
    """Opens `tfds.data_source(name, split=split)` without downloading.

    Raises:
      DatasetNotPreparedError: the data is not prepared under `data_dir`; the message
        names the dataset, the directory and the command that prepares it.
    """
    import tensorflow_datasets as tfds

    _register_local_builder(name)
    default = default_data_dir()
    data_dir = data_dir or default
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as exc:  # TFDS raises many types here; all mean "not readable"
        cause = _not_readable_cause(name, data_dir, exc)
        command = prepare_command(name, None if data_dir == default else data_dir)
        raise DatasetNotPreparedError(
            f"TFDS dataset {name!r} (split {split!r}) cannot be read from data_dir "
            f"{data_dir!r}: {cause}. lopt does not download at read time. Prepare it once "
            f"with `{command}` (needs `pip install 'lopt-tasks[prepare]'`), or point "
            "$LOPT_DATA_DIR or data_dir at a directory holding its array_record files."
        ) from None


def _not_readable_cause(name: str, data_dir: str, exc: BaseException) -> str:
    import tensorflow_datasets as tfds

    try:
        prepared = tfds.builder(name, data_dir=data_dir).is_prepared()
    except Exception:
        prepared = False
    if not prepared:
        return "no prepared data was found there"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"the prepared data is not readable as array_record ({type(exc).__name__}: {first})"


def image_dataset_info(name: str, data_dir: str | None = None) -> ImageDatasetInfo:
    """Shape and class count of image dataset `name` from metadata only (no data read)."""
    if name in KNOWN_IMAGE_DATASETS:
        return KNOWN_IMAGE_DATASETS[name]
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir or default_data_dir())
    except Exception as exc:
        raise ValueError(
            f"Unknown TFDS dataset {name!r}: {type(exc).__name__}. Check the name against "
            "`tfds.list_builders()`."
        ) from None
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(
            f"TFDS dataset {name!r} is not an image-classification dataset: it needs "
            f"'image' and 'label' features, it has {sorted(features)}."
        )
    h, w, c = features["image"].shape
    if h is None or w is None:
        raise ValueError(
            f"TFDS dataset {name!r} has variable image sizes {features['image'].shape}; "
            "lopt's image datasets need a fixed stored size."
        )
    splits = builder.info.splits
    num_train = splits["train"].num_examples if "train" in splits else None
    return ImageDatasetInfo(h, w, c or 3, features["label"].num_classes, num_train)


def _read_items(source: Any, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    # One item at a time: works with every data source, mocks included.
    items = [source[int(i)] for i in indices]
    images = np.stack([np.asarray(it["image"]) for it in items])
    labels = np.asarray([it["label"] for it in items], np.int32)
    return images, labels


@functools.cache
def _load_split(
    name: str,
    split: str,
    data_dir: str | None,
    image_size: tuple[int, int],
    black_and_white: bool,
    max_value: float = 255.0,
) -> dict[str, np.ndarray]:
    source = open_data_source(name, TFDS_SPLITS[split], data_dir)
    n = len(source)
    images, labels = [], []
    for start in range(0, n, 4096):
        raw, lab = _read_items(source, range(start, min(n, start + 4096)))
        images.append(prepare_images(raw, max_value, image_size, black_and_white))
        labels.append(lab)
    if not images:
        raise DatasetNotPreparedError(
            f"TFDS dataset {name!r} split {TFDS_SPLITS[split]!r} is empty in "
            f"{data_dir or default_data_dir()!r}; re-run `{prepare_command(name)}`."
        )
    return {"image": np.concatenate(images), "label": np.concatenate(labels)}


def _load_named_split(
    split: str,
    *,
    name: str,
    data_dir: str | None,
    image_size: tuple[int, int],
    black_and_white: bool,
    max_value: float,
) -> dict[str, np.ndarray]:
    """`_load_split` with the split first, for a `functools.partial` that pickles."""
    return _load_split(name, split, data_dir, image_size, black_and_white, max_value)


class StreamingImageSplit:
    """A split read from disk batch by batch, for data too large to keep in memory.

    Batches are drawn with replacement from a numpy generator seeded by `seed`, so
    `next()` is reproducible. The data source opens on the first batch; a pickled
    split leaves it behind (the copy opens its own) and keeps the generator's state.
    """

    def __init__(
        self,
        name: str,
        split: str,
        batch_size: int,
        image_size: tuple[int, int],
        black_and_white: bool,
        data_dir: str | None,
        abstract_batch: Any,
        seed: int = 0,
        max_value: float = 255.0,
    ) -> None:
        self.name, self.split, self.batch_size = name, split, batch_size
        self.max_value = max_value
        self.image_size, self.black_and_white = image_size, black_and_white
        self.data_dir = data_dir
        self.abstract_batch = abstract_batch
        self._rng = np.random.default_rng(seed)
        self._source: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_source": None}

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self._source is None:
            self._source = open_data_source(self.name, TFDS_SPLITS[self.split], self.data_dir)
        idx = self._rng.integers(0, len(self._source), self.batch_size)
        raw, labels = _read_items(self._source, idx)
        images = prepare_images(raw, self.max_value, self.image_size, self.black_and_white)
        return {"image": images, "label": labels}


def image_classification_datasets(
    name: str,
    batch_size: int = 128,
    image_size: int | Sequence[int] | None = None,
    *,
    convert_to_black_and_white: bool = False,
    data_dir: str | None = None,
    in_memory: bool | None = None,
    seed: int = 0,
) -> Datasets:
    """Any TFDS image-classification dataset, by name, as lopt `Datasets`.

    Nothing is read at construction: shapes come from metadata, and the data source
    opens on the first batch.

    Args:
      name: the TFDS name, e.g. "mnist", "cifar10" or any dataset with `image` and
        `label` features of a fixed image size.
      batch_size: examples per batch.
      image_size: output (height, width); the stored size when None.
      convert_to_black_and_white: average the color channels into one.
      data_dir: where prepared array_record data lives; see `default_data_dir`.
      in_memory: keep each split on the device and draw batches from keys (True), or
        stream from disk (False). By default, in memory when a split's float32 images
        fit in `MAX_IN_MEMORY_BYTES` and the size is known from metadata.
      seed: seed of the `next()` sequences.

    Returns:
      Datasets with batches `{"image": float32 (B, H, W, C) in [0, 1], "label": int32 (B,)}`
      and `extra_info["num_classes"]`.

    Raises:
      DatasetNotPreparedError: on the first batch, when the data is not prepared.
    """
    owner = "image_classification_datasets"
    batch_size = check_positive_int(batch_size, owner, "batch_size")
    size = as_image_size(image_size, owner)
    info = image_dataset_info(name, data_dir)
    size = size or (info.height, info.width)
    channels = 1 if convert_to_black_and_white else info.channels
    abstract = abstract_image_batch(batch_size, (*size, channels))
    extra = {"num_classes": info.num_classes, "name": name, "image_size": size}
    bw = bool(convert_to_black_and_white)
    if in_memory is None:
        nbytes = (
            None if info.num_train is None else info.num_train * size[0] * size[1] * channels * 4
        )
        in_memory = nbytes is not None and nbytes <= MAX_IN_MEMORY_BYTES
    if in_memory:
        load = functools.partial(
            _load_named_split,
            name=name,
            data_dir=data_dir,
            image_size=size,
            black_and_white=bw,
            max_value=info.max_value,
        )
        return lazy_datasets(
            load,
            batch_size,
            abstract,
            extra,
            seed=seed,
        )
    splits = {
        s: StreamingImageSplit(
            name, s, batch_size, size, bw, data_dir, abstract, seed * 4 + i, info.max_value
        )
        for i, s in enumerate(TFDS_SPLITS)
    }
    return Datasets(**splits, extra_info=extra, abstract_batch=abstract)


def mnist_datasets(batch_size: int = 128, image_size: Any = (28, 28), **kwargs: Any) -> Datasets:
    """MNIST through `image_classification_datasets`."""
    return image_classification_datasets("mnist", batch_size, image_size, **kwargs)


def fashion_mnist_datasets(
    batch_size: int = 128, image_size: Any = (28, 28), **kwargs: Any
) -> Datasets:
    """Fashion-MNIST through `image_classification_datasets`."""
    return image_classification_datasets("fashion_mnist", batch_size, image_size, **kwargs)


def cifar10_datasets(batch_size: int = 128, image_size: Any = (32, 32), **kwargs: Any) -> Datasets:
    """CIFAR-10 through `image_classification_datasets`."""
    return image_classification_datasets("cifar10", batch_size, image_size, **kwargs)


def cifar100_datasets(batch_size: int = 128, image_size: Any = (32, 32), **kwargs: Any) -> Datasets:
    """CIFAR-100 (fine labels) through `image_classification_datasets`."""
    return image_classification_datasets("cifar100", batch_size, image_size, **kwargs)


def svhn_cropped_datasets(
    batch_size: int = 128, image_size: Any = (32, 32), **kwargs: Any
) -> Datasets:
    """SVHN (cropped digits) through `image_classification_datasets`."""
    return image_classification_datasets("svhn_cropped", batch_size, image_size, **kwargs)


def prepare_dataset(name: str, data_dir: str | None = None) -> str:
    """Downloads and writes TFDS dataset `name` as array_record under `data_dir`.

    TFDS's own builders need TensorFlow (`pip install 'lopt-tasks[prepare]'`) and
    network access; the builders that ship with lopt-tasks (`LOCAL_BUILDERS`, e.g.
    `lopt_digits`) need neither.

    Returns:
      The directory the data was written to.

    Raises:
      RuntimeError: TensorFlow is not installed and the builder needs it.
    """
    import tensorflow_datasets as tfds

    data_dir = data_dir or default_data_dir()
    if name in LOCAL_BUILDERS:
        _register_local_builder(name)
    else:
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            raise RuntimeError(
                f"Preparing TFDS dataset {name!r} needs TensorFlow, which TFDS's builders use "
                "to download and decode the raw files. Install it with "
                "`pip install 'lopt-tasks[prepare]'` and run the command again. Reading "
                "prepared data does not need it."
            ) from None
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
    return str(builder.data_dir)
