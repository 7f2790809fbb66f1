"""The run layer below every backend: configuration, keys, checkpoints, metrics and progress.

`meta_train(learner, RunConfig(...), backend)` meta-trains `learner`. A `Backend`
decides only where gradient estimates are computed (`InProcessBackend` in this
process, `lopt_outer.ray.RayBackend` on Ray worker actors); everything a run does
around the estimates is written once, here:

- `RunConfig`: the run's settings (steps, seed, output folder, checkpoint interval,
  time budget, metric writers, resume, progress bar), validated when built;
- keys: `step_key`, `estimate_keys`, `init_keys`, `worker_init_key`, so that a
  run's randomness depends on the seed and the step only and resumes are exact;
- checkpoints: the file names, their layout (`save_checkpoint`), the choice of
  the checkpoint to resume from (`find_checkpoint`) and its seed check;
- `metrics_row`: the one row of metrics each outer step logs;
- `RunLoop`: step counting, the checkpoint interval, the time budget, the
  progress bar, metric writers, the history and the callback.

Example:
  >>> config = RunConfig(num_steps=1000, seed=0, output_dir="run1", time_budget_s=600)
  >>> result = meta_train(learner, config)                       # in process
  >>> result = meta_train(learner, config, RayBackend(num_workers=4))
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
import inspect
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

import jax
import numpy as np
from flax import serialization

import lopt_core
from lopt_core import MetaParams, PRNGKey, checkpoint
from lopt_core.data_state import restore_iterator_states, stateful_splits
from lopt_core.registry import UnknownComponentError
from lopt_core.tree_utils import first_difference
from lopt_core.validation import check_nonnegative, check_positive_int
from lopt_outer.gradient_learner import SingleMachineGradientLearner
from lopt_outer.metric_writers import JsonlWriter, to_floats

__all__ = [
    "CHECKPOINT_NAME",
    "RAY_CHECKPOINT_NAME",
    "Backend",
    "Callback",
    "Learner",
    "MetaTrainResult",
    "RunConfig",
    "RunCounters",
    "RunInterrupted",
    "ResumePoint",
    "RunLoop",
    "SavedRun",
    "estimate_keys",
    "find_checkpoint",
    "init_keys",
    "metrics_row",
    "restore",
    "resume_point",
    "save_checkpoint",
    "status",
    "step_key",
    "worker_init_key",
]

CHECKPOINT_NAME = "checkpoint.lopt"
"""The in-process backend's checkpoint inside `output_dir`: a `SingleMachineState`."""

RAY_CHECKPOINT_NAME = "ray_learner.lopt"
"""The Ray backend's checkpoint inside `output_dir`: the learner and every worker's states."""

Callback: TypeAlias = Callable[[int, Any, dict[str, float]], None]
"""`callback(step, state, row)`, called after every outer step with the last logged row."""

Learner: TypeAlias = SingleMachineGradientLearner
"""What a backend trains: the gradient learner (theta, meta-optimizer) and the estimators."""


