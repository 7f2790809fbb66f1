"""Datasets: four iterators of batches, and an in-memory split that draws batches from keys.

In-memory data reaches compiled code as arguments, never as constants: an
`ArraySplit` is a pytree whose leaves are its arrays, and `jit_with_data` jits a
function so that the splits it reads (through its static arguments or its
closure, such as a task's `datasets.sample(split, key)`) are passed to the
compiled program as arguments. Compile time and executable size then do not grow
with the data, and one executable serves every split of the same shapes.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import types
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from lopt_core.typing import Batch, PRNGKey

SPLITS = ("train", "inner_valid", "outer_valid", "test")


#: The arrays that stand for a split while a `jit_with_data` function is traced:
#: id(split) -> the traced arrays (see `bind_arrays`).
_BOUND: contextvars.ContextVar[Mapping[int, Mapping[str, Any]] | None] = contextvars.ContextVar(
    "lopt_bound_arrays", default=None
)


@jax.tree_util.register_pytree_node_class
class ArraySplit:
    """One split of a dataset that fits in memory: arrays on device, batches from keys.

    The arrays live on the device. `sample(key)` draws a batch (with replacement)
    and can be called inside `jit`, so the same key always gives the same batch and
    an inner loop never returns to Python for data. Iterating (`next(split)`) draws
    from an internal key sequence seeded by `seed`, so iteration is reproducible too.

    A split is a pytree whose leaves are its arrays (the batch size and the
    transform are static), so `jax.jit(lambda split, key: split.sample(key))` takes
    the data as an argument. Functions jitted with `jit_with_data` (every jitted
    function of lopt-outer) pass the splits they read as arguments by themselves.

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
        self.abstract_batch = jax.eval_shape(_sample, self, jax.random.PRNGKey(0))

    def tree_flatten(self) -> tuple[tuple[dict[str, Any]], tuple[Any, ...]]:
        """Leaves: the arrays. Static: the batch size, the example count, the transform."""
        return (dict(self.arrays),), (self.batch_size, self.num_examples, self.transform)

    @classmethod
    def tree_unflatten(cls, aux: tuple[Any, ...], children: tuple[Any, ...]) -> ArraySplit:
        """A split over `children`'s arrays (tracers inside `jit`), for `sample` only."""
        split = object.__new__(ArraySplit)
        split.batch_size, split.num_examples, split.transform = aux
        split.arrays = children[0]
        return split

    def __getstate__(self) -> dict[str, Any]:
        """The arrays as numpy and the configuration.

        So a split crosses process boundaries (`pickle`, Ray's object store) without
        device buffers, and the copy continues the same `next()` key sequence.
        """
        state = dict(self.__dict__)
        state["arrays"] = {k: np.asarray(v) for k, v in self.arrays.items()}
        state["_key"] = np.asarray(self._key)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.arrays = {k: jnp.asarray(v) for k, v in state["arrays"].items()}
        self._key = jnp.asarray(state["_key"])

    def current_arrays(self) -> Mapping[str, Any]:
        """The arrays `sample` reads: the traced ones while bound (`bind_arrays`), else its own."""
        owner = self.array_owner()
        return (_BOUND.get() or {}).get(id(owner), owner.arrays)

    def sample(self, key: PRNGKey) -> Batch:
        """Draws one batch from `key`; pure and jit-able."""
        arrays = self.current_arrays()
        idx = jax.random.randint(key, (self.batch_size,), 0, self.num_examples)
        batch = {k: jnp.take(v, idx, axis=0) for k, v in arrays.items()}
        return self.transform(batch) if self.transform is not None else batch

    def array_owner(self) -> ArraySplit:
        """The split whose arrays `sample` reads (itself; a lazy split's loaded copy)."""
        return self

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        self._key, key = jax.random.split(self._key)
        return _sample_jit(self.array_owner(), key)


def _sample(split: ArraySplit, key: PRNGKey) -> Batch:
    return split.sample(key)


# One compiled `next()` per batch shape and transform, with the arrays as arguments.
_sample_jit = jax.jit(_sample)


