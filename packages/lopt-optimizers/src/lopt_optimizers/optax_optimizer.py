"""Optax transforms as lopt Optimizers: one state, one init and one update for all of them."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import flax
import jax.numpy as jnp
import optax

import lopt_core
from lopt_core.typing import ModelState, Params
from lopt_core.validation import check_learning_rate, check_loss_given
from lopt_optimizers._base import OptimizerBase, Options
from lopt_optimizers._plugin import CATALOG
from lopt_optimizers.compat import model_state_as_state


@model_state_as_state
@flax.struct.dataclass
class OptaxState:
    """The state of every optax-backed optimizer.

    Attributes:
      params: the parameters being optimized.
      model_state: the model state (for example batch-norm statistics), or None.
      optax_opt_state: the optax transform's state.
      iteration: int32 scalar, the number of updates applied so far.
    """

    params: Params
    model_state: ModelState
    optax_opt_state: Any
    iteration: Any


class OptaxBacked(OptimizerBase):
    """An optimizer whose step is an optax transform: subclasses write only `transform()`.

    A subclass is a `@lopt_core.declare` dataclass whose fields are its
    hyperparameters. `checks` maps a field to the `lopt_core.validation` check it
    must pass at construction; `learning_rate` is always checked when present.

    Example:
      >>> @lopt_core.declare
      ... class Sign(OptaxBacked):
      ...     learning_rate: float = 0.1
      ...     def transform(self):
      ...         return optax.chain(optax.scale_by_sign(), optax.scale(-self.learning_rate))
      >>> import jax.numpy as jnp
      >>> opt = Sign(0.5)
      >>> opt, opt == Sign(0.5)
      (Sign(learning_rate=0.5), True)
      >>> state = opt.update(opt.init({"w": jnp.zeros(2)}), {"w": jnp.array([3.0, -1.0])})
      >>> opt.get_params(state)["w"]
      Array([-0.5,  0.5], dtype=float32)
    """

    checks: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if hasattr(self, "learning_rate"):
            check_learning_rate(self.learning_rate, owner)
        for field, check in self.checks.items():
            value = getattr(self, field)
            if value is not None:
                check(value, owner, field)

    @abc.abstractmethod
    def transform(self) -> optax.GradientTransformation:
        """The optax transform that maps gradients to updates."""

    def start(self, params: Params, options: Options) -> OptaxState:
        """`OptaxState` around `params`, with `iteration` an int32 zero.

        The model state is kept in `model_state`; `num_steps` and `key` are unused
        (optax schedules carry their own horizon, and optax transforms are
        deterministic).
        """
        return OptaxState(
            params=params,
            model_state=options.get("model_state"),
            optax_opt_state=self.transform().init(params),
            iteration=jnp.asarray(0, dtype=jnp.int32),
        )

    def step(self, opt_state: OptaxState, grads: Params, loss: Any, options: Options) -> OptaxState:
        """Applies one step of the transform, incrementing `iteration`.

        The loss goes to transforms that take optax's extra arguments, as `value`.
        A model state that is not given keeps the one in `opt_state`.
        """
        check_loss_given(self, loss)
        tx = self.transform()
        extra = {}
        if loss is not None and isinstance(tx, optax.GradientTransformationExtraArgs):
            extra["value"] = loss
        updates, new_opt_state = tx.update(
            grads, opt_state.optax_opt_state, opt_state.params, **extra
        )
        return OptaxState(
            params=optax.apply_updates(opt_state.params, updates),
            model_state=options.get("model_state", opt_state.model_state),
            optax_opt_state=new_opt_state,
            iteration=opt_state.iteration + 1,
        )


@CATALOG.optimizer("OptaxOptimizer", "Any optax.GradientTransformation as a lopt optimizer.")
@lopt_core.declare
class OptaxOptimizer(OptaxBacked):
    """Wraps any `optax.GradientTransformation` as a lopt `Optimizer`.

    Attributes:
      opt: the wrapped optax transform, for example `optax.adam(1e-3)`.
      needs_loss: set True when `opt` reads optax's `value` extra argument (such as
        `optax.contrib.reduce_on_plateau`); `update` then requires the loss.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> opt = OptaxOptimizer(optax.sgd(0.1))
      >>> state = opt.init({"w": jnp.ones(2)})
      >>> state = opt.update(state, {"w": jnp.ones(2)})
      >>> opt.get_params(state)["w"]
      Array([0.9, 0.9], dtype=float32)
    """

    opt: optax.GradientTransformation
    needs_loss: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.opt, optax.GradientTransformation):
            hint = (
                f" Call it first, e.g. {self.opt.__name__}(1e-3)."
                if callable(self.opt) and hasattr(self.opt, "__name__")
                else ""
            )
            raise TypeError(
                f"{type(self).__name__}: opt must be an optax.GradientTransformation, got "
                f"{type(self.opt).__name__}.{hint}"
            )

    def transform(self) -> optax.GradientTransformation:
        """The wrapped transform."""
        return self.opt
