"""Named scalars recorded from inside jitted code: the reference's `summary` module.

Task, learned-optimizer and estimator code calls `summary(name, value)` anywhere,
including inside `jit`, `lax.scan`, `vmap` and `grad`. A call does nothing unless
the code is traced while recording is on; then it adds a host callback that hands
the value to every open `Collector`. Recording is switched on for one function by
`with_summary_output_reduced(fn)` (or `add_with_summary(fn)` and
`with_summary=True`), and lopt's gradient estimators switch it on when
`compute_gradient_estimate(..., with_summary=True)` is called; their metrics
then hold the aggregated summaries beside their own. Metric writers write them
like any other metric.

Each recorded name is a key `"<aggregation>||<scope>/<name>"`. Values recorded
under one key (by a loop, by vmapped copies, or by several calls) are combined by
the aggregation: "mean" (the mean over every element of every value), "sample" (one
element drawn with an explicit key), "collect" (all elements, flattened), "tensor"
(the one value as it is) or "none" (the one scalar value).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jax import lax
  >>> def f(x):
  ...     summary("first", x[0])
  ...     def body(c, _):
  ...         summary("carry", c)
  ...         return c + 1.0, None
  ...     return lax.scan(body, x[0], None, length=4)[0]
  >>> out, metrics = with_summary_output_reduced(f)(jnp.arange(3.0))
  >>> float(out), {k: float(v) for k, v in metrics.items()}
  (4.0, {'mean||first': 0.0, 'mean||carry': 1.5})

Differences from the reference, which harvests values with oryx (oryx does not
run on current JAX):
- values leave the program through host callbacks, so the wrapped function runs
  on concrete arguments (call `with_summary_output_reduced(fn)` outside `jit`;
  it jits `fn` itself) and the metrics are NumPy arrays, not traced outputs;
- a function that is jitted on its own and was already traced without recording
  keeps that trace when called inside the wrapped function (JAX reuses it), so
  its summaries appear only from traces made while recording;
- a repeated name is not renamed with a `___N` suffix: its values are combined.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lopt_core.validation import check_choice

__all__ = [
    "AggregationType",
    "Collector",
    "add_with_summary",
    "aggregate_metric",
    "aggregate_metric_list",
    "collecting",
    "current_summary_prefix",
    "is_recording",
    "recording",
    "summarize_inner_params",
    "summary",
    "summary_decorator",
    "summary_scope",
    "tree_scalar_mean",
    "tree_step",
    "with_summary_output_reduced",
]


class AggregationType(enum.StrEnum):
    """How the values recorded under one name are combined."""

    mean = "mean"
    sample = "sample"
    collect = "collect"
    none = "none"
    tensor = "tensor"


_AGGREGATIONS = tuple(a.value for a in AggregationType)


class _TraceState(threading.local):
    """Per-thread trace-time state: whether recording is on, and the name scopes."""

    def __init__(self) -> None:
        self.depth = 0
        self.scopes: list[str] = []


_trace = _TraceState()
_collectors: list[Collector] = []
_collectors_lock = threading.Lock()


@contextlib.contextmanager
def recording(enabled: bool = True) -> Iterator[None]:
    """Trace-time switch: `summary` calls traced inside this block record values.

    Use it inside the body of a function that is jitted with the switch as a
    static argument, so that the traces with and without summaries are cached
    apart (lopt's estimators do this).
    """
    if not enabled:
        yield
        return
    _trace.depth += 1
    try:
        yield
    finally:
        _trace.depth -= 1


def is_recording() -> bool:
    """True while code is traced (or run) with recording on."""
    return _trace.depth > 0


def current_summary_prefix() -> str:
    """The `/`-joined scopes that prefix the names recorded now."""
    return "/".join(_trace.scopes)


@contextlib.contextmanager
def summary_scope(prefix: str) -> Iterator[None]:
    """Prefixes every name recorded inside the block with `prefix/` (no-op if empty)."""
    if not prefix:
        yield
        return
    _trace.scopes.append(prefix)
    try:
        yield
    finally:
        _trace.scopes.pop()


def summary_decorator(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that runs the wrapped function inside `summary_scope(name)`."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with summary_scope(name):
                return fn(*args, **kwargs)

        return wrapped

    return decorate


class Collector:
    """Receives the values that recorded summaries emit while it is open."""

    def __init__(self) -> None:
        self.values: dict[str, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def add(self, key: str, value: Any) -> None:
        """Appends one emitted value under `key` ("<aggregation>||<name>")."""
        with self._lock:
            self.values.setdefault(key, []).append(np.asarray(value))

    def metrics(self, key: jax.Array | None = None) -> dict[str, Any]:
        """The aggregated values, one per key; `key` seeds the "sample" aggregation."""
        with self._lock:
            items = list(self.values.items())
        keys = list(jax.random.split(key, len(items))) if key is not None else [None] * len(items)
        return {k: aggregate_metric(k, vs, key=ki) for (k, vs), ki in zip(items, keys)}


@contextlib.contextmanager
def collecting() -> Iterator[Collector]:
    """Opens a `Collector`; on exit it waits for every pending callback to arrive."""
    collector = Collector()
    with _collectors_lock:
        _collectors.append(collector)
    try:
        yield collector
    finally:
        jax.effects_barrier()
        with _collectors_lock:
            _collectors.remove(collector)


def _emit(key: str, value: Any) -> None:
    with _collectors_lock:
        targets = list(_collectors)
    for collector in targets:
        collector.add(key, value)


def summary(name: str, val: Any, aggregation: str | AggregationType = "mean") -> Any:
    """Records `val` under `name` when traced with recording on; returns `val`.

    Args:
      name: the summary's name; the open `summary_scope`s prefix it.
      val: an array (traced or concrete).
      aggregation: how values recorded under this name are combined: "mean",
        "sample", "collect", "tensor" or "none".

    Raises:
      TypeError: `name` is not a string (the reference swapped the argument order
        in 2022; the name comes first).
      ValueError: `name` contains "||", or the aggregation is unknown.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"summary: name must be a string, got {type(name).__name__}. "
            "Call summary(name, value): the name comes first."
        )
    if "||" in name:
        raise ValueError(f"summary: name {name!r} contains '||', which separates the aggregation.")
    agg = aggregation.value if isinstance(aggregation, AggregationType) else aggregation
    check_choice(agg, "summary", "aggregation", _AGGREGATIONS)
    if not is_recording():
        return val
    full = "/".join([*_trace.scopes, name])
    jax.debug.callback(functools.partial(_emit, f"{agg}||{full}"), val)
    return val


