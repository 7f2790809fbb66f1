"""AdafacMLPLOpt: a per-parameter MLP fed Adafactor-style factored second moments."""

from __future__ import annotations

from typing import Any

import flax
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

import lopt_core
from lopt_core.typing import MetaParams, Params, PRNGKey
from lopt_learned._common import (
    F32,
    TIMESCALES,
    Layout,
    check_decays,
    check_step_and_mlp,
    mlp_apply,
    second_moment_normalize,
    set_fields,
    tanh_time_features,
)
from lopt_learned._driver import LearnedArchitecture, LearnedOptimizerState, StepInputs
from lopt_learned._plugin import CATALOG
from lopt_learned.mlp_lopt import bounded_step, check_step_bound


def factored_dims(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The two largest dims of a tensor of rank >= 2 (as Adafactor factors them), else None.

    Returns:
      `(d1, d0)`: d0 the largest dim, d1 the second largest; None for rank < 2.
    """
    if len(shape) < 2:
        return None
    order = np.argsort(shape)
    return int(order[-2]), int(order[-1])


def _decay_to_param(x: Any) -> jax.Array:
    return jnp.log(1.0 - jnp.asarray(x, F32)) / 10.0


def _param_to_decay(x: jax.Array) -> jax.Array:
    return 1.0 - jnp.exp(x * 10.0)


def _safe_rsqrt(x: jax.Array) -> jax.Array:
    return jax.lax.rsqrt(jnp.maximum(x, 1e-9))


@flax.struct.dataclass
class AdafacMLPLOptState(LearnedOptimizerState):
    """State of an AdafacMLPLOpt optimizer: `LearnedOptimizerState`'s fields, and

    Attributes:
      momenta: float32 `(num_momentum_decays, num_params)`, leaves concatenated.
      rms: float32 `(1, num_params)` second moments.
      fac_rows: per leaf, the factored row accumulator `(k,) + (shape without d0)`
        for tensors of rank >= 2, else an empty `(k, 0)` array.
      fac_cols: per leaf, the factored column accumulator `(k,) + (shape without d1)`,
        else empty.
      fac_diag: per leaf, the unfactored accumulator `(k,) + shape` for tensors of
        rank < 2, else empty.
    """

    momenta: jax.Array
    rms: jax.Array
    fac_rows: tuple
    fac_cols: tuple
    fac_diag: tuple


def _factored_features(
    g: jax.Array,
    m: jax.Array,
    v_row: jax.Array,
    v_col: jax.Array,
    v_diag: jax.Array,
    decay: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Updates one tensor's factored accumulators and returns its 6k factored features.

    Arrays carry the k decays on a leading axis.

    Args:
      g: the gradient, the tensor's shape.
      m: the momenta, `(k,) + shape`.
      v_row, v_col, v_diag: the accumulators (see AdafacMLPLOptState).
      decay: `(k,)` decays.

    Returns:
      `(v_row, v_col, v_diag, features (6k,) + shape)`: the preconditioned gradient
      (k), the row and column accumulators broadcast (2k), their inverse roots (2k)
      and the factored-preconditioned momentum (k), with k = 3 by default.
    """
    k = decay.shape[0]
    grad_sqr = (jnp.square(g) + 1e-30)[None]
    dims = factored_dims(g.shape)
    if dims is None:
        dk = jnp.reshape(decay, (k,) + (1,) * g.ndim)
        v_diag = dk * v_diag + (1.0 - dk) * grad_sqr
        fac_g = g[None] * _safe_rsqrt(v_diag + 1e-9)
        inv = jax.lax.rsqrt(v_diag + 1e-8)
        feats = [fac_g, v_diag, v_diag, inv, inv, m * (v_diag + 1e-6) ** -0.5]
        return v_row, v_col, v_diag, jnp.concatenate(feats, 0)
    d1, d0 = dims
    dk = jnp.reshape(decay, (k,) + (1,) * (g.ndim - 1))
    v_row = dk * v_row + (1.0 - dk) * jnp.mean(grad_sqr, axis=d0 + 1)
    v_col = dk * v_col + (1.0 - dk) * jnp.mean(grad_sqr, axis=d1 + 1)
    reduced_d1 = d1 - 1 if d1 > d0 else d1
    row_col_mean = jnp.mean(v_row, axis=reduced_d1 + 1, keepdims=True)
    row_factor = jnp.expand_dims(_safe_rsqrt(v_row / (row_col_mean + 1e-9)), d0 + 1)
    col_factor = jnp.expand_dims(_safe_rsqrt(v_col), d1 + 1)
    fac_g = g[None] * row_factor * col_factor
    shape = (k, *g.shape)
    row_feat = jnp.broadcast_to(jnp.expand_dims(v_row, d0 + 1), shape)
    col_feat = jnp.broadcast_to(jnp.expand_dims(v_col, d1 + 1), shape)
    feats = [
        fac_g,
        row_feat,
        col_feat,
        jax.lax.rsqrt(row_feat + 1e-8),
        jax.lax.rsqrt(col_feat + 1e-8),
        m * row_factor * col_factor,
    ]
    return v_row, v_col, v_diag, jnp.concatenate(feats, 0)


def checked_decays(lopt: Any, owner: str) -> dict[str, tuple[float, ...]]:
    """The three decay fields of an Adafactor-featured architecture, validated.

    `initial_momentum_decays` (at least one), `initial_rms_decays` (exactly one) and
    `initial_adafactor_decays` (one per momentum decay), for `set_fields`.
    """
    momentum = check_decays(lopt.initial_momentum_decays, owner, "initial_momentum_decays")
    return {
        "initial_momentum_decays": momentum,
        "initial_rms_decays": check_decays(
            lopt.initial_rms_decays, owner, "initial_rms_decays", length=1
        ),
        "initial_adafactor_decays": check_decays(
            lopt.initial_adafactor_decays,
            owner,
            "initial_adafactor_decays",
            length=len(momentum),
        ),
    }


def zero_factored(
    layout: Layout, k: int
) -> tuple[list[jax.Array], list[jax.Array], list[jax.Array]]:
    """Zero factored accumulators `(rows, cols, diag)` of every tensor, `k` decays each.

    A matrix-like tensor keeps row and column accumulators (its `diag` is empty); a
    tensor of rank < 2 keeps a full `diag` (its rows and columns are empty).
    """
    rows, cols, diag = [], [], []
    empty = jnp.zeros((k, 0), F32)
    for shape in layout.shapes:
        dims = factored_dims(shape)
        if dims is None:
            rows.append(empty)
            cols.append(empty)
            diag.append(jnp.zeros((k, *shape), F32))
        else:
            d1, d0 = dims
            rows.append(jnp.zeros((k, *np.delete(shape, d0)), F32))
            cols.append(jnp.zeros((k, *np.delete(shape, d1)), F32))
            diag.append(empty)
    return rows, cols, diag


def factored_tensors(
    layout: Layout,
    g: jax.Array,
    m: jax.Array,
    state: Any,
    decay: jax.Array,
) -> tuple[list[jax.Array], list[jax.Array], list[jax.Array], list[jax.Array]]:
    """`_factored_features` for every tensor of `layout`.

    Args:
      layout: the params' flat layout.
      g: the flat gradient `(total,)`.
      m: the flat momenta `(k, total)`.
      state: holds the per-tensor `fac_rows`, `fac_cols` and `fac_diag` lists.
      decay: `(k,)` decays.

    Returns:
      `(rows, cols, diag, features)`: the updated accumulators of each tensor and
      its `(6k, size)` factored features.
    """
    k = m.shape[0]
    rows, cols, diag, feats = [], [], [], []
    pieces = zip(layout.offsets, layout.sizes, layout.shapes, layout.split(g))
    for i, (off, size, shape, gl) in enumerate(pieces):
        r, c, d, fac = _factored_features(
            gl,
            jnp.reshape(m[:, off : off + size], (k, *shape)),
            state.fac_rows[i],
            state.fac_cols[i],
            state.fac_diag[i],
            decay,
        )
        rows.append(r)
        cols.append(c)
        diag.append(d)
        feats.append(jnp.reshape(fac, (fac.shape[0], size)))
    return rows, cols, diag, feats


def check_weight_flags(lopt: Any) -> None:
    """Validates `concat_weights`, `make_separate_weights` and `split_weights`.

    Raises:
      TypeError: a flag is not a bool.
      ValueError: `make_separate_weights` or `split_weights` is True with
        `concat_weights=True`, or both are True.
    """
    owner = type(lopt).__name__
    for flag in ("concat_weights", "make_separate_weights", "split_weights"):
        value = getattr(lopt, flag)
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{owner}: {flag} must be True or False, got {value!r}.")
        set_fields(lopt, **{flag: bool(value)})
    for flag in ("make_separate_weights", "split_weights"):
        if lopt.concat_weights and getattr(lopt, flag):
            raise ValueError(
                f"{owner}: {flag}=True applies to the scalar computation of the MLP only; "
                "pass concat_weights=False with it (with concat_weights=True the "
                "reference ignores it)."
            )
    if lopt.make_separate_weights and lopt.split_weights:
        raise ValueError(
            f"{owner}: make_separate_weights=True already stores the weights as scalars, "
            "so there is nothing for split_weights to split; pass only one of them "
            "(split_weights=True reads full weight matrices entry by entry)."
        )


def _layer_sizes(lopt: Any) -> list[tuple[int, int]]:
    """`(inputs, outputs)` of each MLP layer, first layer first."""
    widths = [lopt.hidden_size] * lopt.hidden_layers + [2]
    return list(zip([lopt.num_features, *widths[:-1]], widths))


def scalar_layers(lopt: Any, nn: dict[str, jax.Array]) -> list[tuple[list, list]]:
    """The MLP's weights as nested lists of scalars, `(w[input][output], b[output])` per layer.

    Args:
      lopt: the AdafacMLPLOpt (its sizes and `make_separate_weights`).
      nn: theta's `nn["~"]`: full matrices `w{i}` `(in, out)` and biases `b{i}`, or
        with `make_separate_weights` the scalars `w{i}_{in}_{out}` and `b{i}_{out}`.
    """
    layers = []
    for i, (n_in, n_out) in enumerate(_layer_sizes(lopt)):
        if lopt.make_separate_weights:
            w = [[nn[f"w{i}_{v}_{o}"] for o in range(n_out)] for v in range(n_in)]
            b = [nn[f"b{i}_{o}"] for o in range(n_out)]
        else:
            wi, bi = nn[f"w{i}"], nn[f"b{i}"]
            w = [[wi[v, o] for o in range(n_out)] for v in range(n_in)]
            b = [bi[o] for o in range(n_out)]
        layers.append((w, b))
    return layers


def scalar_mlp(
    layers: list[tuple[list, list]], features: list[jax.Array], time: jax.Array
) -> list[jax.Array]:
    """The MLP as scalar arithmetic: each unit a sum of `input * weight` products.

    Args:
      layers: `scalar_layers`' output.
      features: the normalised feature rows, each `(num_params,)`.
      time: the time features `(T,)`, the first layer's last T inputs.

    Returns:
      The last layer's outputs, each `(num_params,)`.
    """
    inp = features
    for i, (w, b) in enumerate(layers):
        units = []
        for o in range(len(b)):
            terms = [x * w[v][o] for v, x in enumerate(inp)]
            if i == 0:
                terms += [time[j] * w[len(inp) + j][o] for j in range(time.shape[0])]
            units.append(sum(terms) + b[o])
        inp = units if i == len(layers) - 1 else [jax.nn.relu(u) for u in units]
        # Without a barrier XLA fuses every layer into its consumers and recomputes
        # each unit once per consumer (on XLA:CPU 3x slower); the values are the same.
        inp = list(jax.lax.optimization_barrier(tuple(inp)))
    return inp


@CATALOG.learned_optimizer("AdafacMLPLOpt", "per-parameter MLP on Adafactor-style features")
@lopt_core.declare
class AdafacMLPLOpt(LearnedArchitecture):
    """A per-parameter MLP learned optimizer with Adafactor-style features and learned decays.

    Per parameter, 28 features, each divided by its root mean square over the
    tensor: the gradient, the parameter, 3 momenta, an RMS accumulator, the
    momenta over the root of the RMS, that inverse root, and 18 factored
    features from 3 Adafactor accumulators (the preconditioned gradient, the row
    and column accumulators, their inverse roots, the factored-preconditioned
    momentum; tensors of rank < 2 use an unfactored accumulator instead). Eleven
    `tanh(t / tau - 1)` time features follow. An MLP 39 -> 4 -> 4 -> 2 gives
    `p -= direction * exp(magnitude * exp_mult) * step_mult`. That step is
    unbounded (untrained, it reaches 200x the initial loss of a small MLP within
    5,000 steps); `step_bound`, off by default, bounds it (`bounded_step`).

    State: 4 floats per parameter (3 momenta and the second moment), plus per
    tensor of rank >= 2 three factored row and column accumulators
    (`3 * (rows + cols)` floats for a matrix), or for a tensor of rank < 2 three
    unfactored accumulators (7 floats per parameter there).

    theta: `{"momentum_decays" (3,), "rms_decays" (1,), "adafactor_decays" (3,),
    "nn": {"~": {"w0", "b0", "w1", "b1", "w2", "b2"}}}`. The decays are offsets
    in the space `log(1 - decay) / 10` from the initial decays.

    How the MLP is computed (the reference's three flags): by default
    (`concat_weights=True`) as matrix products over the stacked features. With
    `concat_weights=False` it is unpacked into scalar arithmetic: each feature
    row is normalised on its own and every unit is a sum of `feature * weight`
    products, fused by XLA into elementwise kernels: the reference's path for
    accelerators, where it can beat matmuls this narrow (on XLA:CPU the MLP alone
    ran about 30x slower than the matmuls on 200,000 parameters). The update is the same up to float rounding
    (`test_adafac_options.py` checks 1e-6). `make_separate_weights=True` (with
    `concat_weights=False`) stores that MLP as scalars, theta's `nn["~"]` then
    holding `w{layer}_{input}_{output}` and `b{layer}_{output}`, each of shape
    `()`, as in the reference (`w0_3_1` is `w0[3, 1]`); the decays stay arrays.
    `split_weights=True` (with `concat_weights=False`, full matrices) is the
    reference's flag for reading the matrices entry by entry; the scalar
    computation does that either way, so it leaves theta and the update
    unchanged, as in the reference.

    Attributes:
      exp_mult: multiplier of the magnitude output inside the exponential (>= 0).
      step_mult: multiplier of the whole step (> 0).
      hidden_size: width of each hidden layer.
      hidden_layers: number of hidden layers (>= 0).
      initial_momentum_decays: momentum decays theta starts from, each in [0, 1).
      initial_rms_decays: second-moment decays theta starts from (one value).
      initial_adafactor_decays: factored accumulator decays theta starts from, as
        many as momentum decays (the features pair them up).
      concat_weights: compute the MLP as matrix products (True, the default) or
        as scalar arithmetic (False).
      make_separate_weights: store the MLP's weights as scalars (needs
        `concat_weights=False`).
      split_weights: the reference's flag for the scalar computation on full
        matrices (needs `concat_weights=False` and `make_separate_weights=False`);
        it changes nothing there, as in the reference.
      step_bound: bounds the step (see `bounded_step`); None (the default) leaves
        it unbounded.

    Raises:
      TypeError: a flag is not True or False.
      ValueError: `make_separate_weights` or `split_weights` is True with
        `concat_weights=True` (the reference ignores them then; lopt refuses rather
        than ignore them), or both are True (the weights are
        already scalars, there is nothing to split).

    Example:
      >>> lopt = AdafacMLPLOpt()
      >>> opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
      >>> state = opt.update(opt.init({"w": jnp.ones([3, 2])}), {"w": jnp.ones([3, 2])})

    References:
      Metz et al., "VeLO: Training Versatile Learned Optimizers by Scaling Up",
      2022 (the small per-parameter MLP); Shazeer & Stern, "Adafactor", ICML 2018.
    """

    exp_mult: float = 0.001
    step_mult: float = 0.001
    hidden_size: int = 4
    hidden_layers: int = 2
    initial_momentum_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
    initial_rms_decays: tuple[float, ...] = (0.999,)
    initial_adafactor_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
    concat_weights: bool = True
    make_separate_weights: bool = False
    split_weights: bool = False
    step_bound: float | None = None
    state_class = AdafacMLPLOptState

    def __post_init__(self) -> None:
        owner = "AdafacMLPLOpt"
        check_step_and_mlp(self)
        set_fields(self, **checked_decays(self, owner))
        check_step_bound(self)
        check_weight_flags(self)

    @property
    def num_features(self) -> int:
        """Inputs of the MLP: normalised features plus 11 time features (39 by default)."""
        k = len(self.initial_momentum_decays)
        return 2 + k + 1 + k + 1 + 6 * k + len(TIMESCALES)

    def init(self, key: PRNGKey) -> MetaParams:
        """Zero decay offsets and the MLP's weights (truncated normal, std 1/sqrt(fan_in)).

        With `make_separate_weights` each weight is its own scalar entry, drawn in
        the reference's order (layer by layer, inputs outer, outputs inner).
        """
        separate = self.make_separate_weights

        def make() -> None:
            for i, (last, width) in enumerate(_layer_sizes(self)):
                w_init = hk.initializers.TruncatedNormal(stddev=1.0 / np.sqrt(last))
                if separate:
                    for v in range(last):
                        for o in range(width):
                            hk.get_parameter(f"w{i}_{v}_{o}", (), F32, init=w_init)
                    for o in range(width):
                        hk.get_parameter(f"b{i}_{o}", (), F32, init=jnp.zeros)
                else:
                    hk.get_parameter(f"w{i}", (last, width), F32, init=w_init)
                    hk.get_parameter(f"b{i}", (width,), F32, init=jnp.zeros)

        nn = hk.transform(make).init(key)
        return {
            "adafactor_decays": jnp.zeros([len(self.initial_adafactor_decays)], F32),
            "momentum_decays": jnp.zeros([len(self.initial_momentum_decays)], F32),
            "nn": nn,
            "rms_decays": jnp.zeros([len(self.initial_rms_decays)], F32),
        }

    def _decays(self, theta: MetaParams) -> tuple[jax.Array, jax.Array, jax.Array]:
        """The momentum, RMS and Adafactor decays that theta's offsets give."""
        mom = _param_to_decay(
            _decay_to_param(self.initial_momentum_decays) + theta["momentum_decays"]
        )
        rms = _param_to_decay(_decay_to_param(self.initial_rms_decays) + theta["rms_decays"])
        fac = _param_to_decay(
            _decay_to_param(self.initial_adafactor_decays) + theta["adafactor_decays"]
        )
        return mom, jnp.clip(rms, 0.0, 1.0), jnp.clip(fac, 0.0, 1.0)

    def init_state(
        self, theta: MetaParams, params: Params, layout: Layout, **kwargs: Any
    ) -> dict[str, Any]:
        """Zero accumulators."""
        k = len(self.initial_adafactor_decays)
        rows, cols, diag = zero_factored(layout, k)
        return {
            "momenta": jnp.zeros((len(self.initial_momentum_decays), layout.total), F32),
            "rms": jnp.zeros((len(self.initial_rms_decays), layout.total), F32),
            "fac_rows": tuple(rows),
            "fac_cols": tuple(cols),
            "fac_diag": tuple(diag),
        }

    def _matmul_mlp(
        self, nn: dict[str, jax.Array], layout: Layout, xs: list[jax.Array], iteration: jax.Array
    ) -> jax.Array:
        """The MLP as matrix products on each tensor's features `xs` `(28, size)`: `(2, total)`."""
        layers = [(nn[f"w{i}"], nn[f"b{i}"]) for i in range(self.hidden_layers + 1)]
        w0, b0 = layers[0]
        n_norm = w0.shape[0] - len(TIMESCALES)
        hidden = []
        for size, x in zip(layout.sizes, xs):
            # The per-tensor second-moment normalisation scales each feature row by
            # one number per tensor: fold it into this tensor's first-layer weights
            # rather than broadcasting it over the (many more) features.
            inv = jax.lax.rsqrt(1e-5 + jnp.sum(jnp.square(x), axis=1) / max(size, 1))
            hidden.append((w0[:n_norm] * inv[:, None]).T @ x)
        # Time features are constant over parameters: fold them into the first bias.
        time_bias = b0 + tanh_time_features(iteration) @ w0[n_norm:]
        h = jnp.concatenate(hidden, 1) if len(hidden) > 1 else hidden[0]
        h = h + time_bias[:, None]
        return mlp_apply(layers[1:], jax.nn.relu(h)) if len(layers) > 1 else h

    def _scale_step(self, step: jax.Array, state: AdafacMLPLOptState, layout: Layout) -> jax.Array:
        """The step `(total,)` as applied; here unchanged (MuAdafacMLPLOpt scales it)."""
        return step

    def step(
        self, theta: MetaParams, state: AdafacMLPLOptState, inputs: StepInputs
    ) -> AdafacMLPLOptState:
        """Update the accumulators, build 28 normalised + 11 time features, apply the MLP."""
        mom_d, rms_d, fac_d = self._decays(theta)
        layout = inputs.layout
        g, p = inputs.flat()
        mom_d, rms_d = mom_d[:, None], rms_d[:, None]
        m = state.momenta * mom_d + (1.0 - mom_d) * g[None]
        rms = state.rms * rms_d + (1.0 - rms_d) * jnp.square(g)[None]
        rsqrt = jax.lax.rsqrt(rms + 1e-6)
        rows, cols, diag, facs = factored_tensors(layout, g, m, state, fac_d)
        xs = []
        for off, size, fac in zip(layout.offsets, layout.sizes, facs):
            span = slice(off, off + size)
            ml, rl, rs = m[:, span], rms[:, span], rsqrt[:, span]
            xs.append(
                jnp.concatenate(
                    [
                        g[None, span],
                        p[None, span],
                        ml,
                        rl,
                        ml * rs,
                        rs,
                        fac,
                    ],
                    0,
                )
            )
        if not self.concat_weights:
            x = jnp.concatenate(xs, 1) if len(xs) > 1 else xs[0]
            x = second_moment_normalize(layout, x)
            out = scalar_mlp(
                scalar_layers(self, theta["nn"]["~"]),
                [x[i] for i in range(x.shape[0])],
                tanh_time_features(state.iteration),
            )
        else:
            out = self._matmul_mlp(theta["nn"]["~"], layout, xs, state.iteration)
        step = out[0] * jnp.exp(out[1] * self.exp_mult) * self.step_mult
        step = self._scale_step(bounded_step(step, g, self.step_bound), state, layout)
        return state.replace(
            params=layout.unflatten(p - step),
            momenta=m,
            rms=rms,
            fac_rows=tuple(rows),
            fac_cols=tuple(cols),
            fac_diag=tuple(diag),
        )
