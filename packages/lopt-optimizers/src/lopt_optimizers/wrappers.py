"""Wrappers that change how any lopt Optimizer sees its gradients or takes its steps.

Each wrapper works on any `lopt_core.Optimizer` (optax-backed, learned or
hand-written), keeps its state an immutable pytree and can be jitted. A wrapper
needs the loss exactly when the optimizer it wraps does (`needs_loss`), and
`num_steps` at `init` exactly when it does (`needs_num_steps`).
"""

from __future__ import annotations

import abc
from typing import Any

import flax
import jax
import jax.numpy as jnp

import lopt_core
from lopt_core.optimizers import Optimizer
from lopt_core.typing import ModelState, OptState, Params
from lopt_core.validation import (
    check_nonnegative,
    check_optimizer_instance,
    check_positive,
    check_positive_int,
    needs_loss,
)
from lopt_optimizers._base import OptimizerBase, Options
from lopt_optimizers._plugin import CATALOG
from lopt_optimizers.compat import model_state_as_state
from lopt_optimizers.schedules import needs_num_steps


def _global_norm(tree: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.asarray(0.0, jnp.float32)
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))


def _split_key(options: Options) -> tuple[Options, Options]:
    """`options` for two inner optimizers: a given key split in two, the rest shared."""
    if "key" not in options:
        return options, options
    k_first, k_second = jax.random.split(options["key"])
    return {**options, "key": k_first}, {**options, "key": k_second}


class _Wrapping(OptimizerBase):
    """An optimizer around one inner optimizer `opt`: it needs the loss when `opt` does."""

    opt: Optimizer

    @property
    def needs_loss(self) -> bool:  # type: ignore[override]
        """True when the wrapped optimizer needs the loss."""
        return needs_loss(self.opt)

    @property
    def needs_num_steps(self) -> bool:
        """True when the wrapped optimizer needs `num_steps` at `init`."""
        return needs_num_steps(self.opt)


class _Delegating(_Wrapping):
    """A wrapper whose state is the inner optimizer's own state.

    Subclasses write `adjust(params, grads, loss) -> (grads, loss)`: what the
    wrapped optimizer sees instead of the true gradients and loss.
    """

    @abc.abstractmethod
    def adjust(self, params: Params, grads: Params, loss: Any) -> tuple[Params, Any]:
        """The gradients and loss that the wrapped optimizer is given."""

    def start(self, params: Params, options: Options) -> OptState:
        """The wrapped optimizer's initial state."""
        return self.opt.init(params, **options)

    def step(self, opt_state: OptState, grads: Params, loss: Any, options: Options) -> OptState:
        """Adjusts `grads` (and the loss), then calls the wrapped optimizer's `update`."""
        grads, loss = self.adjust(self.get_params(opt_state), grads, loss)
        return self.opt.update(opt_state, grads, loss=loss, **options)

    def get_params(self, opt_state: OptState) -> Params:
        """The wrapped optimizer's params."""
        return self.opt.get_params(opt_state)

    def eval_params(self, opt_state: OptState) -> Params:
        """The wrapped optimizer's evaluation params (its `eval_params`)."""
        return lopt_core.evaluation_point(self.opt, opt_state)[0]

    def get_state(self, opt_state: OptState) -> ModelState:
        """The wrapped optimizer's model state."""
        return self.opt.get_state(opt_state)

    def set_params(self, opt_state: OptState, params: Params) -> OptState:
        """The wrapped optimizer's state, holding `params`."""
        return self.opt.set_params(opt_state, params)


