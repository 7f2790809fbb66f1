"""Truncated evolution strategies: antithetic ES over each truncation alone.

References:
  Salimans et al. "Evolution Strategies as a Scalable Alternative to
  Reinforcement Learning." 2017, Sec. 2 (antithetic sampling).
  learned_optimization, `outer_trainers/truncated_es.py`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lopt_core import GradientEstimatorOut, MetaParams, PRNGKey, TruncatedStep
from lopt_outer._common import (
    check_positive_int,
    check_std,
    masked_mean,
    scale_per_task,
    tree_index,
    tree_stack,
    vector_sample_perturbations,
)
from lopt_outer._estimator import UnrollEstimator
from lopt_outer.truncated_step import antithetic_unroll

__all__ = ["TruncatedES", "compute_es_grad"]


def compute_es_grad(
    p_ys: Any, n_ys: Any, eps: MetaParams, std: float, clip_loss_diff: float | None = None
) -> tuple[jax.Array, MetaParams, jax.Array]:
    """Antithetic ES estimate from per-step outputs with leading axes `(steps, num_tasks)`.

    Returns:
      `(mean_loss, grad, delta_loss)`; grad is
      `mean_i (L+_i - L-_i) / (2 std^2) * eps_i` with L the masked mean loss.
    """
    pos_loss = masked_mean(p_ys.loss, p_ys.mask)
    neg_loss = masked_mean(n_ys.loss, n_ys.mask)
    return es_grad_from_losses(pos_loss, neg_loss, eps, std, clip_loss_diff)


def antithetic_delta(
    pos_loss: jax.Array, neg_loss: jax.Array, clip_loss_diff: float | None = None
) -> jax.Array:
    """Per-task `pos_loss - neg_loss`, non-finite differences zeroed (optionally clipped).

    Shared by every ES-family estimator, so a diverged task adds nothing to the
    estimate instead of poisoning it.
    """
    delta = jnp.nan_to_num(pos_loss - neg_loss, nan=0.0, posinf=0.0, neginf=0.0)
    if clip_loss_diff is not None:
        delta = jnp.clip(delta, -clip_loss_diff, clip_loss_diff)
    return delta


def es_grad_from_losses(
    pos_loss: jax.Array,
    neg_loss: jax.Array,
    eps: MetaParams,
    std: float,
    clip_loss_diff: float | None = None,
) -> tuple[jax.Array, MetaParams, jax.Array]:
    """ES estimate from per-task losses of the positive and negative perturbations."""
    delta = antithetic_delta(pos_loss, neg_loss, clip_loss_diff)
    contrib = delta / (2 * std**2)
    grad = jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0), scale_per_task(contrib, eps))
    return jnp.mean((pos_loss + neg_loss) / 2.0), grad, delta


class TruncatedES(UnrollEstimator):
    """Antithetic ES on each truncation: both perturbations start from the same state.

    The positive copy's final state becomes the next starting state. Biased for
    long-horizon effects (it ignores how theta shaped the starting state) but
    lower variance than PES.

    Args:
      truncated_step: the vectorised inner-training step.
      unroll_length: inner steps per estimate.
      std: standard deviation of the perturbations.
      steps_per_jit: inner steps per jitted call (default: the whole unroll).
    """

    def __init__(
        self,
        truncated_step: TruncatedStep,
        unroll_length: int = 20,
        std: float = 0.01,
        steps_per_jit: int | None = None,
    ) -> None:
        self.unroll_length = check_positive_int("unroll_length", unroll_length)
        self.std = check_std(std)
        super().__init__(truncated_step, unroll_length, steps_per_jit)

    def _init_state(self, theta: Any, outer_state: Any, key: PRNGKey) -> Any:
        return self.truncated_step.init_step_state(theta, outer_state, key, False)

    def _begin(self, theta: Any, key: PRNGKey, state: Any, outer_state: Any):
        n = jax.tree_util.tree_leaves(state)[0].shape[0]
        eps, p_theta, n_theta = vector_sample_perturbations(theta, key, self.std, n)
        return eps, tree_stack([p_theta, n_theta]), tree_stack([state, state])

    def _chunk(self, carry: Any, key: PRNGKey, datas: Any, outer_state: Any, n: int):
        eps, thetas, states = carry
        states, ys = antithetic_unroll(
            self.truncated_step, thetas, states, key, datas, outer_state, n
        )
        return (eps, thetas, states), ys

    def _end(self, theta, carry, ys, key, state, extra):
        eps, _, states = carry
        p_ys = jax.tree_util.tree_map(lambda x: x[:, 0], ys)
        n_ys = jax.tree_util.tree_map(lambda x: x[:, 1], ys)
        mean_loss, grad, delta = compute_es_grad(p_ys, n_ys, eps, self.std)
        metrics = {"mean_loss": mean_loss, "delta_loss_abs_mean": jnp.mean(jnp.abs(delta))}
        out = GradientEstimatorOut(
            mean_loss=mean_loss, grad=grad, unroll_state=tree_index(states, 0), unroll_info=p_ys
        )
        return out, metrics
