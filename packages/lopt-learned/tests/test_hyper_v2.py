"""HyperV2 (VeLO) against an independent reading of the reference implementation, and `velo`.

The reference (learned_optimization, Metz et al., "VeLO: Training Versatile
Learned Optimizers by Scaling Up", 2022) runs on a jax/TensorFlow stack that
cannot be installed beside this package's. So this file holds its own,
deliberately plain reading of the reference's math (`reference_init`,
`reference_update`): one tensor at a time, in the reference's layout (decays on
the last axis of every accumulator, theta as the reference's haiku dicts), in
jax.numpy, sharing no code with `lopt_learned.hyper_v2`. Piece by piece it follows:

- `BufferLossAccumulators.init/update/features` (hyper_v2.py): the 10 running
  loss means, their clipping and the 9 loss features;
- `HyperV2.lstm_features_for_tensor` and `_fractional_tanh_embed`: the 30 LSTM
  inputs per tensor, sorted by name (fraction_left, loss_features, mean_rms,
  rank, var_m, var_rms), with `_clip_log_abs(x, scale=10)`;
- `HyperV2._rnn_forward`: the mixing layers (`linear_1` with a max over
  tensors, `linear_2`; `linear` is built but its output unused), `hk.LSTM`
  (gates i, g, f, o, forget bias 1), `rnn_to_controls` and `step_size`;
- `common.vec_rolling_mom`, `vec_rolling_rms`, `vec_factored_rolling` (its
  `factored_rolling.update_fn`): the accumulators and the factored gradient;
- `opt_fn(...).update.apply_one.interpolate_theta`: `100 * mean(bank * c)`;
- `HyperV2._ff_mod`: the 14 input blocks, the per-tensor second-moment
  normalisation, the MLP, and `p - s * direction * rms(p) * exp(0.001 m) * 0.001`;
- `opt_fn(...).update`: gradients clipped to 1000, the LSTM reading the
  accumulators before this step's update, `use_bugged_next_lstm_state`.

This reading was also checked, outside the test suite, against the reference's
own `hyper_v2.py` run with this environment's jax and haiku (its gin, chex and
summary imports stubbed): over 6 steps of the 5-tensor problem below, each
from the same state, the parameters agreed to 1e-6 of each tensor's largest
value and the accumulators and loss means exactly.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt_core
import lopt_learned
from lopt_core.testing import check_learned_optimizer
from lopt_learned import HyperV2, HyperV2State
from lopt_learned.hyper_v2 import LossHistoryState

SMALL = {"lstm_hidden_size": 16, "param_inits": 8}
INPUT_BLOCKS = (1, 1, 1, 3, 1, 3, 1, 3, 1, 3, 3, 3, 3, 3)
TENSOR_FEATURES = 30
FRACTION_POINTS = (0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1)
MOM, RMS, FAC = (0.9, 0.99, 0.999), (0.999,), (0.9, 0.99, 0.999)


# -- the reference's theta layout, built by this test -------------------------------
def reference_theta_shapes(lstm: int, bank: int, hidden: int = 4, layers: int = 2) -> dict:
    """Shapes of the reference HyperV2's theta (`HyperV2.init`), as its haiku dicts name them."""
    mlp = {f"w0__{i}": (bank, rows, hidden) for i, rows in enumerate(INPUT_BLOCKS)}
    sizes = [hidden] * layers + [3]
    mlp["b0"] = (bank, sizes[0])
    for i in range(1, len(sizes)):
        mlp[f"w{i}"] = (bank, sizes[i - 1], sizes[i])
        mlp[f"b{i}"] = (bank, sizes[i])

    def linear(n_in, n_out):
        return {"w": (n_in, n_out), "b": (n_out,)}

    return {
        "ff_mod_stack": {"~": mlp},
        "lstm_init_state": {"hidden": (1, lstm), "cell": (1, lstm)},
        "rnn_params": {
            "linear": linear(TENSOR_FEATURES, lstm),
            "linear_1": linear(TENSOR_FEATURES, lstm),
            "linear_2": linear(TENSOR_FEATURES, lstm),
            "rnn/linear": linear(2 * lstm, 4 * lstm),
            "rnn_to_controls": linear(lstm, bank),
            "step_size": linear(lstm, 1),
        },
    }


