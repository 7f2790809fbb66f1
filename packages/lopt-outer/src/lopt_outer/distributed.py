"""Meta-training on a Ray cluster: one learner, many gradient-worker actors.

The design is the reference library's learner/worker split, run on Ray instead of
Launchpad/courier. The learner (the process that calls `meta_train_ray`) owns the
`GradientLearner` state. Each worker is a Ray actor that owns the worker states of
its gradient estimators (the inner-training states of its tasks). A worker is
handed a reference to the latest published theta when it starts an estimate,
fetches it from the Ray object store, runs `gradient_worker_compute` and returns the
aggregated gradient. The learner applies every gradient whose theta is at most
`max_staleness` updates old and drops (and counts) the rest; then it publishes the
new theta and hands the worker its next estimate.

Keys follow the single-machine loop exactly: estimate `t` (counted over every
estimate handed out) uses the key that `SingleMachineGradientLearner` uses at outer
step `t`, and worker 0 initialises its estimator states with the key the
single-machine learner uses. With one worker no estimate is ever stale, so
`meta_train_ray(..., num_workers=1)` reproduces the in-process loop bit for bit.

Ray is optional: it is imported only when this backend runs, and a missing Ray
raises an ImportError that says `pip install 'lopt-outer[ray]'`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from lopt_core import GradientEstimator, PRNGKey, checkpoint
from lopt_core.tree_utils import first_difference
from lopt_outer.gradient_learner import (
    GradientLearner,
    gradient_worker_compute,
    single_machine_init_keys,
    single_machine_step_keys,
)

__all__ = [
    "CHECKPOINT_NAME",
    "GradientWorker",
    "RayMetaTrainResult",
    "RayMetaTrainer",
    "meta_train_ray",
    "require_ray",
]

RAY_INSTALL_HINT = "pip install 'lopt-outer[ray]'"
CHECKPOINT_NAME = "ray_learner.lopt"
"""File name of the learner checkpoint inside `checkpoint_dir`."""


def require_ray() -> Any:
    """Imports and returns the `ray` module.

    Raises:
      ImportError: Ray is not installed; the message names the extra to install.
    """
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "The Ray backend of lopt-outer needs Ray, which is not installed. "
            f"Install it with: {RAY_INSTALL_HINT}"
        ) from exc
    return ray


def _host(tree: Any) -> Any:
    """The tree as numpy arrays, so it crosses process boundaries without JAX buffers."""
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def _restore(template: Any, raw: Any, what: str) -> Any:
    """Rebuilds `template`'s pytree type from a raw msgpack state dict, checking shapes."""
    expected = serialization.to_state_dict(template)
    diff = first_difference(
        jax.tree_util.tree_map(np.shape, expected), jax.tree_util.tree_map(np.shape, raw)
    )
    if diff is not None:
        raise checkpoint.CheckpointError(
            f"The checkpointed {what} does not match this configuration: {diff}. "
            "Resume with the same learned optimizer, estimators and theta optimizer."
        )
    return serialization.from_state_dict(template, raw)


def _worker_init_key(base: PRNGKey, slot: int, generation: int) -> PRNGKey:
    """The estimator-init key of the `generation`-th worker in `slot`.

    Worker 0's first incarnation uses the single-machine key itself, so one worker
    reproduces the in-process loop; every other worker gets a key of its own.
    """
    if slot == 0 and generation == 0:
        return base
    return jax.random.fold_in(jax.random.fold_in(base, slot), generation)


