"""Sampled activations and initializers whose choice is an array, so cfgs can be vmapped.

A family's cfg holds small integer indices and floats. The network picks the
activation and the initializer with `lax.switch` on those indices, so one traced
program serves every sample, and `jax.vmap` over cfgs vectorizes tasks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lopt_core import PRNGKey

#: The activations a family samples from, as in the reference's SampleActivation
#: (ReLU twice, so it is drawn more often).
ACTIVATIONS: tuple[Callable[[jax.Array], jax.Array], ...] = (
    jax.nn.relu,
    jax.nn.relu,
    jax.nn.relu6,
    jax.nn.selu,
    jnp.tanh,
    jnp.cos,
    jnp.sin,
    jax.nn.sigmoid,
    jax.nn.silu,
    jax.nn.swish,
    jax.nn.gelu,
    functools.partial(jax.nn.leaky_relu, negative_slope=-0.5),
)


def sample_activation(key: PRNGKey) -> jax.Array:
    """An int32 index into `ACTIVATIONS`, uniform."""
    return jax.random.randint(key, (), 0, len(ACTIVATIONS))


# Distinct functions of ACTIVATIONS (ReLU is listed twice and swish is silu), and the
# map from a sampled index to them. Under vmap with a batched index, lax.switch
# evaluates every branch, so duplicates would cost a full extra activation each.
_UNIQUE_ACTIVATIONS: tuple[Callable[[jax.Array], jax.Array], ...] = tuple(
    dict.fromkeys(ACTIVATIONS)
)
_TO_UNIQUE = np.asarray([_UNIQUE_ACTIVATIONS.index(f) for f in ACTIVATIONS], np.int32)


def switched_activation(index: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """The activation `ACTIVATIONS[index]` for a (possibly traced) `index`."""

    def act(x: jax.Array) -> jax.Array:
        return lax.switch(jnp.asarray(_TO_UNIQUE)[index], _UNIQUE_ACTIVATIONS, x)

    return act


def _fans(shape: tuple[int, ...]) -> tuple[float, float]:
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    receptive = float(np.prod(shape[:-2])) if len(shape) > 2 else 1.0
    return shape[-2] * receptive, shape[-1] * receptive


def _orthonormalize(a: jax.Array) -> jax.Array:
    """The Q of `a`'s QR decomposition with R's diagonal positive, for a tall `a` of full rank.

    Gram-Schmidt, each column orthogonalised twice against the earlier ones (which
    is as accurate as Householder QR in float32), in plain lax ops. Not
    `jnp.linalg.qr`: on XLA:CPU (jaxlib 0.10) its LAPACK custom call hung, at 0% CPU,
    inside a vmapped program that initialised two sampled networks (a mixture's
    relative-normalised autoencoder family), so initialisers use no LAPACK.
    """
    cols = a.shape[1]

    def column(j: jax.Array, q: jax.Array) -> jax.Array:
        v = lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)
        earlier = (jnp.arange(cols) < j).astype(a.dtype)
        for _ in range(2):
            v = v - q @ ((q.T @ v) * earlier)
        return lax.dynamic_update_index_in_dim(q, v / jnp.linalg.norm(v), j, axis=1)

    return lax.fori_loop(0, cols, column, jnp.zeros_like(a))


def _orthogonal(shape, dtype, key, scale):
    if len(shape) < 2:
        return _variance_scaling(shape, dtype, key, scale, "normal")
    rows = int(np.prod(shape[:-1]))
    cols = shape[-1]
    big, small = max(rows, cols), min(rows, cols)
    q = _orthonormalize(jax.random.normal(key, (big, small), dtype).astype(jnp.float32))
    if rows < cols:
        q = q.T
    return scale * q.reshape(shape).astype(dtype)


def _uniform_scaling(shape, dtype, key, scale):
    fan_in = float(np.prod(shape[:-1])) if len(shape) > 1 else float(shape[0]) if shape else 1.0
    limit = scale * np.sqrt(3.0 / fan_in)
    return jax.random.uniform(key, shape, dtype, -limit, limit)


def _variance_scaling(shape, dtype, key, scale, distribution):
    fan_in, _ = _fans(shape)
    var = scale / max(1.0, fan_in)
    if distribution == "truncated_normal":
        # 0.8796...: standard deviation of a unit normal truncated to [-2, 2].
        std = jnp.sqrt(var) / 0.87962566103423978
        return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)
    if distribution == "normal":
        return jnp.sqrt(var) * jax.random.normal(key, shape, dtype)
    limit = jnp.sqrt(3.0 * var)
    return jax.random.uniform(key, shape, dtype, -limit, limit)


INITIALIZERS: tuple[Callable[..., jax.Array], ...] = (
    _orthogonal,
    _uniform_scaling,
    functools.partial(_variance_scaling, distribution="truncated_normal"),
    functools.partial(_variance_scaling, distribution="normal"),
    functools.partial(_variance_scaling, distribution="uniform"),
)


def sample_initializer(key: PRNGKey) -> dict[str, jax.Array]:
    """`{"index": int32 into INITIALIZERS, "init_scale": float32 uniform in [0.5, 2]}`."""
    k1, k2 = jax.random.split(key)
    return {
        "index": jax.random.randint(k1, (), 0, len(INITIALIZERS)),
        "init_scale": jax.random.uniform(k2, (), jnp.float32, 0.5, 2.0),
    }


class SwitchedInitializer(hk.initializers.Initializer):
    """A haiku initializer choosing among `INITIALIZERS` with `lax.switch` on `cfg["index"]`."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg

    def __call__(self, shape, dtype) -> jax.Array:
        key = hk.next_rng_key()
        shape = tuple(shape)
        branches = [
            functools.partial(fn, shape, dtype, key)
            for fn in INITIALIZERS  # each branch: scale -> array
        ]
        return lax.switch(self.cfg["index"], branches, self.cfg["init_scale"])


def log_uniform_int(key: PRNGKey, lower: int, upper: int) -> int:
    """A Python int drawn log-uniformly in [lower, upper] (a static structure choice)."""
    val = jax.random.uniform(key, (), minval=np.log(lower), maxval=np.log(upper))
    return int(np.clip(np.round(np.exp(np.asarray(val))), lower, upper))


def choice(key: PRNGKey, values: Any) -> Any:
    """One of `values`, uniformly (a static structure choice)."""
    values = list(values)
    return values[int(jax.random.randint(key, (), 0, len(values)))]


def check_names(names: Sequence[str], known: Collection[str], what: str) -> tuple[str, ...]:
    """`names` sorted (so a draw with `choice` does not depend on their order).

    Raises:
      ValueError: `names` is empty or holds a name not in `known`.
    """
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        raise ValueError(
            f"Unknown {what} {unknown} (or none given); choose from {', '.join(sorted(known))}."
        )
    return tuple(sorted(names))
