"""Antithetic evolution strategies over full-length unrolls from fresh task samples.

References:
  Salimans et al. "Evolution Strategies as a Scalable Alternative to
  Reinforcement Learning." 2017, Sec. 2.
  learned_optimization, `outer_trainers/full_es.py`.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

from lopt_core import GradientEstimatorOut, PRNGKey, TruncatedStep, TruncationSchedule
from lopt_outer._common import (
    check_positive_int,
    check_std,
    masked_mean,
    tree_stack,
    vector_sample_perturbations,
)
from lopt_outer._estimator import UnrollEstimator
from lopt_outer.truncated_es import es_grad_from_losses
from lopt_outer.truncated_step import antithetic_unroll
from lopt_outer.truncation_schedule import static_length

__all__ = ["LOSS_TYPES", "FullES", "FullESState", "fresh_step_state", "full_unroll_length"]

LOSS_TYPES = ("avg", "min", "last_recompute")


@flax.struct.dataclass
class FullESState:
    """FullES keeps nothing between estimates: every estimate starts from fresh tasks."""


def full_unroll_length(
    truncated_step: TruncatedStep,
    truncation_schedule: TruncationSchedule | None,
    unroll_length: int | None,
) -> int:
    """The static length of a full unroll: `unroll_length`, else the schedule's, else the step's."""
    if unroll_length is not None:
        return check_positive_int("unroll_length", unroll_length)
    sched = truncation_schedule or getattr(truncated_step, "trunc_sched", None)
    if sched is None:
        raise ValueError(
            "A full-unroll estimator needs unroll_length or a truncation schedule with a "
            "static length (e.g. ConstantTruncationSchedule)."
        )
    return static_length(sched)


def fresh_step_state(
    truncated_step: TruncatedStep,
    theta: Any,
    outer_state: Any,
    key: PRNGKey,
    theta_is_vector: bool,
    length: int,
) -> Any:
    """Fresh tasks at inner step 0 (any random initial offset removed) told to last `length`."""
    state = truncated_step.init_step_state(
        theta, outer_state, key, theta_is_vector, num_steps_override=length
    )
    if hasattr(state, "inner_step"):
        state = state.replace(inner_step=jnp.zeros_like(state.inner_step))
    return state


class FullES(UnrollEstimator):
    """Antithetic ES: each estimate trains fresh tasks from scratch for a whole unroll.

    Args:
      truncated_step: the vectorised inner-training step (needs `num_tasks`).
      truncation_schedule: gives the unroll length (must be static, e.g.
        `ConstantTruncationSchedule(n)`); defaults to the step's own schedule.
      std: standard deviation of the perturbations.
      steps_per_jit: inner steps per jitted call (default: the whole unroll).
      loss_type: "avg" (mean loss over the unroll), "min" (lowest loss of the
        unroll) or "last_recompute" (the final params' loss, averaged over
        `recompute_samples` batches of the step's `outer_data_split`).
      recompute_samples: batches for "last_recompute".
      clip_loss_diff: clip each task's loss difference to +-this value.
      unroll_length: an explicit length, overriding the schedule.

    Raises:
      ValueError: an unknown loss_type, or no static unroll length.
    """

    def __init__(
        self,
        truncated_step: TruncatedStep,
        truncation_schedule: TruncationSchedule | None = None,
        std: float = 0.01,
        steps_per_jit: int | None = None,
        loss_type: str = "avg",
        recompute_samples: int = 50,
        clip_loss_diff: float | None = None,
        unroll_length: int | None = None,
    ) -> None:
        if loss_type not in LOSS_TYPES:
            raise ValueError(
                f"loss_type must be one of {', '.join(LOSS_TYPES)}; got {loss_type!r}."
            )
        if not hasattr(truncated_step, "num_tasks"):
            raise ValueError(
                f"FullES needs a vectorised truncated step with `num_tasks`; got "
                f"{type(truncated_step).__name__}."
            )
        self.std = check_std(std)
        self.loss_type = loss_type
        self.recompute_samples = check_positive_int("recompute_samples", recompute_samples)
        self.clip_loss_diff = clip_loss_diff
        self.truncation_schedule = truncation_schedule
        self.unroll_length = full_unroll_length(truncated_step, truncation_schedule, unroll_length)
        super().__init__(truncated_step, self.unroll_length, steps_per_jit)

    def _init_state(self, theta: Any, outer_state: Any, key: PRNGKey) -> FullESState:
        return FullESState()

    def _extra_data(self) -> Any:
        if self.loss_type == "last_recompute":
            return self.truncated_step.get_outer_batch(self.recompute_samples)
        return None

    def _begin(self, theta: Any, key: PRNGKey, state: FullESState, outer_state: Any):
        k_pert, k_init = jax.random.split(key)
        n = self.truncated_step.num_tasks
        eps, p_theta, n_theta = vector_sample_perturbations(theta, k_pert, self.std, n)
        thetas = tree_stack([p_theta, n_theta])
        # Same key for both: the two perturbations train the very same tasks.
        states = jax.vmap(
            lambda th: fresh_step_state(
                self.truncated_step, th, outer_state, k_init, True, self.unroll_length
            )
        )(thetas)
        return eps, thetas, states, outer_state

    def _chunk(self, carry: Any, key: PRNGKey, datas: Any, outer_state: Any, n: int):
        eps, thetas, states, outer = carry
        states, ys = antithetic_unroll(
            self.truncated_step, thetas, states, key, datas, outer_state, n
        )
        return (eps, thetas, states, outer), ys

    def _losses(self, carry: Any, ys: Any, key: PRNGKey, extra: Any) -> jax.Array:
        if self.loss_type == "avg":
            return jax.vmap(masked_mean, in_axes=(1, 1))(ys.loss, ys.mask)
        if self.loss_type == "min":
            return jnp.min(jnp.where(ys.mask, ys.loss, jnp.inf), axis=0)
        _, thetas, states, outer = carry
        keys = jax.random.split(key, self.recompute_samples)

        def one(theta: Any, state: Any) -> jax.Array:
            def batch_loss(xs: Any) -> jax.Array:
                k, d = xs
                return self.truncated_step.meta_loss_batch(theta, state, k, d, outer, True)

            return jnp.mean(jax.lax.map(batch_loss, (keys, extra)), axis=0)

        return jax.vmap(one)(thetas, states)

    def _end(self, theta, carry, ys, key, state, extra):
        eps = carry[0]
        losses = self._losses(carry, ys, key, extra)
        mean_loss, grad, delta = es_grad_from_losses(
            losses[0], losses[1], eps, self.std, self.clip_loss_diff
        )
        p_ys = jax.tree_util.tree_map(lambda x: x[:, 0], ys)
        metrics = {"mean_loss": mean_loss, "delta_loss_abs_mean": jnp.mean(jnp.abs(delta))}
        out = GradientEstimatorOut(
            mean_loss=mean_loss, grad=grad, unroll_state=FullESState(), unroll_info=p_ys
        )
        return out, metrics
