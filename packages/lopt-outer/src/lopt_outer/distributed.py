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

Example:
  >>> learner = SingleMachineGradientLearner(lopt, [pes], Adam(1e-3))
  >>> result = meta_train_ray(learner.gradient_learner, learner.gradient_estimators,
  ...                         num_steps=1000, num_workers=4, output_dir="run1")
  >>> result.theta, result.history[-1]["ray/dropped_stale"]
"""

from __future__ import annotations

import dataclasses
import functools
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
from lopt_outer._common import check_positive_int
from lopt_outer.gradient_learner import GradientLearner, gradient_worker_compute
from lopt_outer.meta_train import CHECKPOINT_NAME as INPROCESS_CHECKPOINT
from lopt_outer.meta_train import step_key
from lopt_outer.metric_writers import to_floats

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
"""File name of the Ray learner checkpoint inside `output_dir`."""


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
        return _host(out.to_put), to_floats(jax.device_get(dict(out.metrics)))

    def states(self) -> Any:
        """The estimator states after the last finished estimate, as numpy arrays."""
        return _host(self._states)

    def pid(self) -> int:
        """The worker's process id (tests kill and watch workers by it)."""
        return os.getpid()


def _init_keys(seed: int) -> tuple[PRNGKey, PRNGKey]:
    """`(learner key, estimator-init key)`, as `meta_train` and `SingleMachineGradientLearner.init`."""
    k_theta, k_workers = jax.random.split(jax.random.PRNGKey(seed))
    return k_theta, k_workers


@functools.partial(jax.jit, static_argnums=0)
def _split_step_key(seed: int, index: jax.Array) -> tuple[PRNGKey, PRNGKey]:
    # One compiled call instead of three eager ones: it is on the learner's hot path.
    k_worker, k_learner = jax.random.split(step_key(seed, index))
    return k_worker, k_learner


def _estimate_keys(seed: int, index: int) -> tuple[PRNGKey, PRNGKey]:
    """`(worker key, learner key)` of estimate `index`, as for outer step `index` in process.

    `meta_train` passes `step_key(seed, index)` to `SingleMachineGradientLearner.update`,
    which splits it into the estimators' key and the meta-optimizer's key. Threefry
    is integer arithmetic, so the jitted derivation gives the same bits as eager.
    """
    return _split_step_key(seed, np.int32(index))


@dataclasses.dataclass
class RayMetaTrainResult:
    """What a Ray meta-training run returns.

    Attributes:
      learner_state: the final `GradientLearnerState`.
      theta: the final meta-parameters.
      steps: outer updates applied in total (a resumed run counts the earlier ones).
      history: one dict of float metrics per update applied by this process, with
        the keys of `meta_train`'s history (`step`, `meta_loss`, `steps_per_s`,
        `elapsed_s`, the learner's and estimators' metrics) plus `ray/staleness`,
        `ray/dropped_stale`, `ray/worker_replacements`, `ray/num_workers` and
        `ray/learner_s` (the learner's own seconds for this update).
      stopped_by: "num_steps" or "time_budget".
      resumed_from: the step the run resumed from (0 for a fresh run).
      estimates: estimates handed to workers in total.
      dropped_stale: estimates dropped for exceeding `max_staleness`, in total.
      worker_replacements: workers that died and were replaced, in total.
      steps_per_s: updates applied per second by this process's training loop.
      learner_busy_s: seconds the learner spent on its own work (receiving,
        applying, publishing, checkpointing, dispatching) rather than waiting for
        workers; `learner_busy_s / elapsed` near 1 means the learner is the
        bottleneck.
      checkpoint_path: the last checkpoint written, or None.
    """

    learner_state: Any
    theta: Any
    steps: int
    history: list[dict[str, float]]
    stopped_by: str
    resumed_from: int
    estimates: int
    dropped_stale: int
    worker_replacements: int
    steps_per_s: float
    learner_busy_s: float
    checkpoint_path: Path | None


