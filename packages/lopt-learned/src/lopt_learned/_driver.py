"""The learned-optimizer driver: one Optimizer for every architecture of this package.

An architecture is a `LearnedArchitecture`, a frozen dataclass whose fields are its
configuration. It supplies three things:

- `init(key) -> theta`: its meta-parameters;
- `init_state(theta, params, layout) -> dict`: the fields of its per-run state
  besides `params`, `model_state` and `iteration`;
- `step(theta, state, inputs) -> state`: the next state's params and fields, a
  pure function of theta, the state and the `StepInputs` (gradients, loss,
  layout).

Everything else is written once, here: `opt_fn(theta)` checks theta against the
structure that `init` gives (read with `jax.eval_shape`) and returns a
`ThetaOptimizer`, which checks the gradients against the params, demands the loss
when the architecture reads it, stores the model state and counts iterations.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import Any, ClassVar

import flax
import jax
import jax.numpy as jnp
import numpy as np

from lopt_core import LearnedOptimizer, Optimizer
from lopt_core.tree_utils import first_difference
from lopt_core.typing import MetaParams, ModelState, Params, PRNGKey
from lopt_core.validation import check_loss_given, check_tree_match
from lopt_learned._common import Layout, layout_of


@flax.struct.dataclass
class LearnedOptimizerState:
    """The fields every learned optimizer's state starts with.

    Attributes:
      params: the parameters.
      model_state: the model state, or None.
      iteration: int32 number of updates applied.
    """

    params: Params
    model_state: ModelState
    iteration: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class StepInputs:
    """What `update` hands an architecture's `step`, besides theta and the state.

    Attributes:
      params: the params held in the state.
      grads: gradients shaped like the params (checked; not read on a validation step).
      loss: the loss, or None (never None when the architecture `needs_loss`).
      layout: the params' flat layout.
      options: the other keyword arguments of `update` (`key`, `is_valid`, ...).
    """

    params: Params
    grads: Params
    loss: Any
    layout: Layout
    options: dict[str, Any]

    def flat(self) -> tuple[jax.Array, jax.Array]:
        """`(grads, params)` as float32 vectors `(total,)`, leaves concatenated in tree order."""
        return self.layout.flatten(self.grads), self.layout.flatten(self.params)


class LearnedArchitecture(LearnedOptimizer):
    """A learned optimizer written as theta init, state init and a pure step.

    Class attributes:
      state_class: the architecture's state, a `LearnedOptimizerState` subclass.
      needs_loss: True when `step` reads the loss; `update` then refuses `loss=None`.
      validation_steps: True when `update(..., is_valid=True)` only records a
        validation loss, so the gradients are not read (nor checked).
    """

    state_class: ClassVar[type[LearnedOptimizerState]] = LearnedOptimizerState
    needs_loss: ClassVar[bool] = False
    validation_steps: ClassVar[bool] = False

    @abc.abstractmethod
    def init_state(
        self, theta: MetaParams, params: Params, layout: Layout, **kwargs: Any
    ) -> dict[str, Any]:
        """The fields of the initial state other than params, model_state and iteration.

        Args:
          theta: the meta-parameters.
          params: the parameters.
          layout: the params' flat layout.
          **kwargs: `num_steps`, `key` and any other arguments of `Optimizer.init`.
        """

    @abc.abstractmethod
    def step(
        self, theta: MetaParams, state: LearnedOptimizerState, inputs: StepInputs
    ) -> LearnedOptimizerState:
        """The next state; its `iteration` and `model_state` are set by the driver.

        Args:
          theta: the meta-parameters.
          state: the current state.
          inputs: the gradients (already checked), the loss, the params' layout and
            the other arguments of `update`.
        """

    def opt_fn(self, theta: MetaParams, is_training: bool = False) -> ThetaOptimizer:
        """The optimizer that `theta` describes.

        Raises:
          ValueError: theta lacks an entry that `init` makes, or an entry has
            another structure or shape than `init` gives.
        """
        check_theta(self, theta)
        return ThetaOptimizer(self, theta, is_training)


class ThetaOptimizer(Optimizer):
    """The Optimizer that `opt_fn(theta)` returns, for every architecture.

    Attributes:
      lopt: the architecture (its configuration).
      theta: the meta-parameters.
      is_training: whether it was built for meta-training (`opt_fn(..., is_training=True)`).
    """

    def __init__(
        self, lopt: LearnedArchitecture, theta: MetaParams, is_training: bool = False
    ) -> None:
        self.lopt = lopt
        self.theta = theta
        self.is_training = bool(is_training)

    @property
    def needs_loss(self) -> bool:  # type: ignore[override]
        """Whether `update` must be given the loss (the architecture's `needs_loss`)."""
        return self.lopt.needs_loss

    @property
    def name(self) -> str:
        """`<LearnedOptimizer name>_opt`."""
        return f"{self.lopt.name}_opt"

    def __repr__(self) -> str:
        training = ", is_training=True" if self.is_training else ""
        return f"{self.lopt!r}.opt_fn(theta: {theta_size(self.theta)} floats{training})"

    def init(
        self,
        params: Params,
        model_state: ModelState = None,
        num_steps: int | None = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> LearnedOptimizerState:
        """The initial state: iteration 0 and the architecture's `init_state` fields.

        Raises:
          ValueError: `params` has no array leaves.
        """
        extra = self.lopt.init_state(
            self.theta, params, layout_of(params), num_steps=num_steps, key=key, **kwargs
        )
        return self.lopt.state_class(
            params=params,
            model_state=model_state,
            iteration=jnp.asarray(0, jnp.int32),
            **extra,
        )

    def update(
        self,
        opt_state: LearnedOptimizerState,
        grads: Params,
        loss: Any = None,
        model_state: ModelState = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> LearnedOptimizerState:
        """One step of the architecture; `model_state=None` keeps the stored one.

        Raises:
          ValueError: the architecture needs the loss and none was given, or
            grads are not shaped like the params.
        """
        lopt = self.lopt
        owner = type(lopt).__name__
        check_loss_given(self, loss, owner)
        if not (lopt.validation_steps and kwargs.get("is_valid") is True):
            check_tree_match(opt_state.params, grads, owner)
        params = opt_state.params
        inputs = StepInputs(params, grads, loss, layout_of(params), {"key": key, **kwargs})
        new = lopt.step(self.theta, opt_state, inputs)
        return new.replace(
            model_state=opt_state.model_state if model_state is None else model_state,
            iteration=opt_state.iteration + 1,
        )


def theta_size(theta: MetaParams) -> int:
    """The number of scalars in theta (works on arrays, tracers and ShapeDtypeStructs)."""
    return int(sum(np.prod(np.shape(x), dtype=np.int64) for x in jax.tree_util.tree_leaves(theta)))


def theta_schema(lopt: LearnedOptimizer) -> Any:
    """The structure, shapes and dtypes of `lopt.init(key)`, as ShapeDtypeStructs.

    Computed once per configuration (equal configurations share it); `init` is only
    traced, never run.
    """
    try:
        return _cached_schema(lopt)
    except TypeError:  # an unhashable third-party learned optimizer
        return _schema(lopt)


def _schema(lopt: LearnedOptimizer) -> Any:
    return jax.eval_shape(lopt.init, jax.ShapeDtypeStruct((2,), jnp.uint32))


_cached_schema = functools.cache(_schema)


def check_theta(lopt: LearnedOptimizer, theta: Any) -> None:
    """Raises a ValueError naming what differs when theta is not `lopt`'s.

    Raises:
      ValueError: theta is not a dict, lacks a top-level entry of `lopt.init`'s
        theta, or differs from it in structure or shape (the first differing path).
    """
    owner = type(lopt).__name__
    schema = theta_schema(lopt)
    fix = f"pass the theta that {owner}.init (or meta-training of a {owner}) produced."
    if not hasattr(theta, "keys"):
        raise ValueError(
            f"{owner}.opt_fn: theta must be the dict that {owner}.init returns, got "
            f"{type(theta).__name__}."
        )
    missing = [k for k in schema if k not in theta]
    if missing:
        raise ValueError(
            f"{owner}.opt_fn: theta lacks {missing} (it has {sorted(theta.keys())}); {fix}"
        )
    diff = first_difference(schema, theta)
    if diff is not None:
        raise ValueError(f"{owner}.opt_fn: theta does not match {owner}.init's: {diff}; {fix}")
