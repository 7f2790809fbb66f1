"""Splits streamed from disk through `grain`: in order or shuffled, prefetched, resumable.

A `GrainSplit` reads a random-access source (TFDS's `tfds.data_source` over
prepared array_record files, or anything with `__len__` and `__getitem__`)
through a `grain` pipeline: records in order or in a seeded shuffle (a new one
each epoch), batched, turned into lopt's batch format by `transform`, and read
ahead by background threads. It is a plain iterator split: `next(split)` gives
one batch of numpy arrays, and lopt's truncated steps pull the batches of each
unroll from it on the host.

Its position is data: `get_state()` returns a JSON-able dict and `set_state`
continues from it at exactly the next batch, so a meta-training checkpoint that
records it (`lopt_core.iterator_states`) resumes streamed data bit-identically.
A pickled split (for a Ray worker, say) leaves its reader threads and open files
behind and keeps its configuration and position; the copy reopens the source
and continues where the original was.

`grain` is an optional dependency: `pip install 'lopt-tasks[streaming]'`.

Example:
  >>> ds = grain_image_datasets("mnist", batch_size=128)   # prepared with `lopt data prepare`
  >>> batch = next(ds.train)                               # {"image", "label"}
  >>> state = ds.train.get_state()                          # JSON-able
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from lopt_core import Datasets
from lopt_core.typing import Batch
from lopt_core.validation import check_positive_int
from lopt_tasks._images import as_image_size, prepare_images
from lopt_tasks._lazy import abstract_image_batch
from lopt_tasks.tfds_data import TFDS_SPLITS, image_dataset_info, open_data_source

__all__ = ["GrainSplit", "grain_image_datasets", "image_batch"]

#: The settings a `get_state()` records; `set_state` refuses a state of other settings.
STATE_SETTINGS = ("batch_size", "shuffle", "seed", "num_epochs")


def _grain() -> Any:
    try:
        import grain
    except ImportError:
        raise ImportError(
            "lopt_tasks.streaming reads data through `grain`, which is not installed. "
            "Install it with `pip install 'lopt-tasks[streaming]'`."
        ) from None
    return grain


def _tfds_source(name: str, split: str, data_dir: str | None) -> Any:
    """Opens a TFDS split (a lopt split name or a TFDS split string) for reading."""
    return open_data_source(name, TFDS_SPLITS.get(split, split), data_dir)


def image_batch(
    batch: Mapping[str, Any],
    *,
    max_value: float,
    image_size: tuple[int, int] | None,
    black_and_white: bool,
) -> Batch:
    """A batch of stored records as lopt's image batch.

    Args:
      batch: `{"image": (B, H, W[, C]) integers, "label": (B,)}` as grain stacks them.
      max_value: the largest stored pixel value.
      image_size: output (height, width); unchanged when None.
      black_and_white: average the color channels into one.

    Returns:
      `{"image": float32 (B, H', W', C') in [0, 1], "label": int32 (B,)}`.
    """
    images = prepare_images(np.asarray(batch["image"]), max_value, image_size, black_and_white)
    return {"image": images, "label": np.asarray(batch["label"], np.int32)}


def _check_state_value(value: Any, where: str, depth: int = 0) -> None:
    # A checkpoint is untrusted data: only small JSON values reach grain.
    if depth > 8:
        raise ValueError(f"{where}: the state is nested too deeply to be an iterator position.")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: state keys must be strings, got {k!r}.")
            _check_state_value(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_state_value(v, f"{where}[{i}]", depth + 1)
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise ValueError(
            f"{where}: iterator states hold JSON values only, got {type(value).__name__}."
        )


class GrainSplit:
    """One split streamed from a random-access source through grain, with a resumable position.

    Records are read in order (`shuffle=False`) or in a shuffle fixed by `seed`
    that changes every epoch, grouped into batches of `batch_size` (a batch may
    span two epochs; a last partial batch of a finite stream is dropped, so every
    batch has the same shape), passed through `transform`, and read ahead by
    `num_threads` threads into a buffer of `prefetch_buffer_size` batches. The
    same settings give the same batches, whatever the threads do.

    Nothing is opened at construction; the source opens on the first batch (or
    the first use of `abstract_batch` when it is not given).

    Args:
      source: a random-access source (`__len__`, `__getitem__` giving one record),
        or a function of no arguments that opens one. Pass a function (a
        module-level one, or a `functools.partial` of one) for a split that is
        pickled: the copy calls it to reopen the source.
      batch_size: records per batch.
      shuffle: shuffle the records (a new order each epoch) instead of reading
        them in order.
      seed: the shuffle's seed.
      num_epochs: passes over the data, then `StopIteration`; None repeats forever.
      transform: applied to every stacked batch (a dict of numpy arrays), e.g.
        `image_batch`; None keeps the records' own fields. It must be picklable
        for a split that is pickled.
      abstract_batch: a tree of `jax.ShapeDtypeStruct` of one transformed batch;
        None reads batch 0 to find it.
      num_threads: reader threads.
      prefetch_buffer_size: batches read ahead.

    Raises:
      ValueError: a setting is out of range; the message names it.
      ImportError: grain is not installed (on the first batch).

    Example:
      >>> split = GrainSplit(records, batch_size=4, shuffle=True, seed=1)
      >>> batch = next(split)
      >>> state = split.get_state()          # resume later with split.set_state(state)
    """

    def __init__(
        self,
        source: Any,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        num_epochs: int | None = None,
        transform: Callable[[Batch], Batch] | None = None,
        abstract_batch: Any = None,
        num_threads: int = 2,
        prefetch_buffer_size: int = 8,
    ) -> None:
        owner = type(self).__name__
        if not (callable(source) or hasattr(source, "__getitem__")):
            raise TypeError(
                f"{owner}: source must be a random-access source (with __len__ and "
                f"__getitem__) or a function that opens one, got {type(source).__name__}."
            )
        self.source = source
        self.batch_size = check_positive_int(batch_size, owner, "batch_size")
        self.shuffle = bool(shuffle)
        self.seed = check_positive_int(seed, owner, "seed", minimum=0)
        self.num_epochs = (
            None if num_epochs is None else check_positive_int(num_epochs, owner, "num_epochs")
        )
        self.transform = transform
        self.num_threads = check_positive_int(num_threads, owner, "num_threads")
        self.prefetch_buffer_size = check_positive_int(
            prefetch_buffer_size, owner, "prefetch_buffer_size", minimum=0
        )
        self._abstract_batch = abstract_batch
        self._resume: Any = None  # the grain position to start from, before an iterator exists
        self._closed()

    @classmethod
    def from_tfds(
        cls, name: str, split: str, batch_size: int, *, data_dir: str | None = None, **kwargs: Any
    ) -> GrainSplit:
        """A split of a prepared TFDS dataset, read through `tfds.data_source` (no TensorFlow).

        Args:
          name: the TFDS name.
          split: a lopt split name ("train", "inner_valid", ...; see
            `lopt_tasks.tfds_data.TFDS_SPLITS`) or a TFDS split string ("train[:50%]").
          batch_size: records per batch.
          data_dir: where the prepared array_record data lives (`default_data_dir()` when None).
          **kwargs: the other `GrainSplit` arguments.
        """
        opener = functools.partial(_tfds_source, name, split, data_dir)
        return cls(opener, batch_size, **kwargs)

    # -- what is never pickled: the open source, the pipeline and its threads --------
    def _closed(self) -> None:
        self._opened: Any = None
        self._dataset: Any = None
        self._iterator: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """The configuration and the position; the copy reopens the source and continues."""
        state = {k: v for k, v in self.__dict__.items() if k not in _UNPICKLED}
        state["_resume"] = self._position()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._closed()

    def _open(self) -> Any:
        if self._opened is None:
            source = self.source
            if callable(source) and not hasattr(source, "__getitem__"):
                source = source()
            self._opened = source
        return self._opened

    def _map_dataset(self) -> Any:
        if self._dataset is None:
            grain = _grain()
            ds = grain.MapDataset.source(self._open())
            if len(ds) == 0:
                raise ValueError(f"{type(self).__name__}: the source holds no records.")
            if self.shuffle:
                ds = ds.shuffle(seed=self.seed)
            # After the shuffle: each epoch gets its own order.
            ds = ds.repeat(self.num_epochs)
            ds = ds.batch(self.batch_size, drop_remainder=True)
            if self.transform is not None:
                ds = ds.map(self.transform)
            self._dataset = ds
        return self._dataset

    def _iter(self) -> Any:
        with self._lock:
            if self._iterator is None:
                grain = _grain()
                options = grain.ReadOptions(
                    num_threads=self.num_threads, prefetch_buffer_size=self.prefetch_buffer_size
                )
                it = iter(self._map_dataset().to_iter_dataset(options))
                if self._resume is not None:
                    it.set_state(self._resume)
                self._iterator = it
            return self._iterator

    def _position(self) -> Any:
        return self._resume if self._iterator is None else self._iterator.get_state()

    # -- iteration --------------------------------------------------------------------
    @property
    def abstract_batch(self) -> Any:
        """A tree of `jax.ShapeDtypeStruct` of one batch (read from batch 0 when not given)."""
        if self._abstract_batch is None:
            first = self._map_dataset()[0]
            self._abstract_batch = jax.tree_util.tree_map(
                lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), first
            )
        return self._abstract_batch

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        batch: Batch = next(self._iter())
        return batch

    # -- position -----------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """The split's position and the settings it depends on, as JSON-able values.

        Opens nothing: a split not yet read reports the position it would start from.
        """
        return {
            **{name: getattr(self, name) for name in STATE_SETTINGS},
            "iterator": self._position(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Continues from `state` (a `get_state()` result): the next batch is the one that
        followed it.

        Raises:
          ValueError: `state` is malformed, or was taken from a split with other
            settings; the message names the field.
        """
        owner = f"{type(self).__name__}.set_state"
        if not isinstance(state, Mapping):
            raise ValueError(
                f"{owner}: expected a dict from get_state(), got {type(state).__name__}."
            )
        missing = [k for k in (*STATE_SETTINGS, "iterator") if k not in state]
        if missing:
            raise ValueError(
                f"{owner}: the state lacks {', '.join(missing)}; pass a get_state() result."
            )
        for name in STATE_SETTINGS:
            if state[name] != getattr(self, name):
                raise ValueError(
                    f"{owner}: the state was taken with {name}={state[name]!r}, this split has "
                    f"{name}={getattr(self, name)!r}; build the split with the same settings "
                    "to resume its position."
                )
        position = state["iterator"]
        if position is not None and not isinstance(position, Mapping):
            raise ValueError(
                f"{owner}: 'iterator' must be grain's iterator state (a dict) or None, got "
                f"{type(position).__name__}."
            )
        _check_state_value(position, f"{owner}: iterator")
        with self._lock:
            self._resume = None if position is None else dict(position)
            if self._iterator is not None:
                if position is None:
                    self._iterator = None
                else:
                    self._iterator.set_state(dict(position))

    def __repr__(self) -> str:
        settings = ", ".join(f"{n}={getattr(self, n)!r}" for n in STATE_SETTINGS)
        return f"{type(self).__name__}({settings})"


