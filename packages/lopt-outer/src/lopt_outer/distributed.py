"""The Ray backend's former home; it is `lopt_outer.ray` now.

`RayMetaTrainer`, `meta_train_ray`, `CHECKPOINT_NAME` (the Ray checkpoint's file
name), `GradientWorker`, `RayMetaTrainResult` and `require_ray` still import from
here (see `lopt_outer._compat_run`). New code: `meta_train(learner,
RunConfig(...), lopt_outer.ray.RayBackend(num_workers=...))`.
"""

from __future__ import annotations

from typing import Any

from lopt_outer import _compat_run

__all__ = sorted(_compat_run.MOVED[__name__])


def __getattr__(name: str) -> Any:
    return _compat_run.moved(__name__, name)
