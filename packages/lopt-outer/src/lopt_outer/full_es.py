"""Evolution strategies over full-length unrolls from fresh task samples.

References:
  Salimans et al. "Evolution Strategies as a Scalable Alternative to
  Reinforcement Learning." 2017, Sec. 2.
  learned_optimization, `outer_trainers/full_es.py`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp

import lopt_core
from lopt_core import SPLITS, TruncatedStep, TruncationSchedule
from lopt_core.typing import PRNGKey
from lopt_core.validation import check_choice, check_positive, check_positive_int
from lopt_outer._common import set_field
from lopt_outer._es import ESEstimator, es_gradient
from lopt_outer._estimator import GradientEstimatorState
from lopt_outer.truncation_schedule import static_length

__all__ = ["LOSS_TYPES", "FullES", "FullESState", "FullUnroll", "full_unroll_length"]

LOSS_TYPES = ("avg", "min", "last", "last_recompute")


@flax.struct.dataclass
class FullESState(GradientEstimatorState):
    """FullES keeps nothing between estimates: every estimate starts from fresh tasks."""


def full_unroll_length(
    truncated_step: TruncatedStep,
    truncation_schedule: TruncationSchedule | None,
    unroll_length: int | None,
) -> int:
    """The static length of a full unroll: `unroll_length`, else the schedule's, else the step's.

    Raises:
      ValueError: no length is given and no schedule has a static maximum length.
    """
    if unroll_length is not None:
        return unroll_length
    # `trunc_sched` is the learned-optimizer steps' own schedule. The TruncatedStep
    # interface cannot declare it with a default: dataclass steps would inherit the
    # default and every later field would then need one too.
    sched = truncation_schedule or getattr(truncated_step, "trunc_sched", None)
    if sched is None:
        raise ValueError(
            "A full-unroll estimator needs unroll_length or a truncation schedule with a "
            "static length (e.g. ConstantTruncationSchedule)."
        )
    return static_length(sched)


class FullUnroll:
    """Mixin of the estimators that train fresh tasks through a whole unroll (FullES, FullGrad).

    The estimator declares `truncation_schedule` and `unroll_length` fields; its
    `length` is `unroll_length`, else the schedule's static length, else the
    truncated step's schedule's.
    """

    truncated_step: TruncatedStep
    truncation_schedule: TruncationSchedule | None
    unroll_length: int | None

    def __post_init__(self) -> None:
        sched = self.truncation_schedule
        if sched is not None and not isinstance(sched, TruncationSchedule):
            raise TypeError(
                f"{type(self).__name__}: truncation_schedule must be None or a "
                f"lopt_core.TruncationSchedule, got {type(sched).__name__}."
            )
        super().__post_init__()  # type: ignore[misc]
        length = self.length  # a schedule without a static length fails here, not later
        inner = getattr(self.truncated_step, "trunc_sched", None)
        inner_max = getattr(inner, "max_length", None)
        if inner_max is not None and inner_max < length:
            raise ValueError(
                f"{type(self).__name__}: the truncated step's schedule "
                f"({type(inner).__name__}) ends its tasks after at most {inner_max} inner "
                f"steps, inside this estimator's full unroll of {length}, so tasks would be "
                "reset in the middle of it. Give the truncated step a schedule of at least "
                f"{length} steps (e.g. ConstantTruncationSchedule({length})), or a full "
                f"unroll of at most {inner_max} (unroll_length={inner_max})."
            )

    @functools.cached_property
    def length(self) -> int:
        """Inner steps per estimate: the whole unroll."""
        return full_unroll_length(self.truncated_step, self.truncation_schedule, self.unroll_length)

    def _fresh_states(self, theta: Any, outer_state: Any, key: PRNGKey, theta_is_vector: bool):
        """Fresh task samples at inner step 0, their optimizers told the unroll lasts `length`."""
        return self.truncated_step.init_step_state(
            theta, outer_state, key, theta_is_vector, num_steps_override=self.length
        )


@lopt_core.declare
class FullES(FullUnroll, ESEstimator):
    """ES: each estimate trains fresh tasks from scratch for a whole unroll.

    Args:
      truncated_step: the vectorised inner-training step.
      truncation_schedule: gives the unroll length (must be static, e.g.
        `ConstantTruncationSchedule(n)`); defaults to the step's own schedule.
      std: standard deviation of the perturbations.
      steps_per_jit: inner steps per jitted call (default: the whole unroll).
      loss_type: "avg" (mean loss over the unroll), "min" (lowest loss of the
        unroll), "last" (the loss of the unroll's last step) or "last_recompute"
        (the final params' loss, averaged over `recompute_samples` batches of
        `recompute_split`).
      recompute_samples: batches for "last_recompute".
      clip_loss_diff: clip each task's loss difference to +-this value.
      unroll_length: an explicit length, overriding the schedule.
      recompute_split: the split "last_recompute" evaluates on; None (default):
        the truncated step's `outer_data_split`. A split name needs a truncated
        step with an `outer_data_split` field (VectorizedLOptTruncatedStep) and
        loss_type="last_recompute". (The reference accepted this argument until
        it removed it, and never used it: it always evaluated the step's
        `outer_data_split`.)
      antithetic, stack_antithetic_samples, sign_delta_loss_scalar: keyword-only;
        see `ESEstimator` (defaults True, True, None; the reference's
        `stack_antithetic_samples` defaults to False, with the same estimate).

    Raises:
      ValueError: an unknown loss_type or recompute_split, a recompute_split
        without loss_type="last_recompute", or no static unroll length.
      TypeError: a recompute_split for a truncated step without an
        `outer_data_split` field.
    """

    truncation_schedule: TruncationSchedule | None = None
    std: float = 0.01
    steps_per_jit: int | None = None
    loss_type: str = "avg"
    recompute_samples: int = 50
    clip_loss_diff: float | None = None
    unroll_length: int | None = None
    recompute_split: str | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_choice(self.loss_type, owner, "loss_type", LOSS_TYPES)
        if self.recompute_split is not None:
            check_choice(self.recompute_split, owner, "recompute_split", SPLITS)
            if self.loss_type != "last_recompute":
                raise ValueError(
                    f"{owner}: recompute_split={self.recompute_split!r} only applies to "
                    f'loss_type="last_recompute" (got loss_type={self.loss_type!r}); drop '
                    'recompute_split or set loss_type="last_recompute".'
                )
            step = self.truncated_step
            names = (
                {f.name for f in dataclasses.fields(step)} if dataclasses.is_dataclass(step) else ()
            )
            if "outer_data_split" not in names:
                raise TypeError(
                    f"{owner}: recompute_split needs a truncated step with an "
                    f"outer_data_split field (such as VectorizedLOptTruncatedStep); "
                    f"{type(step).__name__} has none. Drop recompute_split: the "
                    "recompute batches then come from the step's get_outer_batch."
                )
        samples = check_positive_int(self.recompute_samples, owner, "recompute_samples")
        set_field(self, "recompute_samples", samples)
        if self.clip_loss_diff is not None:
            clip = float(check_positive(self.clip_loss_diff, owner, "clip_loss_diff"))
            set_field(self, "clip_loss_diff", clip)
        super().__post_init__()

    def _init_state(self, theta: Any, outer_state: Any, key: PRNGKey) -> FullESState:
        return FullESState()

    @functools.cached_property
    def _recompute_step(self) -> TruncatedStep:
        """The truncated step whose outer data "last_recompute" evaluates (`recompute_split`)."""
        step = self.truncated_step
        split = self.recompute_split
        if split is None or split == step.outer_data_split:
            return step
        return dataclasses.replace(step, outer_data_split=split)

    def _extra_data(self) -> Any:
        if self.loss_type == "last_recompute":
            return self._recompute_step.get_outer_batch(self.recompute_samples)
        return None

    def _begin(self, theta: Any, key: PRNGKey, state: FullESState, outer_state: Any):
        k_pert, k_init = jax.random.split(key)
        eps, thetas = self._perturb(theta, k_pert)
        # One key for every copy: the copies train the very same tasks.
        states = self._per_copy(
            lambda th: self._fresh_states(th, outer_state, k_init, True), thetas
        )
        return eps, thetas, states

    def _losses(self, carry: Any, ys: Any, key: PRNGKey, outer_state: Any, extra: Any):
        """Per-task losses of the positive and negative copies (None when one-sided)."""
        if self.loss_type == "avg":
            return self._mean_losses(ys)[1:]
        if self.loss_type == "min":
            lowest = jnp.min(jnp.where(ys.mask, ys.loss, jnp.inf), axis=0)
            return self._split(lowest, axis=0)
        if self.loss_type == "last":
            return self._split(ys.loss[-1], axis=0)
        _, thetas, states = carry
        keys = jax.random.split(key, self.recompute_samples)
        step = self._recompute_step

        def one(theta: Any, state: Any) -> jax.Array:
            def batch_loss(xs: Any) -> jax.Array:
                k, d = xs
                return step.meta_loss_batch(theta, state, k, d, outer_state, True)

            return jnp.mean(jax.lax.map(batch_loss, (keys, extra)), axis=0)

        return self._split(self._per_copy(one, thetas, states), axis=0)

    def _end(self, theta, carry, ys, key, state, outer_state, extra):
        pos_loss, neg_loss = self._losses(carry, ys, key, outer_state, extra)
        estimate = es_gradient(
            pos_loss, neg_loss, carry[0], self.std, self.clip_loss_diff,
            self.sign_delta_loss_scalar,
        )  # fmt: skip
        return self._out(estimate, FullESState(), self._split(ys, axis=1)[0])
