"""Truncated evolution strategies: ES over each truncation alone.

References:
  Salimans et al. "Evolution Strategies as a Scalable Alternative to
  Reinforcement Learning." 2017, Sec. 2 (antithetic sampling).
  learned_optimization, `outer_trainers/truncated_es.py`.
"""

from __future__ import annotations

from typing import Any

import lopt_core
from lopt_core.typing import PRNGKey
from lopt_outer._es import ESEstimator, es_gradient

__all__ = ["TruncatedES"]


@lopt_core.declare
class TruncatedES(ESEstimator):
    """ES on each truncation: both perturbations start from the same state.

    The positive copy's final state becomes the next starting state. Biased for
    long-horizon effects (it ignores how theta shaped the starting state) but
    lower variance than PES.

    Args:
      truncated_step: the vectorised inner-training step.
      unroll_length: inner steps per estimate.
      std: standard deviation of the perturbations.
      steps_per_jit: inner steps per jitted call (default: the whole unroll).
      antithetic, stack_antithetic_samples, sign_delta_loss_scalar: keyword-only;
        see `ESEstimator` (defaults True, True, None).

    Example:
      >>> est = TruncatedES(step, unroll_length=20, std=0.01)
    """

    unroll_length: int = 20
    std: float = 0.01
    steps_per_jit: int | None = None

    def _init_state(self, theta: Any, outer_state: Any, key: PRNGKey) -> Any:
        return self.truncated_step.init_step_state(theta, outer_state, key, False)

    def _start_states(self, state: Any) -> Any:
        return self._join(state, state)

    def _end(self, theta, carry, ys, key, state, outer_state, extra):
        eps, _, states = carry
        p_ys, pos_loss, neg_loss = self._mean_losses(ys)
        estimate = es_gradient(
            pos_loss, neg_loss, eps, self.std, sign_delta_loss_scalar=self.sign_delta_loss_scalar
        )
        return self._out(estimate, self._split(states, axis=0)[0], p_ys)