class GradientWorker:
    """Computes gradient estimates for the learner; Ray runs it as an actor.

    It holds the worker states of its gradient estimators between calls, so only
    theta goes in and only the aggregated gradient comes out.

    Args:
      gradient_estimators: the estimators (any registered `GradientEstimator`).
      init_weights: the `WorkerWeights` to initialise the estimator states with.
      init_key: key split over the estimators for `init_worker_state`, as
        `SingleMachineGradientLearner.init` splits it.
      saved_states: estimator states from a checkpoint (a raw state dict); they
        replace the fresh ones.
    """

    def __init__(
        self,
        gradient_estimators: Sequence[GradientEstimator],
        init_weights: Any,
        init_key: PRNGKey,
        saved_states: Any = None,
    ):
        self._estimators = list(gradient_estimators)
        keys = jax.random.split(init_key, len(self._estimators))
        states = [est.init_worker_state(init_weights, k) for est, k in zip(self._estimators, keys)]
        if saved_states is not None:
            states = _restore(states, saved_states, "worker states")
        self._states = states

    def compute(self, worker_weights: Any, key: PRNGKey, with_metrics: bool) -> tuple[Any, dict]:
        """One estimate from every estimator, aggregated as `gradient_worker_compute` does.

        Args:
          worker_weights: the `WorkerWeights` published by the learner.
          key: the estimate's key.
          with_metrics: also compute the slower metrics.

        Returns:
          `(to_put, metrics)`: the aggregated gradient as numpy arrays and a dict of
          float metrics.
        """
        out = gradient_worker_compute(
            worker_weights, self._estimators, self._states, key, with_metrics=with_metrics
        )
        self._states = out.unroll_states
        metrics = {k: float(v) for k, v in jax.device_get(dict(out.metrics)).items()}
        return _host(out.to_put), metrics

    def states(self) -> Any:
        """The estimator states after the last finished estimate, as numpy arrays."""
        return _host(self._states)

    def pid(self) -> int:
        """The worker's process id (tests kill and watch workers by it)."""
        return os.getpid()


@dataclasses.dataclass
class RayMetaTrainResult:
    """What a Ray meta-training run returns.

    Attributes:
      learner_state: the final `GradientLearner` state.
      theta: the final meta-parameters.
      step: outer updates applied in total (resumed runs count the earlier ones).
      metrics: one dict of float metrics per update applied in this process.
      estimates: estimates handed to workers in total.
      dropped_stale: estimates dropped for exceeding `max_staleness`.
      worker_replacements: workers that died and were replaced.
      steps_per_s: updates applied per second of this process's training loop.
      checkpoint_path: the last checkpoint written, or None.
    """

    learner_state: Any
    theta: Any
    step: int
    metrics: list[dict[str, float]]
    estimates: int
    dropped_stale: int
    worker_replacements: int
    steps_per_s: float
    checkpoint_path: Path | None


