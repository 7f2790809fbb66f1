"""Shared test helpers: a tiny softmax-regression Task on synthetic data (no lopt-tasks needed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core


class TinyClassification(lopt_core.Task):
    """10-class softmax regression on 16 Gaussian features labelled by a random teacher."""

    def __init__(self, batch_size: int = 128) -> None:
        rng = np.random.RandomState(0)
        x = rng.randn(1024, 16).astype(np.float32)
        y = np.argmax(x @ rng.randn(16, 10), axis=1).astype(np.int32)
        splits = [
            lopt_core.ArraySplit({"image": x, "label": y}, batch_size, seed=s) for s in range(4)
        ]
        self.datasets = lopt_core.Datasets(*splits)

    def init(self, key):
        return {"w": 0.01 * jax.random.normal(key, (16, 10)), "b": jnp.zeros((10,))}

    def loss(self, params, key, data):
        del key
        logits = data["image"] @ params["w"] + params["b"]
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, data["label"][:, None], axis=1))


@pytest.fixture
def tiny_task() -> TinyClassification:
    """A fresh TinyClassification task."""
    return TinyClassification()
