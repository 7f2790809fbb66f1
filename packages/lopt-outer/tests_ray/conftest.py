"""Makes ray_helpers importable (--import-mode=importlib) and runs one Ray cluster per module."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

HERE = str(Path(__file__).parent)
sys.path.insert(0, HERE)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray cluster shared by a test module; yields its address."""
    import ray

    # Ray workers must import ray_helpers by name: cloudpickle would ship its classes
    # by value, and a flax.struct dataclass rebuilt that way is no longer a pytree.
    # The local cluster's processes inherit this environment.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
    with warnings.catch_warnings():
        # Ray starts its daemons with fork+exec; JAX warns about any fork.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
