import pytest
import tensorflow_datasets as tfds


@pytest.fixture
def mock_tfds(tmp_path, monkeypatch):
    """TFDS datasets replaced by random mock data; data_dir points at an empty folder."""
    monkeypatch.setenv("LOPT_DATA_DIR", str(tmp_path))
    from lopt_tasks import tfds_data

    tfds_data._load_split.cache_clear()
    with tfds.testing.mock_data(num_examples=24):
        yield
    tfds_data._load_split.cache_clear()
