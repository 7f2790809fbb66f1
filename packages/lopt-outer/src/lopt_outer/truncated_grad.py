"""Meta-gradients by backpropagation through the unroll: truncated and full.

References:
  Wu, Ren, Liao, Grosse. "Understanding Short-Horizon Bias in Stochastic
  Meta-Optimization." ICLR 2018 (truncated backpropagation).
  learned_optimization, `outer_trainers/truncated_grad.py`.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

import lopt_core
from lopt_core import GradientEstimatorOut, TruncatedStep, TruncationSchedule
from lopt_core.typing import PRNGKey
from lopt_outer._common import masked_mean, match_dtypes
from lopt_outer._estimator import UnrollEstimator
from lopt_outer.full_es import FullUnroll
from lopt_outer.truncated_step import truncated_unroll

__all__ = ["FullGrad", "FullGradState", "TruncatedGrad", "unroll_meta_loss"]


def unroll_meta_loss(
    truncated_step: TruncatedStep,
    theta: Any,
    state: Any,
    key: PRNGKey,
    datas: Any,
    outer_state: Any,
    length: int,
) -> tuple[jax.Array, tuple[Any, Any]]:
    """Mean over tasks of each task's masked mean loss over a `length`-step unroll.

    This is the meta-loss the ES estimators estimate the gradient of; it is
    differentiable in theta.

    Returns:
      `(meta_loss, (final_state, per_step_outputs))`.
    """
    state, ys = truncated_unroll(truncated_step, theta, state, key, datas, outer_state, length)
    return jnp.mean(masked_mean(ys.loss, ys.mask)), (state, ys)


@lopt_core.declare
class TruncatedGrad(UnrollEstimator):
    """Truncated backpropagation: the exact gradient of one truncation's mean loss.

    Gradients do not flow into the starting state (that is the truncation), so
    long-horizon effects are ignored; the final state continues next time.

    Args:
      truncated_step: the vectorised inner-training step.
      unroll_length: inner steps per estimate (one jitted call).
    """

    unroll_length: int = 20

    def _init_state(self, theta: Any, outer_state: Any, key: PRNGKey) -> Any:
        return self.truncated_step.init_step_state(theta, outer_state, key, False)

    def _whole(self, theta, key, state, datas, outer_state, extra):
        (loss, (new_state, ys)), grad = jax.value_and_grad(unroll_meta_loss, 1, has_aux=True)(
            self.truncated_step, theta, state, key, datas, outer_state, self.length
        )
        new_state = match_dtypes(state, jax.lax.stop_gradient(new_state))
        out = GradientEstimatorOut(
            mean_loss=loss, grad=grad, unroll_state=new_state, unroll_info=ys
        )
        return out, {"mean_loss": loss}


@flax.struct.dataclass
class FullGradState:
    """FullGrad keeps nothing between estimates: every estimate starts from fresh tasks."""


@lopt_core.declare
class FullGrad(FullUnroll, UnrollEstimator):
    """Backpropagation through a whole unroll from freshly sampled tasks.

    Args:
      truncated_step: the vectorised inner-training step.
      truncation_schedule: gives the unroll length (static); defaults to the
        step's own schedule.
      unroll_length: an explicit length, overriding the schedule.
    """

    truncation_schedule: TruncationSchedule | None = None
    unroll_length: int | None = None

    def _init_state(self, theta: Any, outer_state: Any, key: PRNGKey) -> FullGradState:
        return FullGradState()

    def _whole(self, theta, key, state, datas, outer_state, extra):
        k_init, k_unroll = jax.random.split(key)

        def meta_loss(th: Any) -> tuple[jax.Array, tuple[Any, Any]]:
            start = self._fresh_states(th, outer_state, k_init, False)
            return unroll_meta_loss(
                self.truncated_step, th, start, k_unroll, datas, outer_state, self.length
            )

        (loss, (_, ys)), grad = jax.value_and_grad(meta_loss, has_aux=True)(theta)
        out = GradientEstimatorOut(
            mean_loss=loss, grad=grad, unroll_state=FullGradState(), unroll_info=ys
        )
        return out, {"mean_loss": loss}
