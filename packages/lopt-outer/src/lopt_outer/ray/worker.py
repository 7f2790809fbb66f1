"""The Ray gradient worker: an actor that holds its estimators' states and computes estimates.

Nothing here imports Ray: Ray wraps `GradientWorker` as an actor class at run time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from lopt_core import GradientEstimator, PRNGKey, WorkerWeights
from lopt_outer.gradient_learner import gradient_worker_compute
from lopt_outer.metric_writers import to_floats
from lopt_outer.run import restore

__all__ = ["GradientWorker", "host"]


def host(tree: Any) -> Any:
    """The tree as numpy arrays, so it crosses process boundaries without JAX buffers."""
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


class GradientWorker:
    """Computes gradient estimates for the learner; Ray runs it as an actor.

    It holds the worker states of its gradient estimators between calls, so only
    theta goes in and only the aggregated gradient comes out.

    Args:
      gradient_estimators: the estimators (any registered `GradientEstimator`).
      init_weights: the `WorkerWeights` to initialise the estimator states with.
      init_key: key split over the estimators for `init_worker_state`, as
        `SingleMachineGradientLearner.init` splits it.
      saved_states: estimator states from a checkpoint (a raw state dict); they
        replace the fresh ones.
    """

    def __init__(
        self,
        gradient_estimators: Sequence[GradientEstimator],
        init_weights: WorkerWeights,
        init_key: PRNGKey,
        saved_states: Any = None,
    ) -> None:
        self._estimators = list(gradient_estimators)
        keys = jax.random.split(init_key, len(self._estimators))
        states = [est.init_worker_state(init_weights, k) for est, k in zip(self._estimators, keys)]
        if saved_states is not None:
            states = restore(states, saved_states, "worker states")
        self._states = states

    def compute(
        self, worker_weights: WorkerWeights, key: PRNGKey, with_metrics: bool
    ) -> tuple[Any, dict[str, float]]:
        """One estimate from every estimator, aggregated as `gradient_worker_compute` does.

        Args:
          worker_weights: the `WorkerWeights` published by the learner.
          key: the estimate's key.
          with_metrics: also compute the slower metrics.

        Returns:
          `(to_put, metrics)`: the aggregated gradient as numpy arrays and a dict of
          float metrics.
        """
        out = gradient_worker_compute(
            worker_weights, self._estimators, self._states, key, with_metrics=with_metrics
        )
        self._states = out.unroll_states
        return host(out.to_put), to_floats(jax.device_get(dict(out.metrics)))

    def states(self) -> Any:
        """The estimator states after the last finished estimate, as numpy arrays."""
        return host(self._states)

    def pid(self) -> int:
        """The worker's process id (tests kill and watch workers by it)."""
        return os.getpid()
