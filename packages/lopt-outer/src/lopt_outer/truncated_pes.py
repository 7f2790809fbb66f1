"""Persistent Evolution Strategies (PES) over truncated unrolls.

References:
  Vicol, Metz, Sohl-Dickstein. "Unbiased Gradient Estimation in Unrolled
  Computation Graphs with Persistent Evolution Strategies." ICML 2021, Sec. 3.
  learned_optimization, `outer_trainers/truncated_pes.py`.
"""

from __future__ import annotations

from typing import Any

import flax
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
from lopt_outer.truncated_es import antithetic_delta
from lopt_outer.truncated_step import antithetic_unroll

__all__ = ["PESWorkerState", "TruncatedPES", "compute_pes_grad"]


@flax.struct.dataclass
class PESWorkerState:
    """Worker state of PES.

    Attributes:
      pos_state: inner state unrolled with the positive perturbations.
      neg_state: inner state unrolled with the negative perturbations.
      accumulator: per task, the sum of the perturbations applied since its last
        reset (leading axis `num_tasks`, otherwise shaped like theta).
    """

    pos_state: Any
    neg_state: Any
    accumulator: Any


def compute_pes_grad(
    p_ys: Any, n_ys: Any, accumulator: MetaParams, eps: MetaParams, std: float
) -> tuple[jax.Array, MetaParams, MetaParams, jax.Array]:
    """The PES estimate from one truncation's positive and negative outputs.

    Args:
      p_ys, n_ys: `TruncatedUnrollOut`s with leading axes `(steps, num_tasks)`.
      accumulator: perturbations summed since each task's last reset.
      eps: this truncation's positive perturbations (leading `num_tasks` axis).
      std: the perturbation standard deviation.

    Returns:
      `(mean_loss, grad, new_accumulator, delta_loss)`. Steps after a task's reset
      within this truncation credit only `eps`, and a task reset during the
      truncation restarts its accumulator from `eps`.
    """
    pos_loss = masked_mean(p_ys.loss, p_ys.mask)
    neg_loss = masked_mean(n_ys.loss, n_ys.mask)
    delta = antithetic_delta(pos_loss, neg_loss)
    contrib = delta / (2 * std**2)
    has_finished = jnp.cumsum(p_ys.is_done.astype(jnp.int32), axis=0) > 0
    frac_before_reset = 1.0 - jnp.mean(has_finished.astype(jnp.float32), axis=0)
    summed = jax.tree_util.tree_map(lambda a, e: a + e, accumulator, eps)
    # Mean over steps of where(finished, eps, acc + eps) = eps + frac_before_reset * acc.
    per_task = jax.tree_util.tree_map(
        lambda a, e: e + scale_per_task(frac_before_reset, a), accumulator, eps
    )
    grad = jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0), scale_per_task(contrib, per_task))
    done = has_finished[-1]
    new_acc = jax.tree_util.tree_map(
        lambda e, s: jnp.where(done.reshape((-1,) + (1,) * (e.ndim - 1)), e, s), eps, summed
    )
    mean_loss = jnp.mean((pos_loss + neg_loss) / 2.0)
    return mean_loss, grad, new_acc, delta


class TruncatedPES(UnrollEstimator):
    """PES: antithetic ES over truncations that remembers past perturbations.

    Each estimate perturbs theta per task, unrolls the positive and negative
    copies `trunc_length` steps from where they stopped last time, and credits the
    loss difference to all perturbations since the task's last reset. The
    accumulator of a task resets when the task does.

    Args:
      truncated_step: the vectorised inner-training step.
      trunc_length: inner steps per estimate.
      std: standard deviation of the perturbations.
      steps_per_jit: inner steps per jitted call; by default the whole truncation
        is one call. Must divide `trunc_length`.

    Example:
      >>> est = TruncatedPES(step, trunc_length=10, std=0.01)
    """

    def __init__(
        self,
        truncated_step: TruncatedStep,
        trunc_length: int = 10,
        std: float = 0.01,
        steps_per_jit: int | None = None,
    ) -> None:
        self.trunc_length = check_positive_int("trunc_length", trunc_length)
        self.std = check_std(std)
        super().__init__(truncated_step, trunc_length, steps_per_jit)

    def _init_state(self, theta: Any, outer_state: Any, key: PRNGKey) -> PESWorkerState:
        state = self.truncated_step.init_step_state(theta, outer_state, key, False)
        n = jax.tree_util.tree_leaves(state)[0].shape[0]
        acc = jax.tree_util.tree_map(lambda x: jnp.zeros((n, *jnp.shape(x)), x.dtype), theta)
        return PESWorkerState(pos_state=state, neg_state=state, accumulator=acc)

    def _begin(self, theta: Any, key: PRNGKey, state: PESWorkerState, outer_state: Any):
        n = jax.tree_util.tree_leaves(state.accumulator)[0].shape[0]
        eps, p_theta, n_theta = vector_sample_perturbations(theta, key, self.std, n)
        states = tree_stack([state.pos_state, state.neg_state])
        return eps, tree_stack([p_theta, n_theta]), states

    def _chunk(self, carry: Any, key: PRNGKey, datas: Any, outer_state: Any, n: int):
        eps, thetas, states = carry
        states, ys = antithetic_unroll(
            self.truncated_step, thetas, states, key, datas, outer_state, n
        )
        return (eps, thetas, states), ys

    def _end(self, theta, carry, ys, key, state: PESWorkerState, extra):
        eps, _, states = carry
        p_ys = jax.tree_util.tree_map(lambda x: x[:, 0], ys)
        n_ys = jax.tree_util.tree_map(lambda x: x[:, 1], ys)
        mean_loss, grad, new_acc, delta = compute_pes_grad(
            p_ys, n_ys, state.accumulator, eps, self.std
        )
        new_state = PESWorkerState(tree_index(states, 0), tree_index(states, 1), new_acc)
        metrics = {
            "mean_loss": mean_loss,
            "delta_loss_abs_mean": jnp.mean(jnp.abs(delta)),
            "resets": jnp.sum(p_ys.is_done),
        }
        out = GradientEstimatorOut(
            mean_loss=mean_loss, grad=grad, unroll_state=new_state, unroll_info=p_ys
        )
        return out, metrics
