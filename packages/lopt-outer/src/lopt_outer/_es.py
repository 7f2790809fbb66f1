"""The base of the evolution-strategies estimators: TruncatedES, TruncatedPES and FullES.

Each estimate draws one Gaussian perturbation `eps_i` of theta per task `i`.

- `antithetic=True` (the default): every task runs twice side by side, at
  `theta + eps_i` and at `theta - eps_i`, with the same batches and random keys
  (`antithetic_unroll`), and the gradient is
  `mean_i (L+_i - L-_i) / (2 std^2) * eps_i`.
- `antithetic=False`: every task runs once, at `theta + eps_i`, and the gradient
  is `mean_i (L_i - b_i) / std^2 * eps_i`, where the baseline `b_i` is the mean
  loss of the other tasks: it does not depend on `eps_i`, so the estimate stays
  unbiased, at half the compute of an antithetic pair and a higher variance.

A task whose loss difference is not finite (a diverged inner run) adds nothing.

Two keyword-only options of every ES estimator follow the reference library:

- `sign_delta_loss_scalar=c`: each task's loss difference is replaced by
  `c * sign(difference)` (after `clip_loss_diff`), so every task moves theta by
  the same amount whatever the scale of its losses (VeLO's meta-training uses it).
- `stack_antithetic_samples`: how the two copies of an antithetic pair run. True
  (lopt's default) stacks them into one batch of `2 * num_tasks` tasks, one
  `unroll_step(..., antithetic=True)` call per step; False runs the positive and
  then the negative copies as two unrolls of `num_tasks` tasks with the same keys
  and data (the reference's default: less memory, and a truncated step need not
  accept `antithetic=`). Both give the same estimate, to float rounding.

References:
  Salimans et al. "Evolution Strategies as a Scalable Alternative to
  Reinforcement Learning." 2017, Sec. 2 (antithetic sampling).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import lopt_core
from lopt_core import GradientEstimatorOut
from lopt_core.summary import summary
from lopt_core.typing import MetaParams, PRNGKey
from lopt_core.validation import check_positive
from lopt_outer._common import masked_mean, scale_per_task, set_field, tree_stack
from lopt_outer._estimator import UnrollEstimator
from lopt_outer.truncated_step import antithetic_unroll, truncated_unroll

__all__ = ["ESEstimator", "ESGradient", "es_gradient", "loss_difference", "sample_perturbations"]


def sample_perturbations(theta: MetaParams, key: PRNGKey, std: float, num: int) -> MetaParams:
    """`num` Gaussian perturbations of theta with standard deviation `std` (leading axis `num`)."""
    leaves, treedef = jax.tree_util.tree_flatten(theta)
    # One draw for all leaves: every random call site costs compile time (threefry).
    sizes = [int(np.prod(jnp.shape(x))) for x in leaves]
    flat = jax.random.normal(key, (num, max(sum(sizes), 1)), jnp.float32)
    offsets = np.cumsum([0, *sizes])
    return treedef.unflatten(
        [
            (std * flat[:, a:b]).reshape((num, *jnp.shape(x))).astype(jnp.result_type(x))
            for a, b, x in zip(offsets[:-1], offsets[1:], leaves)
        ]
    )


def loss_difference(
    pos_loss: jax.Array,
    neg_loss: jax.Array | None,
    clip_loss_diff: float | None = None,
    sign_delta_loss_scalar: float | None = None,
) -> jax.Array:
    """Per-task loss difference of an ES estimate, non-finite values zeroed.

    Args:
      pos_loss: per-task losses at `theta + eps`, shape `(num_tasks,)`.
      neg_loss: per-task losses at `theta - eps`; None for a one-sided estimate,
        whose difference is taken to the mean finite loss of the other tasks.
      clip_loss_diff: clip each difference to +-this value.
      sign_delta_loss_scalar: when given, each (clipped) difference becomes
        `sign_delta_loss_scalar * sign(difference)`; a zeroed one stays 0.

    Returns:
      float array `(num_tasks,)`.
    """
    if neg_loss is None:
        finite = jnp.isfinite(pos_loss)
        safe = jnp.where(finite, pos_loss, 0.0)
        others = jnp.sum(finite) - finite
        neg_loss = jnp.where(others > 0, (jnp.sum(safe) - safe) / jnp.maximum(others, 1), 0.0)
    delta = jnp.nan_to_num(pos_loss - neg_loss, nan=0.0, posinf=0.0, neginf=0.0)
    if clip_loss_diff is not None:
        delta = jnp.clip(delta, -clip_loss_diff, clip_loss_diff)
    if sign_delta_loss_scalar is not None:
        delta = jnp.sign(delta) * sign_delta_loss_scalar
    return delta


class ESGradient(NamedTuple):
    """An ES estimate (what `es_gradient` returns).

    Attributes:
      mean_loss: the mean loss over the finite tasks (and both copies); NaN when
        no task is finite, so the learner drops the step and counts it.
      grad: the gradient, a tree like theta, averaged over the finite tasks.
      delta: the per-task loss differences (0 for a non-finite task).
      num_nonfinite: int32, tasks masked out because a loss was NaN or infinite.
    """

    mean_loss: jax.Array
    grad: MetaParams
    delta: jax.Array
    num_nonfinite: jax.Array


def es_gradient(
    pos_loss: jax.Array,
    neg_loss: jax.Array | None,
    directions: MetaParams,
    std: float,
    clip_loss_diff: float | None = None,
    sign_delta_loss_scalar: float | None = None,
) -> ESGradient:
    """The ES estimate from per-task losses and the perturbation each task is credited with.

    A task whose loss (either copy's) is NaN or infinite (a diverged inner run) is
    masked out: it adds nothing to the gradient or the mean loss, which average
    over the remaining tasks, and it is counted in `num_nonfinite`.

    Args:
      pos_loss, neg_loss: see `loss_difference` (neg_loss None: one-sided).
      directions: per task (leading axis), the perturbation its loss difference
        is credited to (`eps`, or PES's accumulated perturbations).
      std: the perturbation standard deviation.
      clip_loss_diff, sign_delta_loss_scalar: see `loss_difference`.

    Returns:
      An `ESGradient(mean_loss, grad, delta, num_nonfinite)`.
    """
    finite = jnp.isfinite(pos_loss)
    if neg_loss is not None:
        finite = finite & jnp.isfinite(neg_loss)
    n_ok = jnp.sum(finite.astype(jnp.int32))
    denom = jnp.maximum(n_ok, 1).astype(jnp.float32)
    delta = loss_difference(pos_loss, neg_loss, clip_loss_diff, sign_delta_loss_scalar)
    copies = 1 if neg_loss is None else 2
    coef = jnp.where(finite, delta, 0.0) / (copies * std**2)
    grad = jax.tree_util.tree_map(
        lambda x: (jnp.sum(x, axis=0) / denom).astype(x.dtype), scale_per_task(coef, directions)
    )
    per_task = pos_loss if neg_loss is None else (pos_loss + neg_loss) / 2.0
    total = jnp.sum(jnp.where(finite, per_task, 0.0))
    mean_loss = jnp.where(n_ok > 0, total / denom, jnp.nan)
    num_bad = jnp.asarray(finite.shape[0], jnp.int32) - n_ok
    return ESGradient(mean_loss, grad, delta, num_bad)


@lopt_core.declare
class ESEstimator(UnrollEstimator):
    """Base of the ES estimators: perturbs theta per task and unrolls the perturbed copies.

    A subclass declares a `std` field and implements `_init_state`, `_end` and
    `_start_states(state)` (the copies' starting states from the worker state, as
    `_join` stacks them), or overrides `_begin`.

    Attributes:
      antithetic: run every task at `theta + eps` and `theta - eps` (True), or at
        `theta + eps` only, against the other tasks' mean loss (False). A
        keyword-only configuration of every ES estimator.
      stack_antithetic_samples: keyword-only. True (default): the two copies of
        every antithetic pair run stacked, as one batch of `2 * num_tasks` tasks;
        False: as two unrolls one after the other (the reference's default), with
        the same keys and data, so the estimate is the same. Must stay True when
        `antithetic=False` (there is one copy per task).
      sign_delta_loss_scalar: keyword-only. None (default): the loss differences
        are used as they are. A number c > 0: each task's loss difference (after
        any clipping) is replaced by `c * sign(difference)`, as in the
        reference. PES takes the sign of the truncation's mean difference.
    """

    antithetic: bool = dataclasses.field(default=True, kw_only=True)
    stack_antithetic_samples: bool = dataclasses.field(default=True, kw_only=True)
    sign_delta_loss_scalar: float | None = dataclasses.field(default=None, kw_only=True)
    std = 0.01
    # `_end` always; `_start_states` unless `_begin` is overridden (lopt_core.Interface
    # names what is missing at instantiation).
    _either_of = (("_whole", "_end"), ("_begin", "_start_states"))

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        set_field(self, "std", float(check_positive(self.std, owner, "std")))
        if not isinstance(self.antithetic, bool):
            raise TypeError(f"{owner}: antithetic must be True or False, got {self.antithetic!r}.")
        if not isinstance(self.stack_antithetic_samples, bool):
            raise TypeError(
                f"{owner}: stack_antithetic_samples must be True or False, got "
                f"{self.stack_antithetic_samples!r}."
            )
        if not self.antithetic and not self.stack_antithetic_samples:
            raise ValueError(
                f"{owner}: stack_antithetic_samples=False only applies to antithetic pairs; "
                "with antithetic=False every task runs once. Drop stack_antithetic_samples, "
                "or set antithetic=True."
            )
        scalar = self.sign_delta_loss_scalar
        if scalar is not None:
            if isinstance(scalar, bool):
                raise TypeError(
                    f"{owner}: sign_delta_loss_scalar must be None or a number > 0, got {scalar!r}."
                )
            scalar = float(check_positive(scalar, owner, "sign_delta_loss_scalar"))
            set_field(self, "sign_delta_loss_scalar", scalar)

    @property
    def _sequential(self) -> bool:
        """True when the copies of the antithetic pairs run one after the other."""
        return self.antithetic and not self.stack_antithetic_samples

    # -- the copies of every task (leading axis 2 when antithetic) --------------
    def _join(self, pos: Any, neg: Any) -> Any:
        """The copies' trees as one: stacked on a new leading axis when antithetic."""
        return tree_stack([pos, neg]) if self.antithetic else pos

    def _split(self, tree: Any, axis: int) -> tuple[Any, Any]:
        """`(positive copy, negative copy or None)` of a tree with a copy axis at `axis`."""
        if not self.antithetic:
            return tree, None
        pos = jax.tree_util.tree_map(lambda x: jnp.take(x, 0, axis), tree)
        neg = jax.tree_util.tree_map(lambda x: jnp.take(x, 1, axis), tree)
        return pos, neg

    def _per_copy(self, fn: Any, *trees: Any) -> Any:
        """`fn` applied to every copy of `trees` (vmapped, or one copy after the other)."""
        if not self.antithetic:
            return fn(*trees)
        if self._sequential:
            halves = [self._split(tree, axis=0) for tree in trees]
            return tree_stack([fn(*(h[0] for h in halves)), fn(*(h[1] for h in halves))])
        return jax.vmap(fn)(*trees)

    @staticmethod
    def _stack_outputs(p_ys: Any, n_ys: Any) -> Any:
        """Per-step outputs of the two copies as one tree, copy axis 1 (as `antithetic_unroll`)."""
        return jax.tree_util.tree_map(lambda p, q: jnp.stack([p, q], axis=1), p_ys, n_ys)

    def _mean_losses(self, ys: Any) -> tuple[Any, jax.Array, jax.Array | None]:
        """`(positive outputs, positive losses, negative losses or None)`: masked means."""
        p_ys, n_ys = self._split(ys, axis=1)
        neg = None if n_ys is None else masked_mean(n_ys.loss, n_ys.mask)
        return p_ys, masked_mean(p_ys.loss, p_ys.mask), neg

    # -- stages -----------------------------------------------------------------
    def _perturb(self, theta: MetaParams, key: PRNGKey) -> tuple[MetaParams, MetaParams]:
        """`(eps, thetas)`: one perturbation per task and the copies' meta-parameters."""
        eps = sample_perturbations(theta, key, self.std, self.truncated_step.num_tasks)

        def shifted(sign: float) -> MetaParams:
            return jax.tree_util.tree_map(lambda x, e: x[None] + sign * e, theta, eps)

        return eps, self._join(shifted(1.0), shifted(-1.0) if self.antithetic else None)

    def _begin(self, theta: Any, key: PRNGKey, state: Any, outer_state: Any) -> Any:
        eps, thetas = self._perturb(theta, key)
        return eps, thetas, self._start_states(state)

    def _chunk(self, carry: Any, key: PRNGKey, datas: Any, outer_state: Any, n: int):
        eps, thetas, states = carry
        step = self.truncated_step
        if self._sequential:
            # The reference's unstacked pairs: the same key and data for both copies.
            (p_th, n_th), (p_s, n_s) = self._split(thetas, 0), self._split(states, 0)
            p_s, p_ys = truncated_unroll(step, p_th, p_s, key, datas, outer_state, n, True)
            n_s, n_ys = truncated_unroll(step, n_th, n_s, key, datas, outer_state, n, True)
            states, ys = tree_stack([p_s, n_s]), self._stack_outputs(p_ys, n_ys)
        elif self.antithetic:
            states, ys = antithetic_unroll(step, thetas, states, key, datas, outer_state, n)
        else:
            states, ys = truncated_unroll(step, thetas, states, key, datas, outer_state, n, True)
        return (eps, thetas, states), ys

    def _out(
        self, estimate: tuple, unroll_state: Any, p_ys: Any, **metrics: jax.Array
    ) -> tuple[GradientEstimatorOut, dict[str, jax.Array]]:
        """The estimator's output and metrics from an `ESGradient`."""
        mean_loss, grad, delta, num_nonfinite = estimate
        summary("delta_loss_sample", delta, aggregation="sample")  # recorded with_summary only
        out = GradientEstimatorOut(
            mean_loss=mean_loss, grad=grad, unroll_state=unroll_state, unroll_info=p_ys
        )
        metrics = {
            "mean_loss": mean_loss,
            "delta_loss_abs_mean": jnp.mean(jnp.abs(delta)),
            "nonfinite_tasks": num_nonfinite,
            **metrics,
        }
        return out, metrics
