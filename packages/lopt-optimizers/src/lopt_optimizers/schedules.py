"""Learning-rate schedules with the reference library's semantics.

A schedule is called as `schedule(step, max_steps=None)` and returns the value
(a float32 scalar) at `step`, counted from 0. Every schedule here is also an
optax schedule: `schedule(count)` works wherever optax takes one, so it can be
the `learning_rate` of any lopt optimizer or of any optax transform, except
`CosineLearningRateSchedule`, which depends on the training horizon
(`max_steps`): its `needs_num_steps` is True.

An optimizer whose `learning_rate` (or any other field) is such a schedule needs
the horizon when it starts: `opt.init(params, num_steps=N)` (or
`as_optax(opt, num_steps=N)`), and keeps `N` in its state. `bind_num_steps`
turns a horizon schedule into a plain optax schedule for a known `N`.

Example:
  >>> from lopt_optimizers import NAdamW, schedules
  >>> sched = schedules.CosineLearningRateSchedule(1e-3, warmup_fraction=0.0)
  >>> [round(float(sched(s, 100)), 7) for s in (0, 50, 75, 100)]
  [0.001, 0.001, 0.0005, 0.0]
  >>> round(float(schedules.bind_num_steps(sched, 100)(75)), 7)
  0.0005
  >>> NAdamW(sched).needs_num_steps
  True

The reference's `learned_optimization.optimizers.learning_rate_schedules` maps
to this module, and its `optax_opts.piecewise_linear(times, vals)` to
`PiecewiseLinear(times, vals)`.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np
import optax

import lopt_core
from lopt_core.validation import check_nonnegative, check_number, check_positive, is_traced

__all__ = [
    "BoundSchedule",
    "CosineLearningRateSchedule",
    "ExponentialDecay",
    "LinearRampupSqrtDecay",
    "PiecewiseLinear",
    "ScalarSchedule",
    "bind_num_steps",
    "check_num_steps",
    "needs_num_steps",
]


def _f32(x: Any) -> jnp.ndarray:
    return jnp.asarray(x, dtype=jnp.float32)


class ScalarSchedule(abc.ABC):
    """Base of the schedules here: `schedule(step, max_steps=None) -> value`.

    Attributes:
      needs_num_steps: True when the value depends on `max_steps` (the number of
        steps training will take), so it cannot be called without it.
    """

    needs_num_steps: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, step: Any, max_steps: Any = None) -> jnp.ndarray:
        """The value at `step` (of `max_steps`, for those that need it)."""


def needs_num_steps(value: Any) -> bool:
    """Whether `value` is a schedule (or optimizer) that needs the number of training steps."""
    return bool(getattr(value, "needs_num_steps", False))


def check_num_steps(num_steps: Any, owner: str, argument: str = "num_steps") -> Any:
    """`num_steps` checked to be a positive integer (a traced value passes unchecked).

    Raises:
      ValueError: it is None, a bool, not integral or below 1; the message names
        `owner` and says what to pass.
    """
    if num_steps is None:
        raise ValueError(
            f"{owner}: {argument} is needed (the number of steps training will run, for a "
            f"schedule over the training horizon) but none was given. Pass {argument}=N."
        )
    if is_traced(num_steps):
        return num_steps
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
        shape = getattr(num_steps, "shape", None)
        if not (shape == () and np.issubdtype(np.asarray(num_steps).dtype, np.integer)):
            raise ValueError(
                f"{owner}: {argument} must be a positive integer, got {num_steps!r}. "
                f"Pass {argument}=N with N >= 1."
            )
    if int(num_steps) < 1:
        raise ValueError(
            f"{owner}: {argument} must be a positive integer, got {num_steps!r}. "
            f"Pass {argument}=N with N >= 1."
        )
    return int(num_steps)


@lopt_core.declare
class BoundSchedule:
    """A horizon schedule with its `max_steps` fixed: an optax schedule `count -> value`.

    Attributes:
      schedule: the schedule, called as `schedule(count, num_steps)`.
      num_steps: the horizon (an int, or a traced int inside `jit`).
    """

    schedule: Any
    num_steps: Any

    def __call__(self, count: Any, max_steps: Any = None) -> jnp.ndarray:
        """The schedule's value at `count` for the bound horizon (`max_steps` is ignored)."""
        del max_steps
        return self.schedule(count, self.num_steps)