@CATALOG.optimizer(
    "GradientClipOptimizer", "Wrapper: clips gradients by value before any optimizer's step."
)
@lopt_core.declare
class GradientClipOptimizer(_Delegating):
    """Clips every gradient element to `[-grad_clip, grad_clip]` before the wrapped step.

    The state is the wrapped optimizer's state, unchanged in structure.

    Attributes:
      opt: any lopt Optimizer instance.
      grad_clip: the largest absolute gradient value passed on, > 0.

    Example:
      >>> import jax.numpy as jnp
      >>> from lopt_optimizers import SGD
      >>> opt = GradientClipOptimizer(SGD(1.0), grad_clip=0.5)
      >>> s = opt.update(opt.init({"w": jnp.zeros(2)}), {"w": jnp.array([2.0, -0.1])})
      >>> opt.get_params(s)["w"]
      Array([-0.5,  0.1], dtype=float32)
    """

    opt: Optimizer
    grad_clip: float = 3.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_optimizer_instance(self.opt, owner)
        check_positive(self.grad_clip, owner, "grad_clip")

    def adjust(self, params: Params, grads: Params, loss: Any) -> tuple[Params, Any]:
        """Clips `grads` by value; the loss is passed on unchanged."""
        del params
        clip = self.grad_clip
        return jax.tree_util.tree_map(lambda g: jnp.clip(g, -clip, clip), grads), loss

    @property
    def name(self) -> str:
        """`GradientClip<grad_clip>_<inner name>`."""
        return f"GradientClip{self.grad_clip}_{self.opt.name}"


@CATALOG.optimizer(
    "WeightDecayWrapper", "Wrapper: adds an L2 penalty to any optimizer's gradients and loss."
)
@lopt_core.declare
class WeightDecayWrapper(_Delegating):
    """Adds an L2 penalty `weight_decay / 2 * ||params||^2` to the loss the optimizer sees.

    The gradients passed on are `grads + weight_decay * params`, and, when a loss is
    given (and `add_to_loss`), the loss passed on includes the penalty, so
    optimizers that use the loss see the penalized objective.

    Attributes:
      opt: any lopt Optimizer instance.
      weight_decay: the penalty's coefficient, >= 0.
      add_to_loss: also add the penalty to the loss passed on.

    References:
      Krogh & Hertz, "A Simple Weight Decay Can Improve Generalization", NIPS 1991.
    """

    opt: Optimizer
    weight_decay: float = 1e-4
    add_to_loss: bool = True

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_optimizer_instance(self.opt, owner)
        check_nonnegative(self.weight_decay, owner, "weight_decay")

    def adjust(self, params: Params, grads: Params, loss: Any) -> tuple[Params, Any]:
        """Adds the penalty's gradient to `grads` (and its value to a given loss)."""
        grads = jax.tree_util.tree_map(
            lambda g, p: g + (self.weight_decay * p).astype(g.dtype), grads, params
        )
        if loss is not None and self.add_to_loss:
            sq = sum(jnp.sum(jnp.square(p)) for p in jax.tree_util.tree_leaves(params))
            loss = loss + 0.5 * self.weight_decay * sq
        return grads, loss

    @property
    def name(self) -> str:
        """`WeightDecay<weight_decay>_<inner name>`."""
        return f"WeightDecay{self.weight_decay}_{self.opt.name}"


@model_state_as_state
@flax.struct.dataclass
class GraftedOptimizerState:
    """The state of a `GraftedOptimizer`.

    Attributes:
      params: the parameters.
      model_state: the model state.
      iteration: int32 scalar, updates applied so far.
      mag_opt_state: the magnitude optimizer's state.
      dir_opt_state: the direction optimizer's state.
    """

    params: Params
    model_state: ModelState
    iteration: Any
    mag_opt_state: Any
    dir_opt_state: Any


