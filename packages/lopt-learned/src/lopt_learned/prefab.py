"""`velo`: VeLO as a ready optax transform (HyperV2, its horizon, weight decay, accumulation)."""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import optax

import lopt_optimizers
from lopt_core.typing import MetaParams, Params
from lopt_core.validation import check_nonnegative, check_positive_int
from lopt_learned.export import LoadedLearnedOptimizer, load_learned_optimizer
from lopt_learned.hyper_v2 import HyperV2
from lopt_learned.reference_checkpoint import hyper_v2_config

VELO_MAX_TRAINING_STEPS = 150_000
"""The longest horizon VeLO was meta-trained for; longer runs accumulate gradients."""


def velo_architecture(**overrides: Any) -> HyperV2:
    """The HyperV2 configuration VeLO was meta-trained with (LSTM 512 wide, 256 MLPs)."""
    config = {"lstm_hidden_size": 512, "param_inits": 256, "bugged_loss_features": False}
    return HyperV2(**{**config, **overrides})


def _resolve(theta: Any) -> tuple[HyperV2, MetaParams]:
    if theta is None:
        lopt = velo_architecture()
        return lopt, lopt.init(jax.random.PRNGKey(0))
    if isinstance(theta, (str, os.PathLike)):
        theta = load_learned_optimizer(theta, expected=HyperV2)
    if isinstance(theta, LoadedLearnedOptimizer):
        if not isinstance(theta.lopt, HyperV2):
            raise TypeError(
                f"velo: theta was loaded for {type(theta.lopt).__name__}, not HyperV2; pass "
                "a HyperV2 theta (lopt convert reference-checkpoint writes one)."
            )
        return theta.lopt, theta.theta
    if not hasattr(theta, "keys"):
        raise TypeError(
            f"velo: theta must be None, a HyperV2 theta dict, a LoadedLearnedOptimizer or "
            f"the path of a lopt theta file, got {type(theta).__name__}."
        )
    return velo_architecture(**hyper_v2_config(theta)), theta


def velo(
    num_steps: int,
    weight_decay: float = 0.0,
    theta: Any = None,
    max_training_steps: int = VELO_MAX_TRAINING_STEPS,
) -> optax.GradientTransformationExtraArgs:
    """VeLO, the learned optimizer of Metz et al. 2022, as an optax transform.

    `tx.init(params)` starts HyperV2 with the horizon `num_steps`;
    `tx.update(grads, state, params, loss=loss)` needs the loss at every step.
    Runs longer than `max_training_steps` average the gradients of
    `ceil(num_steps / max_training_steps)` calls per step, so that the learned
    optimizer sees a horizon it was meta-trained for. `weight_decay > 0` adds
    `weight_decay * params` to the gradients and `weight_decay / 2 * ||params||^2`
    to the loss it sees (the reference adds `weight_decay * ||params||^2`); a
    small value such as 1e-6 stabilises long runs.

    No weights can be downloaded here: VeLO's meta-trained theta is the
    reference's `params` checkpoint, which you convert once with
    `lopt convert reference-checkpoint params velo.lopt` and pass as
    `theta="velo.lopt"`. With `theta=None` the transform uses HyperV2's initial
    theta (random, `PRNGKey(0)`), which is not a good optimizer: it takes small,
    bounded steps whose direction is not trained.

    Args:
      num_steps: the number of `update` calls the run will make.
      weight_decay: the L2 coefficient, >= 0.
      theta: None, a HyperV2 theta dict (sizes read off its shapes), a
        `LoadedLearnedOptimizer` (from `load_reference_checkpoint` or
        `load_learned_optimizer`), or the path of a lopt theta file.
      max_training_steps: the longest horizon given to the learned optimizer.

    Returns:
      An `optax.GradientTransformationExtraArgs`.

    Raises:
      ValueError: `num_steps` or `max_training_steps` is not a positive integer,
        `weight_decay` is negative, or theta does not fit its HyperV2.
      TypeError: theta is of another kind or architecture.
      lopt_core.CheckpointError: the theta file cannot be read as a HyperV2 theta.

    Example:
      >>> tx = velo(num_steps=1000, theta="velo.lopt")
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state, params, loss=loss)
      >>> params = optax.apply_updates(params, updates)

    References:
      Metz, Harrison, Freeman, Merchant, Beyer, Bradbury, Agrawal, Poole,
      Mordatch, Roberts, Sohl-Dickstein, "VeLO: Training Versatile Learned
      Optimizers by Scaling Up", 2022.
    """
    num_steps = check_positive_int(num_steps, "velo", "num_steps")
    limit = check_positive_int(max_training_steps, "velo", "max_training_steps")
    check_nonnegative(weight_decay, "velo", "weight_decay")
    lopt, theta = _resolve(theta)
    opt: Any = lopt.opt_fn(theta)
    if num_steps > limit:
        opt = lopt_optimizers.GradientAccumulator(opt, num_steps=math.ceil(num_steps / limit))
    if weight_decay > 0.0:
        opt = lopt_optimizers.WeightDecayWrapper(opt, weight_decay=float(weight_decay))
    tx = lopt_optimizers.as_optax(opt)

    def init_fn(params: Params) -> Any:
        return opt.init(params, num_steps=num_steps)

    return optax.GradientTransformationExtraArgs(init_fn, tx.update)
