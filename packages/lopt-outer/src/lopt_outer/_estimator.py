"""Shared machinery of the unroll-based gradient estimators.

An estimate has three pure stages: `begin` (perturb theta, prepare states),
`chunk` (a `lax.scan` over inner steps) and `end` (turn losses into a gradient).
With `steps_per_jit == length` (the default) the three run as one jitted call per
outer step. With a smaller `steps_per_jit`, as in the reference library, `chunk`
is its own jitted call run `length // steps_per_jit` times; either way there is
no Python per inner step.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from lopt_core import (
    GradientEstimator,
    GradientEstimatorOut,
    PRNGKey,
    TruncatedStep,
    WorkerWeights,
)
from lopt_outer._common import check_positive_int, jit, jit_once, match_dtypes, split_jit, strong


def _data_from_keys(truncated_step: TruncatedStep) -> bool:
    """True when the step draws its own data inside jit (keyed datasets, or none at all)."""
    if not hasattr(truncated_step, "keyed"):
        return False
    return bool(truncated_step.keyed) or getattr(truncated_step, "datasets", None) is None


class UnrollEstimator(GradientEstimator):
    """Base of estimators that unroll a `TruncatedStep` for `length` steps per estimate.

    Subclasses implement `_init_state(theta, outer_state, key)`,
    `_begin(theta, key, state, outer_state) -> carry`,
    `_chunk(carry, key, datas, outer_state, n) -> (carry, ys)`, and
    `_end(theta, carry, ys, key, state, extra) -> (GradientEstimatorOut, metrics)`,
    and may override `_extra_data()` (host data `_end` needs, such as recompute
    batches).
    """

    def __init__(self, truncated_step: TruncatedStep, length: int, steps_per_jit: int | None):
        self.truncated_step = truncated_step
        self.length = check_positive_int("unroll length", length)
        self.steps_per_jit = (
            self.length
            if steps_per_jit is None
            else check_positive_int("steps_per_jit", steps_per_jit)
        )
        if self.length % self.steps_per_jit:
            raise ValueError(
                f"The unroll length ({self.length}) must be a multiple of steps_per_jit "
                f"({self.steps_per_jit})."
            )
        self._init_jit = jit_once(self._init_state)
        self._whole_jit = jit(self._whole)
        self._begin_jit = jit(self._begin)
        self._chunk_jit = jit(self._chunk, static_argnums=(4,))
        self._end_jit = jit(self._end)

    # -- subclass hooks --------------------------------------------------------
    def _init_state(self, theta: Any, outer_state: Any, key: PRNGKey) -> Any:
        raise TypeError(f"{type(self).__name__} must implement _init_state().")

    def _begin(self, theta: Any, key: PRNGKey, state: Any, outer_state: Any) -> Any:
        raise TypeError(f"{type(self).__name__} must implement _begin().")

    def _chunk(self, carry: Any, key: PRNGKey, datas: Any, outer_state: Any, n: int) -> Any:
        raise TypeError(f"{type(self).__name__} must implement _chunk().")

    def _end(self, theta: Any, carry: Any, ys: Any, key: PRNGKey, state: Any, extra: Any) -> Any:
        raise TypeError(f"{type(self).__name__} must implement _end().")

    def _extra_data(self) -> Any:
        return None

    # -- driver -----------------------------------------------------------------
    def _whole(self, theta: Any, key: PRNGKey, state: Any, datas: Any, outer_state: Any, extra):
        k_begin, k_chunk, k_end = jax.random.split(key, 3)
        carry = self._begin(theta, k_begin, state, outer_state)
        carry, ys = self._chunk(carry, k_chunk, datas, outer_state, self.length)
        out, metrics = self._end(theta, carry, ys, k_end, state, extra)
        return out.replace(unroll_state=match_dtypes(state, out.unroll_state)), metrics

    def warm_up(self, worker_weights: WorkerWeights, key: PRNGKey) -> bool:
        """Compiles the estimate ahead of time, from shapes alone, so it can overlap other work.

        Runs the jitted estimate once on zero-valued inputs shaped like the real
        ones (found with `jax.eval_shape`, so nothing here waits for the init's
        compilation) and discards the result; the real first call then finds the
        compiled code. Skipped when the estimate would consume data from Python
        iterators (that would shift the data stream) or runs in chunks.

        Returns:
          True when a compilation was done.
        """
        if self.steps_per_jit != self.length or not _data_from_keys(self.truncated_step):
            return False
        shapes = jax.eval_shape(
            self._init_state, worker_weights.theta, worker_weights.outer_state, key
        )
        state = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
        extra = self._extra_data()
        out = self._whole_jit(
            worker_weights.theta, key, state, None, worker_weights.outer_state, extra
        )
        jax.block_until_ready(out)
        return True

    def init_worker_state(self, worker_weights: WorkerWeights, key: PRNGKey) -> Any:
        """Initial worker state (the inner-training states), computed under jit."""
        return strong(self._init_jit(worker_weights.theta, worker_weights.outer_state, key))

    def compute_gradient_estimate(
        self,
        worker_weights: WorkerWeights,
        key: PRNGKey,
        state: Any,
        with_summary: bool = False,
    ) -> tuple[GradientEstimatorOut, dict[str, Any]]:
        """One gradient estimate: one jitted call (or one per `steps_per_jit` chunk).

        Args:
          worker_weights: theta and the outer state.
          key: random key.
          state: the worker state from `init_worker_state` or the previous estimate.
          with_summary: accepted for API compatibility; metrics are always returned.

        Returns:
          `(GradientEstimatorOut, metrics)`; metrics are scalar arrays.
        """
        del with_summary
        theta, outer_state = worker_weights.theta, worker_weights.outer_state
        extra = self._extra_data()
        if self.steps_per_jit == self.length:
            datas = self.truncated_step.get_batch(self.length)
            return self._whole_jit(theta, key, state, datas, outer_state, extra)
        k_begin, k_chunk, k_end = split_jit(key, 3)
        carry = self._begin_jit(theta, k_begin, state, outer_state)
        ys_list = []
        for k in split_jit(k_chunk, self.length // self.steps_per_jit):
            datas = self.truncated_step.get_batch(self.steps_per_jit)
            carry, ys = self._chunk_jit(carry, k, datas, outer_state, self.steps_per_jit)
            ys_list.append(ys)
        ys = jax.tree_util.tree_map(lambda *xs: jax.numpy.concatenate(xs), *ys_list)
        out, metrics = self._end_jit(theta, carry, ys, k_end, state, extra)
        return out.replace(unroll_state=match_dtypes(state, out.unroll_state)), metrics
