"""Truncation schedules: how many inner steps a task trains before it is reset.

Semantics follow learned_optimization's `outer_trainers/truncation_schedule.py`:
`next_state(state, step, key, outer_state)` is called after inner step `step`
(counted from 1) and reports `is_done = step >= length`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp

from lopt_core import OuterState, PRNGKey, TruncationSchedule
from lopt_outer._common import check_positive_int

__all__ = [
    "ConstantTruncationSchedule",
    "LogUniformLengthSchedule",
    "NeverEndingTruncationSchedule",
    "ScheduledTruncationSchedule",
    "TruncationState",
    "static_length",
]

# Long enough that no unroll ever reaches it, small enough for int32.
_NEVER = 2**30


@flax.struct.dataclass
class TruncationState:
    """State of a truncation schedule: the length of the current unroll (int32 scalar)."""

    length: jax.Array


def _length(x: Any) -> jax.Array:
    return jnp.asarray(x, dtype=jnp.int32)


class ConstantTruncationSchedule(TruncationSchedule):
    """Every unroll lasts exactly `total_length` inner steps.

    Args:
      total_length: number of inner steps before a task is reset.

    Example:
      >>> sched = ConstantTruncationSchedule(10)
      >>> state = sched.init(jax.random.PRNGKey(0), None)
      >>> bool(sched.next_state(state, 10, jax.random.PRNGKey(1), None)[1])
      True
    """

    def __init__(self, total_length: int) -> None:
        self.total_length = check_positive_int("total_length", total_length)

    def init(self, key: PRNGKey, outer_state: OuterState | None) -> TruncationState:
        """Returns the state holding `total_length`."""
        del key, outer_state
        return TruncationState(length=_length(self.total_length))

    def next_state(
        self, state: TruncationState, step: Any, key: PRNGKey, outer_state: OuterState | None
    ) -> tuple[TruncationState, jax.Array]:
        """`is_done` once `step` reaches the length; the state never changes."""
        del key, outer_state
        return state, jnp.asarray(step >= state.length)

    @property
    def max_length(self) -> int:
        """The longest unroll this schedule produces."""
        return self.total_length


class _RenewedLengthSchedule(TruncationSchedule):
    """A schedule whose next length comes from `init` each time an unroll finishes."""

    def next_state(
        self, state: TruncationState, step: Any, key: PRNGKey, outer_state: OuterState | None
    ) -> tuple[TruncationState, jax.Array]:
        """`is_done` once `step` reaches the length; then `init` gives the next length."""
        is_done = jnp.asarray(step >= state.length)
        fresh = self.init(key, outer_state)
        length = jnp.where(is_done, fresh.length, state.length)
        return TruncationState(length=length), is_done


class LogUniformLengthSchedule(_RenewedLengthSchedule):
    """Unroll lengths drawn log-uniformly in `[min_length, max_length)`; short unrolls are common.

    A new length is drawn every time an unroll finishes.

    Args:
      min_length: shortest unroll.
      max_length: longest unroll.
    """

    def __init__(self, min_length: int, max_length: int) -> None:
        self.min_length = check_positive_int("min_length", min_length)
        self.max_length = check_positive_int("max_length", max_length)
        if self.max_length < self.min_length:
            raise ValueError(
                f"max_length ({max_length}) must be at least min_length ({min_length})."
            )

    def init(self, key: PRNGKey, outer_state: OuterState | None) -> TruncationState:
        """Draws a length log-uniformly."""
        del outer_state
        log_len = jax.random.uniform(
            key,
            (),
            jnp.float32,
            minval=jnp.log(float(self.min_length)),
            maxval=jnp.log(float(self.max_length)),
        )
        return TruncationState(length=_length(jnp.exp(log_len)))


class NeverEndingTruncationSchedule(TruncationSchedule):
    """Unrolls never finish: tasks are trained forever and never reset."""

    def init(self, key: PRNGKey, outer_state: OuterState | None) -> TruncationState:
        """Returns a state whose length is effectively infinite (2**30)."""
        del key, outer_state
        return TruncationState(length=_length(_NEVER))

    def next_state(
        self, state: TruncationState, step: Any, key: PRNGKey, outer_state: OuterState | None
    ) -> tuple[TruncationState, jax.Array]:
        """Never done."""
        del step, key, outer_state
        return state, jnp.asarray(False)


class ScheduledTruncationSchedule(_RenewedLengthSchedule):
    """Unroll length is a function of the outer iteration, such as a growing curriculum.

    Args:
      schedule_fn: maps the outer iteration (an int32 scalar array) to a length;
        must be traceable by JAX (use `jnp` functions, not Python control flow).
      max_length: optional upper bound, used where an estimator needs a static
        length (FullES, FullGrad).

    Example:
      >>> sched = ScheduledTruncationSchedule(lambda it: 10 + it // 100)
    """

    def __init__(self, schedule_fn: Callable[[jax.Array], Any], max_length: int | None = None):
        if not callable(schedule_fn):
            raise TypeError(f"schedule_fn must be callable; got {type(schedule_fn).__name__}.")
        self.schedule_fn = schedule_fn
        self.max_length = (
            None if max_length is None else check_positive_int("max_length", max_length)
        )

    def init(self, key: PRNGKey, outer_state: OuterState | None) -> TruncationState:
        """Length = `schedule_fn(outer_state.outer_iteration)` (iteration 0 without an outer state)."""
        del key
        it = (
            jnp.asarray(0, jnp.int32)
            if outer_state is None
            else jnp.asarray(outer_state.outer_iteration, jnp.int32)
        )
        length = jnp.maximum(_length(self.schedule_fn(it)), 1)
        return TruncationState(length=length)


def static_length(schedule: TruncationSchedule) -> int:
    """The longest unroll of `schedule` as a Python int, for estimators that unroll fully.

    Raises:
      ValueError: the schedule has no finite static bound (NeverEnding, or a
        ScheduledTruncationSchedule built without `max_length`).
    """
    length = getattr(schedule, "max_length", None)
    if length is None or length >= _NEVER:
        raise ValueError(
            f"{type(schedule).__name__} has no static maximum length, which a full-unroll "
            "estimator needs; use ConstantTruncationSchedule(n) or pass max_length."
        )
    return int(length)