def random_reference_theta(lstm: int, bank: int, seed: int = 0) -> dict:
    """A random theta in the reference's layout: weights ~ N(0, 1/fan_in), the rest ~ N(0, 0.02^2)."""
    shapes = reference_theta_shapes(lstm, bank)
    paths, treedef = jax.tree_util.tree_flatten_with_path(
        shapes, is_leaf=lambda x: isinstance(x, tuple)
    )
    keys = jax.random.split(jax.random.PRNGKey(seed), len(paths))
    leaves = []
    for (path, shape), key in zip(paths, keys):
        name = path[-1].key
        if name.startswith("w0__"):
            fan_in = TENSOR_FEATURES  # the reference scales every first-layer block so
        elif name.startswith("w"):
            fan_in = shape[-2]
        else:
            fan_in = 2500
        leaves.append(jax.random.normal(key, shape) / np.sqrt(fan_in))
    return jax.tree_util.tree_unflatten(treedef, leaves)


# -- an independent reading of the reference's math ------------------------------------
def _two_largest(shape):
    if len(shape) < 2:
        return None
    order = np.argsort(shape)
    return int(order[-2]), int(order[-1])  # (d1, d0): d0 the largest


def reference_init(params, theta, num_steps, bugged_loss_features):
    """The reference's `opt_fn(theta).init(params, num_steps)` as a plain dict."""
    leaves = jax.tree_util.tree_leaves(params)
    rows, cols, diags = [], [], []
    for p in leaves:
        dims = _two_largest(p.shape)
        if dims is None:
            rows.append(jnp.zeros((0, 3)))
            cols.append(jnp.zeros((0, 3)))
            diags.append(jnp.zeros((*p.shape, 3)))
        else:
            d1, d0 = dims
            rows.append(jnp.zeros((*np.delete(p.shape, d0), 3)))
            cols.append(jnp.zeros((*np.delete(p.shape, d1), 3)))
            diags.append(jnp.zeros((0, 3)))
    horizon = 10 if bugged_loss_features else num_steps
    n = len(leaves)
    return {
        "params": leaves,
        "m": [jnp.zeros((*p.shape, 3)) for p in leaves],
        "rms": [jnp.zeros((*p.shape, 1)) for p in leaves],
        "v_row": rows,
        "v_col": cols,
        "v_diag": diags,
        "iteration": jnp.asarray(0, jnp.int32),
        "num_steps": jnp.asarray(num_steps, jnp.int32),
        "hidden": jnp.tile(theta["lstm_init_state"]["hidden"], (n, 1)),
        "cell": jnp.tile(theta["lstm_init_state"]["cell"], (n, 1)),
        "loss_means": jnp.zeros(10),
        "loss_min": jnp.full((10,), 999999999999.0),
        "loss_decays": jnp.exp(-1.0 / jnp.logspace(1, jnp.log10(horizon), 10)),
        "loss_count": jnp.asarray(0, jnp.int32),
    }


def _clip_log_abs(v):
    return jnp.clip(jnp.log(1e-8 + jnp.abs(v * 10.0)), -5.0, 5.0) * 0.5


def _loss_features(s, loss):
    """`BufferLossAccumulators.update`, then `.features` of the updated buffer."""
    d, count = s["loss_decays"], s["loss_count"]
    corrected = s["loss_means"] / (1 - d ** (count + 1))
    top = jnp.where(count == 0, loss, jnp.max(corrected))
    loss = jnp.minimum(jnp.abs(top) * 2, loss)
    means = s["loss_means"] * d + loss * (1.0 - d)
    low = jnp.minimum(s["loss_min"], means / (1 - d ** (count + 1)))
    count = count + 1
    corrected = means / (1 - d**count)
    centre = (corrected[:-1] - low[:-1]) / jnp.maximum(1e-8, corrected[1:] - low[:-1])
    feats = jnp.clip(centre - 1.0, -1, 1)
    feats = jnp.where(count <= 2, feats * 0, feats)
    return feats, {"loss_means": means, "loss_min": low, "loss_count": count}


