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

import os
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from lopt_core import (
    CheckpointError,
    GradientEstimator,
    GradientEstimatorOut,
    LearnedOptimizer,
    MetaParams,
    Optimizer,
    OuterState,
    PRNGKey,
    WorkerWeights,
    checkpoint,
)
from lopt_core.checkpoint import DEFAULT_MAX_BYTES
from lopt_core.datasets import array_splits
from lopt_core.tree_utils import first_difference, path_str, tree_all_finite
from lopt_core.validation import check_optimizer_instance, check_positive, check_positive_int
from lopt_outer._common import jit_once, split_jit, strong, tree_mean_of
from lopt_outer._estimator import GradientEstimatorState

__all__ = [
    "AggregatedGradient",
    "GradientEstimator",
    "GradientEstimatorOut",
    "GradientEstimatorState",
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


def _nonfinite_leaf(tree: Any) -> tuple[str, int] | None:
    """`(path, count)` of the first floating leaf holding NaN or inf, or None."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        values = np.asarray(jax.device_get(leaf))
        if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
            return jax.tree_util.keystr(path), int(values.size - np.sum(np.isfinite(values)))
    return None


def _check_finite_theta(theta: MetaParams) -> None:
    bad = _nonfinite_leaf(theta)
    if bad is not None:
        where, count = bad
        raise ValueError(
            f"GradientLearner: init_theta{where or ''} holds {count} NaN or infinite "
            "value(s); meta-training cannot start from it. Start from a finite theta (e.g. "
            "the learned optimizer's init, or an earlier checkpoint)."
        )


def _check_path(value: Any, argument: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise TypeError(
            f"GradientLearner: {argument} must be the path of a checkpoint file (a str or "
            f"os.PathLike), got {value!r}."
        )
    return Path(os.fspath(value))


def _producer_text(path: Path, max_bytes: int) -> str:
    """What a file says produced it ("" when it records nothing readable)."""
    try:
        meta = checkpoint.load_metadata(path, max_bytes=max_bytes)
    except CheckpointError:
        return ""
    producer = meta.get("producer")
    if not isinstance(producer, dict) or not isinstance(producer.get("class"), str):
        return ""
    config = producer.get("config")
    config_text = f" with config {str(config)[:200]}" if isinstance(config, dict) else ""
    return f" The file records its producer as {producer['class'][:200]}{config_text}."


def _matched(template: Any, raw: Any, where: str, fix: Callable[[], str]) -> Any:
    """`raw` (a checkpoint's state dict) rebuilt as `template`, after checking shapes and dtypes.

    `template` holds arrays or `jax.ShapeDtypeStruct`s; the result holds device arrays.
    `fix()` (called only on a mismatch) ends the message.
    """
    expected = serialization.to_state_dict(template)
    diff = first_difference(expected, raw)
    if diff is None:
        pairs = zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree_util.tree_leaves(raw))
        for (p, want), have in pairs:
            if np.dtype(want.dtype) != np.dtype(have.dtype):
                diff = (
                    f"path {path_str(p)} has dtype {np.dtype(have.dtype)}, expected "
                    f"{np.dtype(want.dtype)}"
                )
                break
    if diff is not None:
        raise CheckpointError(f"{where} does not match: {diff}. {fix()}")
    restored = serialization.from_state_dict(template, raw)
    return jax.tree_util.tree_map(jnp.asarray, restored)


def _read_theta_file(path: Path, template: Any, meta_init: Any, max_bytes: int) -> MetaParams:
    """theta from a lopt checkpoint (or a reference `ParameterCheckpoint`), checked.

    Nothing in the file is trusted: it is read by `lopt_core.checkpoint` (or, for a
    reference file, by `lopt_learned.reference_checkpoint`'s decoder, which refuses
    pickles), its arrays are compared with `meta_init.init`'s shapes and dtypes, and
    its values must be finite.
    """
    where = f"GradientLearner(init_theta_from_path={str(path)!r})"
    data = checkpoint.read_file(path, max_bytes)
    if bytes(data[: len(checkpoint.MAGIC)]) == checkpoint.MAGIC:
        del data
        raw = checkpoint.load(path, max_bytes=max_bytes).tree

        def producer() -> str:
            return _producer_text(path, max_bytes)

    else:
        del data
        try:
            from lopt_learned.reference_checkpoint import read_reference_checkpoint
        except ImportError:
            raise CheckpointError(
                f"{where}: {str(path)!r} is not a lopt checkpoint (bad header). Pass a "
                "theta file written by lopt_learned.save_learned_optimizer or "
                "lopt_core.save; a reference (learned_optimization) ParameterCheckpoint is "
                "read only with lopt-learned installed (pip install lopt-learned)."
            ) from None
        raw, _, _ = read_reference_checkpoint(path, max_bytes=max_bytes)

        def producer() -> str:
            return " The file is a reference (learned_optimization) checkpoint."

    if _holds_learner_state(raw):
        raise CheckpointError(
            f"{where}: the file holds a GradientLearnerState (a learner or run checkpoint), "
            "not a theta; pass it as init_outer_state_from_path instead."
        )
    theta = _matched(
        template,
        raw,
        f"{where}: the file's theta",
        lambda: (
            f"Its theta is not one of meta_init={meta_init!r}; pass the file saved for this "
            f"learned optimizer, or build meta_init as the file was made.{producer()}"
        ),
    )
    bad = _nonfinite_leaf(theta)
    if bad is not None:
        raise CheckpointError(
            f"{where}: the file's theta{bad[0]} holds {bad[1]} NaN or infinite value(s); "
            "meta-training cannot start from it. Pass an earlier, finite checkpoint."
        )
    return theta


_LEARNER_FIELDS = frozenset({"theta_opt_state", "outer_iteration", "num_dropped"})


def _holds_learner_state(tree: Any) -> bool:
    try:
        _learner_subtree(tree, "")
    except CheckpointError:
        return False
    return True


def _learner_subtree(tree: Any, where: str) -> Any:
    """The GradientLearnerState inside a checkpoint tree (its own, a run's or a Ray run's)."""
    if isinstance(tree, dict):
        if set(tree) == _LEARNER_FIELDS:
            return tree
        for name in ("gradient_learner_state", "learner"):
            sub = tree.get(name)
            if isinstance(sub, dict) and set(sub) == _LEARNER_FIELDS:
                return sub
    got = sorted(map(str, tree))[:8] if isinstance(tree, dict) else type(tree).__name__
    raise CheckpointError(
        f"{where}: the file holds no GradientLearnerState (its top level is {got}). Pass a "
        "file holding one: lopt_core.save(path, learner_state), or a meta-training run's "
        "checkpoint (checkpoint.lopt, or ray_checkpoint.lopt), which hold it under "
        "'gradient_learner_state' and 'learner'."
    )


def _read_learner_state(
    path: Path, template: GradientLearnerState, theta_opt: Any, max_bytes: int
) -> GradientLearnerState:
    where = f"GradientLearner(init_outer_state_from_path={str(path)!r})"
    raw = _learner_subtree(checkpoint.load(path, max_bytes=max_bytes).tree, where)
    state = _matched(
        template,
        raw,
        f"{where}: the file's learner state",
        lambda: (
            "It was saved with another learned optimizer (configuration) or theta_opt; pass "
            f"the checkpoint of a run with this meta_init and theta_opt={theta_opt!r}."
            f"{_producer_text(path, max_bytes)}"
        ),
    )
    for name in ("outer_iteration", "num_dropped"):
        value = int(getattr(state, name))
        if value < 0:
            raise CheckpointError(
                f"{where}: the file's {name} is {value}, below 0; the file was edited or "
                "written by something else. Pass a checkpoint lopt wrote."
            )
    bad = _nonfinite_leaf(state.theta_opt_state)
    if bad is not None:
        raise CheckpointError(
            f"{where}: the file's theta_opt_state{bad[0]} holds {bad[1]} NaN or infinite "
            "value(s); meta-training cannot continue from it. Pass an earlier, finite "
            "checkpoint."
        )
    return state


def _reset_iteration(state: GradientLearnerState) -> GradientLearnerState:
    """The outer iteration (and the meta-optimizer state's `iteration`, if any) set to 0."""
    opt_state = state.theta_opt_state
    iteration = getattr(opt_state, "iteration", None)
    if iteration is not None and hasattr(opt_state, "replace"):
        opt_state = opt_state.replace(iteration=jnp.zeros_like(iteration))
    return state.replace(
        theta_opt_state=opt_state, outer_iteration=jnp.zeros_like(state.outer_iteration)
    )


class GradientLearner:
    """Holds theta's optimizer state and applies aggregated meta-gradients.

    The initial state is built, in this order, as the reference builds it: theta
    from `meta_init.init(key)` (with `key` replaced by `PRNGKey(init_seed)` when
    `init_seed` is given), or `init_theta`, or the theta in `init_theta_from_path`;
    its meta-optimizer state from `theta_opt.init(theta, num_steps=num_steps)`;
    then, with `init_outer_state_from_path`, the whole learner state (theta, the
    meta-optimizer's state, the outer iteration) from that file instead, with the
    outer iteration set back to 0 under `reset_outer_iteration`.

    Files are untrusted input: they are read with `lopt_core.checkpoint` (no
    pickle; only arrays of accepted dtypes), their arrays must have exactly the
    shapes and dtypes this learner's own state has, and their values must be
    finite; anything else raises a `lopt_core.CheckpointError` naming the file,
    the first differing path and the fix.

    Args:
      meta_init: anything with `init(key) -> theta` (usually the LearnedOptimizer).
      theta_opt: the meta-optimizer, a lopt `Optimizer` (e.g. `lopt_optimizers.Adam`).
      init_theta: optional theta to start from instead of `meta_init.init(key)`.
      init_theta_from_path: a theta file to start from instead: one written by
        `lopt_learned.save_learned_optimizer` (or `lopt_core.save(path, theta)`),
        or, with lopt-learned installed, a reference `ParameterCheckpoint`.
      init_outer_state_from_path: a file holding a `GradientLearnerState` to
        continue from: `lopt_core.save(path, learner_state)`, or a meta-training
        run's checkpoint (its `gradient_learner_state`, or a Ray run's `learner`).
      reset_outer_iteration: with `init_outer_state_from_path`, start the restored
        state at outer iteration 0 (and its meta-optimizer state's `iteration`,
        when it has one, as in the reference); the count of dropped gradients is
        kept. Without a path it changes nothing, as in the reference.
      num_steps: the meta-training horizon, passed to `theta_opt.init` for
        meta-optimizers whose state needs it (schedules).
      init_seed: initialise theta from `PRNGKey(init_seed)`, whatever key `init`
        is given: the same seed gives the same theta.
      max_bytes: the largest file the paths may name
        (`lopt_core.checkpoint.DEFAULT_MAX_BYTES`, 256 MiB, by default).

    Raises:
      TypeError: `meta_init` has no `init`, `theta_opt` is not an Optimizer, a path
        is not a str or PathLike (a path passed as `init_theta`, the reference's
        third positional argument, is refused naming `init_theta_from_path`), or
        `reset_outer_iteration` is not a bool.
      ValueError: `init_theta` holds NaN or inf, both `init_theta` and
        `init_theta_from_path` are given, or `init_seed` / `num_steps` is not a
        non-negative (below 2**32) / positive integer.
    """

    def __init__(
        self,
        meta_init: LearnedOptimizer,
        theta_opt: Optimizer,
        init_theta: MetaParams = None,
        *,
        init_theta_from_path: str | os.PathLike[str] | None = None,
        init_outer_state_from_path: str | os.PathLike[str] | None = None,
        reset_outer_iteration: bool = False,
        num_steps: int | None = None,
        init_seed: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        owner = "GradientLearner"
        if not callable(getattr(meta_init, "init", None)):
            raise TypeError(
                f"GradientLearner: meta_init must have an init(key) method (a "
                f"LearnedOptimizer), got {type(meta_init).__name__}."
            )
        check_optimizer_instance(theta_opt, owner, "theta_opt")
        if isinstance(init_theta, (str, os.PathLike)):
            raise TypeError(
                f"GradientLearner: init_theta is a theta (a pytree of arrays), got the path "
                f"{init_theta!r}; to start from a file pass init_theta_from_path="
                f"{init_theta!r}."
            )
        if init_theta is not None:
            _check_finite_theta(init_theta)
        self.init_theta_from_path = _check_path(init_theta_from_path, "init_theta_from_path")
        self.init_outer_state_from_path = _check_path(
            init_outer_state_from_path, "init_outer_state_from_path"
        )
        if init_theta is not None and self.init_theta_from_path is not None:
            raise ValueError(
                "GradientLearner: got both init_theta and init_theta_from_path; pass one of them."
            )
        if not isinstance(reset_outer_iteration, (bool, np.bool_)):
            raise TypeError(
                f"GradientLearner: reset_outer_iteration must be a bool, got "
                f"{reset_outer_iteration!r}."
            )
        self.reset_outer_iteration = bool(reset_outer_iteration)
        self.num_steps = (
            None if num_steps is None else check_positive_int(num_steps, owner, "num_steps")
        )
        self.init_seed = (
            None
            if init_seed is None
            else check_positive_int(init_seed, owner, "init_seed", minimum=0)
        )
        if self.init_seed is not None and self.init_seed >= 2**32:
            # PRNGKey keeps 32 bits of a seed here: 2**32 and 2**40 give one key.
            raise ValueError(
                f"GradientLearner: init_seed must be below 2**32, got {init_seed!r}; pass a "
                "32-bit seed (larger ones collide in jax.random.PRNGKey)."
            )
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 64:
            raise ValueError(f"GradientLearner: max_bytes must be an int >= 64, got {max_bytes!r}.")
        self.max_bytes = max_bytes
        self.meta_init = meta_init
        self.theta_opt = theta_opt
        self.init_theta = init_theta
        self._init_theta_jit = jit_once(lambda key: self.meta_init.init(key))
        self._init_opt_jit = jit_once(
            lambda theta: self.theta_opt.init(theta, None, num_steps=self.num_steps)
        )
        self._update_jit = jit_once(
            lambda s, g, loss, k: _apply_update(self.theta_opt, s, g, loss, k)
        )

    @property
    def learned_optimizer(self) -> LearnedOptimizer:
        """The object theta was initialised from."""
        return self.meta_init

    def init(self, key: PRNGKey) -> GradientLearnerState:
        """The initial state: theta and its optimizer state, or those the paths hold.

        Raises:
          lopt_core.CheckpointError: a path's file is missing, malformed, of
            another learned optimizer or meta-optimizer (the message names the
            first differing path), or holds NaN, inf or negative counters.
        """
        if self.init_seed is not None:
            key = jax.random.PRNGKey(self.init_seed)
        if self.init_theta is not None:
            theta = self.init_theta
        elif self.init_theta_from_path is not None:
            template = jax.eval_shape(self.meta_init.init, key)
            theta = _read_theta_file(
                self.init_theta_from_path, template, self.meta_init, self.max_bytes
            )
        else:
            # Under jit: one compilation instead of one per eager op of the initialisers.
            theta = self._init_theta_jit(key)
        state = self._state_from_theta(strong(theta))
        if self.init_outer_state_from_path is not None:
            state = _read_learner_state(
                self.init_outer_state_from_path,
                jax.eval_shape(lambda s: s, state),
                self.theta_opt,
                self.max_bytes,
            )
            if self.reset_outer_iteration:
                state = _reset_iteration(state)
        return strong(state)

    def _state_from_theta(self, theta: MetaParams) -> GradientLearnerState:
        return GradientLearnerState(
            theta_opt_state=self._init_opt_jit(theta),
            outer_iteration=jnp.asarray(0, jnp.int32),
            num_dropped=jnp.asarray(0, jnp.int32),
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


def _cfg_name(est: Any) -> str:
    """The estimator's `cfg_name()`; its class name when it has none (duck-typed estimators)."""
    cfg_name = getattr(est, "cfg_name", None)
    return cfg_name() if callable(cfg_name) else type(est).__name__


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
      with_metrics: passed to the estimators as `with_summary`: their metrics
        then also hold the `lopt_core.summary` values recorded in the estimate,
        named `"<aggregation>||<estimator name>/<summary name>"`.

    Returns:
      A `WorkerComputeOut`: the averaged gradient and mean loss (non-finite values
      are left for the learner to drop), the next worker states, metrics named
      `<estimator cfg>/<metric>` (`cfg_name()`; an estimator without a
      `truncated_step`, or without `cfg_name`, is named by its class), and
      per-estimator unroll info.

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
        name = _cfg_name(est)
        for k_name, v in m.items():
            # A summary's key keeps its aggregation in front: "mean||<name>/<summary>".
            agg, sep, rest = k_name.rpartition("||")
            metrics[f"{agg}{sep}{name}/{rest}"] = v
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
      num_steps: the meta-training horizon, passed to `theta_opt.init` (the
        reference's argument; see `GradientLearner`). To start from files, build
        a `GradientLearner` with its path options and use `from_gradient_learner`.

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
        *,
        num_steps: int | None = None,
    ) -> None:
        learner = GradientLearner(meta_init, theta_opt, init_theta, num_steps=num_steps)
        self._setup(learner, gradient_estimators)
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
        # Lazily read data is read here, on the calling thread, before the thread
        # starts: reading it runs computations (decoding, resizing), and the thread
        # must only trace and compile. Running them from both threads at once hung
        # the first outer step of a mixture whose member read its data lazily.
        array_splits(self.gradient_estimators)

        def run() -> None:
            # Only a head start, and compiles only (nothing runs, so nothing here can
            # wait on a computation): on any error the real first call raises it
            # again, in the caller's thread, with its full context.
            try:
                for est, k in zip(self.gradient_estimators, keys):
                    est.warm_up(weights, k)
                # From theta's shapes: `init` may read files, which is for the real call.
                state = jax.eval_shape(learner._state_from_theta, theta)
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
