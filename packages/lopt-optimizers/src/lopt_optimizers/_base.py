"""The Optimizer interface written once for this package: subclasses write `start` and `step`.

`init` and `update` take the interface's arguments. The optional ones that were
given (not None) reach `start` and `step` as one dict, ready to pass on to an
inner optimizer as keyword arguments, so that optimizers written by hand that
declare only some of `model_state`, `num_steps` and `key` (as in the Part 1 and
Part 6 notebooks) can be wrapped. The loss is always passed on, since Part 1's
`update(opt_state, grads, loss, ...)` requires it.
"""

from __future__ import annotations

import abc
from typing import Any

from lopt_core.optimizers import Optimizer
from lopt_core.typing import ModelState, OptState, Params, PRNGKey
from lopt_core.validation import check_tree_match

Options = dict[str, Any]
"""The optional arguments of `init` or `update` that were given, by name."""


def given(**optional: Any) -> Options:
    """The keyword arguments that carry a value (the Nones left out)."""
    return {name: value for name, value in optional.items() if value is not None}


class OptimizerBase(Optimizer):
    """An Optimizer whose `init` and `update` check their input and call `start` / `step`."""

    def init(
        self,
        params: Params,
        model_state: ModelState = None,
        num_steps: int | None = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> OptState:
        """Builds the initial state around `params`.

        Args:
          params: the parameters to optimize (a pytree of arrays).
          model_state: the model state (for example batch-norm statistics), or None.
          num_steps: the planned number of updates, for optimizers that use it.
          key: a PRNG key, for optimizers that are random.
          **kwargs: passed on to inner optimizers.

        Returns:
          The initial state, from `start`.
        """
        options = given(model_state=model_state, num_steps=num_steps, key=key, **kwargs)
        return self.start(params, options)

    def update(
        self,
        opt_state: OptState,
        grads: Params,
        loss: Any = None,
        model_state: ModelState = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> OptState:
        """Returns the next state after one step on `grads`.

        Args:
          opt_state: the current state.
          grads: gradients with the params' tree structure and shapes.
          loss: the loss at the current params (required by optimizers that need it).
          model_state: the next model state; None keeps the one in `opt_state`.
          key: a PRNG key, for optimizers that are random.
          **kwargs: passed on to inner optimizers.

        Returns:
          The next state, from `step`.

        Raises:
          ValueError: `grads` does not have the params' structure (the message names
            the first path that differs), or the optimizer needs the loss and none
            was given.
        """
        check_tree_match(self.get_params(opt_state), grads, type(self).__name__)
        return self.step(opt_state, grads, loss, given(model_state=model_state, key=key, **kwargs))

    @abc.abstractmethod
    def start(self, params: Params, options: Options) -> OptState:
        """The initial state; `options` are `init`'s optional arguments that were given."""

    @abc.abstractmethod
    def step(self, opt_state: OptState, grads: Params, loss: Any, options: Options) -> OptState:
        """The next state; `options` are `update`'s optional arguments that were given."""
