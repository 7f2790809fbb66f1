"""Learners: apply meta-gradient estimates to theta with a meta-optimizer.

`GradientLearner` owns theta's optimizer state; `gradient_worker_compute` runs the
gradient estimators (the "worker" side); `SingleMachineGradientLearner` ties the
two together on one machine. A non-finite meta-gradient never reaches theta: it
is dropped and counted (`metrics["nonfinite_grads"]`, and the running total in
`GradientLearnerState.num_dropped`).

References:
  learned_optimization, `outer_trainers/gradient_learner.py`.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from lopt_core import (
    GradientEstimator,
    GradientEstimatorOut,
    LearnedOptimizer,
    MetaParams,
    Optimizer,
    OuterState,
    PRNGKey,
    WorkerWeights,
)
from lopt_core.tree_utils import tree_all_finite
from lopt_core.validation import check_optimizer_instance, check_positive
from lopt_outer._common import jit_once, split_jit, strong, tree_mean_of

__all__ = [
    "AggregatedGradient",
    "GradientEstimator",
    "GradientEstimatorOut",
    "GradientLearner",
    "GradientLearnerState",
    "SingleMachineGradientLearner",
    "SingleMachineState",
    "WorkerComputeOut",
    "WorkerWeights",
    "gradient_worker_compute",
]


@flax.struct.dataclass
class GradientLearnerState:
    """State of a GradientLearner.

    Attributes:
      theta_opt_state: the meta-optimizer's state; it holds theta.
      outer_iteration: int32, updates applied or attempted so far.
      num_dropped: int32, non-finite gradients dropped so far.
    """

    theta_opt_state: Any
    outer_iteration: jax.Array
    num_dropped: jax.Array


@flax.struct.dataclass
class AggregatedGradient:
    """What a worker sends to the learner: a gradient, theta's model state, the mean loss."""

    theta_grads: MetaParams
    theta_model_state: Any
    mean_loss: jax.Array


@flax.struct.dataclass
class WorkerComputeOut:
    """Result of `gradient_worker_compute`."""

    to_put: AggregatedGradient
    unroll_states: Sequence[Any]
    metrics: dict[str, Any]
    event_info: Sequence[Any]


def _apply_update(
    theta_opt: Optimizer,
    state: GradientLearnerState,
    grads: tuple[Any, ...],
    losses: tuple[jax.Array, ...],
    key: PRNGKey | None,
) -> tuple[GradientLearnerState, dict[str, jax.Array]]:
    losses = jnp.stack([jnp.asarray(x, jnp.float32) for x in losses])
    finite = jnp.stack([tree_all_finite(g) & jnp.isfinite(loss) for g, loss in zip(grads, losses)])
    n_ok = jnp.sum(finite)
    weights = finite.astype(jnp.float32) / jnp.maximum(n_ok, 1).astype(jnp.float32)
    # Zero the dropped gradients before weighting: 0 * nan is still nan.
    mean_grad = jax.tree_util.tree_map(
        lambda *gs: sum(
            jnp.where(ok, g, jnp.zeros_like(g)) * w.astype(g.dtype)
            for g, ok, w in zip(gs, finite, weights)
        ),
        *grads,
    )
    safe_losses = jnp.where(finite, losses, 0.0)
    mean_loss = jnp.sum(safe_losses * weights)
    updated = theta_opt.update(state.theta_opt_state, mean_grad, loss=mean_loss, key=key)
    any_ok = n_ok > 0
    new_opt_state = jax.tree_util.tree_map(
        lambda new, old: jnp.where(any_ok, new, old).astype(jnp.result_type(old)),
        updated,
        state.theta_opt_state,
    )
    n_bad = jnp.asarray(len(grads), jnp.int32) - n_ok.astype(jnp.int32)
    new_state = GradientLearnerState(
        theta_opt_state=new_opt_state,
        outer_iteration=state.outer_iteration + 1,
        num_dropped=state.num_dropped + n_bad,
    )
    sq = sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(mean_grad))
    metrics = {
        "mean_loss": jnp.where(any_ok, mean_loss, jnp.nan),
        "best_of_mean_loss": jnp.min(jnp.where(finite, losses, jnp.inf)),
        "theta_grad_norm": jnp.sqrt(sq),
        "nonfinite_grads": n_bad,
        "nonfinite_grads_total": new_state.num_dropped,
    }
    return new_state, metrics


