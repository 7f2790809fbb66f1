"""Unrolling a TruncatedStep: `lax.scan` over `unroll_step`, used inside every estimator's jit."""

from __future__ import annotations

from typing import Any

import jax
from jax import lax

from lopt_core import OuterState, TruncatedStep, TruncatedUnrollOut
from lopt_core.typing import MetaParams, PRNGKey

__all__ = ["TruncatedStep", "TruncatedUnrollOut", "antithetic_unroll", "truncated_unroll"]


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
