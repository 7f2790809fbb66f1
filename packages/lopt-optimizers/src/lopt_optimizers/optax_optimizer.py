"""OptaxOptimizer: any optax transform as a lopt Optimizer."""

from __future__ import annotations

from typing import Any

import flax
import jax.numpy as jnp
import optax

from lopt_core.typing import ModelState, OptState, Params, PRNGKey
from lopt_core.optimizers import Optimizer
from lopt_optimizers._validation import check_grads_match


@flax.struct.dataclass
class OptaxState:
    """The state of an `OptaxOptimizer`.

    Attributes:
      params: the parameters being optimized.
      state: the model state (for example batch-norm statistics), or None.
      optax_opt_state: the wrapped optax transform's state.
      iteration: int32 scalar, the number of updates applied so far.
    """

    params: Params
    state: ModelState
    optax_opt_state: Any
    iteration: Any


class OptaxOptimizer(Optimizer):
    """Wraps any `optax.GradientTransformation` as a lopt `Optimizer`.

    The optax transform maps gradients to updates; this class holds the params next
    to the transform's state and applies the updates, so a training loop only calls
    `update` and `get_params`. When the transform takes optax's extra arguments
    (`optax.GradientTransformationExtraArgs`), the loss is passed to it as `value`,
    optax's name for the objective value.

    Attributes:
      opt: the wrapped optax transform.
      needs_loss: whether `update` must be given the loss; False unless the
        constructor was told otherwise (for transforms that read optax's `value`,
        such as `optax.contrib.reduce_on_plateau`).

    Example:
      >>> import jax.numpy as jnp, optax
      >>> opt = OptaxOptimizer(optax.sgd(0.1))
      >>> state = opt.init({"w": jnp.ones(2)})
      >>> state = opt.update(state, {"w": jnp.ones(2)})
      >>> opt.get_params(state)["w"]
      Array([0.9, 0.9], dtype=float32)
    """

    needs_loss: bool = False

    def __init__(self, opt: optax.GradientTransformation, needs_loss: bool = False) -> None:
        """Wraps `opt`.

        Args:
          opt: an optax transform, for example `optax.adam(1e-3)`.
          needs_loss: set True when `opt` reads optax's `value` extra argument;
            `update` then raises a clear error when no loss is given, and
            `as_optax` asks for the loss too.

        Raises:
          TypeError: `opt` is not an optax transform (for example the `optax.adam`
            function itself rather than `optax.adam(1e-3)`).
        """
        super().__init__()
        if not isinstance(opt, optax.GradientTransformation):
            hint = (
                f" Call it first, e.g. {opt.__name__}(1e-3)."
                if callable(opt) and hasattr(opt, "__name__")
                else ""
            )
            raise TypeError(
                f"{type(self).__name__}: opt must be an optax.GradientTransformation, got "
                f"{type(opt).__name__}.{hint}"
            )
        self.opt = opt
        if needs_loss:
            self.needs_loss = True

    def init(
        self,
        params: Params,
        model_state: ModelState = None,
        num_steps: int | None = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> OptaxState:
        """Builds the initial state around `params`.

        Args:
          params: the parameters to optimize (a pytree of arrays).
          model_state: the model state, kept in `OptaxState.state`.
          num_steps: unused; optax schedules carry their own horizon.
          key: unused; optax transforms are deterministic.
          **kwargs: unused, accepted for interface compatibility.

        Returns:
          An `OptaxState` with `iteration` an int32 zero.
        """
        del num_steps, key, kwargs
        return OptaxState(
            params=params,
            state=model_state,
            optax_opt_state=self.opt.init(params),
            iteration=jnp.asarray(0, dtype=jnp.int32),
        )

    def update(
        self,
        opt_state: OptaxState,
        grads: Params,
        loss: Any = None,
        model_state: ModelState = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> OptaxState:
        """Applies one step of the optax transform.

        Args:
          opt_state: the current state.
          grads: gradients with the params' tree structure and shapes.
          loss: the loss at the current params; given to transforms that accept
            optax's extra arguments as `value`, ignored otherwise.
          model_state: the next model state; None keeps the one in `opt_state`.
          key: unused; optax transforms are deterministic.
          **kwargs: unused, accepted for interface compatibility.

        Returns:
          The next `OptaxState`, with `iteration` incremented.

        Raises:
          ValueError: `grads` does not have the params' structure (the message names
            the first path that differs), or the transform needs the loss and none
            was given.
        """
        del key, kwargs
        check_grads_match(opt_state.params, grads, type(self).__name__)
        if loss is None and self.needs_loss:
            raise ValueError(
                f"{self.name}: this optax transform reads the loss (needs_loss=True); "
                "call update(opt_state, grads, loss=loss)."
            )
        extra = {}
        if loss is not None and isinstance(self.opt, optax.GradientTransformationExtraArgs):
            extra["value"] = loss
        updates, new_opt_state = self.opt.update(
            grads, opt_state.optax_opt_state, opt_state.params, **extra
        )
        return OptaxState(
            params=optax.apply_updates(opt_state.params, updates),
            state=opt_state.state if model_state is None else model_state,
            optax_opt_state=new_opt_state,
            iteration=opt_state.iteration + 1,
        )

    def get_state(self, opt_state: OptState) -> ModelState:
        """The model state held in `opt_state.state`."""
        return opt_state.state
