"""Shared machinery of the unroll-based gradient estimators.

An estimate has three pure stages: `begin` (perturb theta, prepare states),
`chunk` (a `lax.scan` over inner steps) and `end` (turn losses into a gradient).
By default (`steps_per_jit` None or the whole length) the three run as one jitted
call per outer step. With a smaller `steps_per_jit`, as in the reference library,
`chunk` is its own jitted call run `length // steps_per_jit` times; either way
there is no Python per inner step.

The jitted functions are module-level and take the estimator as a static
argument: estimators are frozen dataclasses, so two equal configurations share
one compiled function and a second estimate compiles nothing.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import Any

import flax
import jax
import numpy as np

import lopt_core
from lopt_core import GradientEstimator, GradientEstimatorOut, TruncatedStep, WorkerWeights, summary
from lopt_core.typing import PRNGKey
from lopt_core.validation import check_positive_int
from lopt_outer import sharding
from lopt_outer._common import (
    from_static_arg,
    jit,
    jit_once,
    match_dtypes,
    set_field,
    split_jit,
    static_arg,
    strong,
)

#: Folded into an estimate's key to draw the "sample" summaries' elements.
_SUMMARY_SAMPLE_SALT = 0x5A3


@flax.struct.dataclass
class GradientEstimatorState:
    """Base of the worker states the estimators keep between estimates (the reference's name).

    Empty: a state class derives from it (`FullESState`, `PESWorkerState`, ...)
    and adds its fields. A user-written estimator may use it, or any pytree.
    """


@functools.partial(jit_once, static_argnums=0)
def _init_jit(est: Any, theta: Any, outer_state: Any, key: PRNGKey) -> Any:
    est = from_static_arg(est)
    return _sharded(est, est._init_state(theta, outer_state, key))


def _sharded(est: Any, state: Any) -> Any:
    """A worker state kept split over the devices when the step shards its tasks (else as is)."""
    return sharding.constrain_worker_state(est.truncated_step, state)


def _sharded_out(est: Any, out_metrics: tuple) -> tuple:
    out, metrics = out_metrics
    state = _sharded(est, out.unroll_state)
    return out_metrics if state is out.unroll_state else (out.replace(unroll_state=state), metrics)


# The second static argument says whether the trace records `lopt_core.summary`
# values, so the programs with and without summaries are compiled and cached apart.
@functools.partial(jit, static_argnums=(0, 1))
def _whole_jit(est: Any, rec: bool, theta, key, state, datas, outer_state, extra) -> Any:
    est = from_static_arg(est)
    with summary.recording(rec):
        return _sharded_out(est, est._whole(theta, key, state, datas, outer_state, extra))


@functools.partial(jit, static_argnums=(0, 1))
def _begin_jit(est: Any, rec: bool, theta: Any, key: PRNGKey, state: Any, outer_state: Any) -> Any:
    with summary.recording(rec):
        return from_static_arg(est)._begin(theta, key, state, outer_state)


@functools.partial(jit, static_argnums=(0, 1))
def _chunk_jit(est: Any, rec: bool, carry: Any, key: PRNGKey, datas: Any, outer_state: Any) -> Any:
    est = from_static_arg(est)
    with summary.recording(rec):
        return est._chunk(carry, key, datas, outer_state, est.steps_per_jit)


@functools.partial(jit, static_argnums=(0, 1))
def _end_jit(est: Any, rec: bool, theta, carry, ys, key, state, outer_state, extra) -> Any:
    est = from_static_arg(est)
    with summary.recording(rec):
        return _sharded_out(est, est._end(theta, carry, ys, key, state, outer_state, extra))


@lopt_core.declare
class UnrollEstimator(GradientEstimator):
    """Base of estimators that unroll a `TruncatedStep` for `length` steps per estimate.

    A subclass is a declared component (`lopt_core.declare`) whose fields follow
    `truncated_step`. It implements `_init_state(theta, outer_state, key)` and
    either `_whole(theta, key, state, datas, outer_state, extra)` (the estimate as
    one function) or the three stages `_begin(theta, key, state, outer_state) ->
    carry`, `_chunk(carry, key, datas, outer_state, n) -> (carry, ys)` and
    `_end(theta, carry, ys, key, state, outer_state, extra) -> (out, metrics)`.
    It may override `_extra_data()` (host data `_end` needs, such as recompute
    batches) and `length` (the number of inner steps per estimate; `unroll_length`
    by default).
    """

    # field(): the interface's `truncated_step = None` must not become a default.
    truncated_step: TruncatedStep = dataclasses.field()
    # Fields of the subclasses that declare them: the unroll length (None: derived,
    # see `length`) and the inner steps per jitted call (None: the whole unroll).
    unroll_length = None
    steps_per_jit = None

    # A subclass writes `_whole`, or all three stages; instantiating one that does
    # neither names the missing methods (lopt_core.Interface).
    _either_of = (("_whole", "_begin"), ("_whole", "_chunk"), ("_whole", "_end"))

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if not isinstance(self.truncated_step, TruncatedStep):
            raise TypeError(
                f"{owner}: truncated_step must be a lopt_core.TruncatedStep (for example a "
                f"VectorizedLOptTruncatedStep), got {type(self.truncated_step).__name__}."
            )
        if self.unroll_length is not None:
            length = check_positive_int(self.unroll_length, owner, "unroll_length")
            set_field(self, "unroll_length", length)
        if self.steps_per_jit is not None:
            per_jit = check_positive_int(self.steps_per_jit, owner, "steps_per_jit")
            set_field(self, "steps_per_jit", per_jit)
            if self.length % per_jit:
                raise ValueError(
                    f"{owner}: the unroll length ({self.length}) must be a multiple of "
                    f"steps_per_jit ({per_jit})."
                )

    @property
    def length(self) -> int:
        """Inner steps per estimate."""
        return self.unroll_length

    @property
    def _chunked(self) -> bool:
        """True when the unroll runs as several jitted calls of `steps_per_jit` steps."""
        return self.steps_per_jit is not None and self.steps_per_jit != self.length

    # -- subclass hooks --------------------------------------------------------
    @abc.abstractmethod
    def _init_state(self, theta: Any, outer_state: Any, key: PRNGKey) -> Any:
        """The initial worker state."""

    def _extra_data(self) -> Any:
        return None

    # -- driver -----------------------------------------------------------------
    def _whole(self, theta: Any, key: PRNGKey, state: Any, datas: Any, outer_state: Any, extra):
        k_begin, k_chunk, k_end = jax.random.split(key, 3)
        carry = self._begin(theta, k_begin, state, outer_state)
        carry, ys = self._chunk(carry, k_chunk, datas, outer_state, self.length)
        out, metrics = self._end(theta, carry, ys, k_end, state, outer_state, extra)
        return out.replace(unroll_state=match_dtypes(state, out.unroll_state)), metrics

    def warm_up(self, worker_weights: WorkerWeights, key: PRNGKey) -> bool:
        """Compiles the estimate ahead of time, from shapes alone, so it can overlap other work.

        Lowers and compiles the jitted estimate for abstract inputs shaped like the
        real ones (`jax.eval_shape`: nothing here waits for the init's compilation),
        without running it: the real first call then finds the compiled code in
        JAX's cache. Nothing is executed, so a warm-up can never wait on a
        computation (the precompile thread once hung in `block_until_ready` on
        the throw-away run this used to do). Skipped when the estimate would
        consume data from Python iterators or runs in chunks.

        Returns:
          True when a compilation was done.
        """
        step = self.truncated_step
        data_from_keys = step.keyed or step.datasets is None
        if self._chunked or not data_from_keys:
            return False

        def abstract(tree: Any) -> Any:
            return jax.tree_util.tree_map(
                lambda x: jax.ShapeDtypeStruct(
                    np.shape(x), getattr(x, "dtype", None) or np.result_type(x)
                ),
                tree,
            )

        state = jax.eval_shape(
            self._init_state, worker_weights.theta, worker_weights.outer_state, key
        )
        _whole_jit.lower(
            static_arg(self),
            False,
            abstract(worker_weights.theta),
            abstract(key),
            abstract(state),
            None,
            abstract(worker_weights.outer_state),
            abstract(self._extra_data()),
        ).compile()
        return True

    def init_worker_state(self, worker_weights: WorkerWeights, key: PRNGKey) -> Any:
        """Initial worker state (the inner-training states), computed under jit."""
        theta, outer_state = worker_weights.theta, worker_weights.outer_state
        return strong(_init_jit(static_arg(self), theta, outer_state, key))

    def compute_gradient_estimate(
        self,
        worker_weights: WorkerWeights,
        key: PRNGKey,
        state: Any,
        with_summary: bool = False,
    ) -> tuple[GradientEstimatorOut, dict[str, Any]]:
        """One gradient estimate: one jitted call (or one per `steps_per_jit` chunk).

        The metrics (scalar arrays) are always returned. With `with_summary=True`
        the estimate is traced with `lopt_core.summary` recording on (a program
        compiled apart from the plain one), and the metrics also hold every
        summary that the task, the learned optimizer and the estimator recorded,
        aggregated, under `"<aggregation>||<name>"` keys.
        """
        if not with_summary:
            return self._estimate(worker_weights, key, state, False)
        with summary.collecting() as collector:
            out, metrics = jax.block_until_ready(self._estimate(worker_weights, key, state, True))
        recorded = collector.metrics(jax.random.fold_in(key, _SUMMARY_SAMPLE_SALT))
        return out, {**metrics, **recorded}

    def _estimate(
        self, worker_weights: WorkerWeights, key: PRNGKey, state: Any, rec: bool
    ) -> tuple[GradientEstimatorOut, dict[str, Any]]:
        me = static_arg(self)
        theta, outer_state = worker_weights.theta, worker_weights.outer_state
        extra = self._extra_data()
        if not self._chunked:
            datas = self.truncated_step.get_batch(self.length)
            return _whole_jit(me, rec, theta, key, state, datas, outer_state, extra)
        k_begin, k_chunk, k_end = split_jit(key, 3)
        carry = _begin_jit(me, rec, theta, k_begin, state, outer_state)
        ys_list = []
        for k in split_jit(k_chunk, self.length // self.steps_per_jit):
            datas = self.truncated_step.get_batch(self.steps_per_jit)
            carry, ys = _chunk_jit(me, rec, carry, k, datas, outer_state)
            ys_list.append(ys)
        ys = jax.tree_util.tree_map(lambda *xs: jax.numpy.concatenate(xs), *ys_list)
        out, metrics = _end_jit(me, rec, theta, carry, ys, k_end, state, outer_state, extra)
        return out.replace(unroll_state=match_dtypes(state, out.unroll_state)), metrics