def _lstm_inputs(p, m, rms, fraction, loss_feats):
    """`lstm_features_for_tensor` for one tensor (old accumulators, decays last)."""
    scale = jax.lax.rsqrt(jnp.maximum(1e-9, jnp.mean(p**2)))
    m, rms = m * scale, rms * scale
    axes = tuple(range(p.ndim))
    mean_m = jnp.mean(m, axis=axes, keepdims=True)
    feats = {
        "fraction_left": jnp.tanh((fraction - jnp.asarray(FRACTION_POINTS)) * 10),
        "loss_features": loss_feats,
        "var_m": _clip_log_abs(jnp.mean(jnp.square(m - mean_m), axis=axes)),
        "mean_rms": _clip_log_abs(jnp.reshape(jnp.mean(rms, axis=axes), (-1,))),
        "var_rms": _clip_log_abs(jnp.mean(jnp.square(rms - mean_m), axis=axes)),
        "rank": jax.nn.one_hot(int(np.sum(np.asarray(p.shape) > 1)), 5),
    }
    return jnp.concatenate([feats[k] for k in sorted(feats)])


def _lstm(rnn, x, hidden, cell):
    """`_rnn_forward`: mixing layers, haiku's LSTM, the two heads."""

    def linear(name, v):
        return v @ rnn[name]["w"] + rnn[name]["b"]

    pooled = jnp.max(jax.nn.relu(linear("linear_1", x)), axis=0, keepdims=True)
    x = linear("linear_2", x) + pooled
    gates = jnp.concatenate([x, hidden], axis=1) @ rnn["rnn/linear"]["w"] + rnn["rnn/linear"]["b"]
    i, g, f, o = jnp.split(gates, 4, axis=1)
    cell = jax.nn.sigmoid(f + 1.0) * cell + jax.nn.sigmoid(i) * jnp.tanh(g)
    hidden = jax.nn.sigmoid(o) * jnp.tanh(cell)
    return linear("rnn_to_controls", hidden), linear("step_size", hidden)[:, 0], hidden, cell


def _factored(g, v_row, v_col, v_diag):
    """`factored_rolling(decay).update_fn` for one tensor, the 3 decays on the last axis."""
    d = jnp.asarray(FAC)
    sq = (g * g + 1e-30)[..., None]
    dims = _two_largest(g.shape)
    if dims is None:
        v_diag = d * v_diag + (1 - d) * sq
        return v_row, v_col, v_diag, g[..., None] * jax.lax.rsqrt(jnp.maximum(v_diag + 1e-9, 1e-9))
    d1, d0 = dims
    v_row = d * v_row + (1 - d) * jnp.mean(sq, axis=d0)
    v_col = d * v_col + (1 - d) * jnp.mean(sq, axis=d1)
    row_factor, col_factor = _row_col_factors(v_row, v_col, d1, d0)
    return v_row, v_col, v_diag, g[..., None] * row_factor * col_factor


def _row_col_factors(v_row, v_col, d1, d0):
    reduced = d1 - 1 if d1 > d0 else d1
    mean = jnp.mean(v_row, axis=reduced, keepdims=True)
    row = jax.lax.rsqrt(jnp.maximum(v_row / (mean + 1e-9), 1e-9))
    col = jax.lax.rsqrt(jnp.maximum(v_col, 1e-9))
    return jnp.expand_dims(row, d0), jnp.expand_dims(col, d1)