def bind_num_steps(schedule: Any, num_steps: Any) -> Any:
    """`schedule` as an optax schedule for a horizon of `num_steps` steps.

    A schedule that does not need the horizon is returned unchanged.
    """
    if not needs_num_steps(schedule):
        return schedule
    return BoundSchedule(schedule, check_num_steps(num_steps, type(schedule).__name__))


@lopt_core.declare
class CosineLearningRateSchedule(ScalarSchedule):
    """Linear warmup, a constant stretch, then a half-cosine decay, over `max_steps` steps.

    With `T = max_steps`, `s = min(step, T)`, `C = constant_fraction * T`,
    `W = max(warmup_fraction, constant_fraction) * T` and
    `lo = min_learning_rate_mult * learning_rate`, the value is

    * `s / W * learning_rate` while `s < W` (only when `warmup_fraction > 0`);
    * otherwise `lo + (learning_rate - lo) * (cos(pi * (max(s, C) - C) / (T - C)) + 1) / 2`,
      which is `learning_rate` up to step `C` and decays to `lo` at step `T`.

    As in the reference, the warmup lasts `max(warmup_fraction,
    constant_fraction) * T` steps, so with the defaults it ramps up over the
    first half and then decays; a `warmup_fraction` larger than
    `constant_fraction` ends the warmup inside the decay.

    Attributes:
      learning_rate: the value after warmup, where the decay starts, >= 0.
      min_learning_rate_mult: the final value as a fraction of `learning_rate`, >= 0.
      constant_fraction: the fraction of `T` before the decay starts, in [0, 1).
      warmup_fraction: the fraction of `T` to warm up over, in [0, 1]; 0 for none.

    References:
      Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts",
      ICLR 2017 (arXiv:1608.03983).
    """

    learning_rate: float
    min_learning_rate_mult: float = 0.0
    constant_fraction: float = 0.5
    warmup_fraction: float = 0.01

    needs_num_steps: ClassVar[bool] = True

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_nonnegative(self.learning_rate, owner, "learning_rate")
        check_nonnegative(self.min_learning_rate_mult, owner, "min_learning_rate_mult")
        check_number(
            self.constant_fraction, owner, "constant_fraction", low=0.0, high=1.0, high_open=True
        )
        check_number(self.warmup_fraction, owner, "warmup_fraction", low=0.0, high=1.0)

    def __call__(self, step: Any, max_steps: Any = None) -> jnp.ndarray:
        """The value at `step` for a horizon of `max_steps` steps.

        Raises:
          ValueError: `max_steps` is None or not a positive integer.
        """
        if max_steps is None:
            raise ValueError(
                "CosineLearningRateSchedule depends on the number of training steps: call "
                "schedule(step, max_steps), give the optimizer num_steps at init "
                "(opt.init(params, num_steps=N) or as_optax(opt, num_steps=N)), or use "
                "lopt_optimizers.schedules.bind_num_steps(schedule, N) as an optax schedule."
            )
        check_num_steps(max_steps, type(self).__name__, "max_steps")
        total = _f32(max_steps)
        s = jnp.minimum(_f32(step), total)
        constant = total * self.constant_fraction
        low = self.min_learning_rate_mult * self.learning_rate
        phase = (jnp.maximum(s, constant) - constant) * math.pi / (total - constant)
        decayed = (self.learning_rate - low) * (jnp.cos(phase) / 2.0 + 0.5) + low
        if self.warmup_fraction > 0.0:
            warmup = total * max(self.warmup_fraction, self.constant_fraction)
            in_warmup = _f32(warmup > s)
            warm = s / warmup * self.learning_rate
            return decayed * (1.0 - in_warmup) + in_warmup * warm
        return decayed