def aggregate_metric(
    k: str, vs: Sequence[Any], use_jnp: bool = False, key: jax.Array | None = None
) -> Any:
    """Combines the values `vs` recorded under key `k` by the key's aggregation.

    A key without "||" (an estimator's own metric) is averaged like "mean".

    Raises:
      ValueError: "sample" without a `key`, "tensor" or "none" with more than one
        value, "none" with a non-scalar value, or an unknown aggregation.
    """
    xnp = jnp if use_jnp else np
    agg = k.split("||", 1)[0] if "||" in k else "mean"
    arrays = [xnp.asarray(v) for v in vs]
    if not arrays:
        raise ValueError(f"aggregate_metric: no values recorded for {k!r}.")
    if agg == "mean":
        size = sum(int(np.prod(np.shape(v))) for v in arrays)
        return sum(xnp.sum(v) for v in arrays) / size
    if agg == "sample":
        if key is None:
            raise ValueError(
                f"aggregate_metric: {k!r} uses the sample aggregation, which draws a "
                "random element; pass key=jax.random.key(...)."
            )
        flat = xnp.concatenate([v.ravel() for v in arrays])
        i = jax.random.randint(key, (), 0, flat.shape[0])
        return flat[i] if use_jnp else flat[int(i)]
    if agg == "collect":
        return xnp.concatenate([v.ravel() for v in arrays])
    if agg in ("tensor", "none"):
        if len(arrays) != 1:
            raise ValueError(
                f"aggregate_metric: {k!r} uses the {agg!r} aggregation, which takes exactly "
                f"one value, but {len(arrays)} were recorded. Record it once, or use "
                "'mean' or 'collect'."
            )
        if agg == "none":
            if arrays[0].size != 1:
                raise ValueError(
                    f"aggregate_metric: {k!r} uses the 'none' aggregation, which takes one "
                    f"scalar, got shape {arrays[0].shape}. Use 'tensor' for arrays."
                )
            return xnp.reshape(arrays[0], ())
        return arrays[0]
    raise ValueError(
        f"aggregate_metric: unknown aggregation {agg!r} in {k!r}; expected one of {_AGGREGATIONS}."
    )