def _ff_mod(weights, lr, p, g, m, rms, fac_g, v_row, v_col, v_diag):
    """`_ff_mod` for one tensor: the 14 input blocks, normalised, through the mixed MLP."""
    shape = p.shape
    if p.ndim == 0:
        p, g, m, rms, fac_g, v_diag = (x[None] for x in (p, g, m, rms, fac_g, v_diag))
    rsqrt = jax.lax.rsqrt(rms + 1e-6)
    blocks = [g[..., None], jnp.clip(g, -0.1, 0.1)[..., None], p[..., None], m, rms]
    blocks += [m * rsqrt, rsqrt, fac_g, g[..., None] * rsqrt]
    dims = _two_largest(g.shape)
    if dims is None:
        blocks += [v_diag, v_diag, jax.lax.rsqrt(v_diag + 1e-8), jax.lax.rsqrt(v_diag + 1e-8)]
        blocks.append(m * v_diag**-0.5)
    else:
        d1, d0 = dims
        row = jnp.broadcast_to(jnp.expand_dims(v_row, d0), (*g.shape, 3))
        col = jnp.broadcast_to(jnp.expand_dims(v_col, d1), (*g.shape, 3))
        blocks += [row, col, jax.lax.rsqrt(row + 1e-8), jax.lax.rsqrt(col + 1e-8)]
        row_factor, col_factor = _row_col_factors(v_row, v_col, d1, d0)
        blocks.append(m * row_factor * col_factor)
    axes = tuple(range(p.ndim))
    blocks = [b * jax.lax.rsqrt(1e-5 + jnp.mean(b * b, axis=axes, keepdims=True)) for b in blocks]
    out = sum(b @ weights[f"w0__{i}"] for i, b in enumerate(blocks)) + weights["b0"]
    i = 1
    while f"w{i}" in weights:
        out = jax.nn.relu(out) @ weights[f"w{i}"] + weights[f"b{i}"]
        i += 1
    direction, magnitude = out[..., 0], out[..., 1]
    scale = jnp.sqrt(jnp.mean(p**2) + 1e-9)
    step = lr * (direction * (scale * jnp.exp(magnitude * 0.001)) * 0.001)
    return jnp.reshape(p - step, shape)


@functools.partial(jax.jit, static_argnums=4)
def reference_update(theta, s, grads, loss, bugged_next_lstm_state):
    """The reference's `opt_fn(theta).update(state, grads, loss=loss)`, tensor by tensor."""
    loss = jnp.asarray(loss, jnp.float32)
    loss_feats, new_loss = _loss_features(s, loss)
    grads = [jnp.clip(g, -1000.0, 1000.0) for g in grads]
    fraction = s["iteration"] / jnp.asarray(s["num_steps"], jnp.float32)
    x = jnp.stack(
        [
            _lstm_inputs(p, m, v, fraction, loss_feats)
            for p, m, v in zip(s["params"], s["m"], s["rms"])
        ]
    )
    controls, lrs, hidden, cell = _lstm(theta["rnn_params"], x, s["hidden"], s["cell"])
    if bugged_next_lstm_state:
        hidden, cell = s["hidden"], s["cell"]
    new = {k: [] for k in ("params", "m", "rms", "v_row", "v_col", "v_diag")}
    for i, (p, g) in enumerate(zip(s["params"], grads)):
        m = jnp.asarray(MOM) * s["m"][i] + (1 - jnp.asarray(MOM)) * g[..., None]
        decay = jnp.clip(jnp.asarray(RMS), 0.0, 1.0)
        rms = decay * s["rms"][i] + (1 - decay) * (g * g)[..., None]
        v_row, v_col, v_diag, fac_g = _factored(g, s["v_row"][i], s["v_col"][i], s["v_diag"][i])
        weights = jax.tree_util.tree_map(
            lambda w, c=controls[i]: (
                100.0 * jnp.mean(w * c.reshape((-1,) + (1,) * (w.ndim - 1)), 0)
            ),
            theta["ff_mod_stack"]["~"],
        )
        new["params"].append(_ff_mod(weights, lrs[i], p, g, m, rms, fac_g, v_row, v_col, v_diag))
        for k, v in zip(("m", "rms", "v_row", "v_col", "v_diag"), (m, rms, v_row, v_col, v_diag)):
            new[k].append(v)
    return {
        **s,
        **new,
        **new_loss,
        "iteration": s["iteration"] + 1,
        "hidden": hidden,
        "cell": cell,
    }


