"""Byte-level language-model tasks: an LSTM and a small Transformer, plus ParametricLMRNN."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp

from lopt_core import Batch, Datasets, Params, PRNGKey, Task, TaskCfg, TaskFamily
from lopt_tasks._common import clipped_log_classes_normalizer, jit_transformed, ones_like_abstract
from lopt_tasks._sampling import (
    SwitchedInitializer,
    check_names,
    choice,
    log_uniform_int,
    sample_initializer,
)
from lopt_tasks.parametric import parametric_classification_normalizer
from lopt_tasks.text import embedded_text_datasets, tfds_text_datasets


def masked_token_cross_entropy(logits: jax.Array, data: Batch) -> jax.Array:
    """Mean next-byte cross-entropy over positions whose input byte is not 0 (padding)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(log_probs, data["target"][..., None], axis=-1)[..., 0]
    mask = (data["obs"] != 0).astype(jnp.float32)
    return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)


class _LMTask(Task, abc.ABC):
    def __init__(self, datasets: Datasets, name: str | None) -> None:
        if datasets.abstract_batch is None or "vocab_size" not in datasets.extra_info:
            raise ValueError(
                "Language-model tasks need datasets with abstract_batch {'obs', 'target'} "
                "and extra_info['vocab_size']."
            )
        self.datasets = datasets
        self.vocab_size = int(datasets.extra_info["vocab_size"])
        self._abstract = datasets.abstract_batch
        self._name = name
        self._mod = jit_transformed(hk.transform(self._forward))

    @abc.abstractmethod
    def _forward(self, obs: jax.Array) -> jax.Array:
        """Logits (B, T, vocab) for int32 `obs` (B, T), inside hk.transform."""

    def init(self, key: PRNGKey) -> Params:
        return self._mod.init(key, ones_like_abstract(self._abstract)["obs"])

    def loss(self, params: Params, key: PRNGKey, data: Batch) -> jax.Array:
        return masked_token_cross_entropy(self._mod.apply(params, key, data["obs"]), data)

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
        self.embed_size, self.rnn_size = int(embed_size), int(rnn_size)
        super().__init__(datasets, name)

    def _forward(self, obs: jax.Array) -> jax.Array:
        x = hk.Embed(self.vocab_size, self.embed_size)(obs)
        core = hk.LSTM(self.rnn_size)
        out, _ = hk.dynamic_unroll(
            core, x, _learned_initial_state(core, obs.shape[0]), time_major=False
        )
        return hk.Linear(self.vocab_size)(out)


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
        if model_size % num_heads:
            raise ValueError(
                f"model_size ({model_size}) must be divisible by num_heads ({num_heads})."
            )
        self.model_size, self.num_heads, self.num_layers = model_size, num_heads, num_layers
        super().__init__(datasets, name)

    def _forward(self, obs: jax.Array) -> jax.Array:
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


class _ParametricLMRNNTask(Task):
    def __init__(self, family: ParametricLMRNN, cfg: TaskCfg) -> None:
        self.datasets = family.datasets
        self.family, self.cfg = family, cfg
        self._name = f"{family.name}_sample"

    def init(self, key: PRNGKey) -> Params:
        return self.family._init_jit(self.cfg, key)

    def loss(self, params: Params, key: PRNGKey, data: Batch) -> jax.Array:
        logits = self.family._apply_jit(self.cfg, params, key, data["obs"])
        return masked_token_cross_entropy(logits, data)

    def normalizer(self, loss: Any) -> jax.Array:
        return parametric_classification_normalizer(loss, self.family.vocab_size)


