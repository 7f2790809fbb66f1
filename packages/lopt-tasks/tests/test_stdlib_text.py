import pickle
import sys
import zlib

import jax
import numpy as np
import pytest
from task_helpers import adam_train

import lopt_core
from lopt_tasks.stdlib_text import (
    _FILE_BUCKETS,
    corpus_name,
    stdlib_corpus,
    stdlib_files,
    stdlib_text_datasets,
)

SPLITS = tuple(_FILE_BUCKETS)


def test_files_are_split_by_path_and_skip_tests():
    files = {split: stdlib_files(split) for split in SPLITS}
    everything = [f for split in SPLITS for f in files[split]]
    assert len(everything) == len(set(everything)) > 300  # disjoint, and a real corpus
    assert "os.py" in everything
    for split, (lo, hi) in _FILE_BUCKETS.items():
        assert files[split] == sorted(files[split])
        for f in files[split]:
            assert lo <= zlib.crc32(f.encode()) % 100 < hi
            assert not {"test", "tests", "site-packages"} & set(f.split("/")[:-1]), f
    # The buckets' shares of files are about 80/10/5/5.
    share = len(files["train"]) / len(everything)
    assert 0.7 < share < 0.9


def test_corpus_bytes_respect_max_bytes_and_are_deterministic():
    small = stdlib_corpus("test", 10_000)
    assert len(small) == 10_000
    assert small == stdlib_corpus("test", 20_000)[:10_000]
    assert stdlib_corpus("train", 10_000) != small
    with pytest.raises(ValueError, match="split must be one of 'train'"):
        stdlib_files("valid")
    assert corpus_name() == f"python_stdlib_{sys.version_info.major}.{sys.version_info.minor}"


def test_datasets_are_lazy_keyed_and_pickle():
    ds = stdlib_text_datasets(4, 8, max_bytes=20_000)
    assert ds.extra_info == {"vocab_size": 256, "name": corpus_name()}
    assert ds.abstract_batch["obs"].shape == (4, 8)
    for split in SPLITS:
        assert not ds.split(split).loaded
    ds2 = pickle.loads(pickle.dumps(ds))
    batch = next(ds2.train)
    assert batch["obs"].dtype == np.int32 and batch["obs"].shape == (4, 8)
    np.testing.assert_array_equal(batch["obs"][:, 1:], batch["target"][:, :-1])
    a = ds.sample("outer_valid", jax.random.PRNGKey(3))
    b = ds.sample("outer_valid", jax.random.PRNGKey(3))
    np.testing.assert_array_equal(a["obs"], b["obs"])
    with pytest.raises(ValueError, match="max_bytes"):
        stdlib_text_datasets(4, 8, max_bytes=0)


def test_an_lstm_learns_code_that_generalises_to_held_out_files():
    task = lopt_core.get_task("LSTMLM_PyStdlib_Embed32_LSTM64")
    ds = task.datasets

    def valid_loss(params):
        keys = jax.random.split(jax.random.PRNGKey(9), 4)
        return np.mean([float(task.loss(params, k, ds.sample("outer_valid", k))) for k in keys])

    params = task.init(jax.random.PRNGKey(0))
    before = valid_loss(params)
    trained, losses = adam_train(task, params, jax.random.PRNGKey(1), 100, 1e-2)
    assert before == pytest.approx(np.log(256), rel=0.05)
    assert float(losses[-10:].mean()) < float(losses[0]) - 2.5
    # Held-out files, not held-out bytes of the same files: the drop is generalisation.
    assert valid_loss(trained) < before - 2.0