@lopt_core.declare
class LinearRampupSqrtDecay(ScalarSchedule):
    """`peak_lr * min(t / warmup_steps, sqrt(warmup_steps / t))` with `t = max(step, 1)`.

    Linear up to `peak_lr` at `warmup_steps`, then inverse-square-root decay.

    Attributes:
      peak_lr: the value at `warmup_steps`, >= 0.
      warmup_steps: the length of the ramp, > 0.

    References:
      Vaswani et al., "Attention Is All You Need", NeurIPS 2017, Sec. 5.3.
    """

    peak_lr: float = 1e-3
    warmup_steps: float = 1000

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_nonnegative(self.peak_lr, owner, "peak_lr")
        check_positive(self.warmup_steps, owner, "warmup_steps")

    def __call__(self, step: Any, max_steps: Any = None) -> jnp.ndarray:
        """The value at `step` (`max_steps` is unused)."""
        del max_steps
        t = jnp.maximum(_f32(step), 1.0)
        w = _f32(self.warmup_steps)
        return self.peak_lr * jnp.minimum(t / w, jnp.sqrt(w / t))


@lopt_core.declare
class PiecewiseLinear(ScalarSchedule):
    """Linear between the points `(times[i], vals[i])`, constant outside them.

    `vals[0]` up to `times[0]`, `vals[-1]` from `times[-1]` on, and on
    `(times[i-1], times[i]]` the line between the two points. A time given twice
    makes a jump: the value there is the left point's.

    Attributes:
      times: the steps of the points, non-decreasing (a tuple; a list is converted).
      vals: the values at those steps, as many as `times`.
    """

    times: tuple[float, ...]
    vals: tuple[float, ...]

    def __post_init__(self) -> None:
        owner = type(self).__name__
        times, vals = tuple(self.times), tuple(self.vals)
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "vals", vals)
        if len(times) != len(vals):
            raise ValueError(
                f"{owner}: times and vals must have the same length, got {len(times)} times and "
                f"{len(vals)} vals. Give one value per time."
            )
        if not times:
            raise ValueError(f"{owner}: times is empty. Give at least one (time, value) point.")
        for i, (t, v) in enumerate(zip(times, vals, strict=True)):
            check_number(t, owner, f"times[{i}]")
            check_number(v, owner, f"vals[{i}]")
        for i in range(1, len(times)):
            if not (is_traced(times[i]) or is_traced(times[i - 1])) and times[i] < times[i - 1]:
                raise ValueError(
                    f"{owner}: times must be non-decreasing, got times[{i - 1}]={times[i - 1]!r} "
                    f"> times[{i}]={times[i]!r}. Sort the points by time."
                )

    def __call__(self, step: Any, max_steps: Any = None) -> jnp.ndarray:
        """The value at `step` (`max_steps` is unused)."""
        del max_steps
        vals = _f32(jnp.asarray(self.vals))
        if len(self.times) == 1:
            return vals[0]
        times = _f32(jnp.asarray(self.times))
        x = _f32(step)
        x1, x2, y1, y2 = times[:-1], times[1:], vals[:-1], vals[1:]
        width = jnp.where(x2 > x1, x2 - x1, 1.0)
        lines = y1 + (x - x1) * (y2 - y1) / width
        idx = jnp.clip(jnp.sum(x > times) - 1, 0, len(self.times) - 2)
        inside = jnp.take(lines, idx)
        return jnp.where(x <= times[0], vals[0], jnp.where(x >= times[-1], vals[-1], inside))


@lopt_core.declare
class ExponentialDecay(ScalarSchedule):
    """`base_lr * (1 - decay_amount) ** step` (optax's `exponential_decay`).

    Attributes:
      base_lr: the value at step 0, >= 0.
      decay_amount: the fraction lost per step, in [0, 1).
    """

    base_lr: float
    decay_amount: float

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_nonnegative(self.base_lr, owner, "base_lr")
        check_number(self.decay_amount, owner, "decay_amount", low=0.0, high=1.0, high_open=True)

    def __call__(self, step: Any, max_steps: Any = None) -> jnp.ndarray:
        """The value at `step` (`max_steps` is unused)."""
        del max_steps
        if is_traced(self.decay_amount):
            # optax checks the decay rate in Python, which a traced value cannot answer.
            return self.base_lr * (1.0 - self.decay_amount) ** _f32(step)
        schedule = optax.exponential_decay(
            init_value=self.base_lr, transition_steps=1, decay_rate=1.0 - self.decay_amount
        )
        return _f32(schedule(_f32(step)))
