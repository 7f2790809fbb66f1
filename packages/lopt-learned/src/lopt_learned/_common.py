"""Shared machinery of the learned optimizers: flat parameter layouts, features, LSTMs.

Per-parameter learned optimizers apply the same small network to every scalar of
every tensor. Running it leaf by leaf costs one tiny matmul chain (and a handful
of tiny element-wise kernels) per tensor; on CPU the launch overhead of those
kernels dominates. `Layout` instead concatenates every leaf into one float32
vector, so the network is one matmul chain over all parameters, and per-tensor
statistics (the second-moment normalisation) are segment reductions over that
vector. Per-parameter features are laid out feature-major, `(features, total)`:
on XLA:CPU the MLP as `w.T @ x` over that layout, and the element-wise work on
contiguous rows, run about a third faster than the `(total, features)` layout.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

F32 = jnp.float32

TIMESCALES = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)
"""Timescales of the training-step embeddings used by the per-parameter optimizers."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each leaf of a parameter tree lives in one flat float32 vector.

    Built from static shapes only, so it is a Python constant under `jit`.

    Attributes:
      treedef: the tree structure of the parameters.
      shapes: each leaf's shape.
      dtypes: each leaf's dtype; `unflatten` casts back to it.
      sizes: each leaf's number of elements.
      offsets: where each leaf starts in the flat vector.
    """

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[Any, ...]
    sizes: tuple[int, ...]
    offsets: tuple[int, ...]

    @property
    def total(self) -> int:
        """The number of scalars in the tree."""
        return int(sum(self.sizes))

    @property
    def num_leaves(self) -> int:
        """The number of tensors in the tree."""
        return len(self.sizes)

    def flatten(self, tree: Any) -> jax.Array:
        """The leaves of `tree` (shaped like the layout's) as one float32 vector `(total,)`."""
        leaves = self.treedef.flatten_up_to(tree)
        parts = [jnp.reshape(jnp.asarray(x), (-1,)).astype(F32) for x in leaves]
        if not parts:
            return jnp.zeros((0,), F32)
        return jnp.concatenate(parts) if len(parts) > 1 else parts[0]

    def split(self, flat: jax.Array) -> list[jax.Array]:
        """A `(total,)` vector cut back into per-leaf pieces, each with its leaf's shape."""
        return [
            jnp.reshape(flat[off : off + size], shape)
            for off, size, shape in zip(self.offsets, self.sizes, self.shapes)
        ]

    def unflatten(self, flat: jax.Array) -> Any:
        """The inverse of `flatten`: a tree with the original shapes and dtypes."""
        pieces = [p.astype(d) for p, d in zip(self.split(flat), self.dtypes)]
        return jax.tree_util.tree_unflatten(self.treedef, pieces)

    def segment_sum(self, x: jax.Array) -> jax.Array:
        """Sums `x` of shape `(..., total)` over each leaf's span: `(..., num_leaves)`."""
        return jnp.stack(
            [jnp.sum(x[..., o : o + s], axis=-1) for o, s in zip(self.offsets, self.sizes)],
            axis=-1,
        )

    def segment_mean(self, x: jax.Array) -> jax.Array:
        """Means of `x` of shape `(..., total)` over each leaf's span: `(..., num_leaves)`."""
        sizes = np.maximum(np.asarray(self.sizes, np.float32), 1.0)
        return self.segment_sum(x) / jnp.asarray(sizes)

    def broadcast(self, v: jax.Array) -> jax.Array:
        """Repeats each leaf's value of `v` `(..., num_leaves)` over its span: `(..., total)`."""
        parts = [
            jnp.broadcast_to(v[..., i : i + 1], (*v.shape[:-1], s))
            for i, s in enumerate(self.sizes)
        ]
        return jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


def layout_of(tree: Any) -> Layout:
    """The `Layout` of a parameter tree (works on arrays, Python scalars and ShapeDtypeStructs).

    Raises:
      ValueError: the tree has no leaves, so there is nothing to optimize.
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    if not leaves:
        raise ValueError(
            "The parameter tree has no array leaves; pass the parameters to optimize "
            "(a pytree of arrays)."
        )
    shapes = tuple(tuple(int(d) for d in np.shape(x)) for x in leaves)
    dtypes = tuple(jnp.result_type(x) for x in leaves)
    sizes = tuple(int(np.prod(s, dtype=np.int64)) for s in shapes)
    offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(sizes)[:-1]]))
    return Layout(treedef, shapes, dtypes, sizes, offsets)


def check_grads(layout: Layout, grads: Any, owner: str) -> None:
    """Raises a ValueError naming the mismatch when `grads` is not shaped like the params."""
    leaves, treedef = jax.tree_util.tree_flatten(grads)
    if treedef != layout.treedef:
        raise ValueError(
            f"{owner}: grads have tree structure {treedef}, but the params have "
            f"{layout.treedef}. Pass gradients of the same params (jax.grad of the loss)."
        )
    for i, (g, shape) in enumerate(zip(leaves, layout.shapes)):
        if tuple(np.shape(g)) != shape:
            raise ValueError(
                f"{owner}: gradient leaf {i} has shape {tuple(np.shape(g))}, but the "
                f"parameter has shape {shape}."
            )


def require_loss(loss: Any, owner: str) -> None:
    """Raises a ValueError saying how to pass the loss when it is missing."""
    if loss is None:
        raise ValueError(
            f"{owner} needs the training loss at every step, but update() got loss=None. "
            "Call opt.update(state, grads, loss=loss); through optax, "
            "tx.update(grads, state, params, loss=loss)."
        )


def tanh_time_features(iteration: jax.Array) -> jax.Array:
    """`tanh(t / tau - 1)` for tau in `TIMESCALES`: shape `(11,)` float32."""
    t = jnp.asarray(iteration, F32)
    return jnp.tanh(t / jnp.asarray(TIMESCALES, F32) - 1.0)


def sin_time_features(iteration: jax.Array) -> jax.Array:
    """`sin(t / (tau * pi))` for tau in `TIMESCALES`: shape `(11,)` float32."""
    t = jnp.asarray(iteration, F32)
    return jnp.sin(t / (jnp.asarray(TIMESCALES, F32) * jnp.pi))


def second_moment_normalize(layout: Layout, x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Divides each row of `x` `(F, total)` by its root mean square over each tensor.

    The root mean square is taken per tensor and per feature, as
    `x * rsqrt(eps + mean_over_tensor(x ** 2))`.
    """
    # Tensor by tensor, then one concatenation: XLA:CPU otherwise materialises the
    # broadcast scales as arrays as large as `x`.
    parts = []
    for off, size in zip(layout.offsets, layout.sizes):
        xl = x[..., off : off + size]
        ms = jnp.sum(jnp.square(xl), axis=-1, keepdims=True) / max(size, 1)
        parts.append(xl * jax.lax.rsqrt(eps + ms))
    return jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


def mlp_params(
    key: jax.Array, sizes: list[int], in_features: int, name: str = "mlp"
) -> dict[str, dict[str, jax.Array]]:
    """Initial weights of `hk.nets.MLP(sizes)` on `in_features` inputs (haiku's names and init)."""
    net = hk.without_apply_rng(hk.transform(lambda x: hk.nets.MLP(sizes, name=name)(x)))
    return net.init(key, jnp.zeros([1, in_features], F32))


def mlp_layers(params: dict[str, dict[str, jax.Array]], name: str = "mlp") -> list[tuple]:
    """The `(w, b)` pairs of an `hk.nets.MLP`'s weights, first layer first."""
    out = []
    i = 0
    while f"{name}/~/linear_{i}" in params:
        layer = params[f"{name}/~/linear_{i}"]
        out.append((layer["w"], layer["b"]))
        i += 1
    return out


def mlp_apply(layers: list[tuple], x: jax.Array, first_bias: jax.Array | None = None) -> jax.Array:
    """Runs an MLP given as `(w, b)` pairs on feature-major inputs, ReLU between layers.

    Args:
      layers: `(w, b)` pairs, `w` of shape `(in, out)` as haiku stores it.
      x: inputs `(in_features, batch)`.
      first_bias: replaces the first layer's bias: `(out,)`, or `(out, batch)` for a
        bias that differs across the batch (features constant over a tensor folded
        into it); None uses the layer's own bias.

    Returns:
      Outputs `(out_features, batch)`.
    """
    for i, (w, b) in enumerate(layers):
        bias = first_bias if (i == 0 and first_bias is not None) else b
        if bias.ndim == 1:
            bias = bias[:, None]
        x = w.T @ x + bias
        if i != len(layers) - 1:
            x = jax.nn.relu(x)
    return x


def lstm_initial_state(hidden_size: int) -> dict[str, jax.Array]:
    """The zero LSTM state for one sequence, as a dict `{"hidden", "cell"}` of `(1, H)`."""
    return {"hidden": jnp.zeros([1, hidden_size], F32), "cell": jnp.zeros([1, hidden_size], F32)}


def tile_lstm_state(state: dict[str, jax.Array], n: int) -> dict[str, jax.Array]:
    """Repeats a `(1, H)` LSTM state for `n` sequences: `(n, H)` each."""
    return {k: jnp.tile(v, (n, 1)) for k, v in state.items()}


def lstm_apply(
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
    net = _lstm_net(hidden_size, name)
    out, nxt = net.apply(params, x, hk.LSTMState(state["hidden"], state["cell"]))
    return out, {"hidden": nxt.hidden, "cell": nxt.cell}


def lstm_params(
    key: jax.Array, in_features: int, hidden_size: int, name: str = "rnn"
) -> dict[str, dict[str, jax.Array]]:
    """Initial weights of `hk.LSTM(hidden_size, name=name)` on `in_features` inputs."""
    net = _lstm_net(hidden_size, name)
    zero = lstm_initial_state(hidden_size)
    return net.init(
        key, jnp.zeros([1, in_features], F32), hk.LSTMState(zero["hidden"], zero["cell"])
    )


_LSTM_NETS: dict[tuple[int, str], Any] = {}


def _lstm_net(hidden_size: int, name: str) -> Any:
    # One transform per configuration, so repeated traces reuse the same function.
    k = (hidden_size, name)
    if k not in _LSTM_NETS:
        _LSTM_NETS[k] = hk.without_apply_rng(
            hk.transform(lambda x, s: hk.LSTM(hidden_size, name=name)(x, s))
        )
    return _LSTM_NETS[k]


def linear_params(
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


def keep_model_state(old: Any, new: Any) -> Any:
    """The model state to store: the new one when given, else the old one."""
    return old if new is None else new


@functools.partial(jax.jit, static_argnums=0)
def jitted_init(lopt: Any, key: jax.Array) -> Any:
    """`lopt._init(key)`, compiled once per learned optimizer instance.

    Run op by op, the many small haiku initialisers of the LSTM architectures take
    seconds. The compiled function lives here rather than on the instance, so the
    instance stays picklable after `init`.
    """
    return lopt._init(key)