@CATALOG.optimizer(
    "GraftedOptimizer", "Wrapper: one optimizer's step norm with another's step direction."
)
@lopt_core.declare
class GraftedOptimizer(OptimizerBase):
    """Takes the step length of one optimizer and the step direction of another.

    Each step, both optimizers step from the current params; the grafted step is
    the direction optimizer's step rescaled to the global norm of the magnitude
    optimizer's step. Both inner states then continue from the grafted params.

    Attributes:
      magnitude_opt: the optimizer whose step length is used.
      direction_opt: the optimizer whose step direction is used.

    References:
      Agarwal et al., "Disentangling Adaptive Gradient Methods from Learning Rates",
      2020 (arXiv:2002.11803), Sec. 3.
    """

    magnitude_opt: Optimizer
    direction_opt: Optimizer

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_optimizer_instance(self.magnitude_opt, owner, "magnitude_opt")
        check_optimizer_instance(self.direction_opt, owner, "direction_opt")

    @property
    def needs_loss(self) -> bool:  # type: ignore[override]
        """True when either grafted optimizer needs the loss."""
        return needs_loss(self.magnitude_opt) or needs_loss(self.direction_opt)

    @property
    def needs_num_steps(self) -> bool:
        """True when either grafted optimizer needs `num_steps` at `init`."""
        return needs_num_steps(self.magnitude_opt) or needs_num_steps(self.direction_opt)

    def start(self, params: Params, options: Options) -> GraftedOptimizerState:
        """Initializes both optimizers around `params` (each with half of a given key)."""
        mag, dir_ = _split_key(options)
        return GraftedOptimizerState(
            params=params,
            model_state=options.get("model_state"),
            iteration=jnp.asarray(0, jnp.int32),
            mag_opt_state=self.magnitude_opt.init(params, **mag),
            dir_opt_state=self.direction_opt.init(params, **dir_),
        )

    def step(
        self, opt_state: GraftedOptimizerState, grads: Params, loss: Any, options: Options
    ) -> GraftedOptimizerState:
        """One grafted step; where the direction step is zero the params do not move."""
        base = opt_state.params
        mag, dir_ = _split_key(options)
        mag_state = self.magnitude_opt.update(opt_state.mag_opt_state, grads, loss=loss, **mag)
        dir_state = self.direction_opt.update(opt_state.dir_opt_state, grads, loss=loss, **dir_)
        mag_step = jax.tree_util.tree_map(
            lambda n, p: n - p, self.magnitude_opt.get_params(mag_state), base
        )
        dir_step = jax.tree_util.tree_map(
            lambda n, p: n - p, self.direction_opt.get_params(dir_state), base
        )
        mag_norm = _global_norm(mag_step)
        dir_norm = _global_norm(dir_step)
        # A zero direction has no direction to scale: take no step rather than NaN.
        scale = jnp.where(dir_norm > 0, mag_norm / jnp.where(dir_norm > 0, dir_norm, 1.0), 0.0)
        new_params = jax.tree_util.tree_map(
            lambda p, d: p + (scale * d).astype(p.dtype), base, dir_step
        )
        return GraftedOptimizerState(
            params=new_params,
            model_state=options.get("model_state", opt_state.model_state),
            iteration=opt_state.iteration + 1,
            mag_opt_state=self.magnitude_opt.set_params(mag_state, new_params),
            dir_opt_state=self.direction_opt.set_params(dir_state, new_params),
        )

    def set_params(self, opt_state: GraftedOptimizerState, params: Params) -> GraftedOptimizerState:
        """`opt_state` holding `params`, in it and in both inner states."""
        return opt_state.replace(
            params=params,
            mag_opt_state=self.magnitude_opt.set_params(opt_state.mag_opt_state, params),
            dir_opt_state=self.direction_opt.set_params(opt_state.dir_opt_state, params),
        )

    @property
    def name(self) -> str:
        """`Grafted_<magnitude name>_<direction name>`."""
        return f"Grafted_{self.magnitude_opt.name}_{self.direction_opt.name}"


@flax.struct.dataclass
class GradientAccumulatorState:
    """The state of a `GradientAccumulator`.

    Attributes:
      inner_opt_state: the wrapped optimizer's state.
      grad_accum: the sum of the gradients since the last applied step.
      loss_accum: float32 scalar, the sum of the losses since then.
      iteration: int32 scalar, calls to `update` so far.
      model_state: the latest model state.
    """

    inner_opt_state: Any
    grad_accum: Params
    loss_accum: Any
    iteration: Any
    model_state: ModelState


