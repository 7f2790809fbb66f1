"""Meta-gradients by backpropagation through the unroll: truncated and full.

References:
  Wu, Ren, Liao, Grosse. "Understanding Short-Horizon Bias in Stochastic
  Meta-Optimization." ICLR 2018 (truncated backpropagation).
  learned_optimization, `outer_trainers/truncated_grad.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp

import lopt_core
from lopt_core import GradientEstimatorOut, TruncatedStep, TruncationSchedule
from lopt_core.typing import PRNGKey
from lopt_core.validation import check_choice, check_positive_int
from lopt_outer._common import masked_mean, match_dtypes, set_field
from lopt_outer._estimator import GradientEstimatorState, UnrollEstimator
from lopt_outer.full_es import FullUnroll
from lopt_outer.truncated_step import truncated_unroll

__all__ = [
    "FULL_GRAD_LOSS_TYPES",
    "TRUNCATED_GRAD_LOSS_TYPES",
    "FullGrad",
    "FullGradState",
    "TruncatedGrad",
    "masked_task_gradient",
    "unroll_meta_loss",
]

#: `TruncatedGrad(loss_type=...)`: the values the reference documents.
TRUNCATED_GRAD_LOSS_TYPES = ("avg", "last_recompute")
#: `FullGrad(loss_type=...)`: the values the reference supports.
FULL_GRAD_LOSS_TYPES = ("avg", "last")


def unroll_meta_loss(
    truncated_step: TruncatedStep,
    theta: Any,
    state: Any,
    key: PRNGKey,
    datas: Any,
    outer_state: Any,
    length: int,
) -> tuple[jax.Array, tuple[Any, Any]]:
    """Mean over tasks of each task's masked mean loss over a `length`-step unroll.

    This is the meta-loss the ES estimators estimate the gradient of; it is
    differentiable in theta.

    Returns:
      `(meta_loss, (final_state, per_step_outputs))`.
    """
    state, ys = truncated_unroll(truncated_step, theta, state, key, datas, outer_state, length)
    return jnp.mean(masked_mean(ys.loss, ys.mask)), (state, ys)


def masked_task_gradient(
    per_task_loss: Callable[[Any], tuple[jax.Array, Any]], theta: Any, num_tasks: int
) -> tuple[jax.Array, Any, jax.Array, Any]:
    """The mean over tasks of each task's meta-gradient, non-finite tasks masked out.

    `per_task_loss(thetas)` takes theta with a leading task axis (one copy per
    task) and returns `(losses, aux)`, `losses` of shape `(num_tasks,)`. One
    backward pass through the sum of the finite losses gives every task's own
    gradient (tasks do not interact), so a task whose loss or gradient is NaN or
    infinite (a diverged inner run) is dropped from the average instead of
    poisoning it.

    Returns:
      `(mean_loss, grad, num_nonfinite, aux)`: the mean loss and gradient over the
      finite tasks (NaN loss and a zero gradient when none is finite), and the
      count of tasks masked out.
    """
    thetas = jax.tree_util.tree_map(
        lambda x: jnp.broadcast_to(x, (num_tasks, *jnp.shape(x))), theta
    )

    def total(ths: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
        losses, aux = per_task_loss(ths)
        return jnp.sum(jnp.where(jnp.isfinite(losses), losses, 0.0)), (losses, aux)

    (_, (losses, aux)), grads = jax.value_and_grad(total, has_aux=True)(thetas)
    finite = jnp.isfinite(losses)
    for g in jax.tree_util.tree_leaves(grads):
        finite = finite & jnp.all(jnp.isfinite(g.reshape((num_tasks, -1))), axis=1)
    n_ok = jnp.sum(finite.astype(jnp.int32))
    denom = jnp.maximum(n_ok, 1).astype(jnp.float32)

    def mean_over_finite(g: jax.Array) -> jax.Array:
        ok = finite.reshape((num_tasks,) + (1,) * (g.ndim - 1))
        return (jnp.sum(jnp.where(ok, g, 0.0), axis=0) / denom).astype(g.dtype)

    grad = jax.tree_util.tree_map(mean_over_finite, grads)
    mean_loss = jnp.where(n_ok > 0, jnp.sum(jnp.where(finite, losses, 0.0)) / denom, jnp.nan)
    return mean_loss, grad, jnp.asarray(num_tasks, jnp.int32) - n_ok, aux


def _task_losses(ys: Any) -> jax.Array:
    return masked_mean(ys.loss, ys.mask)


@lopt_core.declare
class TruncatedGrad(UnrollEstimator):
    """Truncated backpropagation: the exact gradient of one truncation's meta-loss.

    Gradients do not flow into the starting state (that is the truncation), so
    long-horizon effects are ignored; the final state continues next time.

    Args:
      truncated_step: the vectorised inner-training step.
      unroll_length: inner steps per estimate.
      steps_per_jit: the unroll runs as `unroll_length // steps_per_jit` chunks, each
        with its own key (`fold_in(key, chunk)`), as in the reference. The gradient
        flows through every chunk, so the whole estimate stays one jitted call (it
        cannot be split into separately compiled calls without cutting the
        backpropagation); None: one chunk. Must divide `unroll_length`.
      loss_type: the meta-loss differentiated. "avg" (default): each task's mean
        loss over the truncation's steps (masked), averaged over tasks.
        "last_recompute": the loss of the truncation's final params
        (`meta_loss_batch`), averaged over `recompute_samples` batches of
        `get_outer_batch` (keys `fold_in(key, number of chunks)` split per batch),
        then over tasks. The reference documents both values but always
        computes "avg".
      recompute_samples: batches for "last_recompute".

    Raises:
      ValueError: an unknown loss_type, or recompute_samples not a positive int.
    """

    unroll_length: int = 20
    steps_per_jit: int | None = None
    loss_type: str = "avg"
    recompute_samples: int = 50

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_choice(self.loss_type, owner, "loss_type", TRUNCATED_GRAD_LOSS_TYPES)
        samples = check_positive_int(self.recompute_samples, owner, "recompute_samples")
        set_field(self, "recompute_samples", samples)
        super().__post_init__()

    @property
    def _chunked(self) -> bool:
        return False  # one jitted call whatever steps_per_jit says (see the docstring)

    def _init_state(self, theta: Any, outer_state: Any, key: PRNGKey) -> Any:
        return self.truncated_step.init_step_state(theta, outer_state, key, False)

    def _extra_data(self) -> Any:
        if self.loss_type == "last_recompute":
            return self.truncated_step.get_outer_batch(self.recompute_samples)
        return None

    def _whole(self, theta, key, state, datas, outer_state, extra):
        step = self.truncated_step

        per_jit = self.steps_per_jit or self.length
        chunks = self.length // per_jit

        def per_task(thetas: Any) -> tuple[jax.Array, tuple[Any, Any]]:
            end, outs = state, []
            for i in range(chunks):
                k = key if chunks == 1 else jax.random.fold_in(key, i)
                span = slice(i * per_jit, (i + 1) * per_jit)
                part = jax.tree_util.tree_map(lambda d, span=span: d[span], datas)
                end, ys = truncated_unroll(step, thetas, end, k, part, outer_state, per_jit, True)
                outs.append(ys)
            ys = (
                outs[0]
                if chunks == 1
                else jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *outs)
            )
            if self.loss_type == "avg":
                return _task_losses(ys), (end, ys)
            keys = jax.random.split(jax.random.fold_in(key, chunks), self.recompute_samples)

            def batch_loss(xs: Any) -> jax.Array:
                k, d = xs
                return step.meta_loss_batch(thetas, end, k, d, outer_state, True)

            return jnp.mean(jax.lax.map(batch_loss, (keys, extra)), axis=0), (end, ys)

        loss, grad, bad, (new_state, ys) = masked_task_gradient(per_task, theta, step.num_tasks)
        new_state = match_dtypes(state, jax.lax.stop_gradient(new_state))
        out = GradientEstimatorOut(
            mean_loss=loss, grad=grad, unroll_state=new_state, unroll_info=ys
        )
        return out, {"mean_loss": loss, "nonfinite_tasks": bad}


@flax.struct.dataclass
class FullGradState(GradientEstimatorState):
    """FullGrad keeps nothing between estimates: every estimate starts from fresh tasks."""


@lopt_core.declare
class FullGrad(FullUnroll, UnrollEstimator):
    """Backpropagation through a whole unroll from freshly sampled tasks.

    Args:
      truncated_step: the vectorised inner-training step.
      truncation_schedule: gives the unroll length (static); defaults to the
        step's own schedule.
      unroll_length: an explicit length, overriding the schedule.
      loss_type: the meta-loss differentiated, as in the reference. "avg"
        (default): each task's mean loss over the unroll (masked), averaged over
        tasks. "last": the loss of the unroll's last step, averaged over tasks.

    Raises:
      ValueError: an unknown loss_type, or no static unroll length.
    """

    truncation_schedule: TruncationSchedule | None = None
    unroll_length: int | None = None
    loss_type: str = "avg"

    def __post_init__(self) -> None:
        check_choice(self.loss_type, type(self).__name__, "loss_type", FULL_GRAD_LOSS_TYPES)
        super().__post_init__()

    def _init_state(self, theta: Any, outer_state: Any, key: PRNGKey) -> FullGradState:
        return FullGradState()

    def _whole(self, theta, key, state, datas, outer_state, extra):
        k_init, k_unroll = jax.random.split(key)
        step = self.truncated_step

        def per_task(thetas: Any) -> tuple[jax.Array, Any]:
            start = self._fresh_states(thetas, outer_state, k_init, True)
            _, ys = truncated_unroll(
                step, thetas, start, k_unroll, datas, outer_state, self.length, True
            )
            return (_task_losses(ys) if self.loss_type == "avg" else ys.loss[-1]), ys

        loss, grad, bad, ys = masked_task_gradient(per_task, theta, step.num_tasks)
        out = GradientEstimatorOut(
            mean_loss=loss, grad=grad, unroll_state=FullGradState(), unroll_info=ys
        )
        return out, {"mean_loss": loss, "nonfinite_tasks": bad}