# -- configuration --------------------------------------------------------------------
@lopt_core.declare
class RunConfig:
    """What a meta-training run does, whatever the backend.

    Attributes:
      num_steps: total outer steps (a resumed run counts the earlier ones).
      seed: the run's seed; with the step number it fixes every key.
      output_dir: folder for the checkpoint, `metrics.jsonl` and writer output;
        None keeps everything in memory (no checkpoints).
      checkpoint_every: outer steps between checkpoints (one is also written at the end).
      log_every: outer steps between metric records (the last step is always logged).
      time_budget_s: stop (after a checkpoint) once this many seconds of training
        have passed; None: no budget.
      resume: continue from the checkpoint in `output_dir` when there is one. A
        folder holding another run (another configuration, or a checkpoint this
        backend cannot resume) is refused unless `overwrite` or `override` says
        otherwise; so is any run in it when resume is off (see `lopt_outer.rundir`).
      overwrite: delete the run already in `output_dir` and start afresh.
      override: fields of the learner's configuration allowed to differ from the
        run being resumed, as dotted paths (`"estimators.0.std"`,
        `"theta_opt.learning_rate"`); the error for a differing field names them.
      metric_writers: names of registered metric writers or writer objects; None
        uses every registered writer (JSON lines are always written).
      progress: show a progress bar with the meta-loss and steps/s.
      summaries: also record the `lopt_core.summary` values that tasks, learned
        optimizers and estimators emit (`compute_gradient_estimate(...,
        with_summary=True)`), and log them with the metrics as
        `<aggregation>||<estimator>/<name>` keys. In process they are recorded
        on the logged steps only; on Ray, whose estimates arrive out of step
        order, on every estimate. Off by default: recording adds host callbacks
        to the compiled unroll.
      evaluation: continuous evaluation, e.g. `lopt_outer.bench.SuiteEvaluation`:
        anything with `due(step, num_steps)` and `__call__(learned_optimizer,
        theta) -> {name: float}`. On due steps its scores join that step's
        metrics row (the step is logged even off `log_every`), so every metric
        writer records them.

    Raises:
      ValueError: a field is out of range; the message names it.
      TypeError: `metric_writers` is a single string instead of a sequence.
    """

    num_steps: int
    seed: int = 0
    output_dir: Path | None = None
    checkpoint_every: int = 100
    log_every: int = 1
    time_budget_s: float | None = None
    resume: bool = True
    overwrite: bool = False
    override: tuple[str, ...] = ()
    metric_writers: tuple[Any, ...] | None = None
    progress: bool = True
    summaries: bool = False
    evaluation: Any = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        ev = self.evaluation
        if ev is not None and not (callable(ev) and callable(getattr(ev, "due", None))):
            raise TypeError(
                f"{owner}: evaluation must have due(step, num_steps) and be callable as "
                f"evaluation(learned_optimizer, theta), like lopt_outer.bench.SuiteEvaluation; "
                f"got {type(ev).__name__}."
            )
        fields: dict[str, Any] = {
            "num_steps": check_positive_int(self.num_steps, owner, "num_steps", minimum=0),
            "seed": _check_seed(self.seed, owner),
            "checkpoint_every": check_positive_int(
                self.checkpoint_every, owner, "checkpoint_every"
            ),
            "log_every": check_positive_int(self.log_every, owner, "log_every"),
            "resume": bool(self.resume),
            "overwrite": bool(self.overwrite),
            "progress": bool(self.progress),
            "summaries": bool(self.summaries),
        }
        if isinstance(self.override, (str, bytes)):
            raise TypeError(
                f"{owner}: override must be a sequence of field paths, got the string "
                f"{self.override!r}; pass [{self.override!r}]."
            )
        fields["override"] = tuple(str(o) for o in self.override)
        if self.time_budget_s is not None:
            fields["time_budget_s"] = float(
                check_nonnegative(self.time_budget_s, owner, "time_budget_s")
            )
        if self.output_dir is not None:
            fields["output_dir"] = Path(os.fspath(self.output_dir))
        if self.metric_writers is not None:
            if isinstance(self.metric_writers, (str, bytes)):
                raise TypeError(
                    f"{owner}: metric_writers must be a sequence of writer names or objects, "
                    f"got the string {self.metric_writers!r}; pass [{self.metric_writers!r}]."
                )
            fields["metric_writers"] = tuple(self.metric_writers)
        for name, value in fields.items():
            object.__setattr__(self, name, value)


SEED_LIMIT = 2**32
"""Seeds are below this: `jax.random.PRNGKey` keeps only the low 32 bits of a seed."""


def _check_seed(seed: Any, owner: str) -> int:
    seed = check_positive_int(seed, owner, "seed", minimum=0)
    if seed >= SEED_LIMIT:
        raise ValueError(
            f"{owner}: seed must be below 2**32 = {SEED_LIMIT}, got {seed} (larger seeds would "
            "silently repeat smaller ones); pick a seed in [0, 2**32)."
        )
    return seed


