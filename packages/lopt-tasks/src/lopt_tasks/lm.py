"""Byte-level language-model tasks and families.

Tasks: RNN language models with an LSTM, GRU, IRNN or vanilla-RNN core
(`RNNLanguageModelTask`; `LSTMLanguageModelTask` is its LSTM form) and a small
Transformer. Families: `ParametricLMRNN` and `ParametricLMTransformer`, with the
structure samplers `sample_lm_rnn` and `sample_lm_transformer`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp

from lopt_core import Datasets, TaskFamily
from lopt_core.typing import Batch, PRNGKey, TaskCfg
from lopt_core.validation import check_choice, check_nonnegative, check_positive_int
from lopt_tasks._common import clipped_log_classes_normalizer, extra_info_of
from lopt_tasks._network import NetworkTask
from lopt_tasks._plugin import CATALOG
from lopt_tasks._sampling import (
    SwitchedInitializer,
    check_names,
    choice,
    log_uniform_int,
    sample_initializer,
)
from lopt_tasks.parametric import _HaikuFamily
from lopt_tasks.text import embedded_text_datasets, tfds_text_datasets


def fold_vocab(tokens: jax.Array, vocab_size: int | None) -> jax.Array:
    """Maps tokens >= `vocab_size` into [1, vocab_size - 1] as `1 + token % (vocab_size - 1)`.

    This is how the reference's LM families shrink a dataset's vocabulary (0, the
    padding byte, stays 0). The reference compares with `>`, which leaves the token
    equal to `vocab_size` out of range; here it is folded too. None keeps the tokens.
    """
    if vocab_size is None:
        return tokens
    return jnp.where(tokens >= vocab_size, 1 + tokens % (vocab_size - 1), tokens)


def masked_token_cross_entropy(
    logits: jax.Array, data: Batch, vocab_size: int | None = None
) -> jax.Array:
    """Mean next-byte cross-entropy over positions whose input byte is not 0 (padding).

    With `vocab_size`, targets are folded into it first (see `fold_vocab`).
    """
    target = fold_vocab(data["target"], vocab_size)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(log_probs, target[..., None], axis=-1)[..., 0]
    mask = (data["obs"] != 0).astype(jnp.float32)
    return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)


class _LMTask(NetworkTask):
    """A network of int32 `batch["obs"]` (B, T) giving logits (B, T, vocab), trained on
    next-byte cross-entropy."""

    def __init__(self, datasets: Datasets, name: str | None) -> None:
        self.vocab_size = extra_info_of(datasets, "vocab_size", type(self).__name__)
        super().__init__(datasets, masked_token_cross_entropy, inputs="obs", name=name)

    def normalizer(self, loss: Any) -> jax.Array:
        # Next-byte prediction is classification over the vocabulary.
        return clipped_log_classes_normalizer(loss, self.vocab_size)


# -- recurrent cores ------------------------------------------------------------------------


class IRNN(hk.VanillaRNN):
    """A ReLU RNN whose hidden-to-hidden weights start at `gain` times the identity.

    `h_t = relu(W_x x_t + b_x + W_h h_{t-1} + b_h)`, with `W_h` initialised to
    `gain * I` (the input weights and biases keep haiku's defaults).

    Args:
      hidden_size: width of the hidden state.
      double_bias: whether the recurrent linear layer has its own bias too.
      gain: the multiple of the identity the recurrent weights start at.
      name: the module's name.

    References:
      Le, Jaitly and Hinton, "A Simple Way to Initialize Recurrent Networks of
      Rectified Linear Units", arXiv:1504.00941, 2015.
    """

    def __init__(
        self,
        hidden_size: int,
        double_bias: bool = True,
        gain: float = 1.0,
        name: str | None = None,
    ) -> None:
        super().__init__(hidden_size, double_bias=double_bias, name=name)
        self.gain = gain

    def __call__(self, inputs: jax.Array, prev_state: jax.Array) -> tuple[jax.Array, jax.Array]:
        from_input = hk.Linear(self.hidden_size)(inputs)
        recurrent = hk.Linear(
            self.hidden_size,
            with_bias=self.double_bias,
            w_init=hk.initializers.Identity(self.gain),
        )(prev_state)
        out = jax.nn.relu(from_input + recurrent)
        return out, out


#: The recurrent cores an RNN LM can use: name -> haiku core class (called with the width).
#: haiku's VanillaRNN is a ReLU RNN with haiku's default initialisation.
RNN_CORES: dict[str, type[hk.RNNCore]] = {
    "lstm": hk.LSTM,
    "gru": hk.GRU,
    "irnn": IRNN,
    "vanilla": hk.VanillaRNN,
}
#: How each core is spelled in task names (the reference's spelling).
CORE_LABELS = {"lstm": "LSTM", "gru": "GRU", "irnn": "IRNN", "vanilla": "VanillaRNN"}


def check_core(core: Any, owner: str) -> str:
    """Checks that `core` is a key of `RNN_CORES`; returns it."""
    return check_choice(core, owner, "core", tuple(RNN_CORES))


def _learned_initial_state(core: hk.RNNCore, batch_size: int) -> Any:
    template = core.initial_state(1)
    leaves, treedef = jax.tree_util.tree_flatten(template)
    learned = [
        hk.get_parameter(f"initial_state_{i}", leaf.shape, leaf.dtype, init=jnp.zeros)
        for i, leaf in enumerate(leaves)
    ]
    return jax.tree_util.tree_map(
        lambda x: jnp.tile(x, (batch_size,) + (1,) * (x.ndim - 1)),
        jax.tree_util.tree_unflatten(treedef, learned),
    )


def rnn_lm_unroll(
    obs: jax.Array,
    vocab_size: int,
    embed_size: int,
    rnn_size: int,
    core: str = "lstm",
    w_init: Any = None,
) -> tuple[jax.Array, Any]:
    """Embedding, one recurrent layer scanned from a learned initial state, linear head.

    Call inside `hk.transform`. `w_init` (haiku's defaults when None) initialises the
    embedding and the head; the core keeps its own initialisers.

    Returns:
      `(logits, final_state)`: logits (B, T, vocab_size) and the core's state after
      the last byte (for the LSTM an `hk.LSTMState` of two (B, rnn_size) arrays, for
      the others one (B, rnn_size) array).
    """
    x = hk.Embed(vocab_size, embed_size, w_init=w_init)(obs)
    rnn = RNN_CORES[core](rnn_size)
    out, state = hk.dynamic_unroll(
        rnn, x, _learned_initial_state(rnn, obs.shape[0]), time_major=False
    )
    return hk.Linear(vocab_size, w_init=w_init)(out), state


def _transformer_logits(
    obs: jax.Array,
    vocab_size: int,
    model_size: int,
    num_heads: int,
    num_layers: int,
    *,
    key_size: int | None = None,
    positions: bool = True,
    pad_mask: bool = False,
    dropout_rate: float = 0.0,
) -> jax.Array:
    """A causal pre-layer-norm Transformer's logits (B, T, vocab_size), inside hk.transform.

    `key_size` defaults to `model_size // num_heads`; `positions` adds learned position
    embeddings; `pad_mask` also hides keys whose byte is 0; dropout (on the attention
    and MLP outputs) draws from `hk.next_rng_key()`.
    """
    t = obs.shape[1]
    d = model_size
    init = hk.initializers.VarianceScaling(2.0 / num_layers)
    if positions:
        pos = hk.get_parameter(
            "position_embeddings", (t, d), init=hk.initializers.TruncatedNormal(0.02)
        )
    x = hk.Embed(vocab_size, d)(obs)
    if positions:
        x = x + pos[None]
    mask = jnp.tril(jnp.ones((1, 1, t, t), bool))
    if pad_mask:
        mask = mask & (obs != 0)[:, None, None, :]

    def dropout(h: jax.Array) -> jax.Array:
        return hk.dropout(hk.next_rng_key(), dropout_rate, h) if dropout_rate > 0 else h

    for _ in range(num_layers):
        h = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x)
        attention = hk.MultiHeadAttention(
            num_heads, key_size or d // num_heads, w_init=init, model_size=d
        )
        x = x + dropout(attention(h, h, h, mask=mask))
        h = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x)
        h = hk.Linear(4 * d, w_init=init)(h)
        x = x + dropout(hk.Linear(d, w_init=init)(jax.nn.gelu(h)))
    x = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x)
    return hk.Linear(vocab_size)(x)


# -- tasks ----------------------------------------------------------------------------------


class RNNLanguageModelTask(_LMTask):
    """A byte-level RNN language model: embedding, one recurrent layer (scanned), linear head.

    The core's initial state is learned. The loss is next-byte cross-entropy over the
    non-padding positions, as in the reference's `TeacherForcedRNNLM`.

    Args:
      datasets: byte-level LM Datasets (see `lopt_tasks.text`).
      embed_size: embedding width.
      rnn_size: the core's width.
      name: the task's name.
      core: the recurrent core, a key of `RNN_CORES`: "lstm" (`hk.LSTM`), "gru"
        (`hk.GRU`), "irnn" (`IRNN`: ReLU, identity-initialised recurrent weights) or
        "vanilla" (`hk.VanillaRNN`).
    """

    def __init__(
        self,
        datasets: Datasets,
        embed_size: int = 32,
        rnn_size: int = 64,
        name: str | None = None,
        *,
        core: str = "lstm",
    ) -> None:
        owner = type(self).__name__
        self.embed_size = check_positive_int(embed_size, owner, "embed_size")
        self.rnn_size = check_positive_int(rnn_size, owner, "rnn_size")
        self.core = check_core(core, owner)
        super().__init__(datasets, name)

    def _network(self, obs: jax.Array) -> jax.Array:
        logits, _ = rnn_lm_unroll(obs, self.vocab_size, self.embed_size, self.rnn_size, self.core)
        return logits


class LSTMLanguageModelTask(RNNLanguageModelTask):
    """A byte-level LSTM language model: `RNNLanguageModelTask` with `core="lstm"`.

    Args:
      datasets: byte-level LM Datasets (see `lopt_tasks.text`).
      embed_size: embedding width.
      rnn_size: LSTM width.
      name: the task's name.
    """

    def __init__(
        self, datasets: Datasets, embed_size: int = 32, rnn_size: int = 64, name: str | None = None
    ) -> None:
        super().__init__(datasets, embed_size, rnn_size, name, core="lstm")


class TransformerLanguageModelTask(_LMTask):
    """A small causal byte-level Transformer (pre-layer-norm, learned positions).

    Args:
      datasets: byte-level LM Datasets.
      model_size: residual width.
      num_heads: attention heads (model_size must divide evenly).
      num_layers: Transformer blocks.
      name: the task's name.

    References:
      Vaswani et al., "Attention Is All You Need", NeurIPS 2017, section 3.
    """

    def __init__(
        self,
        datasets: Datasets,
        model_size: int = 32,
        num_heads: int = 2,
        num_layers: int = 2,
        name: str | None = None,
    ) -> None:
        owner = type(self).__name__
        self.model_size = check_positive_int(model_size, owner, "model_size")
        self.num_heads = check_positive_int(num_heads, owner, "num_heads")
        self.num_layers = check_positive_int(num_layers, owner, "num_layers")
        if model_size % num_heads:
            raise ValueError(
                f"{owner}: model_size ({model_size}) must be divisible by num_heads "
                f"({num_heads}); choose a num_heads that divides it."
            )
        super().__init__(datasets, name)

    def _network(self, obs: jax.Array) -> jax.Array:
        return _transformer_logits(
            obs, self.vocab_size, self.model_size, self.num_heads, self.num_layers
        )


# -- families -------------------------------------------------------------------------------


def _family_vocab(datasets: Datasets, vocab_size: int | None, owner: str) -> tuple[int, Any]:
    """The family's vocabulary and loss: the dataset's, or a smaller folded one."""
    data_vocab = extra_info_of(datasets, "vocab_size", owner)
    if vocab_size is None or vocab_size >= data_vocab:
        vocab = data_vocab if vocab_size is None else vocab_size
        return check_positive_int(vocab, owner, "vocab_size"), masked_token_cross_entropy
    vocab = check_positive_int(vocab_size, owner, "vocab_size", minimum=2)
    return vocab, functools.partial(masked_token_cross_entropy, vocab_size=vocab)


class _LMFamily(_HaikuFamily):
    """A byte-level LM family; `vocab_size` below the dataset's folds the tokens into it."""

    input_key = "obs"

    def __init__(self, datasets: Datasets, vocab_size: int | None, name: str | None) -> None:
        vocab, loss_fn = _family_vocab(datasets, vocab_size, type(self).__name__)
        self.vocab_size = vocab
        # Tokens are folded only when the family's vocabulary is below the dataset's.
        self._fold = vocab if loss_fn is not masked_token_cross_entropy else None
        super().__init__(datasets, vocab, loss_fn, name)


class ParametricLMRNN(_LMFamily):
    """`RNNLanguageModelTask`s with a sampled weight initializer.

    The cfg is `{"initializer": {"index": int32, "init_scale": float32}}` (see
    `lopt_tasks.parametric.ParametricImageMLP`); it initializes the embedding and the
    head (the core keeps its own). The tasks' normalizer is the parametric
    classification one over the vocabulary.

    Args:
      datasets: byte-level LM Datasets with `extra_info["vocab_size"]`.
      rnn_size, embed_size: the core and embedding widths.
      name: the family's name.
      core: the recurrent core, a key of `RNN_CORES` ("lstm", "gru", "irnn", "vanilla").
      vocab_size: the model's vocabulary; None for the dataset's (256 bytes). A
        smaller one folds the higher tokens into it (`fold_vocab`), as the reference does.
    """

    def __init__(
        self,
        datasets: Datasets,
        rnn_size: int = 64,
        embed_size: int = 32,
        name: str | None = None,
        *,
        core: str = "lstm",
        vocab_size: int | None = None,
    ) -> None:
        owner = type(self).__name__
        self.rnn_size = check_positive_int(rnn_size, owner, "rnn_size")
        self.embed_size = check_positive_int(embed_size, owner, "embed_size")
        self.core = check_core(core, owner)
        super().__init__(datasets, vocab_size, name)

    def _forward(self, cfg: TaskCfg, inputs: jax.Array) -> jax.Array:
        w_init = SwitchedInitializer(cfg["initializer"])
        logits, _ = rnn_lm_unroll(
            fold_vocab(inputs, self._fold),
            self.vocab_size,
            self.embed_size,
            self.rnn_size,
            self.core,
            w_init,
        )
        return logits

    def sample(self, key: PRNGKey) -> TaskCfg:
        return {"initializer": sample_initializer(key)}


class ParametricLMTransformer(_LMFamily):
    """Causal Transformer LMs shaped like the reference's `ParametricLMTransformer`.

    The network follows the reference's: token embedding without position
    embeddings, `num_layers` pre-layer-norm blocks of causal self-attention
    (`num_heads` heads of `key_size` each, keys at padding bytes masked) and a
    4x GELU MLP, each followed by dropout, a final layer norm and a linear head.
    As in the reference, dropout is on whenever the loss is computed, and the cfg
    holds nothing (`sample` returns `{}`): every sample is the same task, and a
    distribution over tasks comes from the structure sampler `sample_lm_transformer`.

    Args:
      datasets: byte-level LM Datasets with `extra_info["vocab_size"]`.
      num_heads: attention heads.
      num_layers: Transformer blocks.
      d_model: residual width.
      dropout_rate: dropout on the attention and MLP outputs, in [0, 1).
      vocab_size: the model's vocabulary; None for the dataset's. A smaller one folds
        the higher tokens into it (`fold_vocab`).
      key_size: width of each attention head (the reference fixes it at 32).
      name: the family's name.
    """

    def __init__(
        self,
        datasets: Datasets,
        num_heads: int = 4,
        num_layers: int = 2,
        d_model: int = 32,
        dropout_rate: float = 0.1,
        vocab_size: int | None = None,
        key_size: int = 32,
        name: str | None = None,
    ) -> None:
        owner = type(self).__name__
        self.num_heads = check_positive_int(num_heads, owner, "num_heads")
        self.num_layers = check_positive_int(num_layers, owner, "num_layers")
        self.d_model = check_positive_int(d_model, owner, "d_model")
        self.key_size = check_positive_int(key_size, owner, "key_size")
        rate = float(check_nonnegative(dropout_rate, owner, "dropout_rate"))
        if rate >= 1.0:
            raise ValueError(
                f"{owner}: dropout_rate must be in [0, 1), got {dropout_rate!r}; use a "
                "smaller rate (0 turns dropout off)."
            )
        self.dropout_rate = rate
        super().__init__(datasets, vocab_size, name)

    def _forward(self, cfg: TaskCfg, inputs: jax.Array) -> jax.Array:
        del cfg  # the family samples no parameters, as the reference's
        return _transformer_logits(
            fold_vocab(inputs, self._fold),
            self.vocab_size,
            self.d_model,
            self.num_heads,
            self.num_layers,
            key_size=self.key_size,
            positions=False,
            pad_mask=True,
            dropout_rate=self.dropout_rate,
        )

    def sample(self, key: PRNGKey) -> TaskCfg:
        del key
        return {}


# -- named tasks and families ---------------------------------------------------------------


@CATALOG.task()
def LSTMLM_EmbeddedText_Embed32_LSTM64() -> LSTMLanguageModelTask:
    """A byte LSTM LM (embed 32, LSTM 64) on the embedded corpus, batch 16 x 32 bytes."""
    return LSTMLanguageModelTask(
        embedded_text_datasets(16, 32), 32, 64, name="LSTMLM_EmbeddedText_Embed32_LSTM64"
    )


@CATALOG.task()
def TransformerLM_EmbeddedText_2x32() -> TransformerLanguageModelTask:
    """A 2 layer, width 32 byte Transformer LM on the embedded corpus, batch 16 x 32 bytes."""
    return TransformerLanguageModelTask(
        embedded_text_datasets(16, 32), 32, 2, 2, name="TransformerLM_EmbeddedText_2x32"
    )


@CATALOG.task()
def LSTMLM_TinyShakespeare_Embed64_LSTM128() -> LSTMLanguageModelTask:
    """A byte LSTM LM (embed 64, LSTM 128) on TFDS tiny_shakespeare, batch 32 x 64 bytes."""
    return LSTMLanguageModelTask(
        tfds_text_datasets("tiny_shakespeare", 32, 64),
        64,
        128,
        name="LSTMLM_TinyShakespeare_Embed64_LSTM128",
    )


@CATALOG.task()
def TransformerLM_LM1B_Bytes_4x128() -> TransformerLanguageModelTask:
    """A 4 layer, width 128 byte Transformer LM on TFDS lm1b, batch 32 x 64 bytes."""
    return TransformerLanguageModelTask(
        tfds_text_datasets("lm1b", 32, 64), 128, 4, 4, name="TransformerLM_LM1B_Bytes_4x128"
    )


#: Text datasets the LM structure samplers and the named RNN LMs draw from:
#: name -> factory(batch, seq).
TEXT_DATASETS: dict[str, Any] = {
    "embedded": embedded_text_datasets,
    "tiny_shakespeare": functools.partial(tfds_text_datasets, "tiny_shakespeare"),
    "lm1b": functools.partial(tfds_text_datasets, "lm1b"),
}

# The reference's byte-level RNN LMs on lm1b (its `RNNLM_lm1bbytes_*`), one per
# core, named `RNNLM_lm1bbytes_Patch<seq>_<core><width>_Embed<embed>` as the reference
# names them. Its other shapes (longer patches, wider cores) and other corpora are
# `RNNLanguageModelTask(datasets, embed, width, core=...)` over any of TEXT_DATASETS;
# they are not registered, to keep the contract run short.
_RNNLM_DATASETS = (("lm1bbytes", "lm1b", "TFDS lm1b"),)
# (sequence length, core, core width, embedding width); batch 128 throughout.
_RNNLM_SHAPES = (
    (32, "irnn", 128, 64),
    (32, "lstm", 128, 64),
    (32, "gru", 128, 64),
    (32, "vanilla", 128, 64),
)
_RNNLM_BATCH = 128


def _declare_rnn_lm(label: str, dataset: str, where: str, shape: tuple[int, str, int, int]):
    seq, core, width, embed = shape
    name = f"RNNLM_{label}_Patch{seq}_{CORE_LABELS[core]}{width}_Embed{embed}"

    def factory() -> RNNLanguageModelTask:
        datasets = TEXT_DATASETS[dataset](_RNNLM_BATCH, seq)
        return RNNLanguageModelTask(datasets, embed, width, name=name, core=core)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (
        f"A byte {CORE_LABELS[core]} LM ({core} {width}, embed {embed}) on {where}, "
        f"batch {_RNNLM_BATCH} x {seq} bytes."
    )
    globals()[name] = CATALOG.task()(factory)


for _label, _dataset, _where in _RNNLM_DATASETS:
    for _shape in _RNNLM_SHAPES:
        _declare_rnn_lm(_label, _dataset, _where, _shape)
del _label, _dataset, _where, _shape


@CATALOG.task_family()
def LMRNNFamily_EmbeddedText() -> ParametricLMRNN:
    """ParametricLMRNN (LSTM 32, embed 16) on the embedded corpus, batch 8 x 16 bytes."""
    return ParametricLMRNN(embedded_text_datasets(8, 16), 32, 16, name="LMRNNFamily_EmbeddedText")


def _vocab_label(vocab_size: int | None) -> str:
    return "" if vocab_size is None else f"_V{vocab_size}"


def _sample_vocab(key: PRNGKey, vocab_range: tuple[int, int] | None, owner: str) -> int | None:
    if vocab_range is None:
        return None
    lo, hi = (check_positive_int(v, owner, "vocab_range", minimum=2) for v in vocab_range)
    if lo > hi:
        raise ValueError(
            f"{owner}: vocab_range {vocab_range!r} must be (low, high) with low <= high."
        )
    return log_uniform_int(key, lo, hi)


@dataclass(frozen=True)
class LMRNNFamilyConfig:
    """The structure of a sampled ParametricLMRNN; `make()` builds it (reading no data).

    Attributes:
      dataset: a key of `TEXT_DATASETS`.
      rnn_size, embed_size: core and embedding widths.
      batch_size, sequence_length: batch shape.
      core: a key of `RNN_CORES`.
      vocab_size: the model's vocabulary (None: the dataset's).
    """

    dataset: str
    rnn_size: int
    embed_size: int
    batch_size: int
    sequence_length: int
    core: str = "lstm"
    vocab_size: int | None = None

    def make(self) -> ParametricLMRNN:
        """Builds the family this config describes."""
        datasets = TEXT_DATASETS[self.dataset](self.batch_size, self.sequence_length)
        name = (
            f"ParametricLMRNN_{self.dataset}_bs{self.batch_size}_T{self.sequence_length}_"
            f"{CORE_LABELS[self.core]}{self.rnn_size}_Embed{self.embed_size}"
            f"{_vocab_label(self.vocab_size)}"
        )
        return ParametricLMRNN(
            datasets,
            self.rnn_size,
            self.embed_size,
            name=name,
            core=self.core,
            vocab_size=self.vocab_size,
        )


def sample_lm_rnn(
    key: PRNGKey,
    datasets: Sequence[str] = ("embedded",),
    *,
    cores: Sequence[str] = ("lstm",),
    vocab_range: tuple[int, int] | None = None,
) -> LMRNNFamilyConfig:
    """Samples a ParametricLMRNN structure like the reference's `sample_lm_rnn`.

    Core and embedding widths log-uniform in [8, 256], batch size log-uniform in
    [4, 512], sequence length log-uniform in [4, 128] (the reference goes to 512; the
    embedded corpus is small), dataset uniform over `datasets`, core uniform over
    `cores`. The reference draws its core from LSTM, vanilla RNN and GRU, but all
    three of its choices build `hk.LSTM`, so its default here is LSTM only; pass
    `cores=("lstm", "vanilla", "gru")` for the mix it names. The reference also draws
    a vocabulary log-uniformly in [100, 10000]: pass `vocab_range=(100, 10000)`
    (None keeps the dataset's 256 bytes). The widths, batch, length and dataset do
    not depend on `cores` or `vocab_range`.
    """
    names = check_names(datasets, TEXT_DATASETS, "text datasets")
    core_names = check_names(cores, RNN_CORES, "RNN cores")
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    k_core, k_vocab = jax.random.split(jax.random.fold_in(key, 1))
    return LMRNNFamilyConfig(
        choice(k5, names),
        log_uniform_int(k1, 8, 256),
        log_uniform_int(k2, 8, 256),
        log_uniform_int(k3, 4, 512),
        log_uniform_int(k4, 4, 128),
        choice(k_core, core_names),
        _sample_vocab(k_vocab, vocab_range, "sample_lm_rnn"),
    )


@CATALOG.task_family()
def SampledLMRNNFamily(
    seed: int = 0, datasets: Sequence[str] = ("embedded",), cores: Sequence[str] = ("lstm",)
) -> TaskFamily:
    """A byte-level ParametricLMRNN whose structure `sample_lm_rnn` draws from `seed`."""
    seed = check_positive_int(seed, "SampledLMRNNFamily", "seed", minimum=0)
    return sample_lm_rnn(jax.random.PRNGKey(seed), datasets, cores=cores).make()


#: Ranges (low, high) the Transformer structure sampler draws from, log-uniformly.
#: "reference" are the reference's (with sequences to 128, as `sample_lm_rnn`); it
#: rejects draws that its timing model predicts too slow, which lopt has no model
#: for, so "small" keeps models that train quickly on a CPU.
LM_TRANSFORMER_RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "reference": {
        "head_size": (8, 128),
        "num_heads": (8, 128),
        "num_layers": (1, 8),
        "batch_size": (4, 512),
        "sequence_length": (4, 128),
    },
    "small": {
        "head_size": (8, 32),
        "num_heads": (1, 4),
        "num_layers": (1, 3),
        "batch_size": (4, 64),
        "sequence_length": (4, 64),
    },
}


@dataclass(frozen=True)
class LMTransformerFamilyConfig:
    """The structure of a sampled ParametricLMTransformer; `make()` builds it.

    Attributes:
      dataset: a key of `TEXT_DATASETS`.
      num_heads, d_model, num_layers: the Transformer's shape.
      batch_size, sequence_length: batch shape.
      vocab_size: the model's vocabulary (None: the dataset's).
    """

    dataset: str
    num_heads: int
    d_model: int
    num_layers: int
    batch_size: int
    sequence_length: int
    vocab_size: int | None = None

    def make(self) -> ParametricLMTransformer:
        """Builds the family this config describes (reading no data)."""
        datasets = TEXT_DATASETS[self.dataset](self.batch_size, self.sequence_length)
        name = (
            f"ParametricLMTransformer_{self.dataset}_bs{self.batch_size}_"
            f"T{self.sequence_length}_L{self.num_layers}_H{self.num_heads}_D{self.d_model}"
            f"{_vocab_label(self.vocab_size)}"
        )
        return ParametricLMTransformer(
            datasets,
            self.num_heads,
            self.num_layers,
            self.d_model,
            vocab_size=self.vocab_size,
            name=name,
        )


def sample_lm_transformer(
    key: PRNGKey,
    datasets: Sequence[str] = ("embedded",),
    *,
    ranges: str = "reference",
    vocab_range: tuple[int, int] | None = None,
) -> LMTransformerFamilyConfig:
    """Samples a ParametricLMTransformer structure like the reference's `sample_lm_transformer`.

    Head size and head count log-uniform (d_model is their product), layers, batch
    size and sequence length log-uniform, each in `LM_TRANSFORMER_RANGES[ranges]`;
    dataset uniform over `datasets`. The reference also draws a vocabulary
    log-uniformly in [100, 10000]: pass `vocab_range=(100, 10000)` (None keeps the
    dataset's 256 bytes).
    """
    owner = "sample_lm_transformer"
    r = LM_TRANSFORMER_RANGES[check_choice(ranges, owner, "ranges", tuple(LM_TRANSFORMER_RANGES))]
    names = check_names(datasets, TEXT_DATASETS, "text datasets")
    keys = jax.random.split(key, 7)
    head_size = log_uniform_int(keys[0], *r["head_size"])
    num_heads = log_uniform_int(keys[1], *r["num_heads"])
    return LMTransformerFamilyConfig(
        dataset=choice(keys[5], names),
        num_heads=num_heads,
        d_model=num_heads * head_size,
        num_layers=log_uniform_int(keys[2], *r["num_layers"]),
        batch_size=log_uniform_int(keys[3], *r["batch_size"]),
        sequence_length=log_uniform_int(keys[4], *r["sequence_length"]),
        vocab_size=_sample_vocab(keys[6], vocab_range, owner),
    )


@CATALOG.task_family()
def SampledLMTransformerFamily(
    seed: int = 0, datasets: Sequence[str] = ("embedded",), ranges: str = "small"
) -> TaskFamily:
    """A byte-level ParametricLMTransformer whose structure `sample_lm_transformer` draws."""
    seed = check_positive_int(seed, "SampledLMTransformerFamily", "seed", minimum=0)
    return sample_lm_transformer(jax.random.PRNGKey(seed), datasets, ranges=ranges).make()
