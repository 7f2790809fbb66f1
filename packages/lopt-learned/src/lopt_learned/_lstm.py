"""The LSTMs and linear heads of the per-tensor learned optimizers, with haiku's names.

`NNAdam` and `RNNMLPLOpt` run one `hk.LSTM` over every tensor of the parameters
(a batch of one sequence per tensor) and read its output through `hk.Linear`
heads. theta holds haiku's weights; the LSTM state is a plain dict
`{"hidden", "cell"}`.
"""

from __future__ import annotations

from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp

from lopt_learned._common import F32


def initial_state(hidden_size: int) -> dict[str, jax.Array]:
    """The zero LSTM state for one sequence, as a dict `{"hidden", "cell"}` of `(1, H)`."""
    return {"hidden": jnp.zeros([1, hidden_size], F32), "cell": jnp.zeros([1, hidden_size], F32)}


def tile_state(state: dict[str, jax.Array], n: int) -> dict[str, jax.Array]:
    """Repeats a `(1, H)` LSTM state for `n` sequences: `(n, H)` each."""
    return {k: jnp.tile(v, (n, 1)) for k, v in state.items()}


def apply(
    params: dict[str, dict[str, jax.Array]],
    x: jax.Array,
    state: dict[str, jax.Array],
    hidden_size: int,
    name: str = "rnn",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One step of `hk.LSTM(hidden_size, name=name)` given its weights.

    Returns:
      `(output (batch, H), next state {"hidden", "cell"})`.
    """
    net = _net(hidden_size, name)
    out, nxt = net.apply(params, x, hk.LSTMState(state["hidden"], state["cell"]))
    return out, {"hidden": nxt.hidden, "cell": nxt.cell}


def init_params(
    key: jax.Array, in_features: int, hidden_size: int, name: str = "rnn"
) -> dict[str, dict[str, jax.Array]]:
    """Initial weights of `hk.LSTM(hidden_size, name=name)` on `in_features` inputs."""
    net = _net(hidden_size, name)
    zero = initial_state(hidden_size)
    return net.init(
        key, jnp.zeros([1, in_features], F32), hk.LSTMState(zero["hidden"], zero["cell"])
    )


_NETS: dict[tuple[int, str], Any] = {}


def _net(hidden_size: int, name: str) -> Any:
    # One transform per configuration, so repeated traces reuse the same function.
    k = (hidden_size, name)
    if k not in _NETS:
        _NETS[k] = hk.without_apply_rng(
            hk.transform(lambda x, s: hk.LSTM(hidden_size, name=name)(x, s))
        )
    return _NETS[k]


def linear_init(
    key: jax.Array, in_features: int, out_features: int, name: str, zero: bool = False
) -> dict[str, dict[str, jax.Array]]:
    """Initial weights of `hk.Linear(out_features, name=name)` (zeros when `zero`)."""
    w_init = hk.initializers.Constant(0.0) if zero else None
    net = hk.without_apply_rng(
        hk.transform(lambda x: hk.Linear(out_features, name=name, w_init=w_init)(x))
    )
    return net.init(key, jnp.zeros([1, in_features], F32))


def linear_apply(params: dict[str, dict[str, jax.Array]], name: str, x: jax.Array) -> jax.Array:
    """`x @ w + b` with the weights of `hk.Linear(..., name=name)`."""
    return x @ params[name]["w"] + params[name]["b"]