@CATALOG.optimizer(
    "GradientAccumulator", "Wrapper: averages gradients over k calls, then steps any optimizer."
)
@lopt_core.declare
class GradientAccumulator(_Wrapping):
    """Averages gradients over `num_steps` calls, then applies one step of the wrapped optimizer.

    Calls that do not complete a group of `num_steps` only accumulate; the params
    change on every `num_steps`-th call, by one step of the wrapped optimizer on
    the mean gradient (and mean loss). Under `jit` the choice is a `lax.cond`, so
    one compiled function serves every call.

    Attributes:
      opt: any lopt Optimizer instance.
      num_steps: how many gradients to average per applied step, a positive integer.
    """

    opt: Optimizer
    num_steps: int = 2

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_optimizer_instance(self.opt, owner)
        check_positive_int(self.num_steps, owner, "num_steps")

    def start(self, params: Params, options: Options) -> GradientAccumulatorState:
        """Initializes the wrapped optimizer for `num_steps // self.num_steps` applied steps."""
        if "num_steps" in options:
            options = {**options, "num_steps": max(1, options["num_steps"] // self.num_steps)}
        return GradientAccumulatorState(
            inner_opt_state=self.opt.init(params, **options),
            grad_accum=jax.tree_util.tree_map(jnp.zeros_like, params),
            loss_accum=jnp.asarray(0.0, jnp.float32),
            iteration=jnp.asarray(0, jnp.int32),
            model_state=options.get("model_state"),
        )

    def step(
        self, opt_state: GradientAccumulatorState, grads: Params, loss: Any, options: Options
    ) -> GradientAccumulatorState:
        """Accumulates `grads`; on every `num_steps`-th call applies the averaged step."""
        grad_accum = jax.tree_util.tree_map(
            lambda a, g: a + g.astype(a.dtype), opt_state.grad_accum, grads
        )
        loss_value = jnp.asarray(0.0 if loss is None else loss, jnp.float32)
        loss_accum = opt_state.loss_accum + loss_value
        iteration = opt_state.iteration + 1
        new_model_state = options.get("model_state", opt_state.model_state)

        def apply(inner: Any) -> tuple[Any, Any, Any]:
            mean_grads = jax.tree_util.tree_map(lambda a: a / self.num_steps, grad_accum)
            mean_loss = None if loss is None else loss_accum / self.num_steps
            new_inner = self.opt.update(inner, mean_grads, loss=mean_loss, **options)
            return (
                new_inner,
                jax.tree_util.tree_map(jnp.zeros_like, grad_accum),
                jnp.zeros_like(loss_accum),
            )

        def accumulate(inner: Any) -> tuple[Any, Any, Any]:
            return inner, grad_accum, loss_accum

        if self.num_steps == 1:
            new_inner, grad_accum, loss_accum = apply(opt_state.inner_opt_state)
        else:
            new_inner, grad_accum, loss_accum = jax.lax.cond(
                iteration % self.num_steps == 0, apply, accumulate, opt_state.inner_opt_state
            )
        return GradientAccumulatorState(
            inner_opt_state=new_inner,
            grad_accum=grad_accum,
            loss_accum=loss_accum,
            iteration=iteration,
            model_state=new_model_state,
        )

    def get_params(self, opt_state: GradientAccumulatorState) -> Params:
        """The wrapped optimizer's params."""
        return self.opt.get_params(opt_state.inner_opt_state)

    def eval_params(self, opt_state: GradientAccumulatorState) -> Params:
        """The wrapped optimizer's evaluation params (its `eval_params`)."""
        return lopt_core.evaluation_point(self.opt, opt_state.inner_opt_state)[0]

    def get_state(self, opt_state: GradientAccumulatorState) -> ModelState:
        """The latest model state given to `update` (or to `init`)."""
        return opt_state.model_state

    def set_params(
        self, opt_state: GradientAccumulatorState, params: Params
    ) -> GradientAccumulatorState:
        """`opt_state` with the wrapped optimizer holding `params`."""
        return opt_state.replace(
            inner_opt_state=self.opt.set_params(opt_state.inner_opt_state, params)
        )

    @property
    def name(self) -> str:
        """`GradientAccumulator<num_steps>_<inner name>`."""
        return f"GradientAccumulator{self.num_steps}_{self.opt.name}"
