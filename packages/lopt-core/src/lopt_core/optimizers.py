"""Optimizer and LearnedOptimizer: the interfaces every optimizer in lopt implements."""

from __future__ import annotations

import abc
from typing import Any

from lopt_core.interface import Interface
from lopt_core.typing import MetaParams, ModelState, OptState, Params, PRNGKey


class Optimizer(Interface):
    """A stateless optimizer: `init` makes a state pytree, `update` maps it to the next.

    The state holds the parameters (`params`), the model state (`model_state`), and
    whatever the optimizer needs (momenta, iteration, ...). Subclasses implement
    `init` and `update`; `get_params`, `get_state` and `set_params` work on any
    state that has those fields (a flax dataclass, a NamedTuple, ...).
    `eval_params` is where the model is evaluated: `get_params` unless the
    optimizer (schedule-free ones) evaluates at another point.

    Attributes:
      needs_loss: True when `update` must be given the loss (read it through
        `lopt_core.validation.needs_loss`); wrappers forward their inner one's.
    """

    needs_loss: bool = False

    @abc.abstractmethod
    def init(
        self,
        params: Params,
        model_state: ModelState = None,
        num_steps: int | None = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> OptState:
        """Builds the initial optimizer state around `params`."""

    @abc.abstractmethod
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

    def get_params(self, opt_state: OptState) -> Params:
        """The parameters held in `opt_state`."""
        return opt_state.params

    def get_state(self, opt_state: OptState) -> ModelState:
        """The model state held in `opt_state` (its `model_state` field).

        States written for the reference library name that field `state`; it is
        read when there is no `model_state`.
        """
        if hasattr(opt_state, "model_state"):
            return opt_state.model_state
        return getattr(opt_state, "state", None)

    def get_params_state(self, opt_state: OptState) -> tuple[Params, ModelState]:
        """`(get_params(opt_state), get_state(opt_state))`."""
        return self.get_params(opt_state), self.get_state(opt_state)

    def eval_params(self, opt_state: OptState) -> Params:
        """The parameters to evaluate the model at; `get_params(opt_state)` by default.

        Schedule-free optimizers evaluate at a different point than they train
        at (an average of the iterates rather than the point where gradients are
        taken); they override this. Evaluation losses should be computed here.
        """
        return self.get_params(opt_state)

    def eval_params_state(self, opt_state: OptState) -> tuple[Params, ModelState]:
        """`(eval_params(opt_state), get_state(opt_state))`, for evaluation."""
        return self.eval_params(opt_state), self.get_state(opt_state)

    def set_params(self, opt_state: OptState, params: Params) -> OptState:
        """A copy of `opt_state` holding `params` instead."""
        return opt_state.replace(params=params)

    @property
    def name(self) -> str:
        """A short name; the class name by default."""
        return getattr(self, "_name", None) or type(self).__name__


class LearnedOptimizer(Interface):
    """An optimizer parameterized by meta-parameters `theta`.

    `init(key)` makes theta; `opt_fn(theta, is_training)` returns an `Optimizer` that
    uses it. Instances hold only configuration, never mutable state.
    """

    @abc.abstractmethod
    def init(self, key: PRNGKey) -> MetaParams:
        """Initializes the meta-parameters theta."""

    @abc.abstractmethod
    def opt_fn(self, theta: MetaParams, is_training: bool = False) -> Optimizer:
        """Returns the Optimizer that theta describes.

        Args:
          theta: meta-parameters from `init` or meta-training.
          is_training: True while meta-training (architectures may then behave
            differently, for example add noise).
        """

    @property
    def name(self) -> str:
        """A short name; the class name by default."""
        return getattr(self, "_name", None) or type(self).__name__


def evaluation_point(opt: Any, opt_state: OptState) -> tuple[Params, ModelState]:
    """`opt.eval_params_state(opt_state)`: the params and model state to evaluate at.

    Optimizers written without subclassing `Optimizer` (duck-typed ones, which
    lopt accepts) have no `eval_params_state`; they are evaluated at
    `get_params_state`, where they train.
    """
    method = getattr(opt, "eval_params_state", None)
    params, model_state = (method if callable(method) else opt.get_params_state)(opt_state)
    return params, model_state
