"""Argument checks shared by the optimizers and wrappers: bad input fails at construction."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
import optax

from lopt_core.optimizers import LearnedOptimizer, Optimizer
from lopt_core.tree_utils import first_difference


def _concrete_float(value: Any, argument: str, owner: str) -> float | None:
    """`value` as a Python float, or None when it is traced (its value is unknown yet)."""
    if isinstance(value, jax.core.Tracer):
        # A learned optimizer may build an optimizer from meta-parameters inside `jit`;
        # the value is only known at run time, so it cannot be checked here.
        return None
    if isinstance(value, bool):
        raise TypeError(f"{owner}: {argument} must be a number, got the bool {value!r}.")
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise TypeError(
            f"{owner}: {argument} must be a number, got {type(value).__name__}."
        ) from exc
    if arr.shape != () or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(
            f"{owner}: {argument} must be a scalar number, got {type(value).__name__} "
            f"with shape {arr.shape} and dtype {arr.dtype}."
        )
    return float(arr)


def check_learning_rate(value: Any, owner: str, argument: str = "learning_rate") -> Any:
    """Checks a learning rate: a finite number >= 0 or an optax schedule (a callable).

    Args:
      value: the learning rate, or a schedule `step -> learning rate`.
      owner: the optimizer's class name, for the message.
      argument: the argument's name, for the message.

    Returns:
      `value`, unchanged.

    Raises:
      ValueError: the learning rate is negative, NaN or infinite.
      TypeError: it is neither a number nor a callable.
    """
    if callable(value):
        return value
    number = _concrete_float(value, argument, owner)
    if number is not None and (not math.isfinite(number) or number < 0):
        raise ValueError(
            f"{owner}: {argument} must be a finite number >= 0 (or an optax schedule), "
            f"got {value!r}. Pass a value such as {argument}=1e-3."
        )
    return value


def check_number(
    value: Any,
    owner: str,
    argument: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """Checks that a hyperparameter is a finite number inside `[low, high]`.

    Args:
      value: the hyperparameter.
      owner: the class name, for the message.
      argument: the argument's name, for the message.
      low: the smallest allowed value (None: no bound).
      high: the largest allowed value (None: no bound).
      low_open: exclude `low` itself.
      high_open: exclude `high` itself.

    Returns:
      `value`, unchanged.

    Raises:
      ValueError: the value is not finite or lies outside the range.
    """
    number = _concrete_float(value, argument, owner)
    if number is None:
        return value
    bad = not math.isfinite(number)
    if low is not None:
        bad |= number <= low if low_open else number < low
    if high is not None:
        bad |= number >= high if high_open else number > high
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        rng = " and ".join(x for x in (lo, hi) if x) or "finite"
        raise ValueError(f"{owner}: {argument} must be a finite number {rng}, got {value!r}.")
    return value


def check_optimizer_instance(opt: Any, owner: str, argument: str = "opt") -> Optimizer:
    """Checks that `opt` is an Optimizer instance (not its class, not a LearnedOptimizer).

    Raises:
      TypeError: with the fix for the usual mistakes.
    """
    if isinstance(opt, type):
        raise TypeError(
            f"{owner}: {argument} must be an optimizer instance, got the class "
            f"{opt.__name__}. Call it first, e.g. {opt.__name__}(1e-3)."
        )
    if isinstance(opt, LearnedOptimizer):
        raise TypeError(
            f"{owner}: {argument} is a LearnedOptimizer ({opt.name}); pass the Optimizer "
            "that its weights describe instead: lopt.opt_fn(theta)."
        )
    if isinstance(opt, optax.GradientTransformation):
        raise TypeError(
            f"{owner}: {argument} is an optax transform; wrap it first: OptaxOptimizer(tx)."
        )
    missing = [m for m in ("init", "update", "get_params") if not callable(getattr(opt, m, None))]
    if missing:
        raise TypeError(
            f"{owner}: {argument} must be a lopt Optimizer, but {type(opt).__name__} has no "
            f"{', '.join(missing)}."
        )
    return opt


def check_grads_match(params: Any, grads: Any, owner: str) -> None:
    """Raises a ValueError naming the first path where `grads` and `params` differ."""
    diff = first_difference(params, grads)
    if diff is not None:
        raise ValueError(
            f"{owner}: the gradients do not match the parameters: {diff}. Compute the "
            "gradients with respect to the params held in the optimizer state "
            "(opt.get_params(opt_state))."
        )
