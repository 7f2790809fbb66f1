"""`RayBackend`: one learner in this process, gradient-worker actors on a Ray cluster."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import math
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import lopt_core
from lopt_core import PRNGKey
from lopt_core.validation import check_positive, check_positive_int
from lopt_outer.ray.worker import GradientWorker, host
from lopt_outer.run import (
    CHECKPOINT_NAME,
    RAY_CHECKPOINT_NAME,
    Backend,
    Callback,
    Learner,
    MetaTrainResult,
    RunConfig,
    RunCounters,
    RunLoop,
    estimate_keys,
    find_checkpoint,
    init_keys,
    save_checkpoint,
    worker_init_key,
)

__all__ = [
    "RAY_INSTALL_HINT",
    "RayBackend",
    "RayMetaTrainResult",
    "RayRun",
    "require_ray",
    "start_loopback_cluster",
]

RAY_INSTALL_HINT = "pip install 'lopt-outer[ray]'"

#: Ray's switch for clusters beyond one machine. Ray resolves a node address of
#: 127.0.0.1 to the machine's outward address unless the switch is off; with it off,
#: the node's address is 127.0.0.1 and every Ray server of the node listens there.
_MULTI_NODE_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK = "127.0.0.1"


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


@contextlib.contextmanager
def _node_on_loopback(ray: Any) -> Iterator[None]:
    """Within: Ray takes 127.0.0.1 as this machine's node address.

    Ray resolves 127.0.0.1 to the machine's outward address unless its switch for
    clusters beyond one machine is off; the switch is turned off here, in this
    process and in the environment the daemons `ray.init` starts inherit, and
    restored on exit.
    """
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    saved_env = os.environ.get(_MULTI_NODE_SWITCH)
    saved_flag = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[_MULTI_NODE_SWITCH] = "0"
    if saved_flag is not None:
        constants.ENABLE_RAY_CLUSTER = False  # read at call time by ray's address lookup
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop(_MULTI_NODE_SWITCH, None)
        else:
            os.environ[_MULTI_NODE_SWITCH] = saved_env
        if saved_flag is not None:
            constants.ENABLE_RAY_CLUSTER = saved_flag


def start_loopback_cluster(ray: Any, num_cpus: int, **options: Any) -> None:
    """Starts a fresh single-machine Ray cluster that listens on 127.0.0.1 only.

    Every listener of the cluster binds the loopback address: the GCS, the raylet,
    the object manager, the agents, the autoscaler's monitor, every worker's and
    this driver's own gRPC server. There is no dashboard. Nothing on another machine
    can connect, and no other machine can join it as a node. Another process on this
    machine joins it with its address, `127.0.0.1:PORT` (`RayBackend(address=...)`
    does that right; a bare `ray.init` needs `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`).

    Ray takes 127.0.0.1 as the node address only while its switch for clusters beyond
    one machine is off (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`); the switch is off for
    this call, in this process and in the daemons `ray.init` starts (they inherit the
    environment), and restored afterwards.

    Args:
      ray: the `ray` module.
      num_cpus: CPUs the cluster offers.
      **options: further `ray.init` options (for example `log_to_driver=False`).
    """
    with _node_on_loopback(ray):
        # "local" starts a fresh cluster even where `ray start` left one running.
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            dashboard_host=LOOPBACK,
            _node_ip_address=LOOPBACK,
            **options,
        )


def _is_loopback_address(address: str) -> bool:
    """Whether `address` ("host:port", "[v6]:port" or a host) names this machine's loopback."""
    if address.startswith("["):
        host = address[1:].split("]", 1)[0]
    elif address.count(":") == 1:
        host = address.split(":", 1)[0]
    else:
        host = address  # a bare host, an IPv6 address, or "auto"
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass
class RayMetaTrainResult(MetaTrainResult):
    """What a Ray run returns: a `MetaTrainResult` and the Ray backend's counters.

    `state` is the final `GradientLearnerState` (also `learner_state`). `history`
    rows hold `metrics_row`'s keys plus `ray/staleness`, `ray/dropped_stale`,
    `ray/worker_replacements`, `ray/num_workers` and `ray/learner_s` (the
    learner's own seconds for that update).

    Attributes:
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

    estimates: int
    dropped_stale: int
    worker_replacements: int
    steps_per_s: float
    learner_busy_s: float
    checkpoint_path: Path | None

    @property
    def learner_state(self) -> Any:
        """The final `GradientLearnerState` (the same object as `state`)."""
        return self.state


@lopt_core.declare
class RayBackend(Backend):
    """Computes gradient estimates on `num_workers` Ray actors and applies them here.

    The learner (this process) owns the `GradientLearner` state. Each worker is a
    `GradientWorker` actor owning the worker states of the estimators. A worker is
    handed a reference to the latest published theta when it starts an estimate;
    the learner applies every gradient whose theta is at most `max_staleness`
    updates old, drops (and counts) the rest, publishes the new theta and hands
    the worker its next estimate. Estimate `t` uses the keys of in-process outer
    step `t`, and worker 0 initialises its states with the in-process key, so
    with one worker the run equals `InProcessBackend`'s bit for bit.

    Attributes:
      num_workers: number of worker actors.
      address: an existing Ray cluster to join (`"auto"` or `"host:6379"`); None
        starts a local cluster that listens on 127.0.0.1 only (see
        `start_loopback_cluster`), unless Ray is already initialised in this
        process, whose cluster is then used. A loopback address
        (`"127.0.0.1:PORT"`) joins such a cluster from another process.
      max_staleness: drop estimates computed on a theta more than this many
        updates old. None: `num_workers`, so that with workers of equal speed
        (staleness `num_workers - 1`) nothing is dropped and a worker that fell
        behind is.
      num_cpus: CPUs of a local cluster this backend starts (None: the machine's
        CPU count, or `num_workers * cpus_per_worker` if that is more).
      cpus_per_worker: CPUs each worker actor reserves.
      max_worker_failures: a run whose workers die more often than this stops
        with an error instead of replacing them forever (None: `10 * num_workers`).
      startup_timeout_s: how long to wait for the workers to start (importing JAX
        and building their estimator states) before failing with an error.
      worker_silence_warn_s: when no worker has returned an estimate for this many
        seconds, warn (a `RuntimeWarning` naming the silent workers and how long
        each has been computing). An estimate includes the worker's compilation.
      worker_silence_timeout_s: when no worker has returned an estimate for this
        many seconds, stop with a `TimeoutError` (the workers are stopped; the last
        checkpoint stays). Must be greater than `worker_silence_warn_s`; None waits
        forever.
      worker_options: extra Ray actor options for every worker, for example
        `{"num_gpus": 1}` on GPU nodes, or `{"runtime_env": {"py_modules": [...]}}`
        to ship code the nodes do not have installed.

    Raises:
      ValueError: a bad option; the message names it.
      ImportError: Ray is not installed (`pip install 'lopt-outer[ray]'`).
    """

    num_workers: int = 1
    address: str | None = None
    max_staleness: int | None = None
    num_cpus: int | None = None
    cpus_per_worker: float = 1.0
    max_worker_failures: int | None = None
    startup_timeout_s: float = 600.0
    worker_silence_warn_s: float = 300.0
    worker_silence_timeout_s: float | None = 1800.0
    worker_options: dict[str, Any] | None = dataclasses.field(default=None, hash=False)

    checkpoint_name: ClassVar[str] = RAY_CHECKPOINT_NAME
    # Listed in this order so the CLI names the in-process file first.
    resumes_from: ClassVar[tuple[str, ...]] = (CHECKPOINT_NAME, RAY_CHECKPOINT_NAME)

    def __post_init__(self) -> None:
        owner = type(self).__name__
        fields: dict[str, Any] = {
            "num_workers": check_positive_int(self.num_workers, owner, "num_workers"),
            "cpus_per_worker": float(
                check_positive(self.cpus_per_worker, owner, "cpus_per_worker")
            ),
            "startup_timeout_s": float(
                check_positive(self.startup_timeout_s, owner, "startup_timeout_s")
            ),
            "worker_silence_warn_s": float(
                check_positive(self.worker_silence_warn_s, owner, "worker_silence_warn_s")
            ),
        }
        if self.worker_silence_timeout_s is not None:
            timeout = float(
                check_positive(self.worker_silence_timeout_s, owner, "worker_silence_timeout_s")
            )
            if timeout <= fields["worker_silence_warn_s"]:
                raise ValueError(
                    f"{owner}: worker_silence_timeout_s ({timeout:g} s) must be greater than "
                    f"worker_silence_warn_s ({fields['worker_silence_warn_s']:g} s), so the "
                    "warning comes before the stop; raise worker_silence_timeout_s or lower "
                    "worker_silence_warn_s."
                )
            fields["worker_silence_timeout_s"] = timeout
        if self.max_staleness is not None:
            try:
                fields["max_staleness"] = check_positive_int(
                    self.max_staleness, owner, "max_staleness", minimum=0
                )
            except ValueError as exc:
                raise ValueError(
                    f"{owner}: max_staleness must be >= 0 or None (None: num_workers), "
                    f"got {self.max_staleness!r}."
                ) from exc
        if self.num_cpus is not None:
            fields["num_cpus"] = check_positive_int(self.num_cpus, owner, "num_cpus")
        if self.max_worker_failures is not None:
            fields["max_worker_failures"] = check_positive_int(
                self.max_worker_failures, owner, "max_worker_failures", minimum=0
            )
        if self.worker_options is not None and not isinstance(self.worker_options, dict):
            raise TypeError(
                f"{owner}: worker_options must be a dict of Ray actor options, got "
                f"{type(self.worker_options).__name__}."
            )
        for name, value in fields.items():
            object.__setattr__(self, name, value)
        require_ray()

    @property
    def staleness_bound(self) -> int:
        """The staleness above which an estimate is dropped."""
        return self.num_workers if self.max_staleness is None else self.max_staleness

    @property
    def failure_bound(self) -> int:
        """The worker deaths after which a run stops with an error."""
        if self.max_worker_failures is None:
            return 10 * self.num_workers
        return self.max_worker_failures

    def start(
        self,
        learner: Learner,
        config: RunConfig,
        callback: Callback | None = None,
    ) -> RayRun:
        """A run not yet started: call its `run()`; `workers` holds the live actors meanwhile."""
        return RayRun(self, learner, config, callback)

    def run(
        self,
        learner: Learner,
        config: RunConfig,
        callback: Callback | None = None,
    ) -> RayMetaTrainResult:
        """Meta-trains `learner` on Ray workers as `config` says.

        Raises:
          RuntimeError: a worker fails to start, or workers die more than
            `max_worker_failures` times.
          TimeoutError: the workers do not start within `startup_timeout_s`, or no
            worker returns an estimate for `worker_silence_timeout_s`.
          TypeError: the gradient estimators (their task family, datasets, learned
            optimizer) cannot be pickled for the workers.
          ValueError: the checkpoint to resume from was written with another seed.
        """
        return self.start(learner, config, callback).run()


class RayRun:
    """One Ray meta-training run: the learner state, the worker actors and the counters.

    Everything that changes while the run goes on is an attribute here, so the
    methods share no closed-over locals. While `run()` goes on, `workers` holds
    the live actor handles (slot `i` is `workers[i]`); afterwards it is empty.

    Args:
      backend: the backend's options.
      learner: the learner: its `gradient_learner` runs here, its
        `gradient_estimators` on every worker.
      config: the run.
      callback: called after every applied update as `callback(step, state, row)`
        with the `GradientLearnerState`.
    """

    def __init__(
        self,
        backend: RayBackend,
        learner: Learner,
        config: RunConfig,
        callback: Callback | None = None,
    ) -> None:
        self.backend = backend
        self.config = config
        self.callback = callback
        self.gradient_learner = learner.gradient_learner
        self.gradient_estimators = list(learner.gradient_estimators)
        self.workers: list[Any] = []
        self.state: Any = None
        self.estimates = self.dropped_stale = self.worker_replacements = 0
        self.learner_busy_s = 0.0
        self._ray: Any = None
        self._actor: Any = None
        self._estimators_ref: Any = None
        self._weights_ref: Any = None
        self._estimator_init_key: PRNGKey | None = None
        self._generations = [0] * backend.num_workers
        self._in_flight: dict[Any, tuple[int, int, PRNGKey]] = {}
        # When each slot was handed its estimate, and when any worker last reported.
        self._handed_out_at: dict[int, float] = {}
        self._last_report = 0.0

    # -- cluster ------------------------------------------------------------------
    def _connect(self) -> bool:
        """Joins or starts a cluster; True when this call made the connection."""
        ray, backend = self._ray, self.backend
        if ray.is_initialized():
            return False
        with warnings.catch_warnings():
            # Ray starts its daemons with fork+exec, which JAX's fork warning does not
            # distinguish from a bare fork; nothing runs JAX in the forked child.
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
            if backend.address is not None and _is_loopback_address(backend.address):
                # A cluster on this machine's loopback (such as one lopt started): this
                # driver's node address must be 127.0.0.1 too, or Ray looks for its node
                # under the machine's outward address and waits forever.
                with _node_on_loopback(ray):
                    ray.init(address=backend.address)
            elif backend.address is not None:
                # Joining a cluster: how it listens is the cluster's own configuration.
                ray.init(address=backend.address)
            else:
                need = math.ceil(backend.num_workers * backend.cpus_per_worker)
                num_cpus = backend.num_cpus or max(need, os.cpu_count() or 1)
                start_loopback_cluster(ray, num_cpus)
        return True

    def _check_capacity(self) -> None:
        backend = self.backend
        cpus = self._ray.cluster_resources().get("CPU", 0.0)
        need = backend.num_workers * backend.cpus_per_worker
        if cpus < need:
            warnings.warn(
                f"The Ray cluster has {cpus:g} CPUs but {backend.num_workers} workers reserve "
                f"{need:g}; the rest wait until the cluster grows. Lower num_workers or "
                "cpus_per_worker, or add nodes.",
                RuntimeWarning,
                stacklevel=5,
            )

    def _wait_for_workers(self) -> None:
        """Blocks until every worker has built its estimator states.

        Starting the clock (and the first estimates) together keeps the early
        staleness fair, and a cluster without room for the workers fails with a
        clear error instead of hanging.
        """
        ray, timeout = self._ray, self.backend.startup_timeout_s
        refs = [w.pid.remote() for w in self.workers]
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        if pending:
            cpus = ray.cluster_resources().get("CPU", 0.0)
            raise TimeoutError(
                f"{len(pending)} of {len(refs)} Ray workers did not start within "
                f"{timeout:g} s. Each reserves {self.backend.cpus_per_worker:g} CPUs "
                f"and the cluster has {cpus:g}; lower num_workers or cpus_per_worker, add "
                "nodes, or raise startup_timeout_s."
            )
        try:
            ray.get(refs)
        except ray.exceptions.RayActorError as exc:
            raise RuntimeError(f"A Ray gradient worker failed to start: {exc}") from exc

    # -- workers ------------------------------------------------------------------
    def _start_worker(self, slot: int, saved_states: Any = None) -> Any:
        key = worker_init_key(self._estimator_init_key, slot, self._generations[slot])
        return self._actor.remote(self._estimators_ref, self._weights_ref, key, saved_states)

    def _publish(self) -> None:
        """Puts the worker weights of the current learner state in the object store."""
        weights = self.gradient_learner.get_state_for_worker(self.state)
        self._weights_ref = self._ray.put(host(weights))

    def _dispatch(self, slot: int, step: int) -> None:
        """Hands worker `slot` the next estimate, on the theta of update `step`."""
        k_worker, k_learner = estimate_keys(self.config.seed, self.estimates)
        ref = self.workers[slot].compute.remote(self._weights_ref, k_worker, self.config.summaries)
        self._in_flight[ref] = (slot, step, k_learner)
        self._handed_out_at[slot] = time.monotonic()
        self.estimates += 1

    def _next_report(self) -> Any:
        """Waits for the next worker to return its estimate; returns that object ref.

        Raises:
          TimeoutError: no worker has reported for `worker_silence_timeout_s`.
        """
        ray, backend = self._ray, self.backend
        warned = False
        while True:
            silent_s = time.monotonic() - self._last_report
            deadline = backend.worker_silence_timeout_s if warned else backend.worker_silence_warn_s
            timeout = None if deadline is None else max(deadline - silent_s, 0.0)
            ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=timeout)
            if ready:
                self._last_report = time.monotonic()
                return ready[0]
            silent_s = time.monotonic() - self._last_report
            if warned:
                raise TimeoutError(
                    f"No Ray worker has returned an estimate for {silent_s:.0f} s "
                    f"({self._silent_workers()}), more than worker_silence_timeout_s="
                    f"{backend.worker_silence_timeout_s:g}; the run stops. If estimates "
                    "legitimately take this long (long unrolls, slow compilation), raise "
                    "worker_silence_timeout_s (None waits forever); otherwise look for a "
                    "hung worker in the Ray logs."
                )
            stop = (
                "The run waits for them (worker_silence_timeout_s=None)."
                if backend.worker_silence_timeout_s is None
                else "The run stops after worker_silence_timeout_s="
                f"{backend.worker_silence_timeout_s:g} s of silence."
            )
            warnings.warn(
                f"No Ray worker has returned an estimate for {silent_s:.0f} s "
                f"(worker_silence_warn_s={backend.worker_silence_warn_s:g}): "
                f"{self._silent_workers()}. {stop}",
                RuntimeWarning,
                stacklevel=3,
            )
            warned = True

    def _silent_workers(self) -> str:
        """The workers with an estimate in flight and how long each has had it."""
        now = time.monotonic()
        slots = sorted(slot for slot, _, _ in self._in_flight.values())
        return ", ".join(
            f"worker {slot} computing for {now - self._handed_out_at[slot]:.0f} s" for slot in slots
        )

    def _replace(self, slot: int, exc: Any, step: int) -> None:
        """Starts a new worker in `slot` after its actor died (a `RayActorError`), or raises."""
        if exc.actor_init_failed:
            # A worker that cannot even start (an estimator that fails to unpickle or
            # to initialise) would fail the same way again.
            raise RuntimeError(f"A Ray gradient worker failed to start: {exc}") from exc
        self.worker_replacements += 1
        if self.worker_replacements > self.backend.failure_bound:
            raise RuntimeError(
                f"Ray workers died {self.worker_replacements} times, more than "
                f"max_worker_failures={self.backend.failure_bound}; the last failure: {exc}"
            ) from exc
        warnings.warn(
            f"Ray worker {slot} died ({type(exc).__name__}); starting a replacement.",
            RuntimeWarning,
            stacklevel=4,
        )
        # An unreachable (not yet dead) actor must not come back as a second worker
        # in this slot.
        self._ray.kill(self.workers[slot])
        self._generations[slot] += 1
        self.workers[slot] = self._start_worker(slot)
        self._dispatch(slot, step)

    def _save(self, state: Any, step: int) -> Path:
        """Checkpoints the learner state and every live worker's estimator states."""
        ray = self._ray
        worker_states = {}
        for slot, ref in enumerate([w.states.remote() for w in self.workers]):
            try:
                worker_states[str(slot)] = ray.get(ref)
            except ray.exceptions.RayActorError:
                continue  # a dead worker's replacement starts from fresh states
        counters = RunCounters(step, self.estimates, self.dropped_stale, self.worker_replacements)
        return save_checkpoint(
            self.config,
            RAY_CHECKPOINT_NAME,
            state,
            worker_states,
            counters,
            producer=self.gradient_learner.meta_init,
            num_workers=self.backend.num_workers,
        )

    # -- the run ------------------------------------------------------------------
    def run(self) -> RayMetaTrainResult:
        """Connects, starts the workers, meta-trains, and always stops the workers.

        Returns:
          A `RayMetaTrainResult`.
        """
        self._ray = require_ray()
        started = self._connect()
        try:
            return self._run()
        finally:
            for w in self.workers:
                self._ray.kill(w)
            self.workers = []
            if started:
                self._ray.shutdown()

    def _restore(self) -> tuple[int, dict[str, Any]]:
        """Builds or restores the learner state; returns the start step and saved worker states."""
        learner_key, self._estimator_init_key = init_keys(self.config.seed)
        self.state = self.gradient_learner.init(learner_key)
        saved = find_checkpoint(self.config, self.backend)
        if saved is None:
            return 0, {}
        self.state = saved.restored_learner_state(self.state)
        c = saved.counters
        self.estimates, self.dropped_stale, self.worker_replacements = (
            c.estimates, c.dropped_stale, c.worker_replacements,
        )  # fmt: skip
        return saved.step, saved.worker_states

    def _run(self) -> RayMetaTrainResult:
        ray, backend = self._ray, self.backend
        self._check_capacity()
        start, saved_workers = self._restore()
        # Two concurrent calls per actor: `states` (for a checkpoint) must not wait
        # behind a running `compute`.
        options = {
            "num_cpus": backend.cpus_per_worker,
            "max_concurrency": 2,
            **(backend.worker_options or {}),
        }
        self._actor = ray.remote(**options)(GradientWorker)
        try:
            self._estimators_ref = ray.put(self.gradient_estimators)
        except TypeError as exc:
            raise TypeError(
                "The gradient estimators cannot be sent to the Ray workers: Ray could not "
                "pickle them (with their truncated step, task family, datasets and learned "
                "optimizer). Datasets whose splits are generators, open files or locks "
                "cannot cross processes: keep data in lopt_core.ArraySplit or "
                "lopt_tasks.LazyArraySplit (with a module-level loader), or give the "
                f"class __getstate__/__setstate__. Ray's report:\n{exc}"
            ) from exc
        self._publish()
        self.workers = [
            self._start_worker(slot, saved_workers.get(str(slot)))
            for slot in range(backend.num_workers)
        ]
        self._wait_for_workers()
        for slot in range(backend.num_workers):
            self._dispatch(slot, start)
        self._last_report = time.monotonic()

        with RunLoop(
            self.config,
            start,
            self._save,
            self.callback,
            theta_of=self.gradient_learner.get_meta_params,
            start_state=self.state,
            learned_optimizer=self.gradient_learner.learned_optimizer,
        ) as loop:
            while loop.running:
                ref = self._next_report()
                t_ready = time.perf_counter()
                slot, theta_step, k_learner = self._in_flight.pop(ref)
                try:
                    to_put, worker_metrics = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    self._replace(slot, exc, loop.step)
                    self.learner_busy_s += time.perf_counter() - t_ready
                    continue
                staleness = loop.step - theta_step
                if staleness > backend.staleness_bound:
                    self.dropped_stale += 1
                    self._dispatch(slot, loop.step)
                    self.learner_busy_s += time.perf_counter() - t_ready
                    continue
                self.state, learner_metrics = self.gradient_learner.update(
                    self.state, [to_put], False, k_learner
                )
                self._publish()
                # Checkpoint before dispatching, so the slot's states match the update.
                loop.advance(self.state)
                self._dispatch(slot, loop.step)
                learner_s = time.perf_counter() - t_ready
                self.learner_busy_s += learner_s
                extra = {
                    "ray/staleness": float(staleness),
                    "ray/dropped_stale": float(self.dropped_stale),
                    "ray/worker_replacements": float(self.worker_replacements),
                    "ray/num_workers": float(backend.num_workers),
                    "ray/learner_s": learner_s,
                }
                metrics = {**learner_metrics, **worker_metrics}
                loop.report(self.state, to_put.mean_loss, metrics, extra)
            loop.finish(self.state)
        steps = loop.step - start
        return RayMetaTrainResult(
            state=self.state,
            theta=self.gradient_learner.get_meta_params(self.state),
            **loop.summary(),
            estimates=self.estimates,
            dropped_stale=self.dropped_stale,
            worker_replacements=self.worker_replacements,
            steps_per_s=steps / loop.elapsed_s if loop.elapsed_s > 0 else float("nan"),
            learner_busy_s=self.learner_busy_s,
            checkpoint_path=loop.last_checkpoint,
        )