class ParametricLMRNN(TaskFamily):
    """Byte-level LSTM language models with a sampled weight initializer.

    The cfg is `{"initializer": {"index": int32, "init_scale": float32}}` (see
    `lopt_tasks.parametric.ParametricImageMLP`); the initial state is learned.

    Args:
      datasets: byte-level LM Datasets with `extra_info["vocab_size"]`.
      rnn_size: LSTM width.
      embed_size: embedding width.
      name: the family's name.
    """

    def __init__(
        self, datasets: Datasets, rnn_size: int = 64, embed_size: int = 32, name: str | None = None
    ) -> None:
        if datasets.abstract_batch is None or "vocab_size" not in datasets.extra_info:
            raise ValueError(
                "ParametricLMRNN needs datasets with abstract_batch and extra_info['vocab_size']."
            )
        self.datasets = datasets
        self.vocab_size = int(datasets.extra_info["vocab_size"])
        self.rnn_size, self.embed_size = int(rnn_size), int(embed_size)
        self._name = name
        obs_spec = datasets.abstract_batch["obs"]

        def forward(cfg: TaskCfg, obs: jax.Array) -> jax.Array:
            w_init = SwitchedInitializer(cfg["initializer"])
            x = hk.Embed(self.vocab_size, self.embed_size, w_init=w_init)(obs)
            core = hk.LSTM(self.rnn_size)
            out, _ = hk.dynamic_unroll(
                core, x, _learned_initial_state(core, obs.shape[0]), time_major=False
            )
            return hk.Linear(self.vocab_size, w_init=w_init)(out)

        def init(cfg: TaskCfg, key: PRNGKey) -> Params:
            obs = jnp.ones(obs_spec.shape, obs_spec.dtype)
            return hk.transform(lambda o: forward(cfg, o)).init(key, obs)

        def apply(cfg: TaskCfg, params: Params, key: PRNGKey, obs: jax.Array) -> jax.Array:
            return hk.transform(lambda o: forward(cfg, o)).apply(params, key, obs)

        self._init_jit = jax.jit(init)
        self._apply_jit = jax.jit(apply)

    def sample(self, key: PRNGKey) -> TaskCfg:
        return {"initializer": sample_initializer(key)}

    def task_fn(self, cfg: TaskCfg) -> Task:
        return _ParametricLMRNNTask(self, cfg)


# -- named tasks and families -------------------------------------------------------------


def LSTMLM_EmbeddedText_Embed32_LSTM64() -> LSTMLanguageModelTask:
    """A byte LSTM LM (embed 32, LSTM 64) on the embedded corpus, batch 16 x 32 bytes."""
    return LSTMLanguageModelTask(
        embedded_text_datasets(16, 32), 32, 64, name="LSTMLM_EmbeddedText_Embed32_LSTM64"
    )


def TransformerLM_EmbeddedText_2x32() -> TransformerLanguageModelTask:
    """A 2 layer, width 32 byte Transformer LM on the embedded corpus, batch 16 x 32 bytes."""
    return TransformerLanguageModelTask(
        embedded_text_datasets(16, 32), 32, 2, 2, name="TransformerLM_EmbeddedText_2x32"
    )


def LSTMLM_TinyShakespeare_Embed64_LSTM128() -> LSTMLanguageModelTask:
    """A byte LSTM LM (embed 64, LSTM 128) on TFDS tiny_shakespeare, batch 32 x 64 bytes."""
    return LSTMLanguageModelTask(
        tfds_text_datasets("tiny_shakespeare", 32, 64),
        64,
        128,
        name="LSTMLM_TinyShakespeare_Embed64_LSTM128",
    )


def TransformerLM_LM1B_Bytes_4x128() -> TransformerLanguageModelTask:
    """A 4 layer, width 128 byte Transformer LM on TFDS lm1b, batch 32 x 64 bytes."""
    return TransformerLanguageModelTask(
        tfds_text_datasets("lm1b", 32, 64), 128, 4, 4, name="TransformerLM_LM1B_Bytes_4x128"
    )


def LMRNNFamily_EmbeddedText() -> ParametricLMRNN:
    """ParametricLMRNN (LSTM 32, embed 16) on the embedded corpus, batch 8 x 16 bytes."""
    return ParametricLMRNN(embedded_text_datasets(8, 16), 32, 16, name="LMRNNFamily_EmbeddedText")


NAMED_TASKS = [
    LSTMLM_EmbeddedText_Embed32_LSTM64,
    TransformerLM_EmbeddedText_2x32,
    LSTMLM_TinyShakespeare_Embed64_LSTM128,
    TransformerLM_LM1B_Bytes_4x128,
]


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


def SampledLMRNNFamily(seed: int = 0, datasets: Sequence[str] = ("embedded",)) -> TaskFamily:
    """A byte-level ParametricLMRNN whose structure `sample_lm_rnn` draws from `seed`."""
    return sample_lm_rnn(jax.random.PRNGKey(seed), datasets).make()
