"""Meta-training over a mixture of task families: one estimator per family, one runs per step.

`MixtureEstimator` wraps several gradient estimators, typically one per task
family, each with its own `VectorizedLOptTruncatedStep`. Families with different
cfg structures, parameter trees and datasets therefore never share a jit: every
member compiles its own estimate once, and an outer step runs exactly one member
(the reference library's `stochastic_resample_frequency`). The member is drawn
by weight every `resample_every` outer steps from a key derived from the
worker's key (the key `init_worker_state` was given) and the outer iteration, so
the sequence of members is deterministic.

Each member's meta-loss is normalised by its task's `normalizer` (inside its
truncated step) before the learner averages anything; with `normalize=True` the
mixture additionally divides each member's gradient and loss by a running scale
of that family's meta-loss (see `MixtureEstimator`).

For a mixture inside one jit (one estimator, tasks of every family side by side)
use `lopt_tasks.mixture.MixtureTaskFamily` instead.

Example:
  >>> est = mixture_estimator(
  ...     [fam_a, fam_b],
  ...     lambda fam: TruncatedPES(VectorizedLOptTruncatedStep(fam, lopt, sched, num_tasks=4)),
  ... )
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

import lopt_core
from lopt_core import GradientEstimator, GradientEstimatorOut, TaskFamily, WorkerWeights
from lopt_core.typing import PRNGKey
from lopt_core.validation import check_members, check_positive_int
from lopt_outer._common import set_field, strong

__all__ = ["MixtureEstimator", "MixtureWorkerState", "mixture_estimator"]

# Decay of the running per-family meta-loss scale used by `normalize=True`.
_SCALE_DECAY = 0.9


@flax.struct.dataclass
class MixtureWorkerState:
    """Worker state of a `MixtureEstimator`.

    Attributes:
      states: every member's worker state (a tuple, in member order).
      member: int32, the member that ran last (-1 before the first estimate).
      counts: int32 `(num_members,)`, estimates each member has run.
      key: the worker's key; members are drawn from it and the outer iteration.
      loss_scale: float32 `(num_members,)`, running mean of |meta-loss| per member
        (0 until the member first runs); used only when `normalize=True`.
    """

    states: tuple[Any, ...]
    member: jax.Array
    counts: jax.Array
    key: jax.Array
    loss_scale: jax.Array


def _member_name(est: Any, i: int) -> str:
    try:
        name = est.task_name()
    except Exception:
        name = type(est).__name__
    return name or f"member{i}"


@lopt_core.declare
class MixtureEstimator(GradientEstimator):
    """Runs one of several gradient estimators per outer step, drawn by weight.

    Args:
      estimators: the members, one per task family (each its own truncated step).
      weights: the probability of drawing each member (normalised; uniform by
        default).
      resample_every: draw a new member every this many outer steps (the
        reference's `stochastic_resample_frequency`); the member for outer
        iteration `t` is drawn from the worker key and `t // resample_every`.
      normalize: divide each member's gradient and mean loss by
        `max(1, s_i)`, where `s_i` is a running mean (decay 0.9, initialised on
        the member's first estimate) of the absolute normalised meta-loss of
        member `i`. This only shrinks families whose meta-loss is still large
        after their normaliser; False (the default) leaves the estimates as the
        members return them.

    Metrics: `member` (the index that ran), `meta_loss/<family>` (the mean
    meta-loss of the member that ran, under its family's name), `count/<family>`
    (estimates each member has run so far) and the running member's own metrics
    under `<family>/<metric>`.

    Raises:
      TypeError: a member is not a GradientEstimator.
      ValueError: no members, or weights of the wrong length or not positive.
    """

    estimators: tuple[GradientEstimator, ...] = dataclasses.field()
    weights: tuple[float, ...] | None = None
    resample_every: int = 1
    normalize: bool = False

    def __post_init__(self) -> None:
        owner = type(self).__name__
        ests, weights = check_members(
            self.estimators,
            self.weights,
            owner,
            "estimators",
            GradientEstimator,
            "lopt_core.GradientEstimator",
        )
        set_field(self, "estimators", ests)
        set_field(self, "weights", weights)
        set_field(
            self, "resample_every", check_positive_int(self.resample_every, owner, "resample_every")
        )
        if not isinstance(self.normalize, bool):
            raise TypeError(f"{owner}: normalize must be True or False, got {self.normalize!r}.")

    # -- naming -----------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """The members' family names (made unique with `_<i>` where they repeat)."""
        raw = [_member_name(e, i) for i, e in enumerate(self.estimators)]
        return tuple(n if raw.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(raw))

    def task_name(self) -> str:
        """`Mixture(<family>,<family>,...)`."""
        return "Mixture(" + ",".join(self.names) + ")"

    def cfg_name(self) -> str:
        """`MixtureEstimator_<task_name>`."""
        return f"{type(self).__name__}_{self.task_name()}"

    @property
    def probabilities(self) -> np.ndarray:
        """The members' sampling probabilities (float64, summing to one)."""
        n = len(self.estimators)
        w = np.ones(n) if self.weights is None else np.asarray(self.weights, np.float64)
        return w / w.sum()

    # -- member selection ---------------------------------------------------------
    def member_for(self, key: PRNGKey, outer_iteration: int) -> int:
        """The member that runs at `outer_iteration` for a worker whose key is `key`.

        Deterministic: a numpy generator seeded by the key's bits and the block
        `outer_iteration // resample_every` draws the index by weight (host-side,
        so choosing costs no compilation).
        """
        bits = np.asarray(jax.random.key_data(key) if _is_typed_key(key) else key)
        seed = [int(b) for b in bits.astype(np.uint32).ravel()]
        block = int(outer_iteration) // self.resample_every
        rng = np.random.default_rng([*seed, block])
        return int(rng.choice(len(self.estimators), p=self.probabilities))

    # -- GradientEstimator -----------------------------------------------------
    def init_worker_state(self, worker_weights: WorkerWeights, key: PRNGKey) -> MixtureWorkerState:
        """Every member's worker state, from keys split off `key`; `key` picks the members."""
        n = len(self.estimators)
        keys = jax.random.split(key, n + 1)
        states = tuple(
            est.init_worker_state(worker_weights, keys[i + 1])
            for i, est in enumerate(self.estimators)
        )
        return MixtureWorkerState(
            states=states,
            member=jnp.asarray(-1, jnp.int32),
            counts=jnp.zeros((n,), jnp.int32),
            key=strong(keys[0]),
            loss_scale=jnp.zeros((n,), jnp.float32),
        )

    def warm_up(self, worker_weights: WorkerWeights, key: PRNGKey) -> bool:
        """Warms up every member (each compiles its own estimate).

        Every member gets `key` itself: a warm-up reads only the key's shape, and
        splitting it here would run a computation, which a warm-up must not do (it
        runs in the precompile thread beside the caller's computations).
        """
        done = [est.warm_up(worker_weights, key) for est in self.estimators]
        return any(done)

    def compute_gradient_estimate(
        self,
        worker_weights: WorkerWeights,
        key: PRNGKey,
        state: MixtureWorkerState,
        with_summary: bool = False,
    ) -> tuple[GradientEstimatorOut, dict[str, Any]]:
        """Runs the member drawn for this outer iteration; the others' states are kept."""
        t = int(np.asarray(worker_weights.outer_state.outer_iteration))
        i = self.member_for(state.key, t)
        est = self.estimators[i]
        out, member_metrics = est.compute_gradient_estimate(
            worker_weights, key, state.states[i], with_summary=with_summary
        )
        states = tuple(out.unroll_state if j == i else s for j, s in enumerate(state.states))
        counts = state.counts.at[i].add(1)
        mean_loss = jnp.asarray(out.mean_loss, jnp.float32)
        grad = out.grad
        scale = state.loss_scale
        if self.normalize:
            seen = state.counts[i] > 0
            mag = jnp.where(jnp.isfinite(mean_loss), jnp.abs(mean_loss), scale[i])
            s_i = jnp.where(seen, _SCALE_DECAY * scale[i] + (1 - _SCALE_DECAY) * mag, mag)
            scale = scale.at[i].set(s_i)
            div = jnp.maximum(s_i, 1.0)
            grad = jax.tree_util.tree_map(lambda g: (g / div).astype(g.dtype), grad)
            mean_loss = mean_loss / div
        new_state = MixtureWorkerState(
            states=states,
            member=jnp.asarray(i, jnp.int32),
            counts=counts,
            key=state.key,
            loss_scale=scale.astype(jnp.float32),
        )
        names = self.names
        metrics: dict[str, Any] = {
            "member": jnp.asarray(i, jnp.int32),
            "mean_loss": mean_loss,
            f"meta_loss/{names[i]}": jnp.asarray(out.mean_loss, jnp.float32),
        }
        for j, name in enumerate(names):
            metrics[f"count/{name}"] = counts[j]
        for k, v in member_metrics.items():
            metrics[f"{names[i]}/{k}"] = v
        result = GradientEstimatorOut(
            mean_loss=mean_loss, grad=grad, unroll_state=new_state, unroll_info=out.unroll_info
        )
        return result, metrics


def _is_typed_key(key: Any) -> bool:
    return jnp.issubdtype(getattr(key, "dtype", np.uint32), jax.dtypes.prng_key)


def mixture_estimator(
    families: Sequence[TaskFamily],
    make_estimator: Callable[[TaskFamily], GradientEstimator],
    weights: Sequence[float] | None = None,
    resample_every: int = 1,
    normalize: bool = False,
) -> MixtureEstimator:
    """A `MixtureEstimator` with one member per family, `make_estimator(family)` each.

    Args:
      families: the task families.
      make_estimator: builds a family's gradient estimator (with its own
        truncated step over that family).
      weights: sampling weights of the families (uniform by default).
      resample_every: outer steps between draws of a new member.
      normalize: see `MixtureEstimator`.

    Returns:
      The MixtureEstimator.
    """
    families = tuple(families)
    if not families:
        raise ValueError("mixture_estimator: families is empty; pass at least one family.")
    ests = tuple(make_estimator(f) for f in families)
    return MixtureEstimator(
        estimators=ests,
        weights=None if weights is None else tuple(weights),
        resample_every=resample_every,
        normalize=normalize,
    )