# -- helpers -----------------------------------------------------------------------------
def mixed_params():
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    return {
        "w": jax.random.normal(k[0], (6, 5)),
        "b": jax.random.normal(k[1], (5,)),
        "s": jnp.asarray(0.7, jnp.float32),
        "c": jax.random.normal(k[2], (2, 3, 4)),
        "row": jax.random.normal(k[3], (1, 4)),
    }


def objective(params, i):
    """A bumpy objective that changes with the step, so the gradients keep changing."""
    leaves = jax.tree_util.tree_leaves(params)
    return sum(jnp.sum(jnp.sin(x * (1 + 0.1 * i)) ** 2 + 0.5 * x**2) for x in leaves)


def state_floats(tree):
    return sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(tree))


# -- equivalence ----------------------------------------------------------------------------
def as_lopt_state(ref, state):
    """The reference-layout state `ref` as a HyperV2State (decays moved to the leading axis)."""
    treedef = jax.tree_util.tree_structure(state.params)

    def leading(x):
        return jnp.moveaxis(x, -1, 0)

    def flat(xs):
        return jnp.concatenate([leading(x).reshape(x.shape[-1], -1) for x in xs], axis=1)

    return state.replace(
        params=jax.tree_util.tree_unflatten(treedef, ref["params"]),
        iteration=ref["iteration"],
        momenta=flat(ref["m"]),
        rms=flat(ref["rms"]),
        fac_rows=tuple(leading(x) for x in ref["v_row"]),
        fac_cols=tuple(leading(x) for x in ref["v_col"]),
        fac_diag=tuple(leading(x) for x in ref["v_diag"]),
        num_steps=ref["num_steps"],
        lstm_hidden_state={"hidden": ref["hidden"], "cell": ref["cell"]},
        loss_history=LossHistoryState(
            ref["loss_means"], ref["loss_min"], ref["loss_decays"], ref["loss_count"]
        ),
    )


@pytest.mark.parametrize(
    "bugged_loss, bugged_lstm, num_steps", [(False, False, 8), (True, True, 20)]
)
def test_update_matches_the_reference_reading_over_steps(bugged_loss, bugged_lstm, num_steps):
    """Each step starts both from the reference reading's state, so rounding does not compound."""
    theta = random_reference_theta(16, 8)
    lopt = HyperV2(**SMALL, bugged_loss_features=bugged_loss, bugged_next_lstm_state=bugged_lstm)
    opt = lopt.opt_fn(theta)
    params = mixed_params()
    ref = reference_init(params, theta, num_steps, bugged_loss)
    ours = opt.init(params, num_steps=num_steps)
    for a, b in zip(
        jax.tree_util.tree_leaves(as_lopt_state(ref, ours)), jax.tree_util.tree_leaves(ours)
    ):
        np.testing.assert_array_equal(a, b)  # the same initial state
    update = jax.jit(opt.update)
    worst = 0.0
    for i in range(6):
        loss, grads = jax.value_and_grad(objective)(as_lopt_state(ref, ours).params, i)
        ours = update(as_lopt_state(ref, ours), grads, loss=loss)
        ref = reference_update(theta, ref, jax.tree_util.tree_leaves(grads), loss, bugged_lstm)
        want = as_lopt_state(ref, ours)
        for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        for a, b in zip(jax.tree_util.tree_leaves(ours.params), ref["params"]):
            worst = max(worst, float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))))
    moved = [
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(ref["params"], jax.tree_util.tree_leaves(params))
    ]
    assert min(moved) > 1e-3  # every tensor moved
    # Measured: at most 1.2e-6 of a tensor's largest value (float32 rounding of large steps).
    assert worst < 1e-5


