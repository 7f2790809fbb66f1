"""`as_optax`: any lopt Optimizer, learned ones included, as an optax transform."""

from __future__ import annotations

from typing import Any

import jax
import optax

from lopt_core.optimizers import Optimizer
from lopt_core.typing import ModelState, OptState, Params, PRNGKey
from lopt_core.validation import check_loss_given, check_optimizer_instance, needs_loss
from lopt_optimizers._base import given
from lopt_optimizers.schedules import check_num_steps, needs_num_steps

__all__ = ["as_optax", "needs_loss", "needs_num_steps"]


def _set_params(opt: Optimizer, state: OptState, params: Params) -> OptState:
    try:
        return opt.set_params(state, params)
    except AttributeError as exc:
        # States that are NamedTuples (as in the reference library) have `_replace`.
        if hasattr(state, "_replace") and hasattr(state, "params"):
            return state._replace(params=params)
        raise TypeError(
            f"as_optax({opt.name}): tx.update was given params, but {type(opt).__name__}."
            f"set_params cannot store them in a {type(state).__name__} state ({exc}). "
            "Implement set_params, or call tx.update(grads, state) without params."
        ) from exc


def as_optax(opt: Optimizer, num_steps: int | None = None) -> optax.GradientTransformationExtraArgs:
    """Wraps a lopt Optimizer as an optax transform for a plain optax training loop.

    `tx = as_optax(opt)` behaves as any optax optimizer does:

    * `state = tx.init(params)` is `opt.init(params)` (`opt.init(params,
      num_steps=num_steps)` when `num_steps` is given): the lopt optimizer's own
      state, so `opt.get_params(state)` still works on it.
    * `updates, state = tx.update(grads, state, params=None, *, loss=None,
      model_state=None, key=None, **extra_args)` runs `opt.update` and returns
      `updates = new_params - old_params`, so `optax.apply_updates(params, updates)`
      gives the lopt optimizer's new params (up to float rounding).

    The loss, the model state and a random key travel through optax's extra
    arguments (`optax.GradientTransformationExtraArgs`), so the transform can sit
    in `optax.chain` as well. `value=`, optax's own name for the objective value,
    is accepted in place of `loss=`. Other extra arguments are ignored, as optax
    transforms ignore extra arguments they do not use.

    When `params` is given, they replace the params inside the lopt state before
    the step (`opt.set_params`), so the optimizer always steps from the params the
    training loop holds, even when other transforms changed them.

    An optimizer that needs the loss says so with a truthy `needs_loss` attribute
    (`lopt_core.validation.needs_loss`); calling `tx.update` for it without `loss=` raises a
    ValueError instead of silently giving it None.

    An optimizer whose state needs the training horizon (`needs_num_steps(opt)`,
    for example one with a `schedules.CosineLearningRateSchedule` learning rate)
    must be given `num_steps`, the number of updates the loop will run; any other
    optimizer is given it when it is passed (learned optimizers may use it).

    Args:
      opt: any `lopt_core.Optimizer` instance, for example `Adam(1e-3)` or
        `learned.opt_fn(theta)`.
      num_steps: the number of steps the training loop will take, a positive
        integer, passed to `opt.init`; None passes nothing.

    Returns:
      An `optax.GradientTransformationExtraArgs`.

    Raises:
      TypeError: `opt` is a class, a LearnedOptimizer or an optax transform rather
        than an Optimizer instance.
      ValueError: `num_steps` is not a positive integer, or `opt` needs it and it
        is None.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from lopt_optimizers import Adam, as_optax
      >>> tx = as_optax(Adam(1e-2))
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> loss, grads = jax.value_and_grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      >>> updates, state = tx.update(grads, state, params, loss=loss)
      >>> params = optax.apply_updates(params, updates)
    """
    opt = check_optimizer_instance(opt, "as_optax")
    owner = f"as_optax({opt.name})"
    if num_steps is not None:
        num_steps = check_num_steps(num_steps, owner)
    elif needs_num_steps(opt):
        raise ValueError(
            f"{owner}: {type(opt).__name__} needs the number of steps it will run (its "
            "state holds the horizon of its schedule), and none was given. Pass "
            "as_optax(opt, num_steps=N) with N the number of updates of the training loop."
        )
    init_kwargs = given(num_steps=num_steps)

    def init_fn(params: Params) -> OptState:
        return opt.init(params, **init_kwargs)

    def update_fn(
        updates: Params,
        state: OptState,
        params: Params | None = None,
        *,
        loss: Any = None,
        model_state: ModelState = None,
        key: PRNGKey | None = None,
        **extra_args: Any,
    ) -> tuple[Params, OptState]:
        if loss is None:
            loss = extra_args.get("value")
        check_loss_given(opt, loss, owner)
        if params is not None:
            state = _set_params(opt, state, params)
            old = params
        else:
            old = opt.get_params(state)
        new_state = opt.update(state, updates, loss=loss, **given(model_state=model_state, key=key))
        new = opt.get_params(new_state)
        deltas = jax.tree_util.tree_map(lambda n, o: n - o, new, old)
        return deltas, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