@contextlib.contextmanager
def bind_arrays(
    splits: Sequence[ArraySplit], arrays: Sequence[Mapping[str, Any]]
) -> Iterator[None]:
    """While active, `splits[i].sample` reads `arrays[i]` (tracers) instead of its own arrays.

    `jit_with_data` binds the traced arguments this way, so code that samples a
    split it closes over (`task.datasets.sample(...)`) reads the arguments.

    Raises:
      ValueError: `splits` and `arrays` differ in length.
    """
    if len(splits) != len(arrays):
        raise ValueError(
            f"bind_arrays: got {len(splits)} splits but {len(arrays)} array mappings; "
            "pass one mapping per split, in the same order."
        )
    bound = {**(_BOUND.get() or {}), **{id(s): a for s, a in zip(splits, arrays)}}
    token = _BOUND.set(bound)
    try:
        yield
    finally:
        _BOUND.reset(token)


# Leaves of the object graph that cannot hold a split: never walked into.
_ATOMS = (
    str,
    bytes,
    bytearray,
    int,
    float,
    complex,
    bool,
    type(None),
    type,
    types.ModuleType,
    np.ndarray,
    np.generic,
    jax.Array,
    jax.ShapeDtypeStruct,
    range,
)


def array_splits(*roots: Any) -> tuple[ArraySplit, ...]:
    """The in-memory splits reachable from `roots`, in a fixed order, each once.

    Walks as `reachable` does, closures and named module-level values included; a
    lazily loaded split is loaded and its loaded copy returned
    (`ArraySplit.array_owner`).
    """
    found: dict[int, ArraySplit] = {}
    for _, split in reachable(roots, lambda o: isinstance(o, ArraySplit)):
        owner = split.array_owner()
        found.setdefault(id(owner), owner)
    return tuple(found.values())


def reachable(
    root: Any, match: Callable[[Any], bool], *, code: bool = True
) -> list[tuple[str, Any]]:
    """Every object reachable from `root` for which `match` is true, with its path, each once.

    The one object-graph walk of lopt (the data `jit_with_data` passes, the streamed
    splits a checkpoint records). Depth first through containers (`[i]`, `[key]`),
    dataclass fields, `__dict__` and `__slots__` attributes (`.name`; a `datasets`
    attribute first), and, with `code`, functions' closures (`.<closure>.name`),
    the module-level values their code names (`.<global>.name`), bound methods and
    `functools.partial`s. A matched object is not walked into; arrays, scalars,
    modules, classes and JAX's or NumPy's own objects are never walked.

    Returns:
      `(path, object)` pairs in the walk's order, the path relative to `root`
      (`gradient_estimators[0].truncated_step.task_family.datasets.train`, say).
    """
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        path, obj = stack.pop()
        if isinstance(obj, _ATOMS) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if match(obj):
            found.append((path.lstrip("."), obj))
            continue
        if type(obj).__module__.startswith(("jax", "jaxlib", "numpy")):
            continue
        children = _children(obj, code)
        stack.extend((path + suffix, child) for suffix, child in reversed(children))
    return found


def _children(obj: Any, code: bool) -> list[tuple[str, Any]]:
    if isinstance(obj, (list, tuple)):
        return [(f"[{i}]", v) for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        return [("[*]", v) for v in obj]
    if isinstance(obj, Mapping):
        return [(f"[{k!r}]", v) for k, v in obj.items()]
    if isinstance(obj, (types.FunctionType, types.MethodType, functools.partial)):
        if not code:
            return []
        if isinstance(obj, functools.partial):
            return [(".func", obj.func), (".args", obj.args), (".keywords", obj.keywords)]
        if isinstance(obj, types.MethodType):
            return [(".__self__", obj.__self__), (".__func__", obj.__func__)]
        cells = zip(obj.__code__.co_freevars, obj.__closure__ or ())
        return [(f".<closure>.{n}", c.cell_contents) for n, c in cells if _filled(c)] + [
            (f".<global>.{n}", v) for n, v in _referenced_globals(obj)
        ]
    named: dict[str, Any] = {}
    if dataclasses.is_dataclass(obj):
        named.update((f.name, getattr(obj, f.name, None)) for f in dataclasses.fields(obj))
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict):
        named.update((k, v) for k, v in attrs.items() if isinstance(k, str))
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            named.setdefault(name, getattr(obj, name, None))
    return sorted(((f".{k}", v) for k, v in named.items()), key=lambda kv: kv[0] != ".datasets")


