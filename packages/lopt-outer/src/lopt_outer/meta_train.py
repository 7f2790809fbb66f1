"""`meta_train(learner, config, backend)`: meta-train a learner on a backend.

The run itself (keys, checkpoints, resume, metrics, progress) is `lopt_outer.run`;
the backends are `InProcessBackend` (`lopt_outer.inprocess`) and `RayBackend`
(`lopt_outer.ray`), by name in `lopt_outer.backends.BACKENDS`.

Example:
  >>> result = meta_train(learner, RunConfig(num_steps=1000, output_dir="run1"))
  >>> result = meta_train(learner, RunConfig(1000), RayBackend(num_workers=4))
"""

from __future__ import annotations

from typing import Any

from lopt_outer import _compat_run
from lopt_outer.backends import backend_named
from lopt_outer.gradient_learner import SingleMachineGradientLearner
from lopt_outer.run import Backend, Callback, MetaTrainResult, RunConfig

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

    Returns:
      A `MetaTrainResult` (a `RayMetaTrainResult` from the Ray backend).

    Raises:
      ValueError: a bad argument, or a checkpoint written with another seed.
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
    return backend.run(learner, config, callback)


def __getattr__(name: str) -> Any:
    # Names that lived here before lopt_outer.run (CHECKPOINT_NAME, step_key, ...).
    return _compat_run.moved(__name__, name)