class RayMetaTrainer:
    """A learner driving `num_workers` `GradientWorker` actors on a Ray cluster.

    Build it, then call `run`. While it runs, `workers` holds the live actor
    handles (slot `i` is `workers[i]`).

    Args:
      gradient_learner: the `GradientLearner` (learned optimizer and meta-optimizer).
      gradient_estimators: estimators every worker runs for each estimate; their
        gradients are averaged by `gradient_worker_compute`.
      num_workers: number of worker actors.
      seed: the run's seed; the same seed as `meta_train` gives the same keys.
      max_staleness: an estimate computed on a theta more than this many updates
        older than the learner's is dropped and counted. None: `num_workers`, so
        that with workers of equal speed (staleness `num_workers - 1`) nothing is
        dropped and a worker that fell behind is.
      address: address of an existing Ray cluster to join (`"auto"` or
        `"host:6379"`). None starts a local cluster, unless Ray is already
        initialised in this process, whose cluster is then used.
      num_cpus: CPUs of a local cluster this trainer starts (None: the machine's
        CPU count, or `num_workers * cpus_per_worker` if that is more).
      cpus_per_worker: CPUs each worker actor reserves.
      output_dir: folder of the learner checkpoint (`CHECKPOINT_NAME`); None
        writes none.
      checkpoint_every: updates between checkpoints (one is also written at the end).
      resume: continue from the checkpoint in `output_dir` when there is one: this
        backend's (`CHECKPOINT_NAME`) or the in-process `meta_train`'s, whichever
        is further along.
      max_worker_failures: a run whose workers die more often than this stops with
        an error instead of replacing them forever (None: `10 * num_workers`).
      startup_timeout_s: how long to wait for the first workers to start (importing
        JAX and building their estimator states) before failing with an error.
      worker_options: extra Ray actor options for every worker, for example
        `{"num_gpus": 1}` on GPU nodes, or `{"runtime_env": {"py_modules": [...]}}`
        to ship code the nodes do not have installed.

    Raises:
      ImportError: Ray is not installed.
      ValueError: a bad argument; the message names it.
      RuntimeError: (from `run`) a worker fails to start, or workers die more than
        `max_worker_failures` times.
      TimeoutError: (from `run`) the workers do not start within `startup_timeout_s`.
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
        output_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 100,
        resume: bool = True,
        max_worker_failures: int | None = None,
        startup_timeout_s: float = 600.0,
        worker_options: dict[str, Any] | None = None,
    ):
        self._ray = require_ray()
        num_workers = check_positive_int("num_workers", num_workers)
        if not gradient_estimators:
            raise ValueError("gradient_estimators is empty; pass at least one GradientEstimator.")
        if max_staleness is not None and max_staleness < 0:
            raise ValueError(f"max_staleness must be >= 0 or None; got {max_staleness!r}.")
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1; got {checkpoint_every!r}.")
        if cpus_per_worker <= 0:
            raise ValueError(f"cpus_per_worker must be positive; got {cpus_per_worker!r}.")
        self.gradient_learner = gradient_learner
        self.gradient_estimators = list(gradient_estimators)
        self.num_workers = num_workers
        self.seed = int(seed)
        self.max_staleness = self.num_workers if max_staleness is None else int(max_staleness)
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_worker = float(cpus_per_worker)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.checkpoint_every = int(checkpoint_every)
        self.resume = bool(resume)
        self.max_worker_failures = (
            10 * self.num_workers if max_worker_failures is None else int(max_worker_failures)
        )
        self.startup_timeout_s = float(startup_timeout_s)
        self.worker_options = dict(worker_options or {})
        self.workers: list[Any] = []

    @property
    def checkpoint_path(self) -> Path | None:
        """The checkpoint file, or None when checkpoints are off."""
        return None if self.output_dir is None else self.output_dir / CHECKPOINT_NAME

    # -- cluster ------------------------------------------------------------------
    def _connect(self) -> bool:
        """Joins or starts a cluster; True when this call made the connection."""
        ray = self._ray
        if ray.is_initialized():
            return False
        with warnings.catch_warnings():
            # Ray starts its daemons with fork+exec, which JAX's fork warning does not
            # distinguish from a bare fork; nothing runs JAX in the forked child.
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
            if self.address is not None:
                ray.init(address=self.address)
            else:
                need = math.ceil(self.num_workers * self.cpus_per_worker)
                num_cpus = self.num_cpus or max(need, os.cpu_count() or 1)
                # "local" starts a fresh cluster even where `ray start` left one running.
                ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
        return True

    def _check_capacity(self) -> None:
        cpus = self._ray.cluster_resources().get("CPU", 0.0)
        need = self.num_workers * self.cpus_per_worker
        if cpus < need:
            warnings.warn(
                f"The Ray cluster has {cpus:g} CPUs but {self.num_workers} workers reserve "
                f"{need:g}; the rest wait until the cluster grows. Lower num_workers or "
                "cpus_per_worker, or add nodes.",
                RuntimeWarning,
                stacklevel=4,
            )

    def _wait_for_workers(self) -> None:
        """Blocks until every worker has built its estimator states.

        Starting the clock (and the first estimates) together keeps the early
        staleness fair, and a cluster without room for the workers fails with a
        clear error instead of hanging.
        """
        ray = self._ray
        refs = [w.pid.remote() for w in self.workers]
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=self.startup_timeout_s)
        if pending:
            cpus = ray.cluster_resources().get("CPU", 0.0)
            raise TimeoutError(
                f"{len(pending)} of {len(refs)} Ray workers did not start within "
                f"{self.startup_timeout_s:g} s. Each reserves {self.cpus_per_worker:g} CPUs "
                f"and the cluster has {cpus:g}; lower num_workers or cpus_per_worker, add "
                "nodes, or raise startup_timeout_s."
            )
        try:
            ray.get(refs)
        except ray.exceptions.RayActorError as exc:
            raise RuntimeError(f"A Ray gradient worker failed to start: {exc}") from exc

    def _resume_source(self) -> Path | None:
        """The checkpoint to resume from: this backend's, or the in-process loop's.

        `meta_train` (the in-process backend) checkpoints a `SingleMachineState`
        beside ours; when both exist, the one further along wins, so a run can move
        between backends in one output directory.
        """
        if not self.resume or self.output_dir is None:
            return None
        found = [
            p
            for p in (self.output_dir / CHECKPOINT_NAME, self.output_dir / INPROCESS_CHECKPOINT)
            if p.exists()
        ]
        if not found:
            return None
        return max(found, key=lambda p: checkpoint.load_metadata(p).get("step", 0))

    def _load(self, path: Path, template: Any) -> tuple[Any, dict[str, int], dict[str, Any]]:
        ck = checkpoint.load(path)
        meta = ck.metadata
        if meta.get("seed") != self.seed:
            raise ValueError(
                f"{path} was written by a run with seed {meta.get('seed')}, not {self.seed}; "
                "pass the same seed, another output_dir, or resume=False."
            )
        if path.name == CHECKPOINT_NAME:
            learner_raw, workers = ck.tree["learner"], dict(ck.tree.get("workers") or {})
            counters = dict(meta["ray"])
        else:
            # A SingleMachineState: its estimator states become worker 0's, and its
            # outer step t was estimate t, exactly as for one Ray worker.
            learner_raw = ck.tree["gradient_learner_state"]
            workers = {"0": ck.tree["gradient_estimator_states"]}
            step = int(meta["step"])
            counters = {
                "step": step,
                "estimates": step,
                "dropped_stale": 0,
                "worker_replacements": 0,
            }
        state = _restore(template, learner_raw, "learner state")
        state = jax.tree_util.tree_map(jax.numpy.asarray, state)
        return state, counters, workers

    # -- the run ------------------------------------------------------------------
    def run(
        self,
        num_steps: int,
        *,
        time_budget_s: float | None = None,
        callback: Callable[[int, Any, dict[str, float]], None] | None = None,
    ) -> RayMetaTrainResult:
        """Meta-trains until `num_steps` updates are applied or the time budget runs out.

        Args:
          num_steps: total outer updates (a resumed run counts the earlier ones).
          time_budget_s: stop once this many seconds of training have passed.
          callback: called after every applied update as `callback(step, state, row)`,
            the signature of `meta_train`'s callback: `step` counts the updates
            applied so far, `state` is the `GradientLearnerState` and `row` is the
            update's metrics (the entry added to `history`). Use it for progress
            bars and metric writers.

        Returns:
          A `RayMetaTrainResult`.
        """
        if num_steps < 0:
            raise ValueError(f"num_steps must be >= 0; got {num_steps!r}.")
        started = self._connect()
        try:
            return self._run(int(num_steps), time_budget_s, callback)
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
        callback: Callable[[int, Any, dict[str, float]], None] | None,
    ) -> RayMetaTrainResult:
        ray = self._ray
        self._check_capacity()
        learner = self.gradient_learner
        learner_init_key, estimator_init_key = _init_keys(self.seed)
        state = learner.init(learner_init_key)
        counters = {"step": 0, "estimates": 0, "dropped_stale": 0, "worker_replacements": 0}
        saved_workers: dict[str, Any] = {}
        path = self.checkpoint_path
        source = self._resume_source()
        if source is not None:
            state, counters, saved_workers = self._load(source, state)
        start = step = counters["step"]
        estimates = counters["estimates"]
        dropped, replaced = counters["dropped_stale"], counters["worker_replacements"]

        # Two concurrent calls per actor: `states` (for a checkpoint) must not wait
        # behind a running `compute`.
        options = {"num_cpus": self.cpus_per_worker, "max_concurrency": 2, **self.worker_options}
        remote_worker = ray.remote(**options)(GradientWorker)
        estimators_ref = ray.put(self.gradient_estimators)
        generations = [0] * self.num_workers
        weights_ref = ray.put(_host(learner.get_state_for_worker(state)))
        in_flight: dict[Any, tuple[int, int, PRNGKey]] = {}

        def make_worker(slot: int) -> Any:
            return remote_worker.remote(
                estimators_ref,
                weights_ref,
                _worker_init_key(estimator_init_key, slot, generations[slot]),
                saved_workers.pop(str(slot), None),
            )

        def dispatch(slot: int) -> None:
            nonlocal estimates
            k_worker, k_learner = _estimate_keys(self.seed, estimates)
            ref = self.workers[slot].compute.remote(weights_ref, k_worker, False)
            in_flight[ref] = (slot, step, k_learner)
            estimates += 1

        def save() -> Path | None:
            if path is None:
                return None
            worker_states = {}
            for slot, ref in enumerate([w.states.remote() for w in self.workers]):
                try:
                    worker_states[str(slot)] = ray.get(ref)
                except ray.exceptions.RayActorError:
                    # A dead worker's replacement starts from fresh states.
                    continue
            meta = {
                "ray": {
                    "step": step,
                    "estimates": estimates,
                    "dropped_stale": dropped,
                    "worker_replacements": replaced,
                },
                "step": step,
                "seed": self.seed,
                "num_steps": num_steps,
                "num_workers": self.num_workers,
            }
            tree = {"learner": state, "workers": worker_states}
            return checkpoint.save(path, tree, meta, producer=learner.meta_init)

        self.workers = [make_worker(s) for s in range(self.num_workers)]
        self._wait_for_workers()
        for slot in range(self.num_workers):
            dispatch(slot)

        last_ckpt: Path | None = None
        history: list[dict[str, float]] = []
        stopped_by = "num_steps"
        t0 = last_t = time.perf_counter()
        last_step = step
        busy = 0.0  # seconds the learner spends on its own work, not waiting
        while step < num_steps:
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            t_ready = time.perf_counter()
            slot, theta_step, k_learner = in_flight.pop(ref)
            try:
                to_put, worker_metrics = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                if exc.actor_init_failed:
                    # A worker that cannot even start (an estimator that fails to
                    # unpickle or to initialise) would fail the same way again.
                    raise RuntimeError(f"A Ray gradient worker failed to start: {exc}") from exc
                replaced += 1
                if replaced > self.max_worker_failures:
                    raise RuntimeError(
                        f"Ray workers died {replaced} times, more than max_worker_failures="
                        f"{self.max_worker_failures}; the last failure: {exc}"
                    ) from exc
                warnings.warn(
                    f"Ray worker {slot} died ({type(exc).__name__}); starting a replacement.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                # An unreachable (not yet dead) actor must not come back as a second
                # worker in this slot.
                ray.kill(self.workers[slot])
                generations[slot] += 1
                self.workers[slot] = make_worker(slot)
                dispatch(slot)
                busy += time.perf_counter() - t_ready
                continue
            staleness = step - theta_step
            if staleness > self.max_staleness:
                dropped += 1
                dispatch(slot)
                busy += time.perf_counter() - t_ready
                continue
            state, learner_metrics = learner.update(state, [to_put], False, k_learner)
            step += 1
            weights_ref = ray.put(_host(learner.get_state_for_worker(state)))
            if step % self.checkpoint_every == 0:
                last_ckpt = save() or last_ckpt
            dispatch(slot)
            now = time.perf_counter()
            row = {
                "step": step,
                **to_floats(jax.device_get(learner_metrics)),
                **worker_metrics,
            }
            row["meta_loss"] = float(to_put.mean_loss)
            row["steps_per_s"] = (step - last_step) / max(now - last_t, 1e-9)
            row["elapsed_s"] = now - t0
            row["ray/staleness"] = float(staleness)
            row["ray/dropped_stale"] = float(dropped)
            row["ray/worker_replacements"] = float(replaced)
            row["ray/num_workers"] = float(self.num_workers)
            row["ray/learner_s"] = time.perf_counter() - t_ready
            busy += row["ray/learner_s"]
            last_t, last_step = now, step
            history.append(row)
            if callback is not None:
                callback(step, state, row)
            if time_budget_s is not None and now - t0 >= time_budget_s:
                stopped_by = "time_budget"
                break
        elapsed = time.perf_counter() - t0
        if step % self.checkpoint_every or last_ckpt is None:
            last_ckpt = save() or last_ckpt
        return RayMetaTrainResult(
            learner_state=state,
            theta=learner.get_meta_params(state),
            steps=step,
            history=history,
            stopped_by=stopped_by,
            resumed_from=start,
            estimates=estimates,
            dropped_stale=dropped,
            worker_replacements=replaced,
            steps_per_s=(step - start) / elapsed if elapsed > 0 else float("nan"),
            learner_busy_s=busy,
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
    output_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    resume: bool = True,
    time_budget_s: float | None = None,
    callback: Callable[[int, Any, dict[str, float]], None] | None = None,
    num_cpus: int | None = None,
    cpus_per_worker: float = 1.0,
    max_worker_failures: int | None = None,
    startup_timeout_s: float = 600.0,
    worker_options: dict[str, Any] | None = None,
) -> RayMetaTrainResult:
    """Meta-trains on a Ray cluster with `num_workers` gradient-worker actors.

    With one worker and the same seed the result equals `meta_train`'s. See
    `RayMetaTrainer` for every argument and `RayMetaTrainer.run` for `num_steps`,
    `time_budget_s` and `callback`.

    Example:
      >>> learner = SingleMachineGradientLearner(lopt, [pes], Adam(1e-3))
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
        output_dir=output_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        max_worker_failures=max_worker_failures,
        startup_timeout_s=startup_timeout_s,
        worker_options=worker_options,
    )
    return trainer.run(num_steps, time_budget_s=time_budget_s, callback=callback)
