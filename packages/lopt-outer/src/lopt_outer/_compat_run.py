"""The run layer's older spellings, in one place.

Before `RunConfig` and `Backend`, a run was configured by keyword arguments,
`meta_train(learner, num_steps, seed=..., output_dir=..., backend="ray",
num_workers=...)`, and the Ray backend was `lopt_outer.distributed`'s
`RayMetaTrainer` / `meta_train_ray(gradient_learner, gradient_estimators, ...)`.
Those spellings keep working through this module (tested in
tests/test_compat_run.py); new code uses `meta_train(learner, RunConfig(...),
backend)`.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lopt_core import GradientEstimator
from lopt_outer.gradient_learner import GradientLearner, SingleMachineGradientLearner
from lopt_outer.ray import RayBackend, RayMetaTrainResult, RayRun
from lopt_outer.run import RAY_CHECKPOINT_NAME, Callback, RunConfig

__all__ = ["RayMetaTrainer", "config_from_keywords", "meta_train_ray", "moved"]

# module -> {old name: (module it lives in now, its name there)}
MOVED: dict[str, dict[str, tuple[str, str]]] = {
    "lopt_outer.meta_train": {
        "CHECKPOINT_NAME": ("lopt_outer.run", "CHECKPOINT_NAME"),
        "MetaTrainResult": ("lopt_outer.run", "MetaTrainResult"),
        "step_key": ("lopt_outer.run", "step_key"),
    },
    "lopt_outer.distributed": {
        "CHECKPOINT_NAME": ("lopt_outer.run", "RAY_CHECKPOINT_NAME"),
        "GradientWorker": ("lopt_outer.ray", "GradientWorker"),
        "RAY_INSTALL_HINT": ("lopt_outer.ray", "RAY_INSTALL_HINT"),
        "RayMetaTrainResult": ("lopt_outer.ray", "RayMetaTrainResult"),
        "RayMetaTrainer": ("lopt_outer._compat_run", "RayMetaTrainer"),
        "meta_train_ray": ("lopt_outer._compat_run", "meta_train_ray"),
        "require_ray": ("lopt_outer.ray", "require_ray"),
    },
}


def moved(module: str, name: str) -> Any:
    """The object that `module.name` named before the run layer moved it (see `MOVED`).

    Raises:
      AttributeError: `module` never had `name`.
    """
    try:
        home, new_name = MOVED[module][name]
    except KeyError:
        raise AttributeError(f"module {module!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(home), new_name)


# meta_train's Ray keywords and their values that meant "not set".
_RAY_KEYWORDS = {"num_workers": 1, "address": None, "max_staleness": None}


def config_from_keywords(
    num_steps: Any, keywords: Mapping[str, Any]
) -> tuple[RunConfig, dict[str, Any]]:
    """`meta_train(learner, num_steps, **keywords)` as a `RunConfig` and backend options.

    Args:
      num_steps: `meta_train`'s second positional argument (an int here), or None.
      keywords: `RunConfig` fields and the Ray options `num_workers`, `address`
        and `max_staleness`.

    Returns:
      `(config, options)`: the options given with a value other than "not set",
      for the backend.

    Raises:
      TypeError: a RunConfig together with keywords, num_steps twice or missing,
        or an unknown keyword.
    """
    keywords = dict(keywords)
    if isinstance(num_steps, RunConfig):
        raise TypeError(
            f"meta_train: got a RunConfig and the keyword arguments {', '.join(sorted(keywords))}"
            "; put run settings in the RunConfig and backend options in the backend."
        )
    if num_steps is not None:
        if "num_steps" in keywords:
            raise TypeError("meta_train: num_steps given both by position and by keyword.")
        keywords["num_steps"] = num_steps
    if "num_steps" not in keywords:
        raise TypeError("meta_train: pass a RunConfig, e.g. meta_train(learner, RunConfig(100)).")
    options = {k: keywords.pop(k) for k in list(keywords) if k in _RAY_KEYWORDS}
    options = {k: v for k, v in options.items() if v != _RAY_KEYWORDS[k]}
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(keywords) - fields)
    if unknown:
        raise TypeError(
            f"meta_train() got an unexpected keyword argument {unknown[0]!r}; the run "
            f"settings are RunConfig's fields: {', '.join(sorted(fields))}."
        )
    return RunConfig(**keywords), options


class RayMetaTrainer:
    """A learner driving `num_workers` gradient-worker actors (the older API of `RayBackend`).

    Build it, then call `run`. While it runs, `workers` holds the live actor
    handles (slot `i` is `workers[i]`). The run settings (`seed`, `output_dir`,
    `checkpoint_every`, `resume`) are `RunConfig`'s, every other argument is
    `RayBackend`'s; this trainer shows no progress bar and uses no metric writer
    other than `metrics.jsonl` in `output_dir`.

    Raises:
      ImportError: Ray is not installed.
      ValueError: a bad argument; the message names it.
    """

    def __init__(
        self,
        gradient_learner: GradientLearner,
        gradient_estimators: Sequence[GradientEstimator],
        *,
        seed: int = 0,
        output_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 100,
        resume: bool = True,
        **backend_options: Any,
    ) -> None:
        # Every other keyword (num_workers, max_staleness, address, ...) is RayBackend's.
        self.backend = RayBackend(**backend_options)
        self.learner = SingleMachineGradientLearner.from_gradient_learner(
            gradient_learner, gradient_estimators
        )
        # Checked now, as RunConfig checks them, rather than at the first run.
        self._settings = dict(
            seed=seed, output_dir=output_dir, checkpoint_every=checkpoint_every, resume=resume
        )
        RunConfig(0, **self._settings)
        self._current: RayRun | None = None

    @property
    def workers(self) -> list[Any]:
        """The live worker actors of the run in progress (empty outside `run`)."""
        return self._current.workers if self._current is not None else []

    @property
    def checkpoint_path(self) -> Path | None:
        """The checkpoint file, or None when checkpoints are off."""
        out = self._settings["output_dir"]
        return None if out is None else Path(out) / RAY_CHECKPOINT_NAME

    def run(
        self,
        num_steps: int,
        *,
        time_budget_s: float | None = None,
        callback: Callback | None = None,
    ) -> RayMetaTrainResult:
        """Meta-trains until `num_steps` updates are applied or the time budget runs out.

        Args:
          num_steps: total outer updates (a resumed run counts the earlier ones).
          time_budget_s: stop once this many seconds of training have passed.
          callback: called after every applied update as `callback(step, state,
            row)`, `state` being the `GradientLearnerState`.

        Returns:
          A `RayMetaTrainResult`.
        """
        config = RunConfig(
            num_steps,
            time_budget_s=time_budget_s,
            metric_writers=(),
            progress=False,
            **self._settings,
        )
        self._current = self.backend.start(self.learner, config, callback)
        try:
            return self._current.run()
        finally:
            self._current = None


def meta_train_ray(
    gradient_learner: GradientLearner,
    gradient_estimators: Sequence[GradientEstimator],
    num_steps: int,
    *,
    time_budget_s: float | None = None,
    callback: Callback | None = None,
    **kwargs: Any,
) -> RayMetaTrainResult:
    """Meta-trains on a Ray cluster (the older API of `meta_train(..., RayBackend(...))`).

    `kwargs` are `RayMetaTrainer`'s arguments. With one worker and the same seed
    the result equals the in-process one.
    """
    trainer = RayMetaTrainer(gradient_learner, gradient_estimators, **kwargs)
    return trainer.run(num_steps, time_budget_s=time_budget_s, callback=callback)
