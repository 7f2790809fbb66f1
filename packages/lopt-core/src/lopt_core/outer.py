"""Outer-training interfaces: truncation schedules, truncated steps and gradient estimators.

They live in core so that any plugin can provide an estimator or schedule; the
implementations ship in lopt-outer. Semantics follow learned_optimization.
"""

from __future__ import annotations

from typing import Any

import flax
import jax

from lopt_core._types import MetaParams, PRNGKey


@flax.struct.dataclass
class OuterState:
    """State of the outer (meta-training) loop that workers see."""

    outer_iteration: jax.Array


@flax.struct.dataclass
class WorkerWeights:
    """What a worker receives from the learner: theta, its model state and the outer state."""

    theta: MetaParams
    theta_model_state: Any
    outer_state: OuterState


@flax.struct.dataclass
class TruncatedUnrollOut:
    """Per-step output of a truncated unroll, one entry per vectorised task.

    Attributes:
      loss: the (normalized) inner loss.
      is_done: True where the task finished its truncation and was reset.
      task_param: the task cfg in use.
      iteration: the inner iteration.
      mask: False where a value must be ignored (for example the step right after a reset).
    """

    loss: jax.Array
    is_done: jax.Array
    task_param: Any
    iteration: jax.Array
    mask: jax.Array


@flax.struct.dataclass
class GradientEstimatorOut:
    """What a gradient estimator returns.

    Attributes:
      mean_loss: the mean meta-loss over the estimate.
      grad: the meta-gradient estimate, a tree like theta.
      unroll_state: the worker state to pass to the next call.
      unroll_info: per-step `TruncatedUnrollOut`s, or None.
    """

    mean_loss: jax.Array
    grad: MetaParams
    unroll_state: Any
    unroll_info: Any = None


class TruncationSchedule:
    """Decides how long each inner unroll lasts before the task is reset."""

    def init(self, key: PRNGKey, outer_state: OuterState) -> Any:
        """Returns the initial schedule state."""
        raise TypeError(f"{type(self).__name__} must override init().")

    def next_state(
        self, state: Any, step: jax.Array, key: PRNGKey, outer_state: OuterState
    ) -> tuple[Any, jax.Array]:
        """Advances the schedule after inner step `step`; returns `(state, is_done)`."""
        raise TypeError(f"{type(self).__name__} must override next_state().")


class TruncatedStep:
    """One step of (vectorised) inner training, the building block of estimators."""

    def outer_init(self, key: PRNGKey) -> MetaParams:
        """Initializes theta."""
        raise TypeError(f"{type(self).__name__} must override outer_init().")

    def init_step_state(
        self,
        theta: MetaParams,
        outer_state: OuterState,
        key: PRNGKey,
        theta_is_vector: bool = False,
    ) -> Any:
        """Initializes the inner-training state of every vectorised task."""
        raise TypeError(f"{type(self).__name__} must override init_step_state().")

    def unroll_step(
        self,
        theta: MetaParams,
        unroll_state: Any,
        key: PRNGKey,
        data: Any,
        outer_state: OuterState,
        theta_is_vector: bool = False,
    ) -> tuple[Any, TruncatedUnrollOut]:
        """Takes one inner step; returns the next state and a `TruncatedUnrollOut`."""
        raise TypeError(f"{type(self).__name__} must override unroll_step().")

    def meta_loss_batch(
        self,
        theta: MetaParams,
        unroll_state: Any,
        key: PRNGKey,
        data: Any,
        outer_state: OuterState,
        theta_is_vector: bool = False,
    ) -> jax.Array:
        """The meta-loss of the current inner state, one value per task."""
        raise TypeError(f"{type(self).__name__} must override meta_loss_batch().")

    def get_batch(self, steps: int | None = None) -> Any:
        """Data for `steps` inner steps (None: data for one step)."""
        raise TypeError(f"{type(self).__name__} must override get_batch().")

    def get_outer_batch(self, steps: int | None = None) -> Any:
        """Data for `steps` meta-loss evaluations."""
        raise TypeError(f"{type(self).__name__} must override get_outer_batch().")

    def task_name(self) -> str:
        """Name of the task (family) being unrolled."""
        return type(self).__name__

    def cfg_name(self) -> str:
        """Name of this configuration, used to label metrics."""
        return type(self).__name__


class GradientEstimator:
    """Estimates the meta-gradient of theta from unrolls of a `TruncatedStep`."""

    truncated_step: TruncatedStep

    def init_worker_state(self, worker_weights: WorkerWeights, key: PRNGKey) -> Any:
        """Initializes the estimator's worker state (the inner-training states)."""
        raise TypeError(f"{type(self).__name__} must override init_worker_state().")

    def compute_gradient_estimate(
        self,
        worker_weights: WorkerWeights,
        key: PRNGKey,
        state: Any,
        with_summary: bool = False,
    ) -> tuple[GradientEstimatorOut, dict[str, Any]]:
        """Returns the gradient estimate and a dict of scalar metrics."""
        raise TypeError(f"{type(self).__name__} must override compute_gradient_estimate().")

    def task_name(self) -> str:
        """Name of the task (family) this estimator trains on."""
        return self.truncated_step.task_name()

    def cfg_name(self) -> str:
        """Name of this estimator's configuration."""
        return f"{type(self).__name__}_{self.truncated_step.cfg_name()}"
