"""Truncated steps that inner-train tasks with a learned optimizer.

`VectorizedLOptTruncatedStep` trains `num_tasks` samples of a task family at once
(`jax.vmap` over tasks). When a task's truncation finishes it is reset with a fresh
task sample and fresh parameters, and the step right after a reset is masked out.
Losses are mapped through the task's `normalizer`.

Data follows keys: when the family's datasets can be sampled from keys
(`Datasets.keyed`), `get_batch` returns None and each step draws its batches inside
`jit`. Otherwise `get_batch(steps)` pulls the batches of a whole unroll from the
Python iterators at once, to be passed to `lax.scan` as its inputs.

With `shard_tasks=True` the task axis is split over every local device
(`lopt_outer.sharding`): the states, keys and batches of the tasks live on their
devices, theta is replicated, and the estimators' reductions over tasks become
all-reduces inserted by XLA.

Steps are declarations (`lopt_core.declare`): their fields (the task family, the
learned optimizer, the schedule, ...) are their configuration.

References:
  learned_optimization, `outer_trainers/lopt_truncated_step.py`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp

import lopt_core
from lopt_core import (
    SPLITS,
    Datasets,
    LearnedOptimizer,
    OuterState,
    Task,
    TaskFamily,
    TruncatedStep,
    TruncatedUnrollOut,
    TruncationSchedule,
    single_task_to_family,
)
from lopt_core.typing import MetaParams, PRNGKey
from lopt_core.validation import check_choice, check_positive_int
from lopt_outer import sharding
from lopt_outer._common import host_batches, set_field
from lopt_outer.truncation_schedule import ConstantTruncationSchedule

__all__ = [
    "SimpleLOptTruncatedStep",
    "SimpleVecLOptTruncatedStep",
    "TruncatedUnrollState",
    "VectorizedLOptTruncatedStep",
]

META_LOSS_TYPES = ("mean", "final")
"""`meta_loss_type`s: the mean over every inner step of an unroll, or its final loss only."""


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


class _LOptTruncatedStep(TruncatedStep):
    """The inner-training machinery the learned-optimizer steps share.

    A subclass is a declared component that provides `task_family`, `learned_opt`,
    `trunc_sched`, `num_tasks`, `meta_loss_split`, `random_initial_iteration_offset`,
    `outer_data_split`, `meta_loss_type`, `meta_loss_clip`, `meta_loss_with_aux_key`
    and `family_name`, as fields or derived from its fields, and names in `_kinds`
    the fields that must be instances of a lopt interface.
    """

    task_family: TaskFamily
    learned_opt: LearnedOptimizer
    trunc_sched: TruncationSchedule
    meta_loss_split: str | None
    random_initial_iteration_offset: int
    outer_data_split: str
    meta_loss_type: str
    meta_loss_clip: float | None
    meta_loss_with_aux_key: str | None
    family_name: str | None
    # A field of VectorizedLOptTruncatedStep; the other steps never shard.
    shard_tasks: bool = False
    _kinds: tuple[tuple[str, type], ...] = ()

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name, kind in self._kinds:
            value = getattr(self, name)
            if not isinstance(value, kind):
                raise TypeError(
                    f"{owner}: {name} must be a lopt_core.{kind.__name__}, got "
                    f"{type(value).__name__}."
                )
        set_field(self, "num_tasks", check_positive_int(self.num_tasks, owner, "num_tasks"))
        if self.meta_loss_split not in (None, "same_data", *SPLITS):
            raise ValueError(
                f"{owner}: meta_loss_split must be None, 'same_data' or one of "
                f"{', '.join(SPLITS)}, got {self.meta_loss_split!r}."
            )
        check_choice(self.outer_data_split, owner, "outer_data_split", SPLITS)
        offset = self.random_initial_iteration_offset
        check_positive_int(offset, owner, "random_initial_iteration_offset", minimum=0)
        check_choice(self.meta_loss_type, owner, "meta_loss_type", META_LOSS_TYPES)
        clip = self.meta_loss_clip
        if clip is not None:
            if isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip != clip:
                raise TypeError(f"{owner}: meta_loss_clip must be a number or None, got {clip!r}.")
            set_field(self, "meta_loss_clip", float(clip))
        for name in ("meta_loss_with_aux_key", "family_name"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                spelled = "task_name" if name == "family_name" else name
                raise TypeError(
                    f"{owner}: {spelled} must be a non-empty string or None, got {value!r}."
                )
        if not isinstance(self.shard_tasks, bool):
            raise TypeError(
                f"{owner}: shard_tasks must be True or False, got {self.shard_tasks!r}."
            )
        self.task_mesh()  # checks that num_tasks splits over the local devices

    def task_mesh(self) -> Any:
        """The 1-D device mesh the tasks are split over (`shard_tasks`), else None.

        Raises:
          ValueError: `num_tasks` is not a multiple of the number of local devices.
        """
        if not self.shard_tasks:
            return None
        return sharding.task_mesh(self.num_tasks, type(self).__name__)

    def _shard(self, tree: Any, axis: int = 0) -> Any:
        """`tree` constrained to split its dimension `axis` over the task mesh (no op unsharded)."""
        return sharding.constrain_tasks(tree, self.task_mesh(), axis) if self.shard_tasks else tree

    @property
    def datasets(self) -> Datasets | None:  # type: ignore[override]
        """The task family's datasets (None for tasks without data)."""
        return self.task_family.datasets

    @property
    def keyed(self) -> bool:  # type: ignore[override]
        """True when every split draws batches from keys inside `jit` (`Datasets.keyed`)."""
        return self.datasets is not None and self.datasets.keyed

    # -- naming ---------------------------------------------------------------
    def task_name(self) -> str:
        """`family_name` (the reference's `task_name=`) when given, else the task family's name."""
        return self.family_name if self.family_name is not None else self.task_family.name

    def cfg_name(self) -> str:
        """`<task_name()>_<learned optimizer>`."""
        return f"{self.task_name()}_{self.learned_opt.name}"

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

        Tasks start at a random inner step in `[0, random_initial_iteration_offset)`,
        except with `num_steps_override`: that asks for a whole unroll of that
        length (FullES, FullGrad), so every task starts at step 0.

        Returns:
          A `TruncatedUnrollState` whose leaves have a leading `num_tasks` axis.
        """
        k_tasks, k_offset = jax.random.split(key)
        keys = jax.random.split(k_tasks, self.num_tasks)
        init = jax.vmap(
            lambda th, k: self._init_one(th, outer_state, k, num_steps_override),
            in_axes=(0 if theta_is_vector else None, 0),
        )
        if theta_is_vector:
            theta = self._shard(theta)
        state = init(theta, self._shard(keys))
        if self.random_initial_iteration_offset and num_steps_override is None:
            inner_step = jax.random.randint(
                k_offset, (self.num_tasks,), 0, self.random_initial_iteration_offset, jnp.int32
            )
            state = state.replace(inner_step=inner_step)
        return self._shard(state)

    # -- data -----------------------------------------------------------------
    def _host_batches(self, split: str, steps: int | None) -> Any:
        shape = (self.num_tasks,) if steps is None else (steps, self.num_tasks)
        batches = host_batches(self.datasets, split, shape)
        if self.shard_tasks:
            # Each device receives only its own tasks' batches.
            batches = sharding.put_tasks(batches, self.task_mesh(), axis=len(shape) - 1)
        return batches

    def get_batch(self, steps: int | None = None) -> Any:
        """Training data for `steps` inner steps, or None when batches come from keys.

        Returns:
          None when the datasets are keyed or absent (each step then draws its
          own batches inside jit). Otherwise host arrays with leading axes
          `(steps, num_tasks)` (`(num_tasks,)` when `steps` is None); a pair
          `(train, meta)` when `meta_loss_split` names a split. With
          `shard_tasks`, device arrays split over the devices along the task axis.
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
        """One training step of one task: `(opt_state, task_param, inner_step, meta-loss)`.

        The meta-loss is the loss before the update, or its aux value of
        `meta_loss_with_aux_key`.
        """
        opt = self.learned_opt.opt_fn(theta, is_training=True)
        k_loss, k_update = keys[_K_LOSS], keys[_K_UPDATE]
        task = self.task_family.task_fn(state.task_param)
        params, model_state = opt.get_params_state(state.inner_opt_state)
        aux_key = self.meta_loss_with_aux_key
        if aux_key is None:
            (loss, new_model_state), grads = jax.value_and_grad(task.loss_with_state, has_aux=True)(
                params, model_state, k_loss, data
            )
            meta = loss
        else:

            def loss_fn(p: Any, s: Any, k: PRNGKey, d: Any) -> tuple[Any, tuple[Any, Any]]:
                loss, s, aux = task.loss_with_state_and_aux(p, s, k, d)
                return loss, (s, aux)

            (loss, (new_model_state, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, model_state, k_loss, data
            )
            meta = self._aux_value(aux)
        opt_state = opt.update(
            state.inner_opt_state, grads, loss=loss, model_state=new_model_state, key=k_update
        )
        return opt_state, state.task_param, state.inner_step + 1, jnp.asarray(meta, jnp.float32)

    def _aux_value(self, aux: Any) -> jax.Array:
        """`aux[meta_loss_with_aux_key]`, or a ValueError naming the keys the task has."""
        key = self.meta_loss_with_aux_key
        if not isinstance(aux, Mapping) or key not in aux:
            found = sorted(map(str, aux)) if isinstance(aux, Mapping) else []
            raise ValueError(
                f"{type(self).__name__}: meta_loss_with_aux_key={key!r}, but the tasks of "
                f"{self.task_family.name} return the aux values {found} "
                "(Task.loss_and_aux / loss_with_state_and_aux). Pass one of those, or "
                "meta_loss_with_aux_key=None to meta-train on the loss."
            )
        value = jnp.asarray(aux[key], jnp.float32)
        if value.shape != ():
            raise ValueError(
                f"{type(self).__name__}: meta_loss_with_aux_key={key!r} names an aux value of "
                f"shape {value.shape}; a meta-loss is a scalar per task. Pass the key of a "
                "scalar aux value (or reduce it in the task's loss_and_aux)."
            )
        return value

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
        task = self.task_family.task_fn(state.task_param)
        if self.meta_loss_with_aux_key is not None:
            _, _, aux = task.loss_with_state_and_aux(params, model_state, key, data)
            return self._aux_value(aux)
        loss, _ = task.loss_with_state(params, model_state, key, data)
        return jnp.asarray(loss, jnp.float32)

    def _normalize(self, losses: jax.Array, task_params: Any) -> jax.Array:
        return jax.vmap(lambda loss, cfg: self.task_family.task_fn(cfg).normalizer(loss))(
            losses, task_params
        )

    def _check_num_tasks(self, unroll_state: TruncatedUnrollState, copies: int) -> None:
        n = jnp.shape(unroll_state.inner_step)[0]
        if n != copies * self.num_tasks:
            pairs = " (antithetic pairs: 2 * num_tasks)" if copies == 2 else ""
            raise ValueError(
                f"{type(self).__name__}: unroll_state holds {n} tasks, but this step trains "
                f"num_tasks={self.num_tasks}{pairs}; pass a state from init_step_state."
            )

    def _losses(
        self, theta: MetaParams, theta_axis: int | None, state: Any, keys: PRNGKey, data: Any
    ) -> jax.Array:
        """The (unnormalised) loss (or aux value) of every task's current params on `data`."""
        return jax.vmap(self._loss_one, in_axes=(theta_axis, 0, 0, 0))(theta, state, keys, data)

    def unroll_step(
        self,
        theta: MetaParams,
        unroll_state: TruncatedUnrollState,
        key: PRNGKey,
        data: Any,
        outer_state: OuterState,
        theta_is_vector: bool = False,
        *,
        antithetic: bool = False,
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
          antithetic: the state holds `2 * num_tasks` tasks, the positive then the
            negative perturbations of an antithetic estimate (`antithetic_unroll`);
            both halves get the same batches and random keys.
          override_num_steps: unroll length given to `opt.init` on reset.

        Returns:
          The next state and a `TruncatedUnrollOut` with one entry per task; its
          loss (the aux value, with `meta_loss_with_aux_key`) is normalised by the
          task's normalizer.

        Raises:
          ValueError: the state holds another number of tasks than the step trains,
            or the tasks return no aux value of `meta_loss_with_aux_key`.
        """
        copies = 2 if antithetic else 1
        self._check_num_tasks(unroll_state, copies)

        def per_copy(tree: Any) -> Any:
            return jax.tree_util.tree_map(lambda x: jnp.concatenate([x] * copies), tree)

        # One split for every key of every task: each random call site costs compile time.
        flat = jax.random.split(key, self.num_tasks * _NUM_KEYS)
        keys = per_copy(flat.reshape((self.num_tasks, _NUM_KEYS, *flat.shape[1:])))
        if self.shard_tasks:
            keys, unroll_state = self._shard((keys, unroll_state))
            if theta_is_vector:
                theta = self._shard(theta)
        evaluate_meta = self.meta_loss_split is not None
        if self.datasets is None:
            # A family without data: a meta-loss split means the loss of the updated
            # params (on no data), as the reference computes it.
            tr_data = meta_data = None
        elif data is None and self.keyed:
            tr_data = self._sample_batches("train", keys[:, _K_DATA])
            if self.meta_loss_split in (None, "same_data"):
                meta_data = tr_data if self.meta_loss_split == "same_data" else None
            else:
                meta_data = self._sample_batches(self.meta_loss_split, keys[:, _K_META_DATA])
        elif self.meta_loss_split == "same_data":
            tr_data, meta_data = per_copy(data), per_copy(data)
        elif self.meta_loss_split is None:
            tr_data, meta_data = per_copy(data), None
        else:
            tr_data, meta_data = per_copy(data[0]), per_copy(data[1])

        if self.shard_tasks:
            tr_data, meta_data = self._shard((tr_data, meta_data))
        theta_axis = 0 if theta_is_vector else None
        next_state, ys = self._step_all(
            theta, theta_axis, keys, unroll_state, tr_data, outer_state, override_num_steps
        )
        if evaluate_meta:
            losses = self._losses(theta, theta_axis, next_state, keys[:, _K_META_LOSS], meta_data)
            ys = ys.replace(loss=jnp.where(ys.mask, losses, 0.0))
        ys = ys.replace(loss=self._normalize(ys.loss, unroll_state.task_param))
        if self.meta_loss_clip is not None:
            ys = ys.replace(loss=jnp.minimum(ys.loss, self.meta_loss_clip))
        if self.meta_loss_type == "final":
            # Only the step that ends a task's unroll counts toward the meta-loss.
            ys = ys.replace(mask=ys.mask & ys.is_done)
        if self.shard_tasks:
            next_state, ys = self._shard((next_state, ys))
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

        With `meta_loss_with_aux_key`, the aux value of that key instead, not
        normalised (as the reference computes it; `unroll_step` passes its aux
        values through the normalizer).

        Args:
          data: a batch per task from `get_outer_batch()`, or None to draw it from
            `key` inside jit.

        Returns:
          float32 array of shape `(num_tasks,)`.
        """
        del outer_state
        self._check_num_tasks(unroll_state, 1)
        k_data, k_loss = jax.random.split(key)
        if data is None and self.keyed:
            data = self._keyed_batches(self.outer_data_split, k_data, self.num_tasks)
        theta_axis = 0 if theta_is_vector else None
        keys = jax.random.split(k_loss, self.num_tasks)
        if self.shard_tasks:
            keys, unroll_state, data = self._shard((keys, unroll_state, data))
            if theta_is_vector:
                theta = self._shard(theta)
        losses = self._losses(theta, theta_axis, unroll_state, keys, data)
        if self.meta_loss_with_aux_key is None:
            losses = self._normalize(losses, unroll_state.task_param)
        return self._shard(losses)


# `task_name=`, the reference's spelling, cannot be the field's name: `task_name()` is
# the interface's method. (A reference name, not an older lopt one, so it is kept here
# rather than in lopt_outer.compat's RENAMED.)
@lopt_core.renamed_arguments(task_name="family_name")
@lopt_core.declare
class VectorizedLOptTruncatedStep(_LOptTruncatedStep):
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
      meta_loss_type: "mean" (every inner step of an unroll counts: the estimators
        average the per-step losses) or "final" (only the step that ends a task's
        unroll, the step after which its truncation schedule resets it, counts;
        every other step is masked out, so a truncation in which no task finishes
        contributes nothing). With `meta_loss_split` None the final step's loss is
        its training loss before its update; otherwise the loss after its update.
      meta_loss_clip: None, or clip each per-step normalised loss to at most this
        value before it is averaged, so that a diverging task cannot dominate the
        meta-loss (as VeLO's meta-training clips exploding losses).
      meta_loss_with_aux_key: None (meta-train on the loss), or the name of an aux
        value of the tasks (`Task.loss_and_aux`; `FixedDimQuadraticFamilyData`'s
        tasks have "l1" and "l2"): the meta-loss of every step is then that value
        instead of the loss, at the params the loss is taken at (before the
        update, or after it with `meta_loss_split`); the inner training still
        follows the loss. A key the tasks do not return raises a ValueError
        when the step is first traced.
      family_name: the name `task_name()` returns and `cfg_name()` starts with,
        labelling this step's metrics; None: the task family's name. Also
        accepted as `task_name=`, the reference's spelling.
      shard_tasks: split the task axis over every `jax.local_devices()` (a 1-D
        mesh, axis "tasks"; see `lopt_outer.sharding`): each device trains
        `num_tasks / devices` tasks, theta is replicated, and the estimators'
        means over tasks (the meta-gradient) are all-reduced by XLA. Every
        estimator over this step (TruncatedPES, TruncatedES, TruncatedGrad,
        FullES, ...) then runs sharded, with the same estimate as unsharded (to
        float rounding). False (default): one device, no sharding ops.

    Raises:
      TypeError: a component of the wrong kind, a meta_loss_clip that is not a
        number, a meta_loss_with_aux_key or task_name that is not a string, or a
        shard_tasks that is not a bool.
      ValueError: a bad split name or meta_loss_type, a non-positive `num_tasks` or a
        negative offset, or `shard_tasks=True` with a `num_tasks` that is not a
        multiple of the number of local devices.
    """

    task_family: TaskFamily
    learned_opt: LearnedOptimizer
    trunc_sched: TruncationSchedule
    # field(): the interface's `num_tasks = 1` must not become a default.
    num_tasks: int = dataclasses.field()
    meta_loss_split: str | None = None
    random_initial_iteration_offset: int = 0
    outer_data_split: str = "train"
    meta_loss_type: str = "mean"
    meta_loss_clip: float | None = None
    meta_loss_with_aux_key: str | None = None
    family_name: str | None = None
    shard_tasks: bool = False

    _kinds = (
        ("task_family", TaskFamily),
        ("learned_opt", LearnedOptimizer),
        ("trunc_sched", TruncationSchedule),
    )


@lopt_core.declare
class SimpleVecLOptTruncatedStep(_LOptTruncatedStep):
    """`num_tasks` copies of one Task, each reset after `unroll_length` steps.

    Args:
      task: the task to train.
      learned_opt: the learned optimizer.
      num_tasks: parallel copies (different inits and data).
      unroll_length: inner steps before a reset.

    Raises:
      TypeError: `task` is not a Task or `learned_opt` not a LearnedOptimizer.
      ValueError: a non-positive `num_tasks` or `unroll_length`.
    """

    task: Task
    learned_opt: LearnedOptimizer
    num_tasks: int = dataclasses.field()
    unroll_length: int = 5

    # The meta-loss is the training loss; every task starts at step 0.
    meta_loss_split = None
    random_initial_iteration_offset = 0
    outer_data_split = "train"
    meta_loss_type = "mean"
    meta_loss_clip = None
    meta_loss_with_aux_key = None
    family_name = None

    _kinds = (("task", Task), ("learned_opt", LearnedOptimizer))

    def __post_init__(self) -> None:
        super().__post_init__()
        length = check_positive_int(self.unroll_length, type(self).__name__, "unroll_length")
        set_field(self, "unroll_length", length)

    @functools.cached_property
    def task_family(self) -> TaskFamily:  # type: ignore[override]
        """`task` as a family whose every sample is that task."""
        return single_task_to_family(self.task)

    @functools.cached_property
    def trunc_sched(self) -> TruncationSchedule:  # type: ignore[override]
        """A reset every `unroll_length` steps."""
        return ConstantTruncationSchedule(self.unroll_length)


@lopt_core.declare
class SimpleLOptTruncatedStep(SimpleVecLOptTruncatedStep):
    """One Task, reset after `unroll_length` steps (a vectorised step with one task).

    Args:
      task: the task to train.
      learned_opt: the learned optimizer.
      unroll_length: inner steps before a reset.
    """

    num_tasks: int = dataclasses.field(default=1, init=False, repr=False)
