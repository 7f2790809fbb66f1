"""Helpers shared by the truncated steps and gradient estimators."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import lopt_core
from lopt_core.typing import PRNGKey

# XLA:CPU's default backend level (3) spends most of a meta-training step's compile
# time in LLVM; level 1 measured ~1.8x less compile time (7.3 s -> 4.1 s CPU for the
# W5 PES step) and no slower steps on the learned-optimizer workloads here. The
# option is XLA:CPU's trade only: on a GPU or TPU backend lopt passes no compiler
# options, so the generated code is XLA's default there (see `compiler_options`).
COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


# Functions that run once (inits) or are tiny (the meta-optimizer step) gain nothing
# from LLVM optimisation; level 0 roughly halves their compile time.
ONCE_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def compiler_options(options: dict[str, Any], backend: str) -> dict[str, Any] | None:
    """The compiler options lopt passes on `backend`: `options` on "cpu", none elsewhere."""
    return dict(options) if backend == "cpu" else None


class _JitWithOptions:
    """lopt's jit: data as arguments, compiler options on CPU at top level, composable.

    It is `lopt_core.jit_with_data` (the in-memory splits the function reads are
    passed as arguments, so programs hold no data). JAX accepts compiler options
    only on a top-level jit, and they are XLA:CPU's (`compiler_options`); called
    under another transformation (a user's `jax.jit`, `jax.eval_shape`, ...) the
    function is traced by a plain jit instead, so it still composes.
    """

    def __init__(self, fun: Any, options: dict[str, Any], **kwargs: Any) -> None:
        self._fun, self._options, self._kwargs = fun, options, kwargs
        self._plain = lopt_core.jit_with_data(fun, **kwargs)
        self._top: Any = None
        functools.update_wrapper(self, fun)

    @property
    def _fast(self) -> Any:
        # Built on first use: asking for the backend at import would start JAX's backend.
        if self._top is None:
            options = compiler_options(self._options, jax.default_backend())
            self._top = (
                self._plain
                if options is None
                else lopt_core.jit_with_data(self._fun, compiler_options=options, **self._kwargs)
            )
        return self._top

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            return self._plain(*args, **kwargs)
        return self._fast(*args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        """Lowers the top-level (optioned) version, as `jax.jit(...).lower`."""
        return self._fast.lower(*args, **kwargs)

    def _cache_size(self) -> int:
        return int(self._fast._cache_size())


class _ByIdentity:
    """A static-argument handle for an unhashable component: hashed and compared by identity."""

    __slots__ = ("component",)

    def __init__(self, component: Any) -> None:
        self.component = component


def static_arg(component: Any) -> Any:
    """`component` as a static `jit` argument.

    A hashable component is its own handle, so equal configurations share one
    compiled function. One whose configuration holds an unhashable value (a task
    family that is a plain, non-frozen dataclass, say) gets a handle hashed by
    identity, kept on the component so every call finds the same compiled code.
    """
    try:
        hash(component)
    except TypeError:
        return component.__dict__.setdefault("_lopt_static_handle", _ByIdentity(component))
    return component


def from_static_arg(handle: Any) -> Any:
    """The component behind a `static_arg` handle."""
    return handle.component if isinstance(handle, _ByIdentity) else handle


def set_field(component: Any, name: str, value: Any) -> None:
    """Stores a normalised argument (`5` for `5.0`, say) on a frozen component in `__post_init__`."""
    object.__setattr__(component, name, value)


def jit(fun: Any, **kwargs: Any) -> Any:
    """`jax.jit` with lopt-outer's compiler options (see `COMPILER_OPTIONS`)."""
    return _JitWithOptions(fun, COMPILER_OPTIONS, **kwargs)


def jit_once(fun: Any, **kwargs: Any) -> Any:
    """`jax.jit` for functions whose speed does not matter, only their compile time."""
    return _JitWithOptions(fun, ONCE_COMPILER_OPTIONS, **kwargs)


@jax.jit
def tree_mean_of(trees: Any) -> Any:
    """Leaf-wise mean of a list of trees of the same structure (one jitted call)."""
    return jax.tree_util.tree_map(lambda *xs: sum(xs) / len(xs), *trees)


@functools.partial(jax.jit, static_argnums=(1,))
def split_jit(key: PRNGKey, num: int) -> tuple[PRNGKey, ...]:
    """`jax.random.split` as one jitted call returning a tuple (no eager unstacking)."""
    return tuple(jax.random.split(key, num))


def strong(tree: Any) -> Any:
    """Drops JAX's weak types from every leaf, keeping the dtype.

    A weak-typed scalar (say `jnp.asarray(0.0)`) and a strong one of the same
    dtype are different jit signatures; states that come back from a jitted update
    are strong, so making initial states strong too means the second call hits
    the compilation cache.
    """

    def one(x: Any) -> Any:
        if x is None:
            return x
        arr = jnp.asarray(x)
        return jnp.asarray(arr, dtype=arr.dtype)

    return jax.tree_util.tree_map(one, tree)


def match_dtypes(like: Any, tree: Any) -> Any:
    """Casts every leaf of `tree` to the dtype of the matching leaf of `like`."""
    return jax.tree_util.tree_map(
        lambda a, b: jnp.asarray(b).astype(jnp.result_type(a)), like, tree
    )


def masked_mean(values: jax.Array, mask: jax.Array, axis: int = 0) -> jax.Array:
    """Mean of `values` over `axis` counting only entries where `mask` is True.

    Where a column has no valid entry the result is 0 (not NaN), so a task that was
    reset for a whole unroll contributes nothing.
    """
    mask = mask.astype(values.dtype)
    total = jnp.sum(values * mask, axis=axis)
    count = jnp.sum(mask, axis=axis)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)


def scale_per_task(coef: jax.Array, tree: Any) -> Any:
    """`coef[i] * tree[i]` for every leaf with a leading task axis."""
    return jax.tree_util.tree_map(
        lambda x: x * coef.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype), tree
    )


def tree_stack(trees: list[Any]) -> Any:
    """Stacks trees leaf-wise along a new leading axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def tree_index(tree: Any, i: int) -> Any:
    """`tree[i]` for every leaf."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def host_batches(datasets: Any, split: str, shape: tuple[int, ...]) -> Any:
    """`prod(shape)` batches of `split` from the Python iterators, stacked to leading `shape`.

    Stacked with numpy on the host, so the whole block is one device transfer later.
    """
    it = datasets.split(split)
    flat = host_stack([next(it) for _ in range(int(np.prod(shape)))])
    return jax.tree_util.tree_map(lambda x: x.reshape(shape + x.shape[1:]), flat)


def host_stack(batches: list[Any]) -> Any:
    """Host batches stacked leaf-wise along a new leading axis, as NumPy arrays."""
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *batches)
