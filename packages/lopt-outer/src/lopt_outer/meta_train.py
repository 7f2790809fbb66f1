"""`meta_train(learner, config, backend)`: meta-train a learner on a backend.

The run itself (keys, checkpoints, resume, metrics, progress) is `lopt_outer.run`;
the backends are `InProcessBackend` (`lopt_outer.inprocess`) and `RayBackend`
(`lopt_outer.ray`), by name in `lopt_outer.backends.BACKENDS`.

Example:
  >>> result = meta_train(learner, RunConfig(num_steps=1000, output_dir="run1"))
  >>> result = meta_train(learner, RunConfig(1000), RayBackend(num_workers=4))
"""

from __future__ import annotations

import warnings
from typing import Any

from lopt_outer import _compat_run
from lopt_outer.backends import backend_named
from lopt_outer.gradient_learner import SingleMachineGradientLearner
from lopt_outer.run import Backend, Callback, MetaTrainResult, RunConfig
from lopt_outer.rundir import claim

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
    bit-identical theta to a run never interrupted (for keyed datasets).

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
    other run (see `RunConfig.resume`, `overwrite` and `override`).

    Returns:
      A `MetaTrainResult` (a `RayMetaTrainResult` from the Ray backend).

    Raises:
      ValueError: a bad argument, or a checkpoint written with another seed.
      RunDirectoryError: the output folder is in use, or holds another run.
      RunInterrupted: Ctrl-C or SIGTERM stopped the run after a checkpoint.
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
    with claim(config, backend, learner):
        result = backend.run(learner, config, callback)
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


def __getattr__(name: str) -> Any:
    # Names that lived here before lopt_outer.run (CHECKPOINT_NAME, step_key, ...).
    return _compat_run.moved(__name__, name)
