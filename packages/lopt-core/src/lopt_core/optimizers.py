"""Optimizer and LearnedOptimizer: the interfaces every optimizer in lopt implements."""

from __future__ import annotations

from typing import Any

from lopt_core._types import MetaParams, ModelState, OptState, Params, PRNGKey


class Optimizer:
    """A stateless optimizer: `init` makes a state pytree, `update` maps it to the next.

    The state holds the parameters (`params`), the model state (`model_state` or
    `state`), and whatever the optimizer needs (momenta, iteration, ...). Subclasses
    implement `init` and `update`; `get_params`, `get_state` and `set_params` work on
    any state that has those fields (a flax dataclass, a NamedTuple, ...).
    """

    def init(
        self,
        params: Params,
        model_state: ModelState = None,
        num_steps: int | None = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> OptState:
        """Builds the initial optimizer state around `params`."""
        raise TypeError(f"{type(self).__name__} must override init().")

    def update(
        self,
        opt_state: OptState,
        grads: Params,
        loss: Any = None,
        model_state: ModelState = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> OptState:
        """Returns the next state given gradients (and the loss, for those that use it)."""
        raise TypeError(f"{type(self).__name__} must override update().")

    def get_params(self, opt_state: OptState) -> Params:
        """The parameters held in `opt_state`."""
        return opt_state.params

    def get_state(self, opt_state: OptState) -> ModelState:
        """The model state held in `opt_state` (its `model_state` or `state` field)."""
        if hasattr(opt_state, "model_state"):
            return opt_state.model_state
        return opt_state.state

    def get_params_state(self, opt_state: OptState) -> tuple[Params, ModelState]:
        """`(get_params(opt_state), get_state(opt_state))`."""
        return self.get_params(opt_state), self.get_state(opt_state)

    def set_params(self, opt_state: OptState, params: Params) -> OptState:
        """A copy of `opt_state` holding `params` instead."""
        return opt_state.replace(params=params)

    @property
    def name(self) -> str:
        """A short name; the class name by default."""
        return getattr(self, "_name", None) or type(self).__name__


class LearnedOptimizer:
    """An optimizer parameterized by meta-parameters `theta`.

    `init(key)` makes theta; `opt_fn(theta, is_training)` returns an `Optimizer` that
    uses it. Instances hold only configuration, never mutable state.
    """

    def init(self, key: PRNGKey) -> MetaParams:
        """Initializes the meta-parameters theta."""
        raise TypeError(f"{type(self).__name__} must override init().")

    def opt_fn(self, theta: MetaParams, is_training: bool = False) -> Optimizer:
        """Returns the Optimizer that theta describes.

        Args:
          theta: meta-parameters from `init` or meta-training.
          is_training: True while meta-training (architectures may then behave
            differently, for example add noise).
        """
        raise TypeError(f"{type(self).__name__} must override opt_fn().")

    @property
    def name(self) -> str:
        """A short name; the class name by default."""
        return getattr(self, "_name", None) or type(self).__name__
