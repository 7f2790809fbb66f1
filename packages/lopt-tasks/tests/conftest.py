import os
import sys
from pathlib import Path

# The shared test helpers (task_helpers.py) import under --import-mode=importlib.
sys.path.insert(0, str(Path(__file__).parent))

# The tests compile dozens of small programs and check behaviour, not speed: skipping
# XLA's LLVM optimization passes cuts their compile time by about 3x on CPU.
# Set before any computation, when the CPU backend reads XLA_FLAGS.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import pytest


@pytest.fixture
def mock_tfds(tmp_path, monkeypatch):
    """TFDS datasets replaced by random mock data; data_dir points at an empty folder."""
    monkeypatch.setenv("LOPT_DATA_DIR", str(tmp_path))
    from lopt_tasks.tfds_data import mock_tfds_data

    with mock_tfds_data(num_examples=24):
        yield
