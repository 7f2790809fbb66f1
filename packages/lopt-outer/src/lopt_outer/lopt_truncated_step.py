"""Truncated steps that inner-train tasks with a learned optimizer.

`VectorizedLOptTruncatedStep` trains `num_tasks` samples of a task family at once
(`jax.vmap` over tasks). When a task's truncation finishes it is reset with a fresh
task sample and fresh parameters, and the step right after a reset is masked out.
Losses are mapped through the task's `normalizer`.

Data follows keys: when the family's datasets can be sampled from keys
(`Datasets.keyed`), `get_batch` returns None and each step draws its batches inside
`jit`. Otherwise `get_batch(steps)` pulls the batches of a whole unroll from the
Python iterators at once, to be passed to `lax.scan` as its inputs.

References:
  learned_optimization, `outer_trainers/lopt_truncated_step.py`.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

from lopt_core import (
    SPLITS,
    LearnedOptimizer,
    MetaParams,
    OuterState,
    PRNGKey,
    Task,
    TaskFamily,
    TruncatedStep,
    TruncatedUnrollOut,
    TruncationSchedule,
    single_task_to_family,
)
from lopt_outer._common import check_positive_int, host_batches
from lopt_outer.truncation_schedule import ConstantTruncationSchedule

__all__ = [
    "SimpleLOptTruncatedStep",
    "SimpleVecLOptTruncatedStep",
    "TruncatedUnrollState",
    "VectorizedLOptTruncatedStep",
]


@flax.struct.dataclass
class TruncatedUnrollState:
    """Inner-training state of one task (leaves gain a leading task axis when vectorised).

    Attributes:
      inner_opt_state: the learned optimizer's state (holds the task's params).
      inner_step: int32, inner steps taken since the last reset.
      truncation_state: the truncation schedule's state.
      task_param: the task family sample being trained.
      is_done: bool, the truncation finished; the next step resets the task.
    """

    inner_opt_state: Any
    inner_step: jax.Array
    truncation_state: Any
    task_param: Any
    is_done: jax.Array


# Per-task random keys of one step, drawn with a single split.
_K_DATA, _K_LOSS, _K_UPDATE, _K_CFG, _K_PARAMS, _K_OPT, _K_SCHED, _K_META_DATA, _K_META_LOSS = (
    range(9)
)
_NUM_KEYS = 9


def _select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(pred, a, b).astype(jnp.result_type(b)), on_true, on_false
    )


class VectorizedLOptTruncatedStep(TruncatedStep):
    """Inner-trains `num_tasks` samples of a task family with a learned optimizer, vectorised.

    Args:
      task_family: the family to sample tasks from.
      learned_opt: the learned optimizer being meta-trained.
      trunc_sched: decides when each task is reset.
      num_tasks: tasks trained in parallel (the vmapped axis).
      meta_loss_split: None (the meta-loss is the training loss of the step),
        "same_data" (the updated params evaluated on the same batch), or a split
        name (the updated params evaluated on a fresh batch of that split).
      random_initial_iteration_offset: initial inner steps are drawn uniformly in
        `[0, offset)` so tasks do not all reset in lockstep; set it to the schedule
        length.
      outer_data_split: split used by `meta_loss_batch` / `get_outer_batch`.

    Raises:
      ValueError: a bad split name or a non-positive `num_tasks`.
    """

    def __init__(
        self,
        task_family: TaskFamily,
        learned_opt: LearnedOptimizer,
        trunc_sched: TruncationSchedule,
        num_tasks: int,
        meta_loss_split: str | None = None,
        random_initial_iteration_offset: int = 0,
        outer_data_split: str = "train",
    ) -> None:
        if meta_loss_split not in (None, "same_data", *SPLITS):
            raise ValueError(
                f"meta_loss_split must be None, 'same_data' or one of {', '.join(SPLITS)}; "
                f"got {meta_loss_split!r}."
            )
        if outer_data_split not in SPLITS:
            raise ValueError(
                f"outer_data_split must be one of {', '.join(SPLITS)}; got {outer_data_split!r}."
            )
        if random_initial_iteration_offset < 0:
            raise ValueError(
                "random_initial_iteration_offset must be >= 0; got "
                f"{random_initial_iteration_offset!r}."
            )
        self.task_family = task_family
        self.learned_opt = learned_opt
        self.trunc_sched = trunc_sched
        self.num_tasks = check_positive_int("num_tasks", num_tasks)
        self.meta_loss_split = meta_loss_split
        self.random_initial_iteration_offset = int(random_initial_iteration_offset)
        self.outer_data_split = outer_data_split
        self.datasets = task_family.datasets
        self.keyed = self.datasets is not None and self.datasets.keyed

    # -- naming ---------------------------------------------------------------
    def task_name(self) -> str:
        """The task family's name."""
        return self.task_family.name

    def cfg_name(self) -> str:
        """`<family>_<learned optimizer>`."""
        return f"{self.task_family.name}_{self.learned_opt.name}"

    # -- init -----------------------------------------------------------------
    def outer_init(self, key: PRNGKey) -> MetaParams:
        """Initial theta from the learned optimizer."""
        return self.learned_opt.init(key)

    def _init_one(
        self, theta: MetaParams, outer_state: OuterState, key: PRNGKey, num_steps_override: Any
    ) -> TruncatedUnrollState:
        k_cfg, k_params, k_sched, k_opt = jax.random.split(key, 4)
        cfg = self.task_family.sample(k_cfg)
        params, model_state = self.task_family.task_fn(cfg).init_with_state(k_params)
        trunc_state = self.trunc_sched.init(k_sched, outer_state)
        num_steps = trunc_state.length if num_steps_override is None else num_steps_override
        opt = self.learned_opt.opt_fn(theta, is_training=True)
        opt_state = opt.init(params, model_state, num_steps=num_steps, key=k_opt)
        return TruncatedUnrollState(
            inner_opt_state=opt_state,
            inner_step=jnp.asarray(0, jnp.int32),
            truncation_state=trunc_state,
            task_param=cfg,
            is_done=jnp.asarray(False),
        )

    def init_step_state(
        self,
        theta: MetaParams,
        outer_state: OuterState,
        key: PRNGKey,
        theta_is_vector: bool = False,
        num_steps_override: int | None = None,
    ) -> TruncatedUnrollState:
        """Samples `num_tasks` tasks and initialises their params and optimizer states.

        Args:
          theta: meta-parameters, with a leading task axis when `theta_is_vector`.
          outer_state: the outer-training state (schedules may depend on it).
          key: random key.
          theta_is_vector: whether theta has a leading task axis.
          num_steps_override: the unroll length told to `opt.init` instead of the
            schedule's.

        Returns:
          A `TruncatedUnrollState` whose leaves have a leading `num_tasks` axis.
        """
        k_tasks, k_offset = jax.random.split(key)
        keys = jax.random.split(k_tasks, self.num_tasks)
        init = jax.vmap(
            lambda th, k: self._init_one(th, outer_state, k, num_steps_override),
            in_axes=(0 if theta_is_vector else None, 0),
        )
        state = init(theta, keys)
        if self.random_initial_iteration_offset:
            inner_step = jax.random.randint(
                k_offset, (self.num_tasks,), 0, self.random_initial_iteration_offset, jnp.int32
            )
            state = state.replace(inner_step=inner_step)
        return state

    # -- data -----------------------------------------------------------------
    def _host_batches(self, split: str, steps: int | None) -> Any:
        shape = (self.num_tasks,) if steps is None else (steps, self.num_tasks)
        return host_batches(self.datasets, split, shape)

    def get_batch(self, steps: int | None = None) -> Any:
        """Training data for `steps` inner steps, or None when batches come from keys.

        Returns:
          None when the datasets are keyed or absent (each step then draws its
          own batches inside jit). Otherwise host arrays with leading axes
          `(steps, num_tasks)` (`(num_tasks,)` when `steps` is None); a pair
          `(train, meta)` when `meta_loss_split` names a split.
        """
        if self.datasets is None or self.keyed:
            return None
        train = self._host_batches("train", steps)
        if self.meta_loss_split in (None, "same_data"):
            return train
        return train, self._host_batches(self.meta_loss_split, steps)

    def get_outer_batch(self, steps: int | None = None) -> Any:
        """Data of `outer_data_split` for `steps` meta-loss evaluations (None when keyed)."""
        if self.datasets is None or self.keyed:
            return None
        return self._host_batches(self.outer_data_split, steps)

    def _keyed_batches(self, split: str, key: PRNGKey, n: int) -> Any:
        return self._sample_batches(split, jax.random.split(key, n))

    def _sample_batches(self, split: str, keys: PRNGKey) -> Any:
        return jax.vmap(lambda k: self.datasets.sample(split, k))(keys)

    # -- stepping -------------------------------------------------------------
    def _train_one(
        self, theta: MetaParams, keys: PRNGKey, state: TruncatedUnrollState, data: Any
    ) -> tuple[Any, Any, jax.Array, jax.Array]:
        """One training step of one task: `(opt_state, task_param, inner_step, loss)`."""
        opt = self.learned_opt.opt_fn(theta, is_training=True)
        k_loss, k_update = keys[_K_LOSS], keys[_K_UPDATE]
        task = self.task_family.task_fn(state.task_param)
        params, model_state = opt.get_params_state(state.inner_opt_state)
        (loss, new_model_state), grads = jax.value_and_grad(task.loss_with_state, has_aux=True)(
            params, model_state, k_loss, data
        )
        opt_state = opt.update(
            state.inner_opt_state, grads, loss=loss, model_state=new_model_state, key=k_update
        )
        return opt_state, state.task_param, state.inner_step + 1, jnp.asarray(loss, jnp.float32)

    def _reset_one(
        self, theta: MetaParams, keys: PRNGKey, state: TruncatedUnrollState, override: Any
    ) -> tuple[Any, Any, jax.Array, jax.Array]:
        """A fresh task sample, params and optimizer state: `(opt_state, cfg, 0, 0.0)`."""
        opt = self.learned_opt.opt_fn(theta, is_training=True)
        num_steps = state.truncation_state.length if override is None else override
        k_cfg, k_params, k_opt = keys[_K_CFG], keys[_K_PARAMS], keys[_K_OPT]
        cfg = self.task_family.sample(k_cfg)
        p0, s0 = self.task_family.task_fn(cfg).init_with_state(k_params)
        return (
            opt.init(p0, s0, num_steps=num_steps, key=k_opt),
            cfg,
            jnp.asarray(0, jnp.int32),
            jnp.asarray(0.0, jnp.float32),
        )

    def _finish_one(
        self, state: TruncatedUnrollState, chosen: tuple, key: PRNGKey, outer_state: OuterState
    ) -> tuple[TruncatedUnrollState, TruncatedUnrollOut]:
        opt_state, task_param, inner_step, loss = chosen
        trunc_state, is_done = self.trunc_sched.next_state(
            state.truncation_state, inner_step, key, outer_state
        )
        is_done = jnp.asarray(is_done, bool)
        new_state = TruncatedUnrollState(
            inner_opt_state=opt_state,
            inner_step=inner_step,
            truncation_state=trunc_state,
            task_param=task_param,
            is_done=is_done,
        )
        out = TruncatedUnrollOut(
            loss=loss,
            is_done=is_done,
            task_param=state.task_param,
            iteration=inner_step,
            mask=inner_step != 0,
        )
        return new_state, out

    def _step_all(
        self,
        theta: MetaParams,
        theta_axis: int | None,
        keys: PRNGKey,
        state: TruncatedUnrollState,
        data: Any,
        outer_state: OuterState,
        override: Any,
    ) -> tuple[TruncatedUnrollState, TruncatedUnrollOut]:
        trained = jax.vmap(self._train_one, in_axes=(theta_axis, 0, 0, 0))(theta, keys, state, data)

        def with_resets(_: Any) -> tuple:
            fresh = jax.vmap(self._reset_one, in_axes=(theta_axis, 0, 0, None))(
                theta, keys, state, override
            )
            return jax.vmap(_select)(state.is_done, fresh, trained)

        # Resets are rare (once per truncation), so they run only on steps where some
        # task is done; the predicate is one scalar for all tasks, so this stays a
        # real branch rather than a select that would re-initialise every step.
        chosen = jax.lax.cond(jnp.any(state.is_done), with_resets, lambda _: trained, None)
        return jax.vmap(self._finish_one, in_axes=(0, 0, 0, None))(
            state, chosen, keys[:, _K_SCHED], outer_state
        )

    def _loss_one(
        self, theta: MetaParams, state: TruncatedUnrollState, key: PRNGKey, data: Any
    ) -> jax.Array:
        opt = self.learned_opt.opt_fn(theta, is_training=True)
        params, model_state = opt.get_params_state(state.inner_opt_state)
        loss, _ = self.task_family.task_fn(state.task_param).loss_with_state(
            params, model_state, key, data
        )
        return jnp.asarray(loss, jnp.float32)

    def _normalize(self, losses: jax.Array, task_params: Any) -> jax.Array:
        return jax.vmap(lambda loss, cfg: self.task_family.task_fn(cfg).normalizer(loss))(
            losses, task_params
        )

    def unroll_step(
        self,
        theta: MetaParams,
        unroll_state: TruncatedUnrollState,
        key: PRNGKey,
        data: Any,
        outer_state: OuterState,
        theta_is_vector: bool = False,
        override_num_steps: int | None = None,
    ) -> tuple[TruncatedUnrollState, TruncatedUnrollOut]:
        """One inner step of every task (reset where `is_done`); pure and jit-able.

        Args:
          theta: meta-parameters (leading task axis when `theta_is_vector`).
          unroll_state: the vectorised state.
          key: random key (split per task).
          data: the batch for this step from `get_batch()`, or None to draw it from
            `key` inside jit.
          outer_state: the outer-training state.
          theta_is_vector: whether theta has a leading task axis.
          override_num_steps: unroll length given to `opt.init` on reset.

        Returns:
          The next state and a `TruncatedUnrollOut` with one entry per task; its
          loss is normalised by the task's normalizer.
        """
        n = jax.tree_util.tree_leaves(unroll_state.inner_step)[0].shape[0]
        # A state of 2 * num_tasks holds stacked antithetic copies (positive then
        # negative perturbations): both halves share data and random keys.
        stacked = n == 2 * self.num_tasks

        def twice(tree: Any) -> Any:
            if not stacked:
                return tree
            return jax.tree_util.tree_map(lambda x: jnp.concatenate([x, x]), tree)

        base = n // 2 if stacked else n
        # One split for every key of every task: each random call site costs compile time.
        flat = jax.random.split(key, base * _NUM_KEYS)
        keys = twice(flat.reshape((base, _NUM_KEYS, *flat.shape[1:])))
        if data is None and self.keyed:
            tr_data = self._sample_batches("train", keys[:, _K_DATA])
            if self.meta_loss_split in (None, "same_data"):
                meta_data = tr_data if self.meta_loss_split == "same_data" else None
            else:
                meta_data = self._sample_batches(self.meta_loss_split, keys[:, _K_META_DATA])
        elif self.meta_loss_split == "same_data":
            tr_data, meta_data = twice(data), twice(data)
        elif self.meta_loss_split is None:
            tr_data, meta_data = twice(data), None
        else:
            tr_data, meta_data = twice(data[0]), twice(data[1])

        theta_axis = 0 if theta_is_vector else None
        next_state, ys = self._step_all(
            theta, theta_axis, keys, unroll_state, tr_data, outer_state, override_num_steps
        )
        if meta_data is not None:
            losses = jax.vmap(self._loss_one, in_axes=(theta_axis, 0, 0, 0))(
                theta, next_state, keys[:, _K_META_LOSS], meta_data
            )
            ys = ys.replace(loss=jnp.where(ys.mask, losses, 0.0))
        ys = ys.replace(loss=self._normalize(ys.loss, unroll_state.task_param))
        return next_state, ys

    def meta_loss_batch(
        self,
        theta: MetaParams,
        unroll_state: TruncatedUnrollState,
        key: PRNGKey,
        data: Any,
        outer_state: OuterState,
        theta_is_vector: bool = False,
    ) -> jax.Array:
        """Normalised loss of every task's current params on `outer_data_split` data.

        Args:
          data: a batch per task from `get_outer_batch()`, or None to draw it from
            `key` inside jit.

        Returns:
          float32 array of shape `(num_tasks,)`.
        """
        del outer_state
        n = jax.tree_util.tree_leaves(unroll_state.inner_step)[0].shape[0]
        k_data, k_loss = jax.random.split(key)
        if data is None and self.keyed:
            data = self._keyed_batches(self.outer_data_split, k_data, n)
        losses = jax.vmap(self._loss_one, in_axes=(0 if theta_is_vector else None, 0, 0, 0))(
            theta, unroll_state, jax.random.split(k_loss, n), data
        )
        return self._normalize(losses, unroll_state.task_param)


class SimpleVecLOptTruncatedStep(VectorizedLOptTruncatedStep):
    """`num_tasks` copies of one Task, each reset after `unroll_length` steps.

    Args:
      task: the task to train.
      learned_opt: the learned optimizer.
      num_tasks: parallel copies (different inits and data).
      unroll_length: inner steps before a reset.
    """

    def __init__(
        self, task: Task, learned_opt: LearnedOptimizer, num_tasks: int, unroll_length: int = 5
    ) -> None:
        super().__init__(
            single_task_to_family(task),
            learned_opt,
            ConstantTruncationSchedule(unroll_length),
            num_tasks,
        )
        self.task = task
        self.unroll_length = unroll_length


class SimpleLOptTruncatedStep(SimpleVecLOptTruncatedStep):
    """One Task, reset after `unroll_length` steps (a vectorised step with one task).

    Args:
      task: the task to train.
      learned_opt: the learned optimizer.
      unroll_length: inner steps before a reset.
    """

    def __init__(self, task: Task, learned_opt: LearnedOptimizer, unroll_length: int = 5) -> None:
        super().__init__(task, learned_opt, 1, unroll_length)
