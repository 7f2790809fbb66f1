"""Unrolling a TruncatedStep: `lax.scan` over `unroll_step`, used inside every estimator's jit."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from lopt_core import OuterState, TruncatedStep, TruncatedUnrollOut
from lopt_core.typing import MetaParams, PRNGKey
from lopt_core.validation import check_positive_int
from lopt_outer._common import host_stack

__all__ = [
    "TruncatedStep",
    "TruncatedUnrollOut",
    "VectorizedTruncatedStep",
    "antithetic_unroll",
    "truncated_unroll",
]


def truncated_unroll(
    truncated_step: TruncatedStep,
    theta: MetaParams,
    state: Any,
    key: PRNGKey,
    datas: Any,
    outer_state: OuterState,
    length: int,
    theta_is_vector: bool = False,
) -> tuple[Any, TruncatedUnrollOut]:
    """Runs `length` inner steps of `truncated_step` as one `lax.scan`.

    Args:
      truncated_step: the step to unroll.
      theta: meta-parameters (a leading task axis when `theta_is_vector`).
      state: the vectorised inner-training state.
      key: random key; split into one key per step.
      datas: data for every step with a leading `length` axis, or None when the
        step draws its batches from keys (see `get_batch`).
      outer_state: the outer-training state.
      length: number of inner steps (static).
      theta_is_vector: whether theta has a leading task axis.

    Returns:
      The final state and the stacked per-step `TruncatedUnrollOut`s, leading
      axis `length`.
    """
    keys = jax.random.split(key, length)

    def body(s: Any, xs: Any) -> tuple[Any, TruncatedUnrollOut]:
        k, d = xs
        return truncated_step.unroll_step(theta, s, k, d, outer_state, theta_is_vector)

    return lax.scan(body, state, (keys, datas))


def antithetic_unroll(
    truncated_step: TruncatedStep,
    thetas: MetaParams,
    states: Any,
    key: PRNGKey,
    datas: Any,
    outer_state: OuterState,
    length: int,
) -> tuple[Any, TruncatedUnrollOut]:
    """Unrolls the positive and negative perturbations together, sharing keys and data.

    `thetas` and `states` carry a leading axis of 2 (positive, negative) in front of
    the task axis. They are stacked into one batch of `2 * num_tasks` tasks and
    passed to `unroll_step(..., antithetic=True)`, which gives both halves the same
    batches and random keys, so the difference of their losses measures theta's
    effect alone.

    Returns:
      The final states (leading axis 2) and outputs with leading axes
      `(length, 2, num_tasks)`.
    """
    keys = jax.random.split(key, length)

    # Explicit sizes, never -1: a leaf with a zero-sized axis (AdafacMLPLOpt's
    # factored accumulators of a vector) cannot have its -1 inferred.
    def merge(tree: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda x: x.reshape((x.shape[0] * x.shape[1], *x.shape[2:])), tree
        )

    def split(tree: Any) -> Any:
        return jax.tree_util.tree_map(lambda x: x.reshape((2, x.shape[0] // 2, *x.shape[1:])), tree)

    flat_thetas = merge(thetas)

    def body(s: Any, xs: Any) -> tuple[Any, TruncatedUnrollOut]:
        k, d = xs
        return truncated_step.unroll_step(flat_thetas, s, k, d, outer_state, True, antithetic=True)

    states, ys = lax.scan(body, merge(states), (keys, datas))
    return split(states), jax.tree_util.tree_map(
        lambda x: x.reshape((x.shape[0], 2, x.shape[1] // 2, *x.shape[2:])), ys
    )


def _repeat(tree: Any, copies: int) -> Any:
    """`tree` with every leaf repeated `copies` times along its leading axis."""
    if copies == 1:
        return tree
    return jax.tree_util.tree_map(lambda x: jnp.concatenate([x] * copies, axis=0), tree)


class VectorizedTruncatedStep(TruncatedStep):
    """`num_tasks` copies of a single-task `TruncatedStep`, side by side under `jax.vmap`.

    The wrapped step's methods see one task: `init_step_state(theta, outer_state,
    key)`, `unroll_step(theta, state, key, data, outer_state)` and
    `meta_loss_batch(theta, state, key, data, outer_state)`, and `get_batch(n)` /
    `get_outer_batch(n)` return `n` tasks' batches stacked on a leading axis. This
    step gives every copy its own key (`split(key, num_tasks)`) and its slice of the
    batch, so it has the vectorised interface the estimators use. With
    `antithetic=True` the state holds `2 * num_tasks` copies, and both halves get
    the same keys and batches (the pairs of an antithetic ES estimate).

    Args:
      truncated_step: the single-task step.
      num_tasks: how many copies train at once.

    Example:
      >>> step = VectorizedTruncatedStep(my_single_task_step, num_tasks=8)  # doctest: +SKIP
    """

    def __init__(self, truncated_step: Any, num_tasks: int) -> None:
        self.truncated_step = truncated_step
        self.num_tasks = check_positive_int(num_tasks, type(self).__name__, "num_tasks")
        self.datasets = getattr(truncated_step, "datasets", None)
        self.keyed = bool(getattr(truncated_step, "keyed", False))

    def outer_init(self, key: PRNGKey) -> MetaParams:
        return self.truncated_step.outer_init(key)

    def _copies(self, state: Any) -> int:
        """How many copies of `num_tasks` tasks `state` holds (1, or 2 when antithetic)."""
        leaves = jax.tree_util.tree_leaves(state)
        size = int(leaves[0].shape[0]) if leaves else self.num_tasks
        if size not in (self.num_tasks, 2 * self.num_tasks):
            raise ValueError(
                f"{type(self).__name__}: the state holds {size} tasks, expected num_tasks="
                f"{self.num_tasks} (or twice that for antithetic pairs); build the state "
                "with this step's init_step_state."
            )
        return size // self.num_tasks

    def init_step_state(
        self,
        theta: MetaParams,
        outer_state: OuterState,
        key: PRNGKey,
        theta_is_vector: bool = False,
        num_steps_override: int | None = None,
    ) -> Any:
        kwargs = {} if num_steps_override is None else {"num_steps_override": num_steps_override}
        keys = jax.random.split(key, self.num_tasks)
        return jax.vmap(
            lambda th, k: self.truncated_step.init_step_state(th, outer_state, k, **kwargs),
            in_axes=(0 if theta_is_vector else None, 0),
        )(theta, keys)

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
        copies = self._copies(unroll_state)
        if copies != (2 if antithetic else 1):
            raise ValueError(
                f"{type(self).__name__}: antithetic={antithetic} but the state holds "
                f"{copies * self.num_tasks} tasks for num_tasks={self.num_tasks}; pass "
                "antithetic=True exactly when the state stacks both halves of the pairs."
            )
        return self._per_copy(
            self.truncated_step.unroll_step, copies, theta, unroll_state, key, data, outer_state,
            theta_is_vector,
        )  # fmt: skip

    def meta_loss_batch(
        self,
        theta: MetaParams,
        unroll_state: Any,
        key: PRNGKey,
        data: Any,
        outer_state: OuterState,
        theta_is_vector: bool = False,
    ) -> jax.Array:
        return self._per_copy(
            self.truncated_step.meta_loss_batch, self._copies(unroll_state), theta, unroll_state,
            key, data, outer_state, theta_is_vector,
        )  # fmt: skip

    def _per_copy(
        self, method: Any, copies: int, theta: MetaParams, state: Any, key: PRNGKey, data: Any,
        outer_state: OuterState, theta_is_vector: bool,
    ) -> Any:  # fmt: skip
        """`method(theta, state, key, data, outer_state)` of every copy, under one vmap.

        Each of the `num_tasks` tasks gets its own key; with `copies == 2` (antithetic
        pairs) both halves get the same keys and batches.
        """
        keys = _repeat(jax.random.split(key, self.num_tasks), copies)
        return jax.vmap(
            lambda th, s, k, d: method(th, s, k, d, outer_state),
            in_axes=(0 if theta_is_vector else None, 0, 0, 0),
        )(theta, state, keys, _repeat(data, copies))

    def get_batch(self, steps: int | None = None) -> Any:
        """The wrapped step's `get_batch(num_tasks)`; stacked over `steps` when given."""
        return self._batches(self.truncated_step.get_batch, steps)

    def get_outer_batch(self, steps: int | None = None) -> Any:
        """The wrapped step's `get_outer_batch(num_tasks)`; stacked over `steps` when given."""
        return self._batches(self.truncated_step.get_outer_batch, steps)

    def _batches(self, fetch: Any, steps: int | None) -> Any:
        if steps is None:
            return fetch(self.num_tasks)
        batches = [fetch(self.num_tasks) for _ in range(steps)]
        return None if batches[0] is None else host_stack(batches)

    def task_name(self) -> str:
        return self.truncated_step.task_name()
