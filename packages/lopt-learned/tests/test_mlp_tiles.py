"""`mlp_apply` on CPU runs columns in tiles of `MLP_TILE`: the same numbers as one product."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt_learned._common import MLP_TILE, MLP_TILE_MIN_WIDTH, _mlp_columns, _mlp_tiled, mlp_apply


def _layers(key, sizes):
    keys = jax.random.split(key, 2 * (len(sizes) - 1))
    return [
        (
            jax.random.normal(keys[2 * i], (sizes[i], sizes[i + 1])) * 0.3,
            jax.random.normal(keys[2 * i + 1], (sizes[i + 1],)) * 0.1,
        )
        for i in range(len(sizes) - 1)
    ]


@pytest.mark.parametrize("n", [MLP_TILE, MLP_TILE + 1, 2410, 4 * MLP_TILE])
@pytest.mark.parametrize("per_column_bias", [False, True])
def test_tiles_give_the_one_product_numbers(n, per_column_bias):
    layers = _layers(jax.random.key(0), [28, 32, 32, 2])
    x = jax.random.normal(jax.random.key(1), (28, n))
    bias = (
        jax.random.normal(jax.random.key(2), (32, n)) if per_column_bias else layers[0][1][:, None]
    )
    tiled = jax.jit(_mlp_tiled)(layers, x, bias)
    whole = jax.jit(_mlp_columns)(layers, x, bias)
    assert tiled.shape == (2, n)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-6)
    public = jax.jit(mlp_apply)(layers, x, bias if per_column_bias else None)
    np.testing.assert_allclose(public, whole, rtol=1e-5, atol=1e-6)


def test_gradients_through_the_tiles_match():
    layers = _layers(jax.random.key(3), [5, 8, 1])
    x = jax.random.normal(jax.random.key(4), (5, 2 * MLP_TILE + 7))

    def loss(fn, layers):
        return jnp.sum(fn(layers, x, layers[0][1][:, None]) ** 2)

    g_tiled = jax.grad(lambda p: loss(_mlp_tiled, p))(layers)
    g_whole = jax.grad(lambda p: loss(_mlp_columns, p))(layers)
    for a, b in zip(jax.tree.leaves(g_tiled), jax.tree.leaves(g_whole), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("sizes", "n", "tiles"),
    [
        ([3, MLP_TILE_MIN_WIDTH, 1], MLP_TILE + 1, True),
        ([3, 8, MLP_TILE_MIN_WIDTH, 2], MLP_TILE + 1, True),
        ([3, MLP_TILE_MIN_WIDTH, 1], MLP_TILE, False),
        ([3, MLP_TILE_MIN_WIDTH - 1, 1], 4 * MLP_TILE, False),  # narrow: Celo2's 8, Adafac's 4
        ([3, 8, 8, 3], 200 * MLP_TILE, False),
        ([3, 1], 4 * MLP_TILE, False),  # no hidden layer
    ],
)
def test_cpu_tiles_only_wide_networks_on_many_columns(sizes, n, tiles):
    layers = _layers(jax.random.key(5), sizes)
    jaxpr = str(jax.make_jaxpr(lambda x: mlp_apply(layers, x))(jnp.ones((3, n))))
    assert ("platform_index" in jaxpr) is tiles
    assert ("scan" in jaxpr) is tiles
