"""Truncation schedules: how many inner steps a task trains before it is reset.

Semantics follow learned_optimization's `outer_trainers/truncation_schedule.py`:
`next_state(state, step, key, outer_state)` is called after inner step `step`
(counted from 1) and reports `is_done = step >= length`.

Schedules are declarations (`lopt_core.declare`): frozen dataclasses whose fields
are their configuration, so equal schedules compare and hash equal and can be
static `jit` arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp

import lopt_core
from lopt_core import OuterState, TruncationSchedule
from lopt_core.typing import PRNGKey
from lopt_core.validation import check_positive_int
from lopt_outer._common import set_field

__all__ = [
    "ConstantTruncationSchedule",
    "GrowingLogUniformSchedule",
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


@lopt_core.declare
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

    total_length: int

    def __post_init__(self) -> None:
        length = check_positive_int(self.total_length, type(self).__name__, "total_length")
        set_field(self, "total_length", length)

    @property
    def max_length(self) -> int:  # type: ignore[override]
        """The longest unroll this schedule produces: `total_length`."""
        return self.total_length

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


@lopt_core.declare
class LogUniformLengthSchedule(_RenewedLengthSchedule):
    """Unroll lengths drawn log-uniformly in `[min_length, max_length)`; short unrolls are common.

    A new length is drawn every time an unroll finishes.

    Args:
      min_length: shortest unroll.
      max_length: longest unroll.

    Raises:
      ValueError: a length is not a positive integer, or `max_length < min_length`.
    """

    min_length: int
    # field(): the base class's `max_length = None` must not become a default.
    max_length: int = dataclasses.field()  # type: ignore[assignment]

    def __post_init__(self) -> None:
        owner = type(self).__name__
        set_field(self, "min_length", check_positive_int(self.min_length, owner, "min_length"))
        set_field(self, "max_length", check_positive_int(self.max_length, owner, "max_length"))
        if self.max_length < self.min_length:
            raise ValueError(
                f"{owner}: max_length ({self.max_length}) must be at least min_length "
                f"({self.min_length})."
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


@lopt_core.declare
class GrowingLogUniformSchedule(_RenewedLengthSchedule):
    """A horizon curriculum: log-uniform lengths whose upper bound grows with the outer iteration.

    Each new unroll's length is drawn log-uniformly in `[min_length, max(t))`, where
    `t` is the outer iteration and `max(t)` rises log-linearly from
    `start_max_length` (at `t = 0`) to `end_max_length` (at `t >= growth_steps`):

        max(t) = exp(log(start) + min(t / growth_steps, 1) * (log(end) - log(start)))
        length = int(exp(uniform(key, log(min_length), log(max(t)))))

    Every field is a plain number, so the schedule is recorded in checkpoints
    (`lopt_core.config_of`) and a resumed run draws the same lengths.

    Args:
      min_length: shortest unroll.
      start_max_length: the upper bound at outer iteration 0 (at least `min_length`).
      end_max_length: the upper bound from `growth_steps` on (at least
        `start_max_length`); also the static `max_length`.
      growth_steps: outer iterations over which the bound grows (>= 1).

    Example:
      >>> sched = GrowingLogUniformSchedule(10, 200, 5000, growth_steps=1000)

    Raises:
      ValueError: a field is not a positive integer, or the lengths are not ordered
        `min_length <= start_max_length <= end_max_length`.
    """

    min_length: int
    start_max_length: int
    end_max_length: int
    growth_steps: int

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("min_length", "start_max_length", "end_max_length", "growth_steps"):
            set_field(self, name, check_positive_int(getattr(self, name), owner, name))
        if not self.min_length <= self.start_max_length <= self.end_max_length:
            raise ValueError(
                f"{owner}: need min_length ({self.min_length}) <= start_max_length "
                f"({self.start_max_length}) <= end_max_length ({self.end_max_length}); "
                "reorder them."
            )

    @property
    def max_length(self) -> int:  # type: ignore[override]
        """The longest unroll this schedule ever produces: `end_max_length`."""
        return self.end_max_length

    def current_max_length(self, outer_iteration: Any) -> jax.Array:
        """`max(t)`: the (float32) upper bound of lengths drawn at `outer_iteration`."""
        t = jnp.asarray(outer_iteration, jnp.float32)
        frac = jnp.clip(t / float(self.growth_steps), 0.0, 1.0)
        lo, hi = jnp.log(float(self.start_max_length)), jnp.log(float(self.end_max_length))
        return jnp.exp(lo + frac * (hi - lo))

    def init(self, key: PRNGKey, outer_state: OuterState | None) -> TruncationState:
        """Draws a length log-uniformly below the bound of the current outer iteration."""
        it = 0 if outer_state is None else outer_state.outer_iteration
        log_len = jax.random.uniform(
            key,
            (),
            jnp.float32,
            minval=jnp.log(float(self.min_length)),
            maxval=jnp.log(self.current_max_length(it)),
        )
        length = jnp.clip(_length(jnp.exp(log_len)), self.min_length, self.end_max_length)
        return TruncationState(length=length)


@lopt_core.declare
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


@lopt_core.declare
class ScheduledTruncationSchedule(_RenewedLengthSchedule):
    """Unroll length is a function of the outer iteration, such as a growing curriculum.

    Args:
      schedule_fn: maps the outer iteration (an int32 scalar array) to a length;
        must be traceable by JAX (use `jnp` functions, not Python control flow).
        Schedules with the same function object are equal; a function cannot be
        recorded in a checkpoint's provenance (`lopt_core.config_of` raises).
      max_length: optional upper bound, used where an estimator needs a static
        length (FullES, FullGrad).

    Example:
      >>> sched = ScheduledTruncationSchedule(lambda it: 10 + it // 100)
    """

    schedule_fn: Callable[[jax.Array], Any]
    max_length: int | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if not callable(self.schedule_fn):
            raise TypeError(
                f"{owner}: schedule_fn must be callable (outer iteration -> length), got "
                f"{type(self.schedule_fn).__name__}."
            )
        if self.max_length is not None:
            set_field(self, "max_length", check_positive_int(self.max_length, owner, "max_length"))

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
    length = schedule.max_length
    if length is None or length >= _NEVER:
        raise ValueError(
            f"{type(schedule).__name__} has no static maximum length, which a full-unroll "
            "estimator needs; use ConstantTruncationSchedule(n) or pass max_length."
        )
    return int(length)
