"""Losses and normalizers shared by the classification tasks."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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