def test_the_theta_has_the_reference_layout():
    for config in (SMALL, {}):
        lopt = HyperV2(**config)
        theta = lopt.init(jax.random.PRNGKey(0))
        lstm, bank = lopt.lstm_hidden_size, lopt.param_inits
        want = reference_theta_shapes(lstm, bank)
        got = jax.tree_util.tree_map(lambda x: tuple(x.shape), theta)
        assert got == want
    assert (HyperV2().lstm_hidden_size, HyperV2().param_inits) == (128, 64)
    # The reference's init: truncated normal 1/sqrt(fan_in) (the MLP: all 30 inputs), zero biases.
    big = HyperV2().init(jax.random.PRNGKey(1))
    w = np.asarray(big["ff_mod_stack"]["~"]["w0__3"])
    assert abs(w.std() * np.sqrt(30) / 0.88 - 1.0) < 0.1  # truncation at 2 std: 0.88
    assert np.all(np.abs(w) <= 2.0 / np.sqrt(30) + 1e-6)
    assert not np.any(big["ff_mod_stack"]["~"]["b1"])
    assert not np.any(big["lstm_init_state"]["hidden"])


def test_contract_with_a_small_configuration():
    check_learned_optimizer(HyperV2(**SMALL))


def test_registered_and_needs_the_loss_and_the_horizon():
    assert type(lopt_core.get_learned_optimizer("HyperV2")) is HyperV2
    lopt = HyperV2(**SMALL)
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    assert opt.needs_loss is True
    with pytest.raises(ValueError, match=r"opt\.init\(params, num_steps=N\)"):
        opt.init({"w": jnp.ones(3)})
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        opt.init({"w": jnp.ones(3)}, num_steps=0)
    state = opt.init({"w": jnp.ones(3)}, num_steps=5)
    assert isinstance(state, HyperV2State) and int(state.num_steps) == 5
    with pytest.raises(ValueError, match=r"needs the loss"):
        opt.update(state, {"w": jnp.ones(3)})
    with pytest.raises(ValueError, match="initial_adafactor_decays must hold exactly 3"):
        HyperV2(initial_adafactor_decays=(0.9,))
    with pytest.raises(TypeError, match="bugged_loss_features must be True or False"):
        HyperV2(bugged_loss_features=1)
    with pytest.raises(ValueError, match="HyperV2: step_bound must be a finite number > 0"):
        HyperV2(step_bound=0.0)


def test_state_floats_per_parameter():
    """4 floats per parameter (3 momenta, 1 second moment) besides the parameter itself."""
    lopt = HyperV2(**SMALL)
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    params = {"w": jnp.zeros((256, 512)), "b": jnp.zeros((512,))}
    state = opt.init(params, num_steps=10)
    n = 256 * 512 + 512
    # Per tensor: the LSTM state; per run: the loss history, counters, horizon.
    per_tensor = state_floats(state.lstm_hidden_state) + state_floats(state.loss_history) + 2
    per_param = (state_floats(state) - n - per_tensor) / n
    # Exactly 4 + (3 * (256 + 512) factored + 3 * 512 unfactored) / n.
    assert per_param == pytest.approx(4.0 + 3 * (256 + 512 + 512) / n, rel=1e-12)
    assert 4.0 <= per_param < 4.05


def _quadratic_run(lopt, steps=300):
    """Losses and the largest step relative to its tensor's rms, `steps` steps on a quadratic."""
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    curvature = jnp.linspace(0.1, 2.0, 20)

    def loss_fn(p):
        return 0.5 * jnp.sum(curvature * p["x"] ** 2) + 0.5 * jnp.sum(p["m"] ** 2)

    def body(s, _):
        loss, grads = jax.value_and_grad(loss_fn)(s.params)
        new = opt.update(s, grads, loss=loss)
        pairs = zip(jax.tree_util.tree_leaves(new.params), jax.tree_util.tree_leaves(s.params))
        ratio = jnp.max(
            jnp.stack([jnp.max(jnp.abs(a - b)) / jnp.sqrt(jnp.mean(b**2) + 1e-9) for a, b in pairs])
        )
        return new, (loss, ratio)

    state = opt.init({"x": jnp.ones(20), "m": jnp.ones((5, 4))}, num_steps=steps)
    _, (losses, ratios) = jax.jit(lambda s: jax.lax.scan(body, s, None, length=steps))(state)
    return np.asarray(losses), np.asarray(ratios)


