"""Task and TaskFamily: the problems that optimizers train and learned optimizers meta-train on."""

from __future__ import annotations

import abc
from typing import Any

import jax.numpy as jnp

from lopt_core.datasets import Datasets
from lopt_core.interface import Interface, overrides
from lopt_core.typing import Batch, ModelState, Params, PRNGKey, TaskCfg


class Task(Interface):
    """A loss function over parameters, optionally with model state and datasets.

    Subclasses implement `init` (or `init_with_state`) and `loss` (or
    `loss_with_state`); instantiating one that implements neither of a pair raises
    a TypeError naming the methods. Everything else has a default.

    Attributes:
      datasets: a `Datasets`, or None for tasks without data.
    """

    _either_of = (("init", "init_with_state"), ("loss", "loss_with_state"))
    datasets: Datasets | None = None

    def init(self, key: PRNGKey) -> Params:
        """Initializes the parameters from `key`."""
        if not overrides(type(self), "init_with_state", Task):
            raise TypeError(f"{type(self).__name__} must override init() or init_with_state().")
        params, _ = self.init_with_state(key)
        return params

    def init_with_state(self, key: PRNGKey) -> tuple[Params, ModelState]:
        """Initializes `(params, model_state)`; the state is None by default."""
        return self.init(key), None

    def loss(self, params: Params, key: PRNGKey, data: Batch) -> Any:
        """Scalar loss of `params` on `data`; `key` drives any randomness (dropout)."""
        if not overrides(type(self), "loss_with_state", Task):
            raise TypeError(f"{type(self).__name__} must override loss() or loss_with_state().")
        loss, _ = self.loss_with_state(params, None, key, data)
        return loss

    def loss_with_state(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[Any, ModelState]:
        """Returns `(loss, next_state)`. Tasks without state ignore a None state."""
        if state is not None:
            raise ValueError(
                f"{type(self).__name__} has no model state but was given one; "
                "override loss_with_state() for tasks with model state."
            )
        return self.loss(params, key, data), None

    def loss_and_aux(self, params: Params, key: PRNGKey, data: Batch) -> tuple[Any, dict[str, Any]]:
        """Returns `(loss, aux)` where aux is a dict of extra metrics ({} by default)."""
        return self.loss(params, key, data), {}

    def loss_with_state_and_aux(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[Any, ModelState, dict[str, Any]]:
        """Returns `(loss, next_state, aux)`.

        Tasks without model state get their aux from `loss_and_aux`; tasks with
        model state override this method to return aux values.
        """
        if state is None and overrides(type(self), "loss_and_aux", Task):
            loss, aux = self.loss_and_aux(params, key, data)
            return loss, None, aux
        loss, state = self.loss_with_state(params, state, key, data)
        return loss, state, {}

    def normalizer(self, loss: Any) -> Any:
        """Maps a loss onto a common scale for meta-training; the identity by default."""
        return loss

    @property
    def name(self) -> str:
        """The task's name; the class name by default."""
        return getattr(self, "_name", None) or type(self).__name__


class TaskFamily(Interface):
    """A distribution over tasks: `sample(key)` gives a cfg, `task_fn(cfg)` a Task.

    The cfg is a pytree of arrays so that `sample` can be vmapped and tasks can be
    vectorised over samples. Subclasses implement `sample` and `task_fn`.
    """

    datasets: Datasets | None = None

    @abc.abstractmethod
    def sample(self, key: PRNGKey) -> TaskCfg:
        """Samples a task configuration (a vmappable pytree) from `key`."""

    @abc.abstractmethod
    def task_fn(self, cfg: TaskCfg) -> Task:
        """Builds the Task described by `cfg`."""

    def eval_task_fn(self, cfg: TaskCfg) -> Task:
        """The Task used for evaluation; `task_fn(cfg)` by default."""
        return self.task_fn(cfg)

    def sample_task(self, key: PRNGKey) -> Task:
        """Samples a cfg and builds its Task."""
        return self.task_fn(self.sample(key))

    @property
    def name(self) -> str:
        """The family's name; the class name by default."""
        return getattr(self, "_name", None) or type(self).__name__


class _SingleTaskFamily(TaskFamily):
    def __init__(self, task: Task, name: str | None, eval_task: Task | None) -> None:
        self.task = task
        self.eval_task = eval_task if eval_task is not None else task
        self.datasets = task.datasets
        self._name = name or f"SingleTask_{task.name}"

    def sample(self, key: PRNGKey) -> TaskCfg:
        del key
        return jnp.zeros([], jnp.int32)

    def task_fn(self, cfg: TaskCfg) -> Task:
        del cfg
        return self.task

    def eval_task_fn(self, cfg: TaskCfg) -> Task:
        del cfg
        return self.eval_task


def single_task_to_family(
    task: Task, name: str | None = None, eval_task: Task | None = None
) -> TaskFamily:
    """Wraps one Task as a TaskFamily whose every sample is that task.

    Args:
      task: the task.
      name: the family's name; `SingleTask_<task.name>` by default.
      eval_task: the task returned by `eval_task_fn`; `task` by default.

    Returns:
      A TaskFamily with a dummy int32 scalar cfg.
    """
    return _SingleTaskFamily(task, name, eval_task)
