"""The base of every Optimizer that `opt_fn` returns here."""

from __future__ import annotations

from typing import Any

from lopt_core import LearnedOptimizer, Optimizer
from lopt_core.typing import MetaParams


class ThetaOptimizer(Optimizer):
    """An Optimizer holding the meta-parameters `theta` of the LearnedOptimizer that made it.

    Attributes:
      lopt: the LearnedOptimizer (its configuration: sizes, multipliers, ...).
      theta: the meta-parameters.
      is_training: whether it was built for meta-training (`opt_fn(..., is_training=True)`).
      needs_loss: whether `update` must be given the loss; read by
        `lopt_optimizers.as_optax` to fail early with a clear message.
    """

    needs_loss: bool = False

    def __init__(self, lopt: LearnedOptimizer, theta: MetaParams, is_training: bool = False):
        self.lopt = lopt
        self.theta = theta
        self.is_training = bool(is_training)

    @property
    def name(self) -> str:
        """`<LearnedOptimizer name>_opt`."""
        return f"{self.lopt.name}_opt"

    def get_state(self, opt_state: Any) -> Any:
        """The model state held in `opt_state.model_state`."""
        return opt_state.model_state


def check_theta(theta: Any, keys: tuple[str, ...], owner: str) -> None:
    """Raises a ValueError naming the missing keys when theta is not this architecture's."""
    if not hasattr(theta, "keys"):
        raise ValueError(
            f"{owner}.opt_fn: theta must be the dict that {owner}.init returns, got "
            f"{type(theta).__name__}."
        )
    missing = [k for k in keys if k not in theta]
    if missing:
        raise ValueError(
            f"{owner}.opt_fn: theta lacks {missing} (it has {sorted(theta.keys())}); pass the "
            f"theta that {owner}.init (or meta-training of a {owner}) produced."
        )