# -- backends -------------------------------------------------------------------------
@dataclasses.dataclass
class MetaTrainResult:
    """What a meta-training run returns.

    Attributes:
      state: the final learner state (a `SingleMachineState` in process; on Ray,
        the `GradientLearnerState`, the worker states staying on the workers).
      theta: the final meta-parameters.
      steps: outer steps completed (including those before a resume).
      history: the logged metrics rows (`metrics_row` plus "step"), one per
        logged step of this process.
      stopped_by: "num_steps" or "time_budget".
      resumed_from: the step the run resumed from (0 for a fresh run).
      dropped_steps: outer steps of this process whose every meta-gradient was
        non-finite, so theta did not move (the learner's `mean_loss` was NaN).
      masked_tasks: task estimates of this process masked out of their step's
        meta-gradient because the task diverged (the estimators'
        `nonfinite_tasks`, summed).
      theta_changed: whether theta differs from where this process started
        (None when the backend does not say).
    """

    state: Any
    theta: MetaParams
    steps: int
    history: list[dict[str, float]]
    stopped_by: str
    resumed_from: int
    dropped_steps: int = dataclasses.field(default=0, kw_only=True)
    masked_tasks: int = dataclasses.field(default=0, kw_only=True)
    theta_changed: bool | None = dataclasses.field(default=None, kw_only=True)


class Backend(lopt_core.Interface):
    """Where a run's gradient estimates are computed.

    A backend is a component (`@lopt_core.declare`): its fields are its options.
    It moves estimates and learner updates only; it takes its keys, checkpoints,
    resume choice, metrics rows and progress reporting from this module.

    Attributes:
      checkpoint_name: the file this backend writes inside `output_dir`.
      resumes_from: the files it can continue from; the one further along wins,
        and its own on a tie.
    """

    checkpoint_name: ClassVar[str]
    resumes_from: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def run(
        self, learner: Learner, config: RunConfig, callback: Callback | None = None
    ) -> MetaTrainResult:
        """Meta-trains `learner` as `config` says; `callback` is called after every step."""