def _referenced_globals(fn: types.FunctionType) -> list[tuple[str, Any]]:
    """The global values `fn`'s code (and the code nested in it) names, but for code itself.

    Functions, classes and modules are left out: what a module-level object holds
    counts only where the function names that object.
    """
    names: set[str] = set()
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    skip = (types.FunctionType, types.BuiltinFunctionType, type, types.ModuleType)
    values = ((n, fn.__globals__.get(n)) for n in sorted(names))
    return [(n, v) for n, v in values if v is not None and not isinstance(v, skip)]


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


class _DataJit:
    """`jax.jit` of a function whose in-memory splits are passed as arguments.

    See `jit_with_data`.
    """

    def __init__(
        self,
        fun: Callable[..., Any],
        static_argnums: Any,
        static_argnames: Any,
        jit_kwargs: dict[str, Any],
    ) -> None:
        nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
        if any(not isinstance(i, int) or i < 0 for i in nums):
            raise ValueError(
                f"jit_with_data: static_argnums must be non-negative ints; got {static_argnums!r}."
            )
        names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
        self._fun = fun
        self._nums, self._names = nums, names
        self._found: dict[tuple[int, ...], tuple[tuple[Any, ...], tuple[ArraySplit, ...]]] = {}
        self._jitted = jax.jit(
            self._with_data,
            static_argnums=tuple(i + 1 for i in nums),
            static_argnames=names,
            **jit_kwargs,
        )
        functools.update_wrapper(self, fun)

    def _static_roots(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(args[i] for i in self._nums if i < len(args)) + tuple(
            kwargs[n] for n in self._names if n in kwargs
        )

    def splits(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[ArraySplit, ...]:
        """The splits read by a call with these (static) arguments; cached per their identity."""
        roots = self._static_roots(args, kwargs)
        key = tuple(map(id, roots))
        hit = self._found.get(key)
        if hit is None or any(a is not b for a, b in zip(hit[0], roots)):
            hit = (roots, array_splits(self._fun, *roots))
            if len(self._found) >= 64:
                self._found.pop(next(iter(self._found)))
            self._found[key] = hit
        return hit[1]

    def _with_data(self, data: tuple[Any, ...], *args: Any, **kwargs: Any) -> Any:
        with bind_arrays(self.splits(args, kwargs), data):
            return self._fun(*args, **kwargs)

    def _data(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(dict(s.current_arrays()) for s in self.splits(args, kwargs))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._jitted(self._data(args, kwargs), *args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        """`jax.jit(...).lower` of the call, with the data among the arguments."""
        return self._jitted.lower(self._data(args, kwargs), *args, **kwargs)

    def _cache_size(self) -> int:
        return int(self._jitted._cache_size())  # type: ignore[attr-defined]


def jit_with_data(
    fun: Callable[..., Any],
    *,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    **jit_kwargs: Any,
) -> Callable[..., Any]:
    """`jax.jit(fun, ...)` that passes the in-memory splits `fun` reads as arguments.

    The splits are found in `fun`'s closure and its static arguments (a task, a
    task family, a truncated step, an estimator: anything that holds `Datasets`),
    once per identity of the static arguments. Each call passes their current
    arrays, and while `fun` is traced their `sample` reads the traced arguments
    (`bind_arrays`). So the compiled program holds no data: its compile time and
    size do not depend on the data's size, and equal configurations over other
    data of the same shapes share one executable. Plain iterators are untouched.

    Args:
      fun: the function.
      static_argnums, static_argnames: as `jax.jit`'s (non-negative positions).
      **jit_kwargs: the rest of `jax.jit`'s arguments (`compiler_options`, ...).

    Example:
      >>> split = ArraySplit({"x": np.arange(10.0)}, batch_size=4)
      >>> f = jit_with_data(lambda key: split.sample(key)["x"].sum())
      >>> float(f(jax.random.PRNGKey(0))) == float(split.sample(jax.random.PRNGKey(0))["x"].sum())
      True
    """
    return _DataJit(fun, static_argnums, static_argnames, jit_kwargs)


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
