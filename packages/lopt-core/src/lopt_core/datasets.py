"""Datasets: four iterators of batches, and an in-memory split that draws batches from keys."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from lopt_core.typing import Batch, PRNGKey

SPLITS = ("train", "inner_valid", "outer_valid", "test")


class ArraySplit:
    """One split of a dataset that fits in memory: arrays on device, batches from keys.

    The arrays live on the device. `sample(key)` draws a batch (with replacement)
    and can be called inside `jit`, so the same key always gives the same batch and
    an inner loop never returns to Python for data. Iterating (`next(split)`) draws
    from an internal key sequence seeded by `seed`, so iteration is reproducible too.

    Args:
      arrays: a mapping of name to array; all arrays share their leading dimension.
      batch_size: examples per batch.
      seed: seed of the key sequence used by `next()`.
      transform: optional jit-able function applied to every batch (for example
        resizing or scaling images).

    Example:
      >>> split = ArraySplit({"x": np.arange(10.0)}, batch_size=4)
      >>> split.sample(jax.random.PRNGKey(0))["x"].shape
      (4,)
    """

    def __init__(
        self,
        arrays: Mapping[str, Any],
        batch_size: int,
        *,
        seed: int = 0,
        transform: Callable[[Batch], Batch] | None = None,
    ) -> None:
        if not arrays:
            raise ValueError("ArraySplit needs at least one array; got an empty mapping.")
        sizes = {k: int(np.shape(v)[0]) for k, v in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"ArraySplit arrays must share their leading dimension; got {sizes}.")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive; got {batch_size}.")
        self.num_examples = next(iter(sizes.values()))
        if self.num_examples == 0:
            raise ValueError("ArraySplit got arrays with zero examples; the split is empty.")
        self.batch_size = int(batch_size)
        self.arrays = {k: jnp.asarray(v) for k, v in arrays.items()}
        self.transform = transform
        self._key = jax.random.PRNGKey(seed)
        self._sample_jit = jax.jit(self.sample)
        self.abstract_batch = jax.eval_shape(self.sample, jax.random.PRNGKey(0))

    def __getstate__(self) -> dict[str, Any]:
        """The arrays as numpy and the configuration; the jitted `next()` is rebuilt on load.

        So a split crosses process boundaries (`pickle`, Ray's object store) without
        device buffers, and the copy continues the same `next()` key sequence.
        """
        state = {k: v for k, v in self.__dict__.items() if k != "_sample_jit"}
        state["arrays"] = {k: np.asarray(v) for k, v in self.arrays.items()}
        state["_key"] = np.asarray(self._key)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.arrays = {k: jnp.asarray(v) for k, v in state["arrays"].items()}
        self._key = jnp.asarray(state["_key"])
        self._sample_jit = jax.jit(self.sample)

    def sample(self, key: PRNGKey) -> Batch:
        """Draws one batch from `key`; pure and jit-able."""
        idx = jax.random.randint(key, (self.batch_size,), 0, self.num_examples)
        batch = {k: jnp.take(v, idx, axis=0) for k, v in self.arrays.items()}
        return self.transform(batch) if self.transform is not None else batch

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        self._key, key = jax.random.split(self._key)
        return self._sample_jit(key)


class Datasets:
    """The four splits of a task's data: train, inner_valid, outer_valid and test.

    Each split is an iterator of batches. Splits that are `ArraySplit`s (or anything
    with a `sample(key)` method) can also be sampled from keys inside `jit`; see
    `keyed` and `sample`.

    Args:
      train, inner_valid, outer_valid, test: iterators of batches.
      extra_info: values such as `num_classes`.
      abstract_batch: a tree of `jax.ShapeDtypeStruct` describing one batch, so that
        shapes are known without reading data. Derived from the train split when it
        provides one.
    """

    def __init__(
        self,
        train: Iterator[Batch],
        inner_valid: Iterator[Batch],
        outer_valid: Iterator[Batch],
        test: Iterator[Batch],
        extra_info: Mapping[str, Any] | None = None,
        abstract_batch: Any = None,
    ) -> None:
        self.train = train
        self.inner_valid = inner_valid
        self.outer_valid = outer_valid
        self.test = test
        self.extra_info = dict(extra_info or {})
        if abstract_batch is None:
            abstract_batch = getattr(train, "abstract_batch", None)
        self.abstract_batch = abstract_batch

    def split(self, name: str) -> Iterator[Batch]:
        """Returns the iterator of split `name` (one of train, inner_valid, outer_valid, test)."""
        if name not in SPLITS:
            raise ValueError(f"Unknown split {name!r}; expected one of {', '.join(SPLITS)}.")
        split: Iterator[Batch] = getattr(self, name)
        return split

    @property
    def keyed(self) -> bool:
        """True when every split can draw batches from keys inside `jit`."""
        return all(callable(getattr(self.split(s), "sample", None)) for s in SPLITS)

    def sample(self, split: str, key: PRNGKey) -> Batch:
        """Draws one batch of `split` from `key` (pure, jit-able).

        Raises:
          TypeError: the split is a plain iterator that cannot be sampled from keys.
        """
        it = self.split(split)
        fn = getattr(it, "sample", None)
        if fn is None:
            raise TypeError(
                f"Split {split!r} is a plain iterator ({type(it).__name__}) and cannot draw "
                "batches from keys; wrap in-memory data in lopt_core.ArraySplit."
            )
        return fn(key)

    def __repr__(self) -> str:
        return f"Datasets(extra_info={self.extra_info}, abstract_batch={self.abstract_batch})"


_F = TypeVar("_F", bound=Callable[..., Any])

#: every function decorated with `dataset_lru_cache` that is still alive.
_CACHED_DATASET_FNS: weakref.WeakSet[Any] = weakref.WeakSet()


def dataset_lru_cache(fn: _F) -> _F:
    """Decorator: a function that builds `Datasets` returns one shared object per arguments.

    Building a dataset's iterators can be slow, and many tasks read the same data, so
    a dataset function is cached (without a size limit) on its (hashable) arguments:
    every task that calls it with the same arguments shares the same `Datasets` and so
    the same iterators. Shared iterators are consumed by all of their users, so they
    should sample at random (or shuffle widely) rather than run through the data in a
    fixed order. `fn.cache_clear()` empties one cache; `dataset_lru_cache_clear()`
    empties all of them.

    Example:
      >>> @dataset_lru_cache
      ... def get_datasets(batch_size):
      ...     def it():
      ...         while True:
      ...             yield {"x": np.zeros([batch_size])}
      ...     return Datasets(it(), it(), it(), it())
      >>> get_datasets(3) is get_datasets(3), get_datasets(3) is get_datasets(4)
      (True, False)
    """
    cached = functools.lru_cache(maxsize=None)(fn)
    _CACHED_DATASET_FNS.add(cached)
    return cached  # type: ignore[return-value]


def dataset_lru_cache_clear() -> None:
    """Empties the cache of every `dataset_lru_cache` function: the next calls rebuild."""
    for cached in list(_CACHED_DATASET_FNS):
        cached.cache_clear()
