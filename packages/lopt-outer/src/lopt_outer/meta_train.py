"""`meta_train(learner, config, backend)`: meta-train a learner on a backend.

The run itself (keys, checkpoints, resume, metrics, progress) is `lopt_outer.run`;
the backends are `InProcessBackend` (`lopt_outer.inprocess`) and `RayBackend`
(`lopt_outer.ray`), by name in `lopt_outer.backends.BACKENDS`.

Example:
  >>> result = meta_train(learner, RunConfig(num_steps=1000, output_dir="run1"))
  >>> result = meta_train(learner, RunConfig(1000), RayBackend(num_workers=4))
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from lopt_core.checkpoint import CheckpointError
from lopt_outer import _compat_run
from lopt_outer import run as run_layer
from lopt_outer.backends import backend_named
from lopt_outer.gradient_learner import SingleMachineGradientLearner
from lopt_outer.run import (
    Backend,
    Callback,
    MetaTrainResult,
    ResumePoint,
    RunConfig,
    RunInterrupted,
    resume_point,
    status,
)
from lopt_outer.rundir import RunDirectoryError, claim

__all__ = ["meta_train"]


def meta_train(
    learner: SingleMachineGradientLearner,
    config: RunConfig | None = None,
    backend: Backend | str | None = None,
    *,
    callback: Callback | None = None,
    **keywords: Any,
) -> MetaTrainResult:
    """Meta-trains `learner` until `config.num_steps` outer steps are done or the budget ends.

    The key of each outer step depends only on the seed and the step number, and
    the run checkpoints atomically to `config.output_dir`; a killed run started
    again with the same arguments resumes from its last checkpoint and ends with
    bit-identical theta to a run never interrupted (keyed datasets, and streamed
    splits that report their position in process).

    Args:
      learner: the learner, with its estimators and meta-optimizer.
      config: the run's `RunConfig`. The keyword style of earlier versions,
        `meta_train(learner, num_steps, seed=..., output_dir=..., backend="ray",
        num_workers=...)`, still works (see `lopt_outer._compat_run`).
      backend: where estimates are computed: a `Backend` (`InProcessBackend()`,
        the default, or `lopt_outer.ray.RayBackend(num_workers=...)`), or its name
        in `lopt_outer.backends.BACKENDS`.
      callback: called as `callback(step, state, row)` after every step, `row`
        being the last logged metrics row.

    Before the backend starts, the run claims `config.output_dir`
    (`lopt_outer.rundir.claim`): its lock, and the check that the folder holds no
    other run (see `RunConfig.resume`, `overwrite` and `override`). A checkpoint
    of another seed is refused then too, before anything compiles.

    With `config.progress`, it says on stderr where the run starts ("resuming
    from step N of DIR", or that the run is already done) and that the first outer
    step compiles, then how long that step took.

    Returns:
      A `MetaTrainResult` (a `RayMetaTrainResult` from the Ray backend).

    Raises:
      ValueError: a bad argument, or a checkpoint written with another seed.
      RunDirectoryError: the output folder is in use, or holds another run.
      RunInterrupted: Ctrl-C or SIGTERM stopped the run after a checkpoint (or,
        before the first step, with the checkpoint already on disk, if any).
    """
    options: dict[str, Any] = {}
    if not isinstance(config, RunConfig) or keywords:
        config, options = _compat_run.config_from_keywords(config, keywords)
    if backend is None or isinstance(backend, str):
        backend = backend_named(backend or "inprocess", **options)
    elif options:
        raise TypeError(
            f"meta_train: {', '.join(sorted(options))} are options of the backend; "
            f"build it with them, e.g. {type(backend).__name__}(...), not meta_train."
        )
    try:
        with run_layer._sigterm_interrupts(), claim(config, backend, learner):
            point = _check_resume_point(config, backend)
            if config.progress:
                callback = _announce(config, point, callback)
            result = backend.run(learner, config, callback)
    except RunInterrupted as exc:
        if exc.checkpoint is not None:
            raise
        # No step done in this process: the run's checkpoint is the one it resumed from.
        raise _on_disk(config, backend, exc.signal_name, exc.step) from None
    except KeyboardInterrupt as exc:
        # Before the backend's run loop took over (while claiming the folder, building
        # the learner state or compiling): the run's checkpoint is whatever is on disk.
        name = "SIGTERM" if isinstance(exc, run_layer._Terminated) else "SIGINT"
        raise _on_disk(config, backend, name, 0) from None
    ran = result.steps - result.resumed_from
    if ran and (result.dropped_steps == ran or result.theta_changed is False):
        why = (
            "every meta-gradient was NaN or infinite"
            if result.dropped_steps == ran
            else "every meta-gradient was zero"
        )
        warnings.warn(
            f"meta_train: theta did not move in {ran} outer steps ({why}); see the "
            "result's dropped_steps and masked_tasks.",
            RuntimeWarning,
            stacklevel=2,
        )
    return result


def _check_resume_point(config: RunConfig, backend: Backend) -> ResumePoint | None:
    """Where the run resumes (metadata only); a checkpoint of another seed is refused here,
    before anything is built or compiled."""
    point = resume_point(config, backend)
    if point is not None and point.seed is not None and point.seed != config.seed:
        raise RunDirectoryError(
            f"{point.path} was written by a run with seed {point.seed}, not {config.seed}; "
            "pass the same seed (--seed), another output_dir (--output-dir), or "
            "overwrite=True (--overwrite) to start afresh."
        )
    return point


def _announce(
    config: RunConfig, point: ResumePoint | None, callback: Callback | None
) -> Callback | None:
    """Says where the run starts and that the first step compiles; times that first step.

    Returns the callback to pass to the backend: `callback`, preceded on the
    first step by a message of how long that step took (compiling included).
    """
    where = config.output_dir
    if point is not None and point.step >= config.num_steps:
        status(
            f"{where} is already done: its checkpoint is at step {point.step} and num_steps "
            f"is {config.num_steps}; nothing to train (raise num_steps, --num-steps, to "
            "continue it). Loading its state ..."
        )
        return callback
    if point is not None:
        status(
            f"resuming from step {point.step} of {where} ({point.path.name}); training to "
            f"step {config.num_steps}"
        )
    status(
        "compiling the meta-training step (the first outer step; from a few seconds to a "
        "few minutes on CPU, depending on the task family and the learned optimizer) ..."
    )
    t0 = time.perf_counter()
    first = True

    def timed(step: int, state: Any, row: dict[str, float]) -> None:
        nonlocal first
        if first:
            first = False
            status(f"compiled; the first outer step took {time.perf_counter() - t0:.1f} s")
        if callback is not None:
            callback(step, state, row)

    return timed


def _on_disk(config: RunConfig, backend: Backend, signal_name: str, step: int) -> RunInterrupted:
    """The `RunInterrupted` of a run stopped with no checkpoint written by this process."""
    try:
        point = resume_point(config, backend)
    except (CheckpointError, OSError):
        point = None
    if point is None:
        return RunInterrupted(step, None, signal_name)
    return RunInterrupted(point.step, point.path, signal_name)


def __getattr__(name: str) -> Any:
    # Names that lived here before lopt_outer.run (CHECKPOINT_NAME, step_key, ...).
    return _compat_run.moved(__name__, name)
