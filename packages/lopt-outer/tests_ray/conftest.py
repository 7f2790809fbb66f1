"""Makes ray_helpers importable (--import-mode=importlib) and runs one Ray cluster per module."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

# The tests compile many small programs and check behaviour, not speed: skipping XLA's
# LLVM optimization passes cuts their compile time. Set before JAX starts; the Ray
# clusters and subprocesses the tests start inherit it, so driver and workers compile
# alike and their results stay bit-identical.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

HERE = str(Path(__file__).parent)
sys.path.insert(0, HERE)
# Ray workers must import ray_helpers by name: cloudpickle would ship its classes
# by value, and a flax.struct dataclass rebuilt that way is no longer a pytree.
# The local clusters that the tests and lopt start inherit this environment.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray cluster on 127.0.0.1 shared by a test module; yields its address."""
    import ray

    from lopt_outer.ray import start_loopback_cluster

    with warnings.catch_warnings():
        # Ray starts its daemons with fork+exec; JAX warns about any fork.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
        start_loopback_cluster(ray, 2, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
