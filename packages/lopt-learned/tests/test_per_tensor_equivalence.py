"""The flat (all-leaves-concatenated) per-parameter optimizers equal a per-tensor computation.

Each architecture is recomputed here tensor by tensor, as the reference library
describes it (features per tensor, normalised over the tensor's axes, time
features tiled over it, the MLP applied per tensor), and compared with the
library's update over several steps on a tree with a matrix, a 3-d kernel, a
vector and a scalar.
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from lopt_learned import AdafacMLPLOpt, MLPLOpt
from lopt_learned.adafac_mlp_lopt import factored_dims

TIMESCALES = jnp.asarray([1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000], jnp.float32)


def _params():
    k = jax.random.split(jax.random.PRNGKey(5), 4)
    return {
        "w": jax.random.normal(k[0], (5, 3)),
        "k": jax.random.normal(k[1], (2, 4, 3)),
        "b": jax.random.normal(k[2], (3,)),
        "s": jnp.asarray(0.7),
    }


def _grads(params, i):
    return jax.tree_util.tree_map(lambda p: jnp.sin(3.0 * p + i) + 0.1 * p, params)


def _normalize(x):
    axes = tuple(range(x.ndim - 1))
    return x * jax.lax.rsqrt(1e-5 + jnp.mean(jnp.square(x), axis=axes, keepdims=True))


def _tiled_time(iteration, shape):
    t = jnp.tanh(iteration / TIMESCALES - 1.0)
    return jnp.broadcast_to(t, (*shape, 11))


def test_mlp_lopt_matches_per_tensor_reference():
    lopt = MLPLOpt()
    theta = lopt.init(jax.random.PRNGKey(0))
    net = hk.without_apply_rng(hk.transform(lambda x: hk.nets.MLP([32, 32, 2])(x)))
    decays = jnp.asarray([0.1, 0.5, 0.9, 0.99, 0.999, 0.9999])
    params = _params()
    opt = lopt.opt_fn(theta)
    state = opt.init(params)
    update = jax.jit(opt.update)
    ref_p = params
    ref_m = jax.tree_util.tree_map(lambda p: jnp.zeros((*p.shape, 6)), params)
    for i in range(4):
        grads = _grads(ref_p, i)
        state = update(state, grads)
        ref_m = jax.tree_util.tree_map(
            lambda m, g: decays * m + (1 - decays) * g[..., None], ref_m, grads
        )

        def one(p, g, m, i=i):
            p1, g1, m1 = (p[None], g[None], m[None]) if p.ndim == 0 else (p, g, m)
            feats = _normalize(jnp.concatenate([g1[..., None], p1[..., None], m1], -1))
            inp = jnp.concatenate([feats, _tiled_time(float(i), p1.shape)], -1)
            out = net.apply(theta, inp)
            step = out[..., 0] * jnp.exp(out[..., 1] * 0.001) * 0.001
            return jnp.reshape(p1 - step, p.shape)

        ref_p = jax.tree_util.tree_map(one, ref_p, grads, ref_m)
        got = opt.get_params(state)
        for k in params:
            np.testing.assert_allclose(got[k], ref_p[k], rtol=1e-5, atol=1e-6, err_msg=k)
    moved = max(float(jnp.max(jnp.abs(ref_p[k] - params[k]))) for k in params)
    assert moved > 1e-4


def test_adafac_mlp_lopt_matches_per_tensor_reference():
    lopt = AdafacMLPLOpt()
    theta = lopt.init(jax.random.PRNGKey(0))
    # Non-zero decay offsets, so that the learned decays matter.
    theta["momentum_decays"] = jnp.asarray([0.01, -0.02, 0.03])
    theta["adafactor_decays"] = jnp.asarray([-0.01, 0.02, 0.0])
    theta["rms_decays"] = jnp.asarray([0.01])
    nn = theta["nn"]["~"]

    def to_decay(init, offset):
        return 1 - jnp.exp((jnp.log(1 - jnp.asarray(init)) / 10 + offset) * 10)

    mom_d = to_decay([0.9, 0.99, 0.999], theta["momentum_decays"])
    rms_d = to_decay([0.999], theta["rms_decays"])
    fac_d = to_decay([0.9, 0.99, 0.999], theta["adafactor_decays"])
    params = _params()
    opt = lopt.opt_fn(theta)
    state = opt.init(params)
    update = jax.jit(opt.update)
    ref = {}
    for k, p in params.items():
        dims = factored_dims(p.shape)
        acc = {"m": jnp.zeros((*p.shape, 3)), "rms": jnp.zeros((*p.shape, 1))}
        if dims is None:
            acc["v"] = jnp.zeros((*p.shape, 3))
        else:
            d1, d0 = dims
            acc["row"] = jnp.zeros((*np.delete(p.shape, d0), 3))
            acc["col"] = jnp.zeros((*np.delete(p.shape, d1), 3))
        ref[k] = {"p": p, **acc}
    for i in range(4):
        grads = _grads({k: v["p"] for k, v in ref.items()}, i)
        state = update(state, grads)
        for k, r in ref.items():
            g = grads[k]
            p = r["p"]
            r["m"] = mom_d * r["m"] + (1 - mom_d) * g[..., None]
            r["rms"] = rms_d * r["rms"] + (1 - rms_d) * jnp.square(g)[..., None]
            g2 = jnp.square(g)[..., None] + 1e-30
            dims = factored_dims(g.shape)
            rs = jax.lax.rsqrt(r["rms"] + 1e-6)
            feats = [g[..., None], p[..., None], r["m"], r["rms"], r["m"] * rs, rs]
            if dims is None:
                r["v"] = fac_d * r["v"] + (1 - fac_d) * g2
                fac_g = g[..., None] * jax.lax.rsqrt(jnp.maximum(r["v"] + 1e-9, 1e-9))
                inv = jax.lax.rsqrt(r["v"] + 1e-8)
                feats += [fac_g, r["v"], r["v"], inv, inv, r["m"] * (r["v"] + 1e-6) ** -0.5]
            else:
                d1, d0 = dims
                r["row"] = fac_d * r["row"] + (1 - fac_d) * jnp.mean(g2, axis=d0)
                r["col"] = fac_d * r["col"] + (1 - fac_d) * jnp.mean(g2, axis=d1)
                red = d1 - 1 if d1 > d0 else d1
                rcm = jnp.mean(r["row"], axis=red, keepdims=True)
                rf = jnp.expand_dims(jax.lax.rsqrt(jnp.maximum(r["row"] / (rcm + 1e-9), 1e-9)), d0)
                cf = jnp.expand_dims(jax.lax.rsqrt(jnp.maximum(r["col"], 1e-9)), d1)
                shape = (*g.shape, 3)
                row = jnp.broadcast_to(jnp.expand_dims(r["row"], d0), shape)
                col = jnp.broadcast_to(jnp.expand_dims(r["col"], d1), shape)
                feats += [
                    g[..., None] * rf * cf,
                    row,
                    col,
                    jax.lax.rsqrt(row + 1e-8),
                    jax.lax.rsqrt(col + 1e-8),
                    r["m"] * rf * cf,
                ]
            x = jnp.concatenate(feats, -1)
            shape1 = x.shape[:-1] if x.ndim > 1 else ()
            x = x[None] if p.ndim == 0 else x
            x = jnp.concatenate([_normalize(x), _tiled_time(float(i), x.shape[:-1])], -1)
            for j in range(3):
                x = x @ nn[f"w{j}"] + nn[f"b{j}"]
                if j < 2:
                    x = jax.nn.relu(x)
            step = x[..., 0] * jnp.exp(x[..., 1] * 0.001) * 0.001
            r["p"] = jnp.reshape((p[None] if p.ndim == 0 else p) - step, shape1 or p.shape)
        got = opt.get_params(state)
        for k in params:
            np.testing.assert_allclose(got[k], ref[k]["p"], rtol=1e-5, atol=1e-6, err_msg=k)
    assert theta["nn"]["~"]["w0"].shape == (39, 4)
