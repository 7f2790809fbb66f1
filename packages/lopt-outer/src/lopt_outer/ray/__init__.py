"""Meta-training on a Ray cluster: one learner, many gradient-worker actors.

The design is the reference library's learner/worker split, run on Ray instead of
Launchpad/courier: `RayBackend` is a `lopt_outer.run.Backend`, so a Ray run takes
the same `RunConfig`, writes the same metrics rows and checkpoints through the
same run layer as the in-process one, and with one worker gives the same theta
bit for bit. See `RayBackend` for the options and docs/scaling.md for the
scaling model.

Ray is optional: it is imported only when a `RayBackend` is built, and a missing
Ray raises an ImportError that says `pip install 'lopt-outer[ray]'`. A local
cluster that the backend starts listens on 127.0.0.1 only.

Example:
  >>> from lopt_outer import RunConfig, meta_train
  >>> from lopt_outer.ray import RayBackend
  >>> result = meta_train(learner, RunConfig(1000, output_dir="run1"), RayBackend(num_workers=4))
  >>> result.theta, result.history[-1]["ray/dropped_stale"]
"""

from lopt_outer.ray.backend import (
    RAY_INSTALL_HINT,
    RayBackend,
    RayMetaTrainResult,
    RayRun,
    require_ray,
    start_loopback_cluster,
)
from lopt_outer.ray.worker import GradientWorker, host

__all__ = [
    "RAY_INSTALL_HINT",
    "GradientWorker",
    "RayBackend",
    "RayMetaTrainResult",
    "RayRun",
    "host",
    "require_ray",
    "start_loopback_cluster",
]
