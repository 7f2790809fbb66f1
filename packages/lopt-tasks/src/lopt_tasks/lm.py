"""Byte-level language-model tasks: an LSTM and a small Transformer, plus ParametricLMRNN."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp

from lopt_core import Datasets, TaskFamily
from lopt_core.typing import Batch, PRNGKey, TaskCfg
from lopt_core.validation import check_positive_int
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


def masked_token_cross_entropy(logits: jax.Array, data: Batch) -> jax.Array:
    """Mean next-byte cross-entropy over positions whose input byte is not 0 (padding)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(log_probs, data["target"][..., None], axis=-1)[..., 0]
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


def _lstm_logits(
    obs: jax.Array, vocab_size: int, embed_size: int, rnn_size: int, w_init: Any = None
) -> jax.Array:
    """Embedding, one LSTM layer scanned from a learned initial state, linear head."""
    x = hk.Embed(vocab_size, embed_size, w_init=w_init)(obs)
    core = hk.LSTM(rnn_size)
    out, _ = hk.dynamic_unroll(
        core, x, _learned_initial_state(core, obs.shape[0]), time_major=False
    )
    return hk.Linear(vocab_size, w_init=w_init)(out)


class LSTMLanguageModelTask(_LMTask):
    """A byte-level LSTM language model: embedding, one LSTM layer (scanned), linear head.

    The initial LSTM state is learned. The loss is next-byte cross-entropy.

    Args:
      datasets: byte-level LM Datasets (see `lopt_tasks.text`).
      embed_size: embedding width.
      rnn_size: LSTM width.
      name: the task's name.
    """

    def __init__(
        self, datasets: Datasets, embed_size: int = 32, rnn_size: int = 64, name: str | None = None
    ) -> None:
        owner = type(self).__name__
        self.embed_size = check_positive_int(embed_size, owner, "embed_size")
        self.rnn_size = check_positive_int(rnn_size, owner, "rnn_size")
        super().__init__(datasets, name)

    def _network(self, obs: jax.Array) -> jax.Array:
        return _lstm_logits(obs, self.vocab_size, self.embed_size, self.rnn_size)


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
        t = obs.shape[1]
        d = self.model_size
        init = hk.initializers.VarianceScaling(2.0 / self.num_layers)
        pos = hk.get_parameter(
            "position_embeddings", (t, d), init=hk.initializers.TruncatedNormal(0.02)
        )
        x = hk.Embed(self.vocab_size, d)(obs) + pos[None]
        mask = jnp.tril(jnp.ones((1, 1, t, t), bool))
        for _ in range(self.num_layers):
            h = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x)
            x = x + hk.MultiHeadAttention(self.num_heads, d // self.num_heads, w_init=init)(
                h, h, h, mask=mask
            )
            h = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x)
            h = hk.Linear(4 * d, w_init=init)(h)
            x = x + hk.Linear(d, w_init=init)(jax.nn.gelu(h))
        x = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x)
        return hk.Linear(self.vocab_size)(x)


class ParametricLMRNN(_HaikuFamily):
    """`LSTMLanguageModelTask`s with a sampled weight initializer.

    The cfg is `{"initializer": {"index": int32, "init_scale": float32}}` (see
    `lopt_tasks.parametric.ParametricImageMLP`); it initializes the embedding and the
    head. The tasks' normalizer is the parametric classification one over the bytes.

    Args:
      datasets: byte-level LM Datasets with `extra_info["vocab_size"]`.
      rnn_size, embed_size: the LSTM and embedding widths.
      name: the family's name.
    """

    input_key = "obs"

    def __init__(
        self, datasets: Datasets, rnn_size: int = 64, embed_size: int = 32, name: str | None = None
    ) -> None:
        owner = type(self).__name__
        self.vocab_size = extra_info_of(datasets, "vocab_size", owner)
        self.rnn_size = check_positive_int(rnn_size, owner, "rnn_size")
        self.embed_size = check_positive_int(embed_size, owner, "embed_size")
        super().__init__(datasets, self.vocab_size, masked_token_cross_entropy, name)

    def _forward(self, cfg: TaskCfg, inputs: jax.Array) -> jax.Array:
        w_init = SwitchedInitializer(cfg["initializer"])
        return _lstm_logits(inputs, self.vocab_size, self.embed_size, self.rnn_size, w_init)

    def sample(self, key: PRNGKey) -> TaskCfg:
        return {"initializer": sample_initializer(key)}


# -- named tasks and families -------------------------------------------------------------


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


@CATALOG.task_family()
def LMRNNFamily_EmbeddedText() -> ParametricLMRNN:
    """ParametricLMRNN (LSTM 32, embed 16) on the embedded corpus, batch 8 x 16 bytes."""
    return ParametricLMRNN(embedded_text_datasets(8, 16), 32, 16, name="LMRNNFamily_EmbeddedText")


#: Text datasets the LM structure sampler draws from: name -> factory(batch, seq).
TEXT_DATASETS: dict[str, Any] = {
    "embedded": embedded_text_datasets,
    "tiny_shakespeare": lambda b, t: tfds_text_datasets("tiny_shakespeare", b, t),
    "lm1b": lambda b, t: tfds_text_datasets("lm1b", b, t),
}


@dataclass(frozen=True)
class LMRNNFamilyConfig:
    """The structure of a sampled ParametricLMRNN; `make()` builds it (reading no data).

    Attributes:
      dataset: a key of `TEXT_DATASETS`.
      rnn_size, embed_size: LSTM and embedding widths.
      batch_size, sequence_length: batch shape.
    """

    dataset: str
    rnn_size: int
    embed_size: int
    batch_size: int
    sequence_length: int

    def make(self) -> ParametricLMRNN:
        """Builds the family this config describes."""
        datasets = TEXT_DATASETS[self.dataset](self.batch_size, self.sequence_length)
        name = (
            f"ParametricLMRNN_{self.dataset}_bs{self.batch_size}_T{self.sequence_length}_"
            f"LSTM{self.rnn_size}_Embed{self.embed_size}"
        )
        return ParametricLMRNN(datasets, self.rnn_size, self.embed_size, name=name)


def sample_lm_rnn(key: PRNGKey, datasets: Sequence[str] = ("embedded",)) -> LMRNNFamilyConfig:
    """Samples a ParametricLMRNN structure like the reference's `sample_lm_rnn`.

    LSTM and embedding widths log-uniform in [8, 256], batch size log-uniform in
    [4, 512], sequence length log-uniform in [4, 128] (the reference goes to 512; the
    embedded corpus is small), dataset uniform over `datasets`.
    """
    names = check_names(datasets, TEXT_DATASETS, "text datasets")
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    return LMRNNFamilyConfig(
        choice(k5, names),
        log_uniform_int(k1, 8, 256),
        log_uniform_int(k2, 8, 256),
        log_uniform_int(k3, 4, 512),
        log_uniform_int(k4, 4, 128),
    )


@CATALOG.task_family()
def SampledLMRNNFamily(seed: int = 0, datasets: Sequence[str] = ("embedded",)) -> TaskFamily:
    """A byte-level ParametricLMRNN whose structure `sample_lm_rnn` draws from `seed`."""
    seed = check_positive_int(seed, "SampledLMRNNFamily", "seed", minimum=0)
    return sample_lm_rnn(jax.random.PRNGKey(seed), datasets).make()
