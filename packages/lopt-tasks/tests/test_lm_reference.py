"""The reference's RNN LMs (LSTM, GRU, IRNN, vanilla cores) and its Transformer-LM family."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from task_helpers import adam_train

import lopt_core
from lopt_tasks import CATALOG
from lopt_tasks.lm import (
    IRNN,
    RNN_CORES,
    LMRNNFamilyConfig,
    LSTMLanguageModelTask,
    ParametricLMRNN,
    ParametricLMTransformer,
    RNNLanguageModelTask,
    fold_vocab,
    masked_token_cross_entropy,
    rnn_lm_unroll,
    sample_lm_rnn,
    sample_lm_transformer,
)
from lopt_tasks.text import embedded_text_datasets

E, H = 4, 6


@pytest.mark.parametrize("core", sorted(RNN_CORES))
def test_logits_state_and_loss_at_init_per_core(core):
    batch = embedded_text_datasets(8, 16).sample("train", jax.random.PRNGKey(1))
    fwd = hk.transform(lambda x: rnn_lm_unroll(x, 256, 16, 32, core))
    params = fwd.init(jax.random.PRNGKey(0), batch["obs"])
    logits, state = jax.jit(fwd.apply)(params, None, batch["obs"])
    assert logits.shape == (8, 16, 256)
    state_shapes = [x.shape for x in jax.tree_util.tree_leaves(state)]
    assert state_shapes == ([(8, 32), (8, 32)] if core == "lstm" else [(8, 32)])
    # The initial state is learned and starts at zero, one parameter per state leaf.
    init_state = params["~"]
    assert sorted(init_state) == [f"initial_state_{i}" for i in range(len(state_shapes))]
    assert all(np.all(v == 0) and v.shape == (1, 32) for v in init_state.values())
    # The loss at init is near log(256): at the first byte (state = the zero initial
    # state) for every core, and over the sequence for all but the IRNN.
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["target"][..., None], -1)
    assert float(nll[:, 0].mean()) == pytest.approx(np.log(256), rel=0.1)
    loss = float(masked_token_cross_entropy(logits, batch))
    assert np.isfinite(loss)
    if core == "irnn":
        # The identity recurrence sums the ReLU inputs along the sequence, so the
        # hidden state, and with it the logits' scale, grows with the position.
        assert loss > np.log(256)
    else:
        assert loss == pytest.approx(np.log(256), rel=0.1)


def test_irnn_recurrent_weights_start_at_gain_times_identity():
    def fwd(x, h):
        return IRNN(H, gain=0.5)(x, h)

    net = hk.transform(fwd)
    x, h = jnp.ones((2, E)), jnp.ones((2, H))
    params = net.init(jax.random.PRNGKey(0), x, h)
    assert np.array_equal(params["irnn/linear_1"]["w"], 0.5 * np.eye(H, dtype=np.float32))
    assert np.array_equal(params["irnn/linear_1"]["b"], np.zeros(H, np.float32))
    # relu(W_x x + b_x + W_h h + b_h), checked by hand.
    p = params
    x = jax.random.normal(jax.random.PRNGKey(1), (2, E))
    h = jax.random.normal(jax.random.PRNGKey(2), (2, H))
    out, new_state = net.apply(params, None, x, h)
    expect = np.maximum(
        x @ p["irnn/linear"]["w"] + p["irnn/linear"]["b"] + 0.5 * h + p["irnn/linear_1"]["b"], 0
    )
    np.testing.assert_allclose(out, expect, rtol=1e-6, atol=1e-6)
    assert np.array_equal(out, new_state)
    # Without double_bias the recurrent layer has no bias.
    single = hk.transform(lambda x, h: IRNN(H, double_bias=False)(x, h))
    assert "b" not in single.init(jax.random.PRNGKey(0), x, h)["irnn/linear_1"]


def test_irnn_task_inits_identity_recurrence():
    task = RNNLanguageModelTask(embedded_text_datasets(2, 4), E, H, core="irnn")
    params = task.init(jax.random.PRNGKey(3))
    assert np.array_equal(params["irnn/linear_1"]["w"], np.eye(H, dtype=np.float32))


@pytest.mark.parametrize("core", ["gru", "irnn"])
def test_adam_lowers_the_loss_on_the_embedded_text(core):
    ds = embedded_text_datasets(8, 16)
    task = RNNLanguageModelTask(ds, 16, 32, core=core)
    params = task.init(jax.random.PRNGKey(0))
    _, losses = adam_train(task, params, jax.random.PRNGKey(1), 30, 1e-2)
    assert np.all(np.isfinite(losses))
    assert float(losses[-5:].mean()) < float(losses[:5].mean()) - 1.0


def test_lstm_task_keeps_its_name_and_parameters():
    ds = embedded_text_datasets(2, 4)
    old = LSTMLanguageModelTask(ds, E, H)
    new = RNNLanguageModelTask(ds, E, H, core="lstm")
    assert old.core == "lstm" and isinstance(old, RNNLanguageModelTask)
    p_old, p_new = old.init(jax.random.PRNGKey(0)), new.init(jax.random.PRNGKey(0))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, p_old, p_new))
    assert "lstm/linear" in p_old


def test_bad_core_names_the_choices():
    ds = embedded_text_datasets(2, 4)
    msg = r"core must be one of 'lstm', 'gru', 'irnn', 'vanilla', got 'rnn'"
    with pytest.raises(ValueError, match=rf"RNNLanguageModelTask: {msg}"):
        RNNLanguageModelTask(ds, core="rnn")
    with pytest.raises(ValueError, match=rf"ParametricLMRNN: {msg}"):
        ParametricLMRNN(ds, core="rnn")
    with pytest.raises(ValueError, match=r"Unknown RNN cores \['rnn'\].*gru, irnn, lstm, vanilla"):
        sample_lm_rnn(jax.random.PRNGKey(0), cores=("lstm", "rnn"))


def test_fold_vocab_keeps_padding_and_stays_in_range():
    tokens = jnp.arange(256)
    folded = fold_vocab(tokens, 16)
    assert int(folded[0]) == 0
    assert np.array_equal(folded[:16], np.arange(16))
    assert int(folded.min()) == 0 and int(folded.max()) == 15
    assert int(folded[16]) == 1 + 16 % 15
    assert fold_vocab(tokens, None) is tokens
    # The loss folds the targets the same way.
    data = {"obs": jnp.array([[0, 1]]), "target": jnp.array([[200, 17]])}
    logits = jnp.zeros((1, 2, 16)).at[0, 1, 1 + 17 % 15].set(10.0)
    loss = masked_token_cross_entropy(logits, data, vocab_size=16)
    assert float(loss) == pytest.approx(-float(jax.nn.log_softmax(logits[0, 1])[3]), rel=1e-6)


def test_parametric_lm_rnn_with_a_folded_vocab_and_gru_core():
    family = ParametricLMRNN(embedded_text_datasets(4, 8), 8, 8, core="gru", vocab_size=16)
    assert family.vocab_size == 16
    cfg = family.sample(jax.random.PRNGKey(0))
    task = family.task_fn(cfg)
    params = task.init(jax.random.PRNGKey(0))
    assert params["embed"]["embeddings"].shape == (16, 8) and "gru" in params
    loss = task.loss(params, jax.random.PRNGKey(1), next(family.datasets.train))
    assert float(loss) == pytest.approx(np.log(16), rel=0.3)


def test_parametric_lm_transformer_family():
    family = ParametricLMTransformer(embedded_text_datasets(4, 8), 2, 1, 12, dropout_rate=0.5)
    assert family.sample(jax.random.PRNGKey(0)) == {}
    assert jax.vmap(family.sample)(jax.random.split(jax.random.PRNGKey(0), 3)) == {}
    task = family.task_fn({})
    params = task.init(jax.random.PRNGKey(0))
    # No position embeddings; key_size 32 per head as in the reference.
    assert "position_embeddings" not in str(jax.tree_util.tree_structure(params))
    assert params["multi_head_attention/query"]["w"].shape == (12, 2 * 32)
    assert params["linear_2"]["w"].shape == (12, 256)
    batch = next(family.datasets.train)
    # Dropout is on: the loss depends on the key.
    l1, l2 = (float(task.loss(params, jax.random.PRNGKey(k), batch)) for k in (1, 2))
    assert l1 != l2 and np.isfinite(l1)
    assert float(task.normalizer(jnp.log(256.0))) == pytest.approx(10 * np.log(5) / np.log(256))
    with pytest.raises(ValueError, match=r"dropout_rate must be in \[0, 1\), got 1.0"):
        ParametricLMTransformer(embedded_text_datasets(4, 8), dropout_rate=1.0)


def test_transformer_causality_and_padding_mask():
    family = ParametricLMTransformer(embedded_text_datasets(1, 6), 2, 1, 8, dropout_rate=0.0)
    params = family._init_jit({}, jax.random.PRNGKey(0))
    obs = jnp.array([[5, 6, 7, 8, 9, 10]])
    base = family._apply_jit({}, params, None, obs)
    later = family._apply_jit({}, params, None, obs.at[0, 4].set(3))
    np.testing.assert_allclose(base[0, :4], later[0, :4], rtol=1e-6, atol=1e-6)
    assert not np.allclose(base[0, 4], later[0, 4])  # no position sees the future
    # Without position embeddings a position sees the set of earlier non-padding bytes:
    # a padding byte inserted before it changes nothing.
    padded = family._apply_jit({}, params, None, jnp.array([[5, 0, 6, 0, 7, 8]]))
    np.testing.assert_allclose(padded[0, 4], base[0, 2], rtol=1e-5, atol=1e-5)
    assert not np.allclose(padded[0, 4], base[0, 3])


def test_samplers_are_deterministic_per_key():
    for sampler in (sample_lm_rnn, sample_lm_transformer):
        a, b = sampler(jax.random.PRNGKey(3)), sampler(jax.random.PRNGKey(3))
        assert a == b
        assert len({sampler(jax.random.PRNGKey(i)) for i in range(6)}) > 1
    cfg = sample_lm_transformer(jax.random.PRNGKey(0))
    assert 8 * 8 <= cfg.d_model <= 128 * 128 and cfg.d_model % cfg.num_heads == 0
    assert 1 <= cfg.num_layers <= 8 and 4 <= cfg.sequence_length <= 128
    small = [sample_lm_transformer(jax.random.PRNGKey(i), ranges="small") for i in range(10)]
    assert all(1 <= c.num_heads <= 4 and c.d_model <= 128 for c in small)
    v = sample_lm_transformer(jax.random.PRNGKey(0), vocab_range=(100, 10000)).vocab_size
    assert 100 <= v <= 10000
    with pytest.raises(ValueError, match="ranges must be one of 'reference', 'small'"):
        sample_lm_transformer(jax.random.PRNGKey(0), ranges="huge")


def test_rnn_sampler_keeps_its_lstm_draws_and_samples_cores():
    key = jax.random.PRNGKey(4)
    lstm = sample_lm_rnn(key)
    mixed = sample_lm_rnn(key, cores=("gru", "lstm", "vanilla"), vocab_range=(100, 10000))
    assert lstm.core == "lstm" and lstm.vocab_size is None
    # Widths, batch, length and dataset do not depend on the cores or the vocabulary.
    assert (lstm.rnn_size, lstm.embed_size, lstm.batch_size, lstm.sequence_length) == (
        mixed.rnn_size,
        mixed.embed_size,
        mixed.batch_size,
        mixed.sequence_length,
    )
    cores = {sample_lm_rnn(jax.random.PRNGKey(i), cores=tuple(RNN_CORES)).core for i in range(24)}
    assert cores == set(RNN_CORES)
    fam = LMRNNFamilyConfig("embedded", 8, 8, 4, 8, core="irnn", vocab_size=100).make()
    assert fam.name == "ParametricLMRNN_embedded_bs4_T8_IRNN8_Embed8_V100"
    assert fam.core == "irnn" and fam.vocab_size == 100


RNNLM_NAMES = [n for n in CATALOG.names("tasks") if n.startswith("RNNLM_")]


def test_named_rnn_lms_follow_the_reference_names():
    assert RNNLM_NAMES == [
        "RNNLM_lm1bbytes_Patch32_IRNN128_Embed64",
        "RNNLM_lm1bbytes_Patch32_LSTM128_Embed64",
        "RNNLM_lm1bbytes_Patch32_GRU128_Embed64",
        "RNNLM_lm1bbytes_Patch32_VanillaRNN128_Embed64",
    ]
    task = lopt_core.get_task("RNNLM_lm1bbytes_Patch32_GRU128_Embed64")
    assert (task.core, task.rnn_size, task.embed_size) == ("gru", 128, 64)
    assert task.datasets.abstract_batch["obs"].shape == (128, 32)
    assert task.name == "RNNLM_lm1bbytes_Patch32_GRU128_Embed64"
    # The reference's wider and longer shapes, on any corpus, from the class.
    wide = RNNLanguageModelTask(embedded_text_datasets(8, 16), 16, 24, core="irnn", name="w")
    assert wide.datasets.abstract_batch["obs"].shape == (8, 16)
    params = wide.init(jax.random.PRNGKey(0))
    assert params["irnn/linear"]["w"].shape[-1] == 24


def test_a_tfds_named_rnn_lm_trains_on_mock_data(mock_tfds):
    task = lopt_core.get_task("RNNLM_lm1bbytes_Patch32_VanillaRNN128_Embed64")
    assert task.core == "vanilla"
    batch = next(task.datasets.train)
    assert batch["obs"].shape == (128, 32)
    params = task.init(jax.random.PRNGKey(0))
    loss, grads = jax.jit(jax.value_and_grad(task.loss))(params, jax.random.PRNGKey(1), batch)
    assert float(loss) == pytest.approx(np.log(256), rel=0.1)
    assert float(jnp.abs(grads["vanilla_rnn/linear_1"]["w"]).sum()) > 0


def test_the_sampled_transformer_family_reads_the_chosen_corpus(mock_tfds):
    family = lopt_core.get_task_family("SampledLMTransformerFamily", seed=2, datasets=("lm1b",))
    cfg = sample_lm_transformer(jax.random.PRNGKey(2), ("lm1b",), ranges="small")
    assert family.name == cfg.make().name and family.name.startswith("ParametricLMTransformer_lm1b")
    batch = next(family.datasets.train)
    assert batch["obs"].shape == (cfg.batch_size, cfg.sequence_length)
    assert batch["obs"].dtype == jnp.int32
    with pytest.raises(ValueError, match="seed"):
        lopt_core.get_task_family("SampledLMTransformerFamily", seed=-1)