def _check_finite_theta(theta: MetaParams) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(theta)[0]:
        values = np.asarray(jax.device_get(leaf))
        if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
            where = jax.tree_util.keystr(path) or "theta"
            bad = int(values.size - np.sum(np.isfinite(values)))
            raise ValueError(
                f"GradientLearner: init_theta{where} holds {bad} NaN or infinite value(s); "
                "meta-training cannot start from it. Start from a finite theta (e.g. the "
                "learned optimizer's init, or an earlier checkpoint)."
            )


class GradientLearner:
    """Holds theta's optimizer state and applies aggregated meta-gradients.

    Args:
      meta_init: anything with `init(key) -> theta` (usually the LearnedOptimizer).
      theta_opt: the meta-optimizer, a lopt `Optimizer` (e.g. `lopt_optimizers.Adam`).
      init_theta: optional theta to start from instead of `meta_init.init(key)`.
    """

    def __init__(
        self, meta_init: LearnedOptimizer, theta_opt: Optimizer, init_theta: MetaParams = None
    ) -> None:
        if not callable(getattr(meta_init, "init", None)):
            raise TypeError(
                f"GradientLearner: meta_init must have an init(key) method (a "
                f"LearnedOptimizer), got {type(meta_init).__name__}."
            )
        check_optimizer_instance(theta_opt, "GradientLearner", "theta_opt")
        if init_theta is not None:
            _check_finite_theta(init_theta)
        self.meta_init = meta_init
        self.theta_opt = theta_opt
        self.init_theta = init_theta
        self._init_theta_jit = jit_once(lambda key: self.meta_init.init(key))
        self._init_opt_jit = jit_once(lambda theta: self.theta_opt.init(theta, None))
        self._update_jit = jit_once(
            lambda s, g, loss, k: _apply_update(self.theta_opt, s, g, loss, k)
        )

    @property
    def learned_optimizer(self) -> LearnedOptimizer:
        """The object theta was initialised from."""
        return self.meta_init

    def init(self, key: PRNGKey) -> GradientLearnerState:
        """Initial theta (from `meta_init.init(key)` or `init_theta`) and its optimizer state."""
        # Under jit: one compilation instead of one per eager op of the initialisers.
        theta = self._init_theta_jit(key) if self.init_theta is None else self.init_theta
        opt_state = self._init_opt_jit(strong(theta))
        return strong(
            GradientLearnerState(
                theta_opt_state=opt_state,
                outer_iteration=jnp.asarray(0, jnp.int32),
                num_dropped=jnp.asarray(0, jnp.int32),
            )
        )

    def get_meta_params(self, state: GradientLearnerState) -> MetaParams:
        """Current theta."""
        return self.theta_opt.get_params(state.theta_opt_state)

    def get_lopt_params(self, state: GradientLearnerState) -> MetaParams:
        """Alias of `get_meta_params` (the reference's name)."""
        return self.get_meta_params(state)

    def get_state_for_worker(self, state: GradientLearnerState) -> WorkerWeights:
        """Theta, its model state and the outer state, as the workers need them."""
        return WorkerWeights(
            theta=self.get_meta_params(state),
            theta_model_state=self.theta_opt.get_state(state.theta_opt_state),
            outer_state=OuterState(outer_iteration=state.outer_iteration),
        )

    def update(
        self,
        state: GradientLearnerState,
        grads_list: Sequence[AggregatedGradient],
        with_metrics: bool = False,
        key: PRNGKey | None = None,
    ) -> tuple[GradientLearnerState, dict[str, jax.Array]]:
        """Averages the finite gradients of `grads_list` and applies them to theta.

        A gradient (or its loss) with any NaN or inf is dropped and counted; when
        all are dropped theta and the meta-optimizer state stay unchanged.

        Args:
          state: the learner state.
          grads_list: gradients from workers.
          with_metrics: accepted for API compatibility; metrics are always returned.
          key: optional key for the meta-optimizer.

        Returns:
          `(next_state, metrics)` with mean_loss, best_of_mean_loss,
          theta_grad_norm, nonfinite_grads and nonfinite_grads_total.
        """
        del with_metrics
        if not grads_list:
            raise ValueError("grads_list is empty; pass at least one AggregatedGradient.")
        grads = tuple(g.theta_grads for g in grads_list)
        losses = tuple(g.mean_loss for g in grads_list)
        key = jax.random.PRNGKey(0) if key is None else key
        return self._update_jit(state, grads, losses, key)


