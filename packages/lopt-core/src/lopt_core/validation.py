"""The argument and tree checks every lopt package uses, with one wording for each problem.

Each check raises at the point of misuse with a message that names the
component (`owner`), the argument and the fix. Values that are traced inside
`jit` (a learned optimizer building an optimizer from its meta-parameters) are
unknown at construction and pass unchecked.

Example:
  >>> check_number(0.9, "Adam", "b1", low=0.0, high=1.0, high_open=True)
  0.9
  >>> check_positive_int(0, "TruncatedPES", "unroll_length")
  Traceback (most recent call last):
  ...
  ValueError: TruncatedPES: unroll_length must be a positive integer, got 0. Pass a positive unroll_length.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from lopt_core.tree_utils import first_difference


def is_traced(value: Any) -> bool:
    """True when `value` is a JAX tracer, whose value is only known at run time."""
    return isinstance(value, jax.core.Tracer)


def _concrete_float(value: Any, owner: str, argument: str) -> float | None:
    """`value` as a Python float, or None when it is traced."""
    if is_traced(value):
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
      value: the hyperparameter (a traced value passes unchecked).
      owner: the component's name, for the message.
      argument: the argument's name, for the message.
      low: the smallest allowed value (None: no bound).
      high: the largest allowed value (None: no bound).
      low_open: exclude `low` itself.
      high_open: exclude `high` itself.

    Returns:
      `value`, unchanged.

    Raises:
      TypeError: the value is not a scalar number.
      ValueError: the value is not finite or lies outside the range.
    """
    number = _concrete_float(value, owner, argument)
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


def check_positive(value: Any, owner: str, argument: str) -> Any:
    """Checks that `value` is a finite number > 0; returns it unchanged."""
    return check_number(value, owner, argument, low=0.0, low_open=True)


def check_nonnegative(value: Any, owner: str, argument: str) -> Any:
    """Checks that `value` is a finite number >= 0; returns it unchanged."""
    return check_number(value, owner, argument, low=0.0)


def check_unit_interval(value: Any, owner: str, argument: str) -> Any:
    """Checks that `value` lies in [0, 1) (a decay rate such as a beta); returns it."""
    return check_number(value, owner, argument, low=0.0, high=1.0, high_open=True)


def check_learning_rate(value: Any, owner: str, argument: str = "learning_rate") -> Any:
    """Checks a learning rate: a finite number >= 0 or an optax schedule (a callable).

    Returns:
      `value`, unchanged.

    Raises:
      ValueError: the learning rate is negative, NaN or infinite.
      TypeError: it is neither a number nor a callable.
    """
    if callable(value):
        return value
    number = _concrete_float(value, owner, argument)
    if number is not None and (not math.isfinite(number) or number < 0):
        raise ValueError(
            f"{owner}: {argument} must be a finite number >= 0 (or an optax schedule), "
            f"got {value!r}. Pass a value such as {argument}=1e-3."
        )
    return value


def check_positive_int(value: Any, owner: str, argument: str, *, minimum: int = 1) -> int:
    """Returns `value` as an int, or raises naming the argument when it is below `minimum`.

    Raises:
      ValueError: `value` is a bool, not integral, or smaller than `minimum`.
    """
    ok = not isinstance(value, bool)
    if ok:
        try:
            ok = int(value) == value and int(value) >= minimum
        except (TypeError, ValueError):
            ok = False
    if not ok:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        fix = f"Pass a positive {argument}." if minimum == 1 else f"Pass {argument} >= {minimum}."
        raise ValueError(f"{owner}: {argument} must be {what}, got {value!r}. {fix}")
    return int(value)


def check_choice(value: Any, owner: str, argument: str, choices: tuple[Any, ...]) -> Any:
    """Checks that `value` is one of `choices`; returns it unchanged."""
    if value not in choices:
        raise ValueError(
            f"{owner}: {argument} must be one of {', '.join(repr(c) for c in choices)}, "
            f"got {value!r}."
        )
    return value


def check_members(
    members: Any, weights: Any, owner: str, what: str, kind: type, example: str
) -> tuple[tuple[Any, ...], tuple[float, ...] | None]:
    """Checks the members of a mixture and their weights; returns them as tuples.

    Args:
      members: the mixture's members (families, estimators), at least one.
      weights: None (uniform), or one positive finite weight per member.
      owner: the mixture's name, for messages.
      what: the argument's name ("families", "estimators").
      kind: the class every member must be an instance of.
      example: how to spell the class in the message ("lopt_core.TaskFamily").

    Raises:
      ValueError: no members, or weights of the wrong length, not positive or not finite.
      TypeError: a member is not an instance of `kind`.
    """
    members = tuple(members)
    if not members:
        raise ValueError(f"{owner}: {what} is empty; pass at least one {example}.")
    for i, member in enumerate(members):
        if not isinstance(member, kind):
            raise TypeError(
                f"{owner}: {what}[{i}] must be a {example}, got {type(member).__name__}."
            )
    if weights is None:
        return members, None
    weights = tuple(float(w) for w in weights)
    if len(weights) != len(members):
        raise ValueError(
            f"{owner}: got {len(weights)} weights for {len(members)} {what}; pass one each."
        )
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"{owner}: weights must be positive and finite, got {weights}.")
    return members, weights


def check_tree_match(expected: Any, got: Any, owner: str, what: str = "gradients") -> None:
    """Checks that `got` has the structure and leaf shapes of `expected` (the params).

    Raises:
      ValueError: naming the first path where they differ, and the fix.
    """
    diff = first_difference(expected, got)
    if diff is not None:
        raise ValueError(
            f"{owner}: the {what} do not match the parameters: {diff}. Compute the "
            f"{what} with respect to the params held in the optimizer state "
            "(opt.get_params(opt_state))."
        )


def check_optimizer_instance(opt: Any, owner: str, argument: str = "opt") -> Any:
    """Checks that `opt` is an Optimizer instance (not its class, not a LearnedOptimizer).

    Returns:
      `opt`, unchanged.

    Raises:
      TypeError: with the fix for the usual mistakes (a class, a learned optimizer,
        a raw optax transform, an object without `init`/`update`/`get_params`).
    """
    from lopt_core.optimizers import LearnedOptimizer

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
    if type(opt).__module__.startswith("optax") and not hasattr(opt, "get_params"):
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


def needs_loss(opt: Any) -> bool:
    """Whether `opt` must be given the loss at every update.

    Every `lopt_core.Optimizer` declares it as its `needs_loss` attribute (False by
    default; wrappers forward their inner optimizer's). Any other object that has
    no such attribute does not need the loss.
    """
    return bool(getattr(opt, "needs_loss", False))


def check_loss_given(opt: Any, loss: Any, owner: str | None = None) -> None:
    """Raises when `opt` needs the loss and `loss` is None, saying how to pass it.

    Raises:
      ValueError: `needs_loss(opt)` and no loss was given.
    """
    if loss is None and needs_loss(opt):
        who = owner or getattr(opt, "name", type(opt).__name__)
        raise ValueError(
            f"{who} needs the loss at every step (needs_loss=True), but none was given. "
            "Call opt.update(opt_state, grads, loss=loss); through optax, "
            "tx.update(grads, state, params, loss=loss)."
        )