_UNPICKLED = frozenset({"_opened", "_dataset", "_iterator", "_lock"})


def grain_image_datasets(
    name: str,
    batch_size: int = 128,
    image_size: int | Sequence[int] | None = None,
    *,
    convert_to_black_and_white: bool = False,
    data_dir: str | None = None,
    shuffle: bool = True,
    seed: int = 0,
    num_epochs: int | None = None,
    num_threads: int = 2,
    prefetch_buffer_size: int = 8,
) -> Datasets:
    """A TFDS image-classification dataset streamed from disk through grain, as lopt `Datasets`.

    The four splits (`lopt_tasks.tfds_data.TFDS_SPLITS`) are `GrainSplit`s over
    `tfds.data_source` (prepared array_record files, no TensorFlow), so data larger
    than memory is read batch by batch, with background prefetch, and every
    split's position is part of a meta-training checkpoint. Shapes come from
    metadata: nothing is read at construction.

    Args:
      name: the TFDS name, e.g. "mnist" or "cifar10" (see `image_classification_datasets`).
      batch_size: examples per batch.
      image_size: output (height, width); the stored size when None.
      convert_to_black_and_white: average the color channels into one.
      data_dir: where prepared array_record data lives; see `default_data_dir`.
      shuffle: shuffle every split (a new order each epoch); False reads in order.
      seed: split `i` (train, inner_valid, outer_valid, test) shuffles with seed `4 * seed + i`.
      num_epochs: passes over each split; None repeats forever.
      num_threads, prefetch_buffer_size: as for `GrainSplit`.

    Returns:
      Datasets with batches `{"image": float32 (B, H, W, C) in [0, 1], "label": int32 (B,)}`
      and `extra_info["num_classes"]`.

    Raises:
      DatasetNotPreparedError: on the first batch, when the data is not prepared.
    """
    owner = "grain_image_datasets"
    batch_size = check_positive_int(batch_size, owner, "batch_size")
    seed = check_positive_int(seed, owner, "seed", minimum=0)
    info = image_dataset_info(name, data_dir)
    size = as_image_size(image_size, owner) or (info.height, info.width)
    channels = 1 if convert_to_black_and_white else info.channels
    abstract = abstract_image_batch(batch_size, (*size, channels))
    transform = functools.partial(
        image_batch,
        max_value=info.max_value,
        image_size=size,
        black_and_white=bool(convert_to_black_and_white),
    )
    splits = {
        s: GrainSplit.from_tfds(
            name,
            s,
            batch_size,
            data_dir=data_dir,
            shuffle=shuffle,
            seed=seed * 4 + i,
            num_epochs=num_epochs,
            transform=transform,
            abstract_batch=abstract,
            num_threads=num_threads,
            prefetch_buffer_size=prefetch_buffer_size,
        )
        for i, s in enumerate(TFDS_SPLITS)
    }
    extra = {"num_classes": info.num_classes, "name": name, "image_size": size}
    return Datasets(**splits, extra_info=extra, abstract_batch=abstract)
