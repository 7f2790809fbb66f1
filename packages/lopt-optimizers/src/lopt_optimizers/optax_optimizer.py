"""Optax transforms as lopt Optimizers: one state, one init and one update for all of them."""

from __future__ import annotations

import abc
import dataclasses
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
from lopt_optimizers.schedules import bind_num_steps, check_num_steps, needs_num_steps


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


@flax.struct.dataclass
class HorizonState:
    """The optax state of an optimizer whose schedule needs the training horizon.

    Attributes:
      num_steps: int32 scalar, the `num_steps` given to `init`.
      inner: the optax transform's own state.
    """

    num_steps: Any
    inner: Any


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

    @property
    def needs_num_steps(self) -> bool:
        """True when a field is a schedule over the training horizon (see `schedules`).

        `init` then requires `num_steps`, keeps it in the state (`HorizonState`)
        and gives it to the schedule at every step.
        """
        return any(needs_num_steps(getattr(self, f.name)) for f in dataclasses.fields(self))

    def _horizon_fields(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if needs_num_steps(getattr(self, f.name))]

    def _transform_for(self, num_steps: Any) -> optax.GradientTransformation:
        """`transform()` with every horizon schedule bound to `num_steps`."""
        bound = {
            name: bind_num_steps(getattr(self, name), num_steps) for name in self._horizon_fields()
        }
        return dataclasses.replace(self, **bound).transform()

    def start(self, params: Params, options: Options) -> OptaxState:
        """`OptaxState` around `params`, with `iteration` an int32 zero.

        The model state is kept in `model_state`; `key` is unused (optax
        transforms are deterministic). `num_steps` is unused too, unless a field
        is a schedule over the training horizon (`needs_num_steps`): then it is
        required, and kept with the optax state in a `HorizonState`.

        Raises:
          ValueError: the optimizer needs `num_steps` and none (or not a positive
            integer) was given.
        """
        if self.needs_num_steps:
            owner = type(self).__name__
            if options.get("num_steps") is None:
                fields = " and ".join(self._horizon_fields())
                raise ValueError(
                    f"{owner}: its {fields} is a schedule over the training horizon, so init "
                    "needs num_steps, the number of updates training will run, and none was "
                    "given. Call opt.init(params, num_steps=N), or as_optax(opt, num_steps=N) "
                    "in an optax loop."
                )
            num_steps = check_num_steps(options["num_steps"], owner)
            optax_opt_state = HorizonState(
                num_steps=jnp.asarray(num_steps, dtype=jnp.int32),
                inner=self._transform_for(num_steps).init(params),
            )
        else:
            optax_opt_state = self.transform().init(params)
        return OptaxState(
            params=params,
            model_state=options.get("model_state"),
            optax_opt_state=optax_opt_state,
            iteration=jnp.asarray(0, dtype=jnp.int32),
        )

    def step(self, opt_state: OptaxState, grads: Params, loss: Any, options: Options) -> OptaxState:
        """Applies one step of the transform, incrementing `iteration`.

        The loss goes to transforms that take optax's extra arguments, as `value`.
        A model state that is not given keeps the one in `opt_state`.
        """
        check_loss_given(self, loss)
        horizon = opt_state.optax_opt_state if self.needs_num_steps else None
        if horizon is None:
            tx, inner = self.transform(), opt_state.optax_opt_state
        else:
            tx, inner = self._transform_for(horizon.num_steps), horizon.inner
        extra = {}
        if loss is not None and isinstance(tx, optax.GradientTransformationExtraArgs):
            extra["value"] = loss
        updates, new_opt_state = tx.update(grads, inner, opt_state.params, **extra)
        if horizon is not None:
            new_opt_state = horizon.replace(inner=new_opt_state)
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
