"""Losses and normalizers shared by the classification tasks."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lopt_core import Batch, Datasets, ModelState, Params, PRNGKey, Task


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of `logits` (B, K) against int `labels` (B,)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(log_probs, labels.astype(jnp.int32)[:, None], axis=-1)
    return -jnp.mean(picked)


def clipped_log_classes_normalizer(loss: Any, num_classes: int) -> jax.Array:
    """Clips a classification loss to [0, 1.5 log K]; NaN and +-inf map to that maximum."""
    maxval = 1.5 * float(np.log(num_classes))
    loss = jnp.clip(loss, 0.0, maxval)
    return jnp.nan_to_num(loss, nan=maxval, posinf=maxval, neginf=maxval)


def ones_like_abstract(abstract: Any) -> Any:
    """A batch of ones shaped like an abstract batch (for shape-only initialization)."""
    return jax.tree_util.tree_map(lambda s: jnp.ones(s.shape, s.dtype), abstract)


ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "sigmoid": jax.nn.sigmoid,
    "elu": jax.nn.elu,
}


def activation(name_or_fn: Any) -> Any:
    """An activation function from its name (see `ACTIVATIONS`) or a callable."""
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {name_or_fn!r}; expected a callable or one of "
            f"{', '.join(sorted(ACTIVATIONS))}."
        )
    return ACTIVATIONS[name_or_fn]


def jit_transformed(mod: Any) -> Any:
    """A haiku Transformed / TransformedWithState whose init and apply are jitted.

    Eager calls (e.g. `task.init(key)` outside `jit`) then compile once instead of
    dispatching op by op; inside an outer `jit` or `vmap` the inner jit is inlined.
    """
    return type(mod)(jax.jit(mod.init), jax.jit(mod.apply))


def num_classes_of(datasets: Datasets) -> int:
    """`datasets.extra_info["num_classes"]`, with an error that says what is missing."""
    if "num_classes" not in datasets.extra_info:
        raise ValueError(
            "Image classification tasks need datasets.extra_info['num_classes']; the given "
            f"Datasets has extra_info keys {sorted(datasets.extra_info)}."
        )
    return int(datasets.extra_info["num_classes"])


def abstract_batch_of(datasets: Datasets) -> Any:
    """`datasets.abstract_batch`, with an error when there is none to initialize from."""
    if datasets.abstract_batch is None:
        raise ValueError(
            "Image tasks initialize from datasets.abstract_batch, which is None; pass "
            "abstract_batch to Datasets or use splits that provide one."
        )
    return datasets.abstract_batch


class StatefulImageClassifier(Task):
    """An image classifier from `hk.transform_with_state`; haiku state is model state.

    Subclasses set `self._mod` (a jitted TransformedWithState of the images),
    `self._stateful` (whether the network keeps state, e.g. batch-norm statistics),
    and call `_setup_data`.
    """

    _mod: Any
    _stateful: bool

    def _setup_data(self, datasets: Datasets) -> None:
        self.datasets = datasets
        self.num_classes = num_classes_of(datasets)
        self._abstract = abstract_batch_of(datasets)

    def init_with_state(self, key: PRNGKey) -> tuple[Params, ModelState]:
        params, state = self._mod.init(key, ones_like_abstract(self._abstract)["image"])
        return params, (state if state else None)

    def init(self, key: PRNGKey) -> Params:
        return self.init_with_state(key)[0]

    def loss_with_state(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[jax.Array, ModelState]:
        logits, new_state = self._mod.apply(params, state or {}, key, data["image"])
        return softmax_cross_entropy(logits, data["label"]), (new_state if new_state else None)

    def loss(self, params: Params, key: PRNGKey, data: Batch) -> jax.Array:
        if self._stateful:
            raise ValueError(
                f"{self.name} keeps batch-norm statistics as model state; call "
                "loss_with_state(params, state, key, data) instead of loss()."
            )
        return self.loss_with_state(params, None, key, data)[0]

    def normalizer(self, loss: Any) -> jax.Array:
        return clipped_log_classes_normalizer(loss, self.num_classes)
