"""Outer-training interfaces: truncation schedules, truncated steps and gradient estimators.

They live in core so that any plugin can provide an estimator or schedule; the
implementations ship in lopt-outer. Semantics follow learned_optimization.
"""

from __future__ import annotations

import abc
from typing import Any

import flax
import jax

from lopt_core.datasets import Datasets
from lopt_core.interface import Interface
from lopt_core.typing import MetaParams, PRNGKey


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


class TruncationSchedule(Interface):
    """Decides how long each inner unroll lasts before the task is reset.

    Attributes:
      max_length: the longest unroll the schedule can give, or None when unbounded.
    """

    max_length: int | None = None

    @abc.abstractmethod
    def init(self, key: PRNGKey, outer_state: OuterState) -> Any:
        """Returns the initial schedule state."""

    @abc.abstractmethod
    def next_state(
        self, state: Any, step: jax.Array, key: PRNGKey, outer_state: OuterState
    ) -> tuple[Any, jax.Array]:
        """Advances the schedule after inner step `step`; returns `(state, is_done)`."""


class TruncatedStep(Interface):
    """One step of (vectorised) inner training, the building block of estimators.

    Attributes:
      num_tasks: how many tasks are trained side by side (the vectorised axis).
      datasets: the datasets of the task (family), or None for tasks without data.
      keyed: True when each step draws its own batches inside `jit` from a key, so
        `get_batch` returns None; False when batches come from `get_batch`.
    """

    num_tasks: int = 1
    datasets: Datasets | None = None
    keyed: bool = False

    @abc.abstractmethod
    def outer_init(self, key: PRNGKey) -> MetaParams:
        """Initializes theta."""

    @abc.abstractmethod
    def init_step_state(
        self,
        theta: MetaParams,
        outer_state: OuterState,
        key: PRNGKey,
        theta_is_vector: bool = False,
        num_steps_override: int | None = None,
    ) -> Any:
        """Initializes the inner-training state of every vectorised task.

        Args:
          theta: the meta-parameters.
          outer_state: the outer-training state.
          key: random key.
          theta_is_vector: True when theta has a leading task axis.
          num_steps_override: the horizon told to the inner optimizer instead of
            the schedule's (FullES passes its whole unroll length).
        """

    @abc.abstractmethod
    def unroll_step(
        self,
        theta: MetaParams,
        unroll_state: Any,
        key: PRNGKey,
        data: Any,
        outer_state: OuterState,
        theta_is_vector: bool = False,
        *,
        antithetic: bool = False,
    ) -> tuple[Any, TruncatedUnrollOut]:
        """Takes one inner step; returns the next state and a `TruncatedUnrollOut`.

        Args:
          theta: the meta-parameters (one per task when `theta_is_vector`).
          unroll_state: the state from `init_step_state` or the previous step.
          key: random key.
          data: this step's batch, or None when the step is keyed.
          outer_state: the outer-training state.
          theta_is_vector: True when theta has a leading task axis.
          antithetic: True when the state holds `2 * num_tasks` tasks, the positive
            then the negative perturbations of an antithetic ES estimate; both
            halves then see the same data and task resets.
        """

    @abc.abstractmethod
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

    def get_batch(self, steps: int | None = None) -> Any:
        """Data for `steps` inner steps (None: data for one step); None when keyed."""
        return None

    def get_outer_batch(self, steps: int | None = None) -> Any:
        """Data for `steps` meta-loss evaluations; None when keyed."""
        return None

    def task_name(self) -> str:
        """Name of the task (family) being unrolled."""
        return type(self).__name__

    def cfg_name(self) -> str:
        """Name of this configuration, used to label metrics."""
        return type(self).__name__


class GradientEstimator(Interface):
    """Estimates the meta-gradient of theta from unrolls of a `TruncatedStep`.

    Attributes:
      truncated_step: the step it unrolls, or None for estimators without one
        (their names then fall back to the class name).
    """

    truncated_step: TruncatedStep | None = None

    @abc.abstractmethod
    def init_worker_state(self, worker_weights: WorkerWeights, key: PRNGKey) -> Any:
        """Initializes the estimator's worker state (the inner-training states)."""

    @abc.abstractmethod
    def compute_gradient_estimate(
        self,
        worker_weights: WorkerWeights,
        key: PRNGKey,
        state: Any,
        with_summary: bool = False,
    ) -> tuple[GradientEstimatorOut, dict[str, Any]]:
        """Returns the gradient estimate and a dict of scalar metrics."""

    def warm_up(self, worker_weights: WorkerWeights, key: PRNGKey) -> bool:
        """Compiles what `compute_gradient_estimate` will run; True when it did.

        The default compiles nothing; the learner calls it before the first step
        (possibly on a background thread).
        """
        del worker_weights, key
        return False

    def task_name(self) -> str:
        """Name of the task (family) this estimator trains on."""
        step = self.truncated_step
        return step.task_name() if step is not None else type(self).__name__

    def cfg_name(self) -> str:
        """Name of this estimator's configuration."""
        step = self.truncated_step
        suffix = f"_{step.cfg_name()}" if step is not None else ""
        return f"{type(self).__name__}{suffix}"