class RayMetaTrainer:
    """A learner driving `num_workers` `GradientWorker` actors on a Ray cluster.

    Args:
      gradient_learner: the `GradientLearner` (holds the learned optimizer and the
        theta optimizer).
      gradient_estimators: estimators every worker runs each estimate.
      num_workers: number of worker actors.
      seed: the run's seed; the same seed as `meta_train` gives the same keys.
      max_staleness: an estimate computed on theta more than this many updates old
        is dropped. None: `num_workers`, which with workers of equal speed drops
        nothing in steady state and drops the estimates of a worker that fell
        behind.
      address: address of an existing Ray cluster to join (`"auto"`, or
        `"host:6379"`). None starts a local cluster, unless Ray is already
        initialised in this process, whose cluster is then used.
      num_cpus: CPUs of the local cluster (None: at least `num_workers`).
      cpus_per_worker: CPUs each worker actor reserves.
      checkpoint_dir: folder of the learner checkpoint (`CHECKPOINT_NAME`); None
        writes none.
      checkpoint_every: updates between checkpoints (one is also written at the end).
      resume: continue from the checkpoint in `checkpoint_dir` when there is one.
      metrics_every: updates between calls that compute the slower metrics.
      max_worker_failures: a run whose workers die more often than this stops
        with an error instead of replacing them forever.

    Raises:
      ImportError: Ray is not installed.
      ValueError: a bad argument; the message names it.
    """

    def __init__(
        self,
        gradient_learner: GradientLearner,
        gradient_estimators: Sequence[GradientEstimator],
        *,
        num_workers: int = 1,
        seed: int = 0,
        max_staleness: int | None = None,
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_worker: float = 1.0,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 100,
        resume: bool = False,
        metrics_every: int = 10,
        max_worker_failures: int | None = None,
    ):
        self._ray = require_ray()
        if isinstance(num_workers, bool) or int(num_workers) != num_workers or num_workers < 1:
            raise ValueError(f"num_workers must be a positive integer; got {num_workers!r}.")
        if not gradient_estimators:
            raise ValueError("gradient_estimators is empty; pass at least one GradientEstimator.")
        if max_staleness is not None and max_staleness < 0:
            raise ValueError(f"max_staleness must be >= 0 or None; got {max_staleness!r}.")
        if checkpoint_every < 1 or metrics_every < 1:
            raise ValueError("checkpoint_every and metrics_every must be positive integers.")
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir, the folder of the run to resume.")
        self.gradient_learner = gradient_learner
        self.gradient_estimators = list(gradient_estimators)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.max_staleness = self.num_workers if max_staleness is None else int(max_staleness)
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_worker = float(cpus_per_worker)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.checkpoint_every = int(checkpoint_every)
        self.resume = bool(resume)
        self.metrics_every = int(metrics_every)
        self.max_worker_failures = (
            10 * self.num_workers if max_worker_failures is None else int(max_worker_failures)
        )
        self.workers: list[Any] = []

    # -- cluster ------------------------------------------------------------------
    def _connect(self) -> bool:
        """Joins or starts a cluster; True when this call started the connection."""
        ray = self._ray
        if ray.is_initialized():
            return False
        if self.address is not None:
            ray.init(address=self.address)
        else:
            num_cpus = self.num_cpus or max(
                math.ceil(self.num_workers * self.cpus_per_worker), os.cpu_count() or 1
            )
            ray.init(num_cpus=num_cpus, include_dashboard=False)
        return True

    def _check_capacity(self) -> None:
        cpus = self._ray.cluster_resources().get("CPU", 0.0)
        need = self.num_workers * self.cpus_per_worker
        if cpus < need:
            warnings.warn(
                f"The Ray cluster has {cpus:g} CPUs but {self.num_workers} workers need "
                f"{need:g}; workers wait until the cluster grows. Lower num_workers or "
                "cpus_per_worker, or add nodes.",
                RuntimeWarning,
                stacklevel=3,
            )

    # -- the run ------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        """The checkpoint file, or None when checkpoints are off."""
        return None if self.checkpoint_dir is None else self.checkpoint_dir / CHECKPOINT_NAME

    def run(
        self,
        num_steps: int,
        *,
        time_budget_s: float | None = None,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
    ) -> RayMetaTrainResult:
        """Meta-trains until `num_steps` updates are applied or the time budget runs out.

        Args:
          num_steps: total outer updates (a resumed run counts the earlier ones).
          time_budget_s: stop after this many seconds of training (None: no limit).
          on_step: called after every applied update with `(step, metrics)`, where
            `step` is the number of updates applied so far; use it for progress
            bars and metric writers.

        Returns:
          A `RayMetaTrainResult`.
        """
        started = self._connect()
        try:
            return self._run(int(num_steps), time_budget_s, on_step)
        finally:
            for w in self.workers:
                self._ray.kill(w)
            self.workers = []
            if started:
                self._ray.shutdown()

    def _run(
        self,
        num_steps: int,
        time_budget_s: float | None,
        on_step: Callable[[int, dict[str, float]], None] | None,
    ) -> RayMetaTrainResult:
        ray = self._ray
        self._check_capacity()
        learner = self.gradient_learner
        root = jax.random.PRNGKey(self.seed)
        learner_key, estimator_key = single_machine_init_keys(root)
        state = learner.init(learner_key)
        step, estimates, dropped, replaced = 0, 0, 0, 0
        saved_workers: dict[str, Any] = {}
        path = self.checkpoint_path
        if self.resume and path is not None and path.exists():
            ck = checkpoint.load(path)
            state = _restore(state, ck.tree["learner"], "learner state")
            saved_workers = ck.tree.get("workers", {}) or {}
            counters = ck.metadata["ray"]
            step, estimates = counters["step"], counters["estimates"]
            dropped, replaced = counters["dropped_stale"], counters["worker_replacements"]

        remote_worker = ray.remote(num_cpus=self.cpus_per_worker, max_concurrency=2)(GradientWorker)
        estimators_ref = ray.put(self.gradient_estimators)
        generations = [0] * self.num_workers

        def publish(st: Any) -> Any:
            return ray.put(_host(learner.get_state_for_worker(st)))

        weights_ref = publish(state)
        version = step

        def make_worker(slot: int) -> Any:
            return remote_worker.remote(
                estimators_ref,
                weights_ref,
                _worker_init_key(estimator_key, slot, generations[slot]),
                saved_workers.pop(str(slot), None),
            )

        self.workers = [make_worker(s) for s in range(self.num_workers)]
        in_flight: dict[Any, tuple[int, int, int, PRNGKey]] = {}

        def dispatch(slot: int) -> None:
            nonlocal estimates
            worker_key, learner_key = single_machine_step_keys(root, estimates)
            with_metrics = estimates % self.metrics_every == 0
            ref = self.workers[slot].compute.remote(weights_ref, worker_key, with_metrics)
            in_flight[ref] = (slot, version, estimates, learner_key)
            estimates += 1

        def save() -> Path | None:
            if path is None:
                return None
            worker_states = ray.get([w.states.remote() for w in self.workers])
            counters = {
                "step": step,
                "estimates": estimates,
                "dropped_stale": dropped,
                "worker_replacements": replaced,
            }
            tree = {
                "learner": state,
                "workers": {str(s): ws for s, ws in enumerate(worker_states)},
            }
            meta = {"ray": counters, "seed": self.seed, "num_workers": self.num_workers}
            return checkpoint.save(path, tree, meta, producer=learner)

        last_ckpt = None
        history: list[dict[str, float]] = []
        applied_here = 0
        for slot in range(self.num_workers):
            dispatch(slot)
        t0 = time.perf_counter()
        while step < num_steps:
            if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                break
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            slot, theta_version, _, learner_key = in_flight.pop(ref)
            try:
                to_put, worker_metrics = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                replaced += 1
                if replaced > self.max_worker_failures:
                    raise RuntimeError(
                        f"Ray workers died {replaced} times (more than max_worker_failures="
                        f"{self.max_worker_failures}); the last failure was: {exc}"
                    ) from exc
                warnings.warn(
                    f"Ray worker {slot} died ({type(exc).__name__}); starting a replacement.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                generations[slot] += 1
                self.workers[slot] = make_worker(slot)
                dispatch(slot)
                continue
            staleness = version - theta_version
            if staleness > self.max_staleness:
                dropped += 1
                dispatch(slot)
                continue
            with_metrics = step % self.metrics_every == 0
            state, learner_metrics = learner.update(
                state, [to_put], with_metrics=with_metrics, key=learner_key
            )
            step += 1
            applied_here += 1
            version = step
            weights_ref = publish(state)
            if path is not None and step % self.checkpoint_every == 0:
                last_ckpt = save()
            dispatch(slot)
            metrics = {k: float(v) for k, v in jax.device_get(dict(learner_metrics)).items()}
            metrics.update(worker_metrics)
            metrics.update(
                {
                    "ray/staleness": float(staleness),
                    "ray/dropped_stale": float(dropped),
                    "ray/worker_replacements": float(replaced),
                    "ray/num_workers": float(self.num_workers),
                }
            )
            history.append(metrics)
            if on_step is not None:
                on_step(step, metrics)
        elapsed = time.perf_counter() - t0
        if path is not None and (last_ckpt is None or step % self.checkpoint_every):
            last_ckpt = save()
        return RayMetaTrainResult(
            learner_state=state,
            theta=learner.get_meta_params(state),
            step=step,
            metrics=history,
            estimates=estimates,
            dropped_stale=dropped,
            worker_replacements=replaced,
            steps_per_s=applied_here / elapsed if elapsed > 0 else float("nan"),
            checkpoint_path=last_ckpt,
        )


def meta_train_ray(
    gradient_learner: GradientLearner,
    gradient_estimators: Sequence[GradientEstimator],
    num_steps: int,
    *,
    num_workers: int = 1,
    seed: int = 0,
    address: str | None = None,
    max_staleness: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    resume: bool = False,
    time_budget_s: float | None = None,
    metrics_every: int = 10,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    num_cpus: int | None = None,
    cpus_per_worker: float = 1.0,
) -> RayMetaTrainResult:
    """Meta-trains on a Ray cluster with `num_workers` gradient workers.

    With one worker and the same seed, the result equals the in-process loop's.
    See `RayMetaTrainer` for every argument.

    Example:
      >>> result = meta_train_ray(learner.gradient_learner, learner.gradient_estimators,
      ...                         num_steps=100, num_workers=2, seed=0)
      >>> result.theta  # the trained meta-parameters
    """
    trainer = RayMetaTrainer(
        gradient_learner,
        gradient_estimators,
        num_workers=num_workers,
        seed=seed,
        max_staleness=max_staleness,
        address=address,
        num_cpus=num_cpus,
        cpus_per_worker=cpus_per_worker,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        metrics_every=metrics_every,
    )
    return trainer.run(num_steps, time_budget_s=time_budget_s, on_step=on_step)
