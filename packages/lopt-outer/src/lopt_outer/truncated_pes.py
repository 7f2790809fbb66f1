"""Persistent Evolution Strategies (PES) over truncated unrolls.

References:
  Vicol, Metz, Sohl-Dickstein. "Unbiased Gradient Estimation in Unrolled
  Computation Graphs with Persistent Evolution Strategies." ICML 2021, Sec. 3
  (Algorithm 1, and its antithetic variant).
  learned_optimization, `outer_trainers/truncated_pes.py`.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

import lopt_core
from lopt_core.typing import MetaParams, PRNGKey
from lopt_outer import compat
from lopt_outer._common import masked_mean, scale_per_task
from lopt_outer._es import ESEstimator, ESGradient, es_gradient
from lopt_outer._estimator import GradientEstimatorState

__all__ = ["PESWorkerState", "TruncatedPES", "compute_pes_grad"]


@flax.struct.dataclass
class PESWorkerState(GradientEstimatorState):
    """Worker state of PES.

    Attributes:
      pos_state: inner state unrolled with the positive perturbations.
      neg_state: inner state unrolled with the negative perturbations (None when
        the estimator is not antithetic).
      accumulator: per task, the sum of the perturbations applied since its last
        reset (leading axis `num_tasks`, otherwise shaped like theta).
    """

    pos_state: Any
    neg_state: Any
    accumulator: Any


def compute_pes_grad(
    p_ys: Any,
    n_ys: Any,
    accumulator: MetaParams,
    eps: MetaParams,
    std: float,
    sign_delta_loss_scalar: float | None = None,
) -> tuple[ESGradient, MetaParams]:
    """The PES estimate from one truncation's positive and negative outputs.

    Args:
      p_ys, n_ys: `TruncatedUnrollOut`s with leading axes `(steps, num_tasks)`;
        `n_ys` None for a one-sided (not antithetic) estimate.
      accumulator: perturbations summed since each task's last reset.
      eps: this truncation's positive perturbations (leading `num_tasks` axis).
      std: the perturbation standard deviation.
      sign_delta_loss_scalar: None, or replace each task's loss difference (the
        mean over the truncation's steps) by this value times its sign, as the
        reference does for PES.

    Returns:
      `(estimate, new_accumulator)`: the `ESGradient` (non-finite tasks masked
      out and counted, see `es_gradient`) and the accumulator. Steps after a task's reset
      within this truncation credit only `eps`, and a task reset during the
      truncation restarts its accumulator from `eps`.
    """
    pos_loss = masked_mean(p_ys.loss, p_ys.mask)
    neg_loss = None if n_ys is None else masked_mean(n_ys.loss, n_ys.mask)
    has_finished = jnp.cumsum(p_ys.is_done.astype(jnp.int32), axis=0) > 0
    frac_before_reset = 1.0 - jnp.mean(has_finished.astype(jnp.float32), axis=0)
    # Mean over steps of where(finished, eps, acc + eps) = eps + frac_before_reset * acc.
    credited = jax.tree_util.tree_map(
        lambda a, e: e + scale_per_task(frac_before_reset, a), accumulator, eps
    )
    estimate = es_gradient(
        pos_loss, neg_loss, credited, std, sign_delta_loss_scalar=sign_delta_loss_scalar
    )
    done = has_finished[-1]
    new_acc = jax.tree_util.tree_map(
        lambda e, a: jnp.where(done.reshape((-1,) + (1,) * (e.ndim - 1)), e, a + e),
        eps,
        accumulator,
    )
    return estimate, new_acc


@compat.with_old_spellings
@lopt_core.declare
class TruncatedPES(ESEstimator):
    """PES: ES over truncations that remembers past perturbations.

    Each estimate perturbs theta per task, unrolls the perturbed copies
    `unroll_length` steps from where they stopped last time, and credits the
    loss difference to all perturbations since the task's last reset. The
    accumulator of a task resets when the task does.

    Args:
      truncated_step: the vectorised inner-training step.
      unroll_length: inner steps per estimate (the reference's `trunc_length`,
        still accepted).
      std: standard deviation of the perturbations.
      steps_per_jit: inner steps per jitted call; by default the whole truncation
        is one call. Must divide `unroll_length`.
      antithetic, stack_antithetic_samples, sign_delta_loss_scalar: keyword-only;
        see `ESEstimator` (defaults True, True, None). The reference's
        `stack_antithetic_samples` defaults to False; both settings give the same
        estimate, lopt's default is the faster one.

    Example:
      >>> est = TruncatedPES(step, unroll_length=10, std=0.01)
    """

    unroll_length: int = 10
    std: float = 0.01
    steps_per_jit: int | None = None

    def _init_state(self, theta: Any, outer_state: Any, key: PRNGKey) -> PESWorkerState:
        state = self.truncated_step.init_step_state(theta, outer_state, key, False)
        n = self.truncated_step.num_tasks
        acc = jax.tree_util.tree_map(lambda x: jnp.zeros((n, *jnp.shape(x)), x.dtype), theta)
        neg_state = state if self.antithetic else None
        return PESWorkerState(pos_state=state, neg_state=neg_state, accumulator=acc)

    def _start_states(self, state: PESWorkerState) -> Any:
        return self._join(state.pos_state, state.neg_state)

    def _end(self, theta, carry, ys, key, state: PESWorkerState, outer_state, extra):
        eps, _, states = carry
        p_ys, n_ys = self._split(ys, axis=1)
        estimate, new_acc = compute_pes_grad(
            p_ys, n_ys, state.accumulator, eps, self.std, self.sign_delta_loss_scalar
        )
        new_state = PESWorkerState(*self._split(states, axis=0), new_acc)
        resets = jnp.sum(p_ys.is_done)
        return self._out(estimate, new_state, p_ys, resets=resets)