def test_initial_theta_takes_small_bounded_steps():
    """The random initial theta is no trained optimizer, in the reference as here.

    Its per-tensor step size and the mixed MLPs are random (the reference's
    `HyperV2.init`), so a step may go uphill: measured on this quadratic with
    PRNGKey(0), the loss goes 20.5 -> 126 over 300 steps (PRNGKey(3): 20.5 ->
    6.8). What holds by construction is that every step is a small multiple
    (`0.001 * step_size * direction`) of each tensor's root mean square value,
    so the loss moves slowly and stays finite; with `step_bound` no step goes
    uphill to first order, and the loss decreases.
    """
    losses, ratios = _quadratic_run(HyperV2())
    assert np.all(np.isfinite(losses))
    assert losses.max() < 10 * losses[0]
    assert ratios.max() < 0.05  # measured: below 0.02
    bounded, _ = _quadratic_run(HyperV2(step_bound=1e-3))
    assert np.all(np.diff(bounded) <= 1e-6)  # never uphill
    assert bounded[-1] < 0.95 * bounded[0]  # measured: 20.5 -> 17.8


# -- velo ------------------------------------------------------------------------------------
class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.relu(nn.Dense(16)(x)))[..., 0]


def test_velo_trains_a_flax_mlp_in_an_optax_loop():
    x = jax.random.normal(jax.random.PRNGKey(1), (128, 4))
    y = jnp.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2]
    model = _MLP()
    params = model.init(jax.random.PRNGKey(0), x)

    def loss_fn(p):
        return jnp.mean(jnp.square(model.apply(p, x) - y))

    tx = lopt_learned.velo(num_steps=50)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    state = tx.init(params)

    @jax.jit
    def step(p, s):
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, s = tx.update(grads, s, p, loss=loss)
        return optax.apply_updates(p, updates), s, loss

    losses = []
    for _ in range(50):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    final = float(loss_fn(params))
    assert np.all(np.isfinite(losses)) and np.isfinite(final)
    # The untrained initial theta moves slowly: measured 0.6455 -> 0.6394.
    assert final < losses[0]
    assert max(losses) < 1.01 * losses[0]


def test_velo_options():
    theta = random_reference_theta(16, 8)
    params = {"w": jnp.ones((3, 2))}
    grads = {"w": jnp.full((3, 2), 0.5)}
    tx = lopt_learned.velo(num_steps=6, theta=theta, max_training_steps=3, weight_decay=0.1)
    state = tx.init(params)
    # Two calls accumulate, then one step of the wrapped HyperV2 with horizon 6 // 2.
    updates, state = tx.update(grads, state, params, loss=1.0)
    assert not np.any(updates["w"])
    updates, state = tx.update(grads, state, params, loss=1.0)
    assert np.all(updates["w"] != 0)
    # The HyperV2 the theta's shapes imply, with VeLO's loss features.
    plain = lopt_learned.velo(num_steps=3, theta=theta)
    lopt = HyperV2(**SMALL, bugged_loss_features=False)
    opt = lopt.opt_fn(theta)
    s = opt.init(params, num_steps=3)
    wd_grads = {"w": grads["w"] + 0.1 * params["w"]}
    want = opt.get_params(opt.update(s, wd_grads, loss=1.0 + 0.05 * 6.0))["w"] - params["w"]
    np.testing.assert_allclose(updates["w"], want, rtol=1e-6)
    assert int(plain.init(params).num_steps) == 3
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        lopt_learned.velo(num_steps=0)
    with pytest.raises(TypeError, match="velo: theta must be None"):
        lopt_learned.velo(num_steps=3, theta=3.0)
    with pytest.raises(ValueError, match="needs the loss"):
        plain.update(grads, plain.init(params), params)
