"""Shared machinery of the learned optimizers: flat layouts, features, MLPs, config checks.

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

from lopt_core.validation import (
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_unit_interval,
)

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

    On CPU, a network with a hidden layer at least `MLP_TILE_MIN_WIDTH` wide given
    more than `MLP_TILE` columns runs as a `lax.map` over tiles of `MLP_TILE`
    columns (the last, partial tile as one more product): each tile's layers then
    stay in cache and run on one thread, where one product over all columns
    spills its `(hidden, batch)` activations out of cache and splits across
    threads. On the 8x8 image MLP's 2,410 parameters that is 2x less CPU time
    for MLPLOpt's network (32 wide), and 5x at 200k parameters; narrower networks
    (Celo's 8, AdafacMLPLOpt's 4) run faster as one product, so they never tile
    (`benchmarks/README.md`, the MLP tiles). Every column's arithmetic is the same
    either way; other backends run the one product.

    Args:
      layers: `(w, b)` pairs, `w` of shape `(in, out)` as haiku stores it.
      x: inputs `(in_features, batch)`.
      first_bias: replaces the first layer's bias: `(out,)`, or `(out, batch)` for a
        bias that differs across the batch (features constant over a tensor folded
        into it); None uses the layer's own bias.

    Returns:
      Outputs `(out_features, batch)`.
    """
    bias = layers[0][1] if first_bias is None else first_bias
    if bias.ndim == 1:
        bias = bias[:, None]
    widest_hidden = max((w.shape[1] for w, _ in layers[:-1]), default=0)
    if x.ndim != 2 or x.shape[1] <= MLP_TILE or widest_hidden < MLP_TILE_MIN_WIDTH:
        return _mlp_columns(layers, x, bias)
    return jax.lax.platform_dependent(layers, x, bias, cpu=_mlp_tiled, default=_mlp_columns)


MLP_TILE = 1024
"""Columns per tile of `mlp_apply` on CPU (1,024 is fastest from 2k to 2M parameters)."""

MLP_TILE_MIN_WIDTH = 32
"""The narrowest widest-hidden-layer that `mlp_apply` tiles on CPU (16 wide: no gain)."""


def _mlp_columns(layers: list[tuple], x: jax.Array, bias: jax.Array) -> jax.Array:
    """`mlp_apply` as one product per layer over all columns; `bias` `(out, 1 or batch)`."""
    for i, (w, b) in enumerate(layers):
        x = w.T @ x + (bias if i == 0 else b[:, None])
        if i != len(layers) - 1:
            x = jax.nn.relu(x)
    return x


def _mlp_tiled(layers: list[tuple], x: jax.Array, bias: jax.Array) -> jax.Array:
    """`_mlp_columns` over tiles of `MLP_TILE` columns: a `lax.map`, then the rest."""
    n = x.shape[1]
    tiles = n // MLP_TILE
    full = tiles * MLP_TILE

    def cut(a: jax.Array) -> jax.Array:
        # (rows, full) -> (tiles, rows, MLP_TILE)
        return a[:, :full].reshape(a.shape[0], tiles, MLP_TILE).transpose(1, 0, 2)

    if bias.shape[1] == 1:
        out = jax.lax.map(lambda xt: _mlp_columns(layers, xt, bias), cut(x))
        rest_bias = bias
    else:
        out = jax.lax.map(lambda a: _mlp_columns(layers, *a), (cut(x), cut(bias)))
        rest_bias = bias[:, full:]
    out = out.transpose(1, 0, 2).reshape(out.shape[1], full)
    if full == n:
        return out
    return jnp.concatenate([out, _mlp_columns(layers, x[:, full:], rest_bias)], axis=1)


@functools.partial(jax.jit, static_argnums=0)
def jitted_init(lopt: Any, key: jax.Array) -> Any:
    """`lopt._init(key)`, compiled once per learned optimizer instance.

    Run op by op, the many small haiku initialisers of the LSTM architectures take
    seconds. The compiled function lives here rather than on the instance, so the
    instance stays picklable after `init`.
    """
    return lopt._init(key)


def set_fields(component: Any, **values: Any) -> None:
    """Stores normalised values (an int, a tuple) on a frozen component in `__post_init__`."""
    for name, value in values.items():
        object.__setattr__(component, name, value)


def check_decays(
    value: Any, owner: str, argument: str, *, length: int | None = None
) -> tuple[float, ...]:
    """`value` as a tuple of floats, each a decay in [0, 1).

    Args:
      value: a sequence of decays.
      owner: the component's name, for the message.
      argument: the argument's name, for the message.
      length: the number of decays required; None: at least one.

    Raises:
      TypeError: `value` is not a sequence of numbers.
      ValueError: it is empty, has another length than `length`, or a decay lies
        outside [0, 1).
    """
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(
            f"{owner}: {argument} must be a sequence of decays in [0, 1), got {value!r}; "
            "pass e.g. (0.9, 0.99)."
        ) from None
    if not items or (length is not None and len(items) != length):
        what = "at least one decay" if length is None else f"exactly {length} decay(s)"
        raise ValueError(f"{owner}: {argument} must hold {what}, got {value!r}.")
    for i, decay in enumerate(items):
        check_unit_interval(decay, owner, f"{argument}[{i}]")
    return tuple(float(d) for d in items)


def check_step_and_mlp(component: Any) -> None:
    """Validates a per-parameter MLP's `exp_mult`, `step_mult`, `hidden_size`, `hidden_layers`.

    Stores the sizes as ints.

    Raises:
      ValueError: `exp_mult` is negative or `step_mult` not > 0 (or either is not
        finite), `hidden_size` is not a positive integer, or `hidden_layers` is
        not an integer >= 0.
    """
    owner = type(component).__name__
    check_nonnegative(component.exp_mult, owner, "exp_mult")
    check_positive(component.step_mult, owner, "step_mult")
    set_fields(
        component,
        hidden_size=check_positive_int(component.hidden_size, owner, "hidden_size"),
        hidden_layers=check_positive_int(
            component.hidden_layers, owner, "hidden_layers", minimum=0
        ),
    )
