import jax
import numpy as np
import pytest

from lopt_core.testing import check_task, check_task_family
from lopt_tasks import (
    LSTMLanguageModelTask,
    ParametricLMRNN,
    TransformerLanguageModelTask,
    embedded_corpus,
    embedded_text_datasets,
    tfds_text_datasets,
)
from lopt_tasks.text import windows


def test_embedded_corpus_ships_with_the_package():
    corpus = embedded_corpus()
    assert len(corpus) > 5000
    assert corpus.startswith(b"The Lighthouse Keeper")
    assert 0 not in corpus


def test_windows_shift_by_one():
    w = windows(b"abcdefghij", 4)
    assert w.shape == (2, 5)
    assert bytes(w[0].astype(np.uint8)) == b"abcde"
    assert bytes(w[1].astype(np.uint8)) == b"efghi"
    with pytest.raises(ValueError, match="too short"):
        windows(b"abc", 4)


def test_embedded_text_batches_are_next_byte_pairs():
    ds = embedded_text_datasets(batch_size=4, sequence_length=16)
    assert ds.extra_info["vocab_size"] == 256
    assert ds.keyed
    batch = ds.sample("train", jax.random.PRNGKey(0))
    assert batch["obs"].shape == (4, 16)
    assert batch["obs"].dtype == np.int32
    assert np.array_equal(batch["obs"][:, 1:], batch["target"][:, :-1])
    again = ds.sample("train", jax.random.PRNGKey(0))
    assert np.array_equal(batch["obs"], again["obs"])
    # Splits are disjoint byte ranges: the test windows are not among the train windows.
    train = {bytes(np.asarray(r, np.uint8)) for r in ds.train.arrays["window"]}
    test = {bytes(np.asarray(r, np.uint8)) for r in ds.test.arrays["window"]}
    assert not train & test


def test_lstm_lm_trains_on_embedded_corpus():
    task = LSTMLanguageModelTask(embedded_text_datasets(16, 16), 16, 32)
    params = task.init(jax.random.PRNGKey(0))

    @jax.jit
    def train(params, key):
        def step(p, k):
            k1, k2 = jax.random.split(k)
            batch = task.datasets.sample("train", k1)
            loss, g = jax.value_and_grad(task.loss)(p, k2, batch)
            return jax.tree_util.tree_map(lambda a, b: a - 0.5 * b, p, g), loss

        return jax.lax.scan(step, params, jax.random.split(key, 150))

    _, losses = train(params, jax.random.PRNGKey(1))
    assert float(losses[0]) == pytest.approx(np.log(256), rel=0.05)
    assert float(losses[-10:].mean()) < 3.6


def test_transformer_lm_passes_check_task():
    task = TransformerLanguageModelTask(embedded_text_datasets(4, 8), 16, 2, 1)
    check_task(task)
    with pytest.raises(ValueError, match="divisible"):
        TransformerLanguageModelTask(embedded_text_datasets(4, 8), 10, 3, 1)


def test_tfds_text_datasets_on_mock_data(mock_tfds):
    ds = tfds_text_datasets("tiny_shakespeare", batch_size=2, sequence_length=8)
    batch = next(ds.train)
    assert batch["obs"].shape == (2, 8)
    assert next(ds.test)["target"].shape == (2, 8)


def test_parametric_lm_rnn_family_vmaps():
    family = ParametricLMRNN(embedded_text_datasets(4, 8), rnn_size=8, embed_size=8)
    check_task_family(family)


def test_sample_lm_rnn_structure():
    from lopt_tasks import sample_lm_rnn

    cfgs = [sample_lm_rnn(jax.random.PRNGKey(i)) for i in range(20)]
    assert cfgs[5] == sample_lm_rnn(jax.random.PRNGKey(5))
    for c in cfgs:
        assert 8 <= c.rnn_size <= 256 and 8 <= c.embed_size <= 256
        assert 4 <= c.batch_size <= 512 and 4 <= c.sequence_length <= 128
    family = cfgs[0].make()
    assert family.datasets.abstract_batch["obs"].shape == (
        cfgs[0].batch_size,
        cfgs[0].sequence_length,
    )
    with pytest.raises(ValueError, match="Unknown text datasets"):
        sample_lm_rnn(jax.random.PRNGKey(0), datasets=("wikipedia",))