def aggregate_metric_list(
    metric_list: Sequence[Mapping[str, Any]],
    use_jnp: bool = False,
    key: jax.Array | None = None,
) -> dict[str, Any]:
    """Merges several metric dicts (say, one per worker) into one, key by key."""
    grouped: dict[str, list[Any]] = {}
    for metrics in metric_list:
        for k, v in metrics.items():
            grouped.setdefault(k, []).append(v)
    keys = list(jax.random.split(key, len(grouped))) if key is not None else [None] * len(grouped)
    return {
        k: aggregate_metric(k, vs, use_jnp=use_jnp, key=ki)
        for (k, vs), ki in zip(grouped.items(), keys)
    }


def _has_tracer(tree: Any) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


def with_summary_output_reduced(
    fn: Callable[..., Any], static_argnums: Sequence[int] = ()
) -> Callable[..., tuple[Any, dict[str, Any]]]:
    """Wraps `fn` to return `(fn's output, aggregated summaries)`.

    The wrapper jits `fn` with recording on and collects what its summaries emit.
    Pass `sample_rng_key=` when a summary uses the "sample" aggregation.

    Raises:
      ValueError: the wrapper is called inside a JAX transformation (wrap the
        function from outside `jit`/`vmap`), or a "sample" summary has no key.
    """
    static = tuple(static_argnums)

    def recorded(*args: Any, **kwargs: Any) -> Any:
        with recording():
            return fn(*args, **kwargs)

    jitted = jax.jit(recorded, static_argnums=static)

    @functools.wraps(fn)
    def wrapped(*args: Any, sample_rng_key: jax.Array | None = None, **kwargs: Any) -> Any:
        if _has_tracer((args, kwargs)):
            raise ValueError(
                "with_summary_output_reduced: the wrapped function was called inside a JAX "
                "transformation; summaries leave through host callbacks, so wrap from "
                "outside: jax.jit inside, with_summary_output_reduced(fn) outside."
            )
        with collecting() as collector:
            out = jax.block_until_ready(jitted(*args, **kwargs))
        return out, collector.metrics(sample_rng_key)

    return wrapped


def add_with_summary(
    fn: Callable[..., Any], static_argnums: Sequence[int] = ()
) -> Callable[..., tuple[Any, dict[str, Any]]]:
    """Adds a `with_summary=False` keyword: the wrapped function returns `(out, metrics)`.

    With `with_summary=True` the metrics hold the aggregated summaries (see
    `with_summary_output_reduced`); otherwise they are an empty dict and `fn`
    runs as it is.
    """
    reduced = with_summary_output_reduced(fn, static_argnums)

    @functools.wraps(fn)
    def wrapped(*args: Any, with_summary: bool = False, **kwargs: Any) -> Any:
        if with_summary:
            return reduced(*args, **kwargs)
        kwargs.pop("sample_rng_key", None)
        return fn(*args, **kwargs), {}

    return wrapped


def tree_scalar_mean(prefix: str, values: Any) -> None:
    """Records the mean of every leaf of `values` as `prefix/<leaf index>`."""
    for i, leaf in enumerate(jax.tree_util.tree_leaves(values)):
        summary(f"{prefix}/{i}", jnp.mean(leaf))


def tree_step(prefix: str, values: Any) -> None:
    """Records the mean absolute value of every leaf as `prefix/<i>_avg_step_size`."""
    for i, leaf in enumerate(jax.tree_util.tree_leaves(values)):
        summary(f"{prefix}/{i}_avg_step_size", jnp.mean(jnp.abs(leaf)))


def summarize_inner_params(params: Any) -> None:
    """Records the mean and mean absolute value of every parameter, by its path."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        name = "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path) or "params"
        summary(f"{name}/mean", jnp.mean(leaf))
        summary(f"{name}/mean_abs", jnp.mean(jnp.abs(leaf)))