def gradient_worker_compute(
    worker_weights: WorkerWeights,
    gradient_estimators: Sequence[GradientEstimator],
    unroll_states: Sequence[Any],
    key: PRNGKey,
    with_metrics: bool = False,
) -> WorkerComputeOut:
    """Runs every estimator once and averages their gradients.

    Args:
      worker_weights: theta, its model state and the outer state.
      gradient_estimators: the estimators.
      unroll_states: one worker state per estimator.
      key: random key.
      with_metrics: passed to the estimators.

    Returns:
      A `WorkerComputeOut`: the averaged gradient and mean loss (non-finite values
      are left for the learner to drop), the next worker states, metrics named
      `<estimator cfg>/<metric>`, and per-estimator unroll info.

    Raises:
      ValueError: the number of states does not match the number of estimators.
    """
    if len(gradient_estimators) != len(unroll_states):
        raise ValueError(
            f"Got {len(gradient_estimators)} gradient estimators but {len(unroll_states)} "
            "unroll states; pass one state per estimator."
        )
    grads, losses, states, metrics, events = [], [], [], {}, []
    keys = split_jit(key, len(gradient_estimators))
    for est, state, k in zip(gradient_estimators, unroll_states, keys):
        out, m = est.compute_gradient_estimate(worker_weights, k, state, with_summary=with_metrics)
        grads.append(out.grad)
        losses.append(out.mean_loss)
        states.append(out.unroll_state)
        events.append(out.unroll_info)
        name = est.cfg_name()
        for k_name, v in m.items():
            metrics[f"{name}/{k_name}"] = v
    if len(grads) == 1:
        mean_grad, mean_loss = grads[0], losses[0]
    else:
        mean_grad, mean_loss = tree_mean_of([(g, loss) for g, loss in zip(grads, losses)])
    to_put = AggregatedGradient(
        theta_grads=mean_grad,
        theta_model_state=worker_weights.theta_model_state,
        mean_loss=mean_loss,
    )
    return WorkerComputeOut(to_put=to_put, unroll_states=states, metrics=metrics, event_info=events)


@flax.struct.dataclass
class SingleMachineState:
    """Everything a single-machine meta-training run needs to continue: checkpoint this."""

    gradient_learner_state: GradientLearnerState
    gradient_estimator_states: tuple[Any, ...]