# -- keys -----------------------------------------------------------------------------
def step_key(seed: int, step: int) -> jax.Array:
    """The key of outer step `step`: a function of the seed and step only, so resumes are exact."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), step + 1)


def init_keys(seed: int) -> tuple[PRNGKey, PRNGKey]:
    """`(learner key, estimator-init key)`: the split `SingleMachineGradientLearner.init`
    makes of `PRNGKey(seed)`."""
    k_theta, k_workers = jax.random.split(jax.random.PRNGKey(seed))
    return k_theta, k_workers


@functools.partial(jax.jit, static_argnums=0)
def _split_step_key(seed: int, index: jax.Array) -> tuple[PRNGKey, PRNGKey]:
    # One compiled call instead of three eager ones: it is on the Ray learner's hot path.
    k_worker, k_learner = jax.random.split(step_key(seed, index))
    return k_worker, k_learner


def estimate_keys(seed: int, index: int) -> tuple[PRNGKey, PRNGKey]:
    """`(worker key, learner key)` of estimate `index`, as for outer step `index` in process.

    The in-process backend passes `step_key(seed, index)` to
    `SingleMachineGradientLearner.update`, which splits it into the estimators'
    key and the meta-optimizer's key. Threefry is integer arithmetic, so the
    jitted derivation gives the same bits as the eager one.
    """
    return _split_step_key(seed, np.int32(index))


def worker_init_key(base: PRNGKey, slot: int, generation: int) -> PRNGKey:
    """The estimator-init key of the `generation`-th worker in `slot`.

    Worker 0's first incarnation uses the single-machine key itself, so one worker
    reproduces the in-process loop; every other worker gets a key of its own.
    """
    if slot == 0 and generation == 0:
        return base
    return jax.random.fold_in(jax.random.fold_in(base, slot), generation)


# -- checkpoints ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunCounters:
    """How far a run got.

    Attributes:
      step: learner updates applied.
      estimates: estimates handed out (in process: one per step).
      dropped_stale: estimates dropped for staleness (Ray only).
      worker_replacements: workers that died and were replaced (Ray only).
    """

    step: int = 0
    estimates: int = 0
    dropped_stale: int = 0
    worker_replacements: int = 0


@dataclasses.dataclass(frozen=True)
class SavedRun:
    """A run checkpoint of either backend, in the one shape both resume from.

    Attributes:
      path: the checkpoint file.
      learner_state: the `GradientLearnerState` as a raw state dict (see `restore`).
      worker_states: the estimator states of each worker slot ("0", "1", ...), raw.
      counters: the run's counters at the checkpoint.
      data_state: the positions of the learner's stateful (streamed) splits,
        `lopt_core.iterator_states(learner)` at the checkpoint; None when the
        checkpoint records none (see `restore_data_state`).
    """

    path: Path
    learner_state: Any
    worker_states: dict[str, Any]
    counters: RunCounters
    data_state: Any = None

    @property
    def step(self) -> int:
        """The step the checkpoint was written at."""
        return self.counters.step

    def restored_learner_state(self, template: Any) -> Any:
        """The learner state as `template`'s pytree type, on the device (see `restore`)."""
        return jax.tree_util.tree_map(
            jax.numpy.asarray, restore(template, self.learner_state, "learner state")
        )

    def restored_worker_states(self, slot: int, template: Any) -> Any:
        """Worker `slot`'s estimator states as `template`'s pytree type, on the device."""
        raw = self.worker_states[str(slot)]
        return jax.tree_util.tree_map(jax.numpy.asarray, restore(template, raw, "worker states"))

    def restore_data_state(self, learner: Any) -> None:
        """Puts the learner's streamed splits back where they were at the checkpoint.

        Call it after `learner.init` (which may read batches). Splits drawn from
        keys have no position and are left alone; a checkpoint that records no
        positions (written before they were recorded) leaves streamed splits where
        they are, with a warning that the resume is not exact.

        Raises:
          CheckpointError: the recorded positions are malformed or name other splits.
        """
        if self.data_state is None:
            if stateful_splits(learner):
                warnings.warn(
                    f"{self.path} records no positions of the streamed data splits; they "
                    "continue from where they are, so this resume is not bit-identical.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return
        try:
            restore_iterator_states(learner, self.data_state)
        except (ValueError, TypeError) as exc:
            raise checkpoint.CheckpointError(f"{self.path}: {exc}") from None


def save_checkpoint(
    config: RunConfig,
    name: str,
    learner_state: Any,
    worker_states: Mapping[str, Any],
    counters: RunCounters,
    producer: Any,
    num_workers: int = 1,
    data_state: Mapping[str, Any] | None = None,
) -> Path:
    """Writes a run checkpoint atomically to `<output_dir>/<name>`.

    `CHECKPOINT_NAME` holds a `SingleMachineState` (worker "0"'s states);
    `RAY_CHECKPOINT_NAME` holds `{"learner", "workers": {slot: states}}` and the
    counters under `metadata["ray"]`. Both record the step, seed and num_steps.

    Args:
      config: the run (`output_dir` must be set).
      name: `CHECKPOINT_NAME` or `RAY_CHECKPOINT_NAME`.
      learner_state: the `GradientLearnerState`.
      worker_states: estimator states by worker slot.
      counters: the run's counters.
      producer: what made theta (the learned optimizer), recorded as provenance.
      num_workers: the Ray backend's worker count (recorded in its checkpoint).
      data_state: the positions of the streamed splits
        (`lopt_core.iterator_states(learner)`), recorded as JSON in the metadata
        under "data_state" when not empty.

    Returns:
      The path written.
    """
    if config.output_dir is None:
        raise ValueError("save_checkpoint: the RunConfig has no output_dir to write to.")
    meta: dict[str, Any] = {
        "step": counters.step,
        "seed": config.seed,
        "num_steps": config.num_steps,
    }
    if data_state:
        meta["data_state"] = dict(data_state)
    if name == CHECKPOINT_NAME:
        # The fields of SingleMachineState, so `lopt_core.load(path, like=state)` works.
        tree: Any = {
            "gradient_learner_state": learner_state,
            "gradient_estimator_states": worker_states["0"],
        }
    elif name == RAY_CHECKPOINT_NAME:
        tree = {"learner": learner_state, "workers": dict(worker_states)}
        meta.update(ray=dataclasses.asdict(counters), num_workers=num_workers)
    else:
        raise ValueError(
            f"save_checkpoint: unknown checkpoint name {name!r}; expected "
            f"{CHECKPOINT_NAME!r} or {RAY_CHECKPOINT_NAME!r}."
        )
    return checkpoint.save(config.output_dir / name, tree, meta, producer=producer)


RESUME_MAX_BYTES = 1 << 36
"""The largest run checkpoint a resume reads (64 GiB): a run's own files, whose inner
states grow with the tasks, are allowed past `lopt_core.checkpoint.DEFAULT_MAX_BYTES`."""


def _counter(meta: Any, name: str, path: Path, where: str = "") -> int:
    if not isinstance(meta, Mapping):
        raise checkpoint.CheckpointError(
            f"{path}: metadata field {where.rstrip('.')!r} must be an object, got {meta!r}; "
            "the file was edited or written by something else."
        )
    value = checkpoint.metadata_value(meta, name, int, path)
    if value < 0:
        raise checkpoint.CheckpointError(
            f"{path}: metadata field {where}{name!r} must be >= 0, got {value}; the file was "
            "edited or written by something else."
        )
    return value


def _subtree(tree: Any, name: str, path: Path) -> Any:
    if not isinstance(tree, dict) or name not in tree:
        raise checkpoint.CheckpointError(
            f"{path}: the checkpoint holds no {name!r} state; it was edited or written by "
            "something else. Resume from another copy, or start afresh with overwrite=True."
        )
    return tree[name]


def _read_checkpoint(path: Path, seed: int) -> SavedRun:
    ck = checkpoint.load(path, max_bytes=RESUME_MAX_BYTES)
    meta = ck.metadata
    if meta.get("seed") != seed:
        raise ValueError(
            f"{path} was written by a run with seed {meta.get('seed')}, not {seed}; "
            "pass the same seed, another output_dir, or overwrite=True (--overwrite) to "
            "start afresh."
        )
    step = _counter(meta, "step", path)
    if path.name == RAY_CHECKPOINT_NAME:
        ray_meta = meta.get("ray")
        counts = {
            f.name: _counter(ray_meta, f.name, path, "ray.")
            for f in dataclasses.fields(RunCounters)
        }
        workers = _subtree(ck.tree, "workers", path)
        if not isinstance(workers, dict):
            workers = {}
        return SavedRun(
            path,
            _subtree(ck.tree, "learner", path),
            dict(workers),
            RunCounters(**counts),
            meta.get("data_state"),
        )
    # A SingleMachineState: its estimator states are worker 0's, and its outer
    # step t was estimate t, exactly as for one Ray worker.
    workers = {"0": _subtree(ck.tree, "gradient_estimator_states", path)}
    learner_state = _subtree(ck.tree, "gradient_learner_state", path)
    return SavedRun(path, learner_state, workers, RunCounters(step, step), meta.get("data_state"))


def find_checkpoint(config: RunConfig, backend: Backend) -> SavedRun | None:
    """The checkpoint `backend` resumes from under `config`, or None for a fresh run.

    None when `config.resume` is off or there is no `output_dir`. Of the files in
    `backend.resumes_from` that exist, the one further along wins (the backend's
    own on a tie), so a run can move between backends in one output directory.

    Raises:
      ValueError: the checkpoint was written with another seed.
    """
    point = resume_point(config, backend)
    return None if point is None else _read_checkpoint(point.path, config.seed)


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """Where a run would resume, read from a checkpoint's metadata only (nothing restored).

    Attributes:
      path: the checkpoint `find_checkpoint` would resume from.
      step: the outer step it was written at.
      seed: the seed it records (None when it records none).
      num_steps: the `num_steps` of the run that wrote it (None when not recorded).
    """

    path: Path
    step: int
    seed: int | None
    num_steps: int | None


def resume_point(config: RunConfig, backend: Backend) -> ResumePoint | None:
    """The checkpoint `find_checkpoint` would pick, from metadata alone; None for a fresh run.

    Cheap (no state is restored, nothing compiles), so it can say "resuming from
    step N" or "already done" before a backend starts.

    Raises:
      CheckpointError: a candidate checkpoint is malformed (its `step`, say).
    """
    if not config.resume or config.output_dir is None:
        return None
    found = [config.output_dir / n for n in backend.resumes_from]
    found = [p for p in found if p.exists()]
    if not found:
        return None
    metas = {p: checkpoint.load_metadata(p, max_bytes=RESUME_MAX_BYTES) for p in found}

    def rank(path: Path) -> tuple[int, bool]:
        return _counter(metas[path], "step", path), path.name == backend.checkpoint_name

    best = max(found, key=rank)
    meta = metas[best]
    seed, num_steps = meta.get("seed"), meta.get("num_steps")
    return ResumePoint(
        best,
        _counter(meta, "step", best),
        seed if isinstance(seed, int) else None,
        num_steps if isinstance(num_steps, int) else None,
    )


def restore(template: Any, raw: Any, what: str) -> Any:
    """Rebuilds `template`'s pytree type from a raw checkpointed state dict, checking shapes.

    Raises:
      CheckpointError: the shapes or structure differ; the message names the first
        differing path.
    """
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


# -- metrics and progress -------------------------------------------------------------
def metrics_row(
    metrics: Mapping[str, Any],
    meta_loss: Any,
    *,
    steps_per_s: float,
    elapsed_s: float,
    extra: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The metrics row of one outer step, for every backend.

    Args:
      metrics: the learner's and the estimators' metrics (scalars; others are dropped).
      meta_loss: the step's mean meta-loss.
      steps_per_s: outer steps per second since the last logged row.
      elapsed_s: seconds of training so far in this process.
      extra: the backend's own metrics (the Ray backend's `ray/...`).

    Returns:
      `{**metrics, "meta_loss", "steps_per_s", "elapsed_s", **extra}` as floats.
    """
    row = to_floats(jax.device_get(dict(metrics)))
    row["meta_loss"] = float(meta_loss)
    row["steps_per_s"] = float(steps_per_s)
    row["elapsed_s"] = float(elapsed_s)
    row.update(extra or {})
    return row


def _build_writer(name: str, run_dir: Path, start: int) -> Any:
    factory = lopt_core.REGISTRY.entry("metric_writers", name).factory
    try:
        accepts_start = "start_step" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepts_start = False
    extra = {"start_step": start} if accepts_start else {}
    return lopt_core.get_metric_writer(name, run_dir=run_dir, **extra)


def _writers(names: Sequence[Any] | None, run_dir: Path, start: int = 0) -> list[Any]:
    """The run's metric writers; one that cannot be built is skipped with a warning.

    A writer whose factory takes `start_step` is told the step the run starts
    from, so it can hide what a killed run logged after its last checkpoint
    (the TensorBoard writer does).
    """
    if names is None:
        names = [n for n in lopt_core.list_metric_writers() if n != "jsonl"]
    out = []
    for item in names:
        if not isinstance(item, str):
            out.append(item)
            continue
        try:
            out.append(_build_writer(item, run_dir, start))
        except UnknownComponentError:
            raise
        except Exception as exc:  # a plugin's writer must not end the run
            entry = lopt_core.REGISTRY.entry("metric_writers", item)
            warnings.warn(
                f"metric writer {item!r} (from {entry.plugin}) skipped: it could not be "
                f"built: {type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=4,
            )
    return out


def _progress_bar(config: RunConfig, start: int) -> Any:
    """The run's tqdm bar: outer steps, or the seconds of the time budget when one is set.

    With a budget the run usually ends when the budget is spent, not at
    `num_steps`, so the bar's total and ETA are the budget's (seconds); the
    steps done show in its postfix.
    """
    from tqdm.auto import tqdm

    if config.time_budget_s is None:
        return tqdm(
            total=config.num_steps, initial=start, unit="step", desc="meta-train",
            dynamic_ncols=True,
        )  # fmt: skip
    return tqdm(
        total=config.time_budget_s, unit="s", desc="meta-train (time budget)",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
        "[{elapsed}<{remaining}{postfix}]",
        dynamic_ncols=True,
    )  # fmt: skip


def status(message: str) -> None:
    """Writes one progress message to stderr without breaking a progress bar on screen."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGTERM or Ctrl-C; its last completed step was checkpointed.

    Attributes:
      step: the last completed outer step.
      checkpoint: the checkpoint file written (None without an output_dir).
      signal_name: "SIGINT" or "SIGTERM".
    """

    def __init__(self, step: int, checkpoint: Path | None, signal_name: str) -> None:
        super().__init__(f"interrupted by {signal_name} after step {step}")
        self.step = step
        self.checkpoint = checkpoint
        self.signal_name = signal_name


class _Terminated(KeyboardInterrupt):
    """Raised in the main thread by the SIGTERM handler a run installs."""


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises `_Terminated` in the main thread while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class RunLoop:
    """One run's bookkeeping, the same for every backend.

    A backend restores or builds its state, then drives the loop:

      with RunLoop(config, start, save, callback) as loop:
          while loop.running:
              ...                       # one learner update
              loop.advance(state)       # counts it; checkpoints when due
              loop.report(state, meta_loss, metrics)
          loop.finish(state)            # the final checkpoint

    Ctrl-C or SIGTERM inside the block writes a checkpoint of the last completed
    step (the state last passed to `advance`) and raises `RunInterrupted`.

    Args:
      config: the run.
      start: the step the run starts from (the checkpoint's, or 0).
      save: `save(state, step) -> path` writes the backend's checkpoint of `state`.
      callback: called as `callback(step, state, row)` after every step, with
        the last logged row.
      theta_of: `theta_of(state) -> theta`; with it and `start_state`, the
        summary says whether theta changed.
      start_state: the state the run starts from.
      learned_optimizer: what theta parameterises; `config.evaluation` needs it
        (and `theta_of`).
    """

    def __init__(
        self,
        config: RunConfig,
        start: int,
        save: Callable[[Any, int], Path | None],
        callback: Callback | None = None,
        *,
        theta_of: Callable[[Any], Any] | None = None,
        start_state: Any = None,
        learned_optimizer: Any = None,
    ) -> None:
        if config.evaluation is not None and (theta_of is None or learned_optimizer is None):
            raise ValueError(
                "RunLoop: RunConfig.evaluation needs the backend to pass theta_of= and "
                "learned_optimizer=; this backend does not support continuous evaluation."
            )
        self._learned_optimizer = learned_optimizer
        self.config = config
        self.start = self.step = int(start)
        self.stopped_by = "num_steps"
        self.history: list[dict[str, float]] = []
        self.last_checkpoint: Path | None = None
        self.elapsed_s = 0.0
        self._save = save
        self._callback = callback
        self._theta_of = theta_of
        self._start_theta = None
        if theta_of is not None and start_state is not None:
            self._start_theta = jax.device_get(theta_of(start_state))
        self._latest: Any = None
        self._checkpointed_step: int | None = None
        self._dropped: Any = 0
        self._masked: Any = 0
        self._writers: list[Any] = []
        run_dir = config.output_dir
        if run_dir is not None:
            jsonl = JsonlWriter(run_dir)
            jsonl.truncate_after(start)  # lines past the checkpoint describe lost work
            self._writers = [jsonl, *_writers(config.metric_writers, run_dir, start)]
        self._bar = None
        if config.progress:
            self._bar = _progress_bar(config, start)
        self._meta_loss_text = ""
        self._t0 = self._last_t = time.perf_counter()
        self._last_step = self.step
        self._signals = _sigterm_interrupts()

    def __enter__(self) -> RunLoop:
        self._signals.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        try:
            self._signals.__exit__(None, None, None)
            interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
            if interrupted and not isinstance(exc, RunInterrupted):
                name = "SIGTERM" if isinstance(exc, _Terminated) else "SIGINT"
                if self._latest is not None and self._checkpointed_step != self.step:
                    self.checkpoint(self._latest)
                raise RunInterrupted(self.step, self.last_checkpoint, name) from None
        finally:
            if self._bar is not None:
                self._bar.close()
            for w in self._writers:
                w.close()
        return None

    @property
    def running(self) -> bool:
        """False once `num_steps` are done or the time budget is spent."""
        return self.step < self.config.num_steps and self.stopped_by == "num_steps"

    def checkpoint(self, state: Any) -> None:
        """Writes the backend's checkpoint of `state` now (nothing without `output_dir`)."""
        if self.config.output_dir is not None:
            self.last_checkpoint = self._save(state, self.step) or self.last_checkpoint
            self._checkpointed_step = self.step

    def advance(self, state: Any) -> int:
        """Counts one applied update; checkpoints `state` every `checkpoint_every` steps.

        Returns:
          The step now completed.
        """
        self.step += 1
        self._latest = state
        if self.step % self.config.checkpoint_every == 0:
            self.checkpoint(state)
        return self.step

    def logs(self, step: int) -> bool:
        """True when outer step `step` (counted from 1) is logged: every `log_every`-th,
        the last, and every step `config.evaluation` is due on."""
        config = self.config
        return step % config.log_every == 0 or step == config.num_steps or self._evaluates(step)

    def _evaluates(self, step: int) -> bool:
        ev = self.config.evaluation
        return ev is not None and ev.due(step, self.config.num_steps)

    def report(
        self,
        state: Any,
        meta_loss: Any,
        metrics: Mapping[str, Any],
        extra: Mapping[str, float] | None = None,
    ) -> None:
        """Logs the step just counted (a `metrics_row` on logged steps) and checks the budget.

        Every step, whether logged or not, counts toward `dropped_steps` (the
        learner's `mean_loss` is NaN: no finite meta-gradient) and `masked_tasks`
        (the estimators' `.../nonfinite_tasks`), summed on the device.
        """
        step, config = self.step, self.config
        self._count_nonfinite(metrics)
        if self.logs(step):
            now = time.perf_counter()
            if self._evaluates(step):
                assert self._theta_of is not None  # checked in __init__
                theta = self._theta_of(state)
                extra = {**(extra or {}), **config.evaluation(self._learned_optimizer, theta)}
            row = metrics_row(
                metrics,
                meta_loss,
                steps_per_s=(step - self._last_step) / max(now - self._last_t, 1e-9),
                elapsed_s=now - self._t0,
                extra=extra,
            )
            # The next interval's steps/s leaves out the evaluation's time.
            self._last_t, self._last_step = time.perf_counter(), step
            self.history.append({"step": step, **row})
            for w in self._writers:
                w.write(step, row)
            self._meta_loss_text = f"{row['meta_loss']:.4f}"
        if self._bar is not None:
            self._advance_bar(step)
        if self._callback is not None:
            self._callback(step, state, self.history[-1] if self.history else {})
        budget = config.time_budget_s
        if budget is not None and time.perf_counter() - self._t0 >= budget:
            self.stopped_by = "time_budget"

    def _advance_bar(self, step: int) -> None:
        bar, budget = self._bar, self.config.time_budget_s
        post = {"meta_loss": self._meta_loss_text} if self._meta_loss_text else {}
        if budget is None:
            bar.set_postfix(post, refresh=False)
            bar.update(1)
            return
        # The bar counts seconds of the budget, so its total and ETA are the budget's;
        # the step count goes in the postfix.
        bar.set_postfix({"step": f"{step}/{self.config.num_steps}", **post}, refresh=False)
        spent = min(time.perf_counter() - self._t0, budget)
        bar.update(max(0.0, spent - bar.n))

    def _count_nonfinite(self, metrics: Mapping[str, Any]) -> None:
        loss = metrics.get("mean_loss")
        if loss is not None:
            self._dropped = self._dropped + jax.numpy.logical_not(jax.numpy.isfinite(loss))
        for name, value in metrics.items():
            if name.endswith("/nonfinite_tasks"):
                self._masked = self._masked + value

    def finish(self, state: Any) -> None:
        """Ends the run: records the elapsed time and checkpoints the last step if needed."""
        self.elapsed_s = time.perf_counter() - self._t0
        self._latest = state
        if self.step % self.config.checkpoint_every or self.last_checkpoint is None:
            self.checkpoint(state)
        self._theta_changed = None
        if self._theta_of is not None and self._start_theta is not None:
            end = jax.device_get(self._theta_of(state))
            same = jax.tree_util.tree_all(
                jax.tree_util.tree_map(np.array_equal, self._start_theta, end)
            )
            self._theta_changed = not same

    def summary(self) -> dict[str, Any]:
        """The `MetaTrainResult` fields the loop knows (all but state and theta)."""
        return {
            "steps": self.step,
            "history": self.history,
            "stopped_by": self.stopped_by,
            "resumed_from": self.start,
            "dropped_steps": int(self._dropped),
            "masked_tasks": int(self._masked),
            "theta_changed": getattr(self, "_theta_changed", None),
        }
