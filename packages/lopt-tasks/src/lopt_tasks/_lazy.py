"""In-memory splits whose arrays are read on first use, not at construction."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lopt_core import SPLITS, ArraySplit, Datasets
from lopt_core.typing import Batch
from lopt_core.validation import check_positive_int

ArrayLoader = Callable[[], Mapping[str, Any]]


class LazyArraySplit(ArraySplit):
    """An `ArraySplit` whose arrays come from `loader()` the first time they are needed.

    Constructing the split reads nothing: `abstract_batch` is given by the caller, so
    shapes are known up front. The first `sample(key)` (also when traced inside `jit`)
    or `next()` calls `loader` once and keeps the arrays on the device.

    A pickled split (for a Ray worker, say) holds its loader and configuration, never
    the arrays, even once they are loaded: the copy reads them again on its first
    batch. So `loader` must be picklable: a module-level function, or a
    `functools.partial` of one.

    Args:
      loader: a function returning a mapping of name to array (shared leading dim).
      batch_size: examples per batch.
      abstract_batch: a tree of `jax.ShapeDtypeStruct` matching one transformed batch.
      seed: seed of the key sequence used by `next()`.
      transform: optional jit-able function applied to every batch.
    """

    def __init__(
        self,
        loader: ArrayLoader,
        batch_size: int,
        abstract_batch: Any,
        *,
        seed: int = 0,
        transform: Callable[[Batch], Batch] | None = None,
    ) -> None:
        self.batch_size = check_positive_int(batch_size, type(self).__name__, "batch_size")
        self._loader = loader
        self.transform = transform
        self._key = jax.random.PRNGKey(seed)
        self.abstract_batch = abstract_batch
        self._unloaded()

    def _unloaded(self) -> None:
        """The state that is never pickled: no arrays yet and a fresh lock."""
        self._loaded: ArraySplit | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """The loader and the configuration only: the copy reads the arrays itself."""
        return {
            "batch_size": self.batch_size,
            "_loader": self._loader,
            "transform": self.transform,
            "_key": np.asarray(self._key),
            "abstract_batch": self.abstract_batch,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._key = jnp.asarray(state["_key"])
        self._unloaded()

    def _materialize(self) -> ArraySplit:
        with self._lock:
            if self._loaded is None:
                # jax.ensure_compile_time_eval: the first access may happen while tracing,
                # and the arrays must become concrete device constants, not tracers.
                with jax.ensure_compile_time_eval():
                    self._loaded = ArraySplit(
                        self._loader(), self.batch_size, transform=self.transform
                    )
            return self._loaded

    def array_owner(self) -> ArraySplit:
        """The loaded split (read on first use): `sample` and `next()` read its arrays."""
        return self._materialize()

    @property
    def loaded(self) -> bool:
        """Whether the arrays have been read yet."""
        return self._loaded is not None

    @property
    def arrays(self) -> dict[str, jax.Array]:  # type: ignore[override]
        """The split's arrays on device (read on first access)."""
        return self._materialize().arrays

    @property
    def num_examples(self) -> int:  # type: ignore[override]
        """Number of examples in the split (reads the data on first access)."""
        return self._materialize().num_examples


def abstract_image_batch(batch_size: int, image_shape: tuple[int, int, int]) -> dict:
    """The abstract batch `{"image": f32 (B, H, W, C), "label": i32 (B,)}`."""
    return {
        "image": jax.ShapeDtypeStruct((batch_size, *image_shape), jnp.float32),
        "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
    }


def lazy_datasets(
    load_split: Callable[[str], Mapping[str, Any]],
    batch_size: int,
    abstract_batch: Any,
    extra_info: Mapping[str, Any],
    *,
    seed: int = 0,
    transform: Callable[[Batch], Batch] | None = None,
) -> Datasets:
    """Builds `Datasets` of four `LazyArraySplit`s; `load_split(name)` reads one split.

    Each split gets its own `next()` seed derived from `seed`, so iteration over
    different splits does not repeat the same indices.
    """
    splits = {}
    for i, name in enumerate(SPLITS):
        splits[name] = LazyArraySplit(
            functools.partial(load_split, name),
            batch_size,
            abstract_batch,
            seed=seed * 4 + i,
            transform=transform,
        )
    return Datasets(**splits, extra_info=extra_info, abstract_batch=abstract_batch)