class SingleMachineGradientLearner:
    """Meta-trains on one machine: estimators compute gradients, a GradientLearner applies them.

    Args:
      meta_init: the LearnedOptimizer (anything with `init(key)`).
      gradient_estimators: one or more estimators; their gradients are averaged.
      theta_opt: the meta-optimizer, e.g. `lopt_optimizers.Adam(1e-3)`.
      init_theta: optional starting theta.
      precompile: compile the estimates in a background thread during `init`.
      precompile_timeout_s: how long `init` waits for that thread once its own
        work is done; past it, `init` warns and returns, and whatever is not yet
        compiled compiles on the main thread at the first update.

    Example:
      >>> learner = SingleMachineGradientLearner(lopt, [pes], Adam(1e-3))
      >>> state = learner.init(jax.random.PRNGKey(0))
      >>> state, loss, metrics = learner.update(state, jax.random.PRNGKey(1))
    """

    def __init__(
        self,
        meta_init: LearnedOptimizer,
        gradient_estimators: Sequence[GradientEstimator],
        theta_opt: Optimizer,
        init_theta: MetaParams = None,
        precompile: bool = True,
        precompile_timeout_s: float = 300.0,
    ) -> None:
        self._setup(GradientLearner(meta_init, theta_opt, init_theta), gradient_estimators)
        self.precompile = precompile
        self.precompile_timeout_s = float(
            check_positive(
                precompile_timeout_s, "SingleMachineGradientLearner", "precompile_timeout_s"
            )
        )

    @classmethod
    def from_gradient_learner(
        cls,
        gradient_learner: GradientLearner,
        gradient_estimators: Sequence[GradientEstimator],
        precompile: bool = True,
        precompile_timeout_s: float = 300.0,
    ) -> SingleMachineGradientLearner:
        """A learner around an existing `GradientLearner` (keeping its compiled update)."""
        self = cls.__new__(cls)
        self._setup(gradient_learner, gradient_estimators)
        self.precompile = precompile
        self.precompile_timeout_s = float(
            check_positive(
                precompile_timeout_s, "SingleMachineGradientLearner", "precompile_timeout_s"
            )
        )
        return self

    def _setup(
        self, gradient_learner: GradientLearner, gradient_estimators: Sequence[GradientEstimator]
    ) -> None:
        gradient_estimators = list(gradient_estimators)
        if not gradient_estimators:
            raise ValueError("gradient_estimators is empty; pass at least one estimator.")
        self.gradient_learner = gradient_learner
        self.gradient_estimators = gradient_estimators

    def init(self, key: PRNGKey) -> SingleMachineState:
        """Initial theta, meta-optimizer state and worker states.

        With `precompile` (the default), the estimators' jitted estimates compile in
        a background thread, from shapes alone, while the inits compile here: XLA
        compiles release the GIL, so on a multi-core machine the first outer step
        costs about the longest compilation instead of the sum of them.
        """
        k_theta, k_workers = split_jit(key, 2)
        keys = split_jit(k_workers, len(self.gradient_estimators))
        thread = self._start_precompile(k_theta, keys) if self.precompile else None
        try:
            learner_state = self.gradient_learner.init(k_theta)
            weights = self.gradient_learner.get_state_for_worker(learner_state)
            states = tuple(
                est.init_worker_state(weights, k) for est, k in zip(self.gradient_estimators, keys)
            )
        finally:
            if thread is not None:
                self._join_precompile(thread)
        return SingleMachineState(learner_state, states)

    def _join_precompile(self, thread: threading.Thread) -> None:
        thread.join(self.precompile_timeout_s)
        if thread.is_alive():
            # Left running as a daemon: whatever it compiles still lands in the cache.
            warnings.warn(
                f"SingleMachineGradientLearner: the background precompile did not finish "
                f"within {self.precompile_timeout_s:g} s; compiling on the main thread "
                "instead. Raise precompile_timeout_s, or pass precompile=False.",
                RuntimeWarning,
                stacklevel=3,
            )

    def _start_precompile(self, k_theta: PRNGKey, keys: jax.Array) -> threading.Thread:
        learner = self.gradient_learner
        if learner.init_theta is None:
            theta = jax.eval_shape(learner.meta_init.init, k_theta)
        else:
            theta = jax.eval_shape(strong, learner.init_theta)
        weights = WorkerWeights(theta, None, OuterState(np.zeros((), np.int32)))

        def run() -> None:
            # Only a head start, and compiles only (nothing runs, so nothing here can
            # wait on a computation): on any error the real first call raises it
            # again, in the caller's thread, with its full context.
            try:
                for est, k in zip(self.gradient_estimators, keys):
                    est.warm_up(weights, k)
                state = jax.eval_shape(learner.init, k_theta)
                loss = jax.ShapeDtypeStruct((), np.float32)
                learner._update_jit.lower(state, (theta,), (loss,), k_theta).compile()
            except Exception:
                return

        thread = threading.Thread(target=run, name="lopt-outer-precompile", daemon=True)
        thread.start()
        return thread

    def get_meta_params(self, state: SingleMachineState) -> MetaParams:
        """Current theta."""
        return self.gradient_learner.get_meta_params(state.gradient_learner_state)

    def update(
        self, state: SingleMachineState, key: PRNGKey, with_metrics: bool = False
    ) -> tuple[SingleMachineState, jax.Array, dict[str, jax.Array]]:
        """One outer step: estimate the meta-gradient and apply it.

        Returns:
          `(next_state, mean_loss, metrics)`.
        """
        k_worker, k_learner = split_jit(key, 2)
        weights = self.gradient_learner.get_state_for_worker(state.gradient_learner_state)
        worker_out = gradient_worker_compute(
            weights, self.gradient_estimators, state.gradient_estimator_states, k_worker,
            with_metrics,
        )  # fmt: skip
        learner_state, metrics = self.gradient_learner.update(
            state.gradient_learner_state, [worker_out.to_put], with_metrics, k_learner
        )
        metrics = {**metrics, **worker_out.metrics}
        new_state = SingleMachineState(learner_state, tuple(worker_out.unroll_states))
        return new_state, worker_out.to_put.mean_loss, metrics
