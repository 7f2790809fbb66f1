"""RNNMLPLOpt: a per-tensor LSTM conditions a per-parameter MLP (hierarchical).

Every step a per-tensor LSTM reads statistics of each tensor, the normalised
training and validation losses, a summary sent up from the per-parameter MLP and
a summary shared across all tensors. Its output is projected to inputs of the
per-parameter MLP, which computes the step and a summary sent back up.
"""

from __future__ import annotations

from typing import Any

import flax
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

import lopt_core
from lopt_core.typing import MetaParams, Params, PRNGKey
from lopt_core.validation import check_positive_int
from lopt_learned import _lstm as lstm
from lopt_learned._common import (
    F32,
    TIMESCALES,
    Layout,
    check_decays,
    check_step_and_mlp,
    jitted_init,
    mlp_apply,
    mlp_layers,
    mlp_params,
    second_moment_normalize,
    set_fields,
    sin_time_features,
)
from lopt_learned._driver import LearnedArchitecture, LearnedOptimizerState, StepInputs
from lopt_learned._plugin import CATALOG
from lopt_learned.compat import with_old_spellings
from lopt_learned.mlp_lopt import bounded_step, check_step_bound

NUM_TENSOR_FEATURES = 18
"""Per-tensor statistics fed to the LSTM (besides the two conditioning vectors)."""
_TRAIN_LOSS_DECAY = 0.9
_VALID_LOSS_DECAY = 0.95
_CLIP_ALPHA = 0.99
_CLIP_MULT = 10.0


@flax.struct.dataclass
class LossNormalizerState:
    """Running mean and variance of a loss (bias-corrected when read)."""

    mean: jax.Array
    var: jax.Array
    updates: jax.Array


def _loss_norm_init() -> LossNormalizerState:
    return LossNormalizerState(jnp.asarray(0.0, F32), jnp.asarray(0.0, F32), jnp.int32(0))


def _loss_norm_next(s: LossNormalizerState, loss: jax.Array, decay: float) -> LossNormalizerState:
    mean = decay * s.mean + (1.0 - decay) * loss
    var = decay * s.var + (1.0 - decay) * jnp.square(mean - loss)
    return LossNormalizerState(mean, var, s.updates + 1)


def _loss_norm_correction(s: LossNormalizerState, decay: float) -> jax.Array:
    # The maximum keeps XLA from folding `1 - decay**0 + 1e-8` into `(1 + 1e-8) - 1 = 0`.
    return 1.0 / (jnp.maximum(1.0 - decay ** jnp.asarray(s.updates, F32), 0.0) + 1e-8)


def _loss_norm_weight(s: LossNormalizerState, loss: jax.Array, decay: float) -> jax.Array:
    c = _loss_norm_correction(s, decay)
    return jnp.clip((loss - s.mean * c) * jax.lax.rsqrt(s.var * c + 1e-8), -5.0, 5.0)


@flax.struct.dataclass
class DynamicClipState:
    """A running root-mean-square of the gradients, used to clip outliers."""

    iteration: jax.Array
    value: jax.Array


def _clip_log_abs(value: jax.Array) -> jax.Array:
    return jnp.clip(jnp.log(1e-8 + jnp.abs(value)), -5.0, 5.0)


@flax.struct.dataclass
class RNNMLPLOptState(LearnedOptimizerState):
    """State of an RNNMLPLOpt optimizer: `LearnedOptimizerState`'s fields, and

    (its `iteration` counts training and validation steps alike)

    Attributes:
      momenta: float32 `(5, num_params)`, one row per decay, leaves concatenated.
      rms: float32 `(5, num_params)` second moments.
      lstm_hidden_state: `{"hidden", "cell"}`, float32 `(num_tensors, lstm_hidden_size)`.
      from_mlp: float32 `(num_tensors, from_mlp_size)`: each tensor's summary from the MLP.
      from_lstm: float32 `(from_lstm_size,)`: the summary shared across tensors.
      train_loss_accum, valid_loss_accum: running loss statistics.
      dynamic_clip: the running gradient scale used for clipping.
    """

    momenta: jax.Array
    rms: jax.Array
    lstm_hidden_state: dict[str, jax.Array]
    from_mlp: jax.Array
    from_lstm: jax.Array
    train_loss_accum: LossNormalizerState
    valid_loss_accum: LossNormalizerState
    dynamic_clip: DynamicClipState


@CATALOG.learned_optimizer("RNNMLPLOpt", "per-tensor LSTM feeding a per-parameter MLP")
@with_old_spellings
@lopt_core.declare
class RNNMLPLOpt(LearnedArchitecture):
    """A hierarchical learned optimizer: a per-tensor LSTM feeding a per-parameter MLP.

    The LSTM (`lstm_hidden_size` wide, shared by all tensors) reads 18 statistics
    per tensor (log magnitudes and signs of the mean momentum, second moment and
    value; their variances; the weight and gradient norms; the shape; the
    normalised training and validation losses), the MLP's previous summary of
    the tensor and a summary shared across tensors. The MLP
    (`hidden_size` x `hidden_layers`, ReLU) reads 23 per-parameter features
    normalised over the tensor (gradient, value, log |value|, 5 momenta, 5
    second moments, momenta over their root, inverse roots), 11
    `sin(t / (tau pi))` time features, log tensor count, log weight norm, log
    tensor size and the LSTM's projection; it outputs a direction, a magnitude
    and a summary. `p -= direction * exp(magnitude * exp_mult) * step_mult`.
    That step is unbounded (untrained, it reaches 10-30x the initial loss of a
    small MLP within 5,000 steps); `step_bound`, off by default, bounds it
    (`bounded_step`). The loss is required; `update(..., is_valid=True)` records a validation
    loss without moving the parameters (`is_valid` may be a traced boolean).

    Attributes:
      step_mult: multiplier of the whole step (> 0); the reference's `step_multiplier`.
      exp_mult: multiplier of the magnitude inside the exponential (>= 0); the
        reference's `magnitude_rate`.
      hidden_size: width of the per-parameter MLP.
      hidden_layers: hidden layers of the per-parameter MLP (>= 0); the
        reference's `hidden_layer`.
      from_mlp_size: size of the MLP's per-tensor summary sent to the LSTM.
      from_lstm_size: size of the summary shared across tensors.
      lstm_to_ff: size of the LSTM's projection into the MLP.
      lstm_hidden_size: width of the LSTM.
      decays: decays of the momentum and second-moment accumulators, each in [0, 1).
      step_bound: None (the reference's unbounded step, the default), or a bound
        > 0: each coordinate moves by at most `step_bound` per step and never
        against its (clipped) gradient's sign (`bounded_step`).

    State: 10 floats per parameter (5 momenta and 5 second moments), besides the
    parameters, plus the LSTM's per-tensor state.

    Example:
      >>> lopt = RNNMLPLOpt()
      >>> opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
      >>> s = opt.update(opt.init({"w": jnp.ones([3])}), {"w": jnp.ones([3])}, loss=1.0)

    References:
      Metz et al., "Tasks, stability, architecture, and compute: Training more
      effective learned optimizers, and using them to train themselves", 2020
      (arXiv:2009.11243).
    """

    step_mult: float = 0.001
    exp_mult: float = 0.001
    hidden_size: int = 32
    hidden_layers: int = 2
    from_mlp_size: int = 16
    from_lstm_size: int = 18
    lstm_to_ff: int = 17
    lstm_hidden_size: int = 64
    decays: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999, 0.9999)
    step_bound: float | None = None
    state_class = RNNMLPLOptState
    needs_loss = True
    validation_steps = True

    def __post_init__(self) -> None:
        owner = "RNNMLPLOpt"
        check_step_and_mlp(self)
        sizes = ("from_mlp_size", "from_lstm_size", "lstm_to_ff", "lstm_hidden_size")
        set_fields(
            self,
            decays=check_decays(self.decays, owner, "decays"),
            **{n: check_positive_int(getattr(self, n), owner, n) for n in sizes},
        )
        check_step_bound(self)

    def init(self, key: PRNGKey) -> MetaParams:
        """The LSTM, projections, MLP, and initial summaries (variance-scaling init)."""
        return jitted_init(self, key)

    def _init(self, key: PRNGKey) -> MetaParams:
        k1, k2, k3, k4, k5, k6 = jax.random.split(key, 6)
        nd = len(self.decays)
        n_norm = 3 + 4 * nd
        n_mlp = n_norm + len(TIMESCALES) + 3 + self.lstm_to_ff
        n_rnn = NUM_TENSOR_FEATURES + self.from_lstm_size + self.from_mlp_size
        var_init = hk.initializers.VarianceScaling()
        init_vec = hk.transform(lambda n: var_init([n], F32))
        return {
            "ffmod_params": mlp_params(
                k6, [self.hidden_size] * self.hidden_layers + [2 + self.from_mlp_size], n_mlp
            ),
            "initial_from_lstm": init_vec.apply({}, k1, self.from_lstm_size),
            "initial_from_mlp": init_vec.apply({}, k2, self.from_mlp_size),
            "lstm_init_state": lstm.initial_state(self.lstm_hidden_size),
            "rnn_params": lstm.init_params(k3, n_rnn, self.lstm_hidden_size),
            "rnn_to_ff_params": lstm.linear_init(
                k4, self.lstm_hidden_size, self.lstm_to_ff, "rnn_to_ff"
            ),
            "rnn_to_in_params": lstm.linear_init(
                k5, self.lstm_hidden_size, self.from_lstm_size, "rnn_to_in"
            ),
        }

    def init_state(
        self, theta: MetaParams, params: Params, layout: Layout, **kwargs: Any
    ) -> dict[str, Any]:
        """Zero accumulators; the LSTM state and summaries start from theta."""
        n = layout.num_leaves
        k = len(self.decays)
        return {
            "momenta": jnp.zeros((k, layout.total), F32),
            "rms": jnp.zeros((k, layout.total), F32),
            "lstm_hidden_state": lstm.tile_state(theta["lstm_init_state"], n),
            "from_mlp": jnp.tile(jnp.asarray(theta["initial_from_mlp"], F32)[None], (n, 1)),
            "from_lstm": jnp.asarray(theta["initial_from_lstm"], F32),
            "train_loss_accum": _loss_norm_init(),
            "valid_loss_accum": _loss_norm_init(),
            "dynamic_clip": DynamicClipState(
                jnp.asarray(1.0, F32), jnp.asarray(1.0 - _CLIP_ALPHA, F32)
            ),
        }

    def step(
        self, theta: MetaParams, state: RNNMLPLOptState, inputs: StepInputs
    ) -> RNNMLPLOptState:
        """A training step, or with `is_valid=True` only a record of the validation loss.

        `inputs.loss` is the loss at the current params: the training loss, or the
        validation loss when `is_valid` (an `update` option, a bool or a traced
        boolean) is true; then the parameters do not move and the gradients are
        not read.
        """
        is_valid = inputs.options.get("is_valid", False)
        loss = jnp.asarray(inputs.loss, F32)
        valid = state.replace(
            valid_loss_accum=_loss_norm_next(state.valid_loss_accum, loss, _VALID_LOSS_DECAY)
        )
        if isinstance(is_valid, bool) and is_valid:
            return valid
        train = self._train_step(theta, state, inputs, loss)
        if isinstance(is_valid, bool):
            return train
        return jax.tree_util.tree_map(lambda a, b: jnp.where(is_valid, a, b), valid, train)

    def _train_step(
        self, theta: MetaParams, s: RNNMLPLOptState, inputs: StepInputs, loss: jax.Array
    ) -> RNNMLPLOptState:
        layout = inputs.layout
        n_tensors = layout.num_leaves

        train_accum = _loss_norm_next(s.train_loss_accum, loss, _TRAIN_LOSS_DECAY)
        train_loss_feat = _loss_norm_weight(train_accum, loss, _TRAIN_LOSS_DECAY)
        valid_loss = s.valid_loss_accum.mean * _loss_norm_correction(
            s.valid_loss_accum, _VALID_LOSS_DECAY
        )
        valid_loss_feat = _loss_norm_weight(train_accum, valid_loss, _TRAIN_LOSS_DECAY)

        # Clip gradients to a multiple of their running scale, then update that scale.
        clip = s.dynamic_clip
        amount = clip.value / (1.0 - _CLIP_ALPHA**clip.iteration) * _CLIP_MULT
        g, p = inputs.flat()
        g = jnp.clip(g, -amount, amount)
        # Per-tensor sums of squares: the weight and gradient norms, and the clip scale.
        sums = layout.segment_sum(jnp.stack([jnp.square(p), jnp.square(g)], axis=0))
        sizes = np.maximum(np.asarray(layout.sizes, np.float32), 1.0)
        new_scale = jnp.sqrt(1e-8 + jnp.mean(sums[1] / sizes))
        next_clip = DynamicClipState(
            clip.iteration + 1, clip.value * _CLIP_ALPHA + new_scale * (1.0 - _CLIP_ALPHA)
        )

        decays = jnp.asarray(self.decays, F32)[:, None]
        m = s.momenta * decays + (1.0 - decays) * g[None]
        rms = s.rms * decays + (1.0 - decays) * jnp.square(g)[None]
        nd = m.shape[0]

        # Per-tensor statistics for the LSTM; the momentum and second-moment ones
        # are over the tensor and its decays together.
        means = layout.segment_mean(jnp.stack([m.mean(0), rms.mean(0), p], axis=0))
        centred = jnp.concatenate([m, rms, p[None]], axis=0) - layout.broadcast(
            jnp.repeat(means, np.asarray([nd, nd, 1]), axis=0)
        )
        sq = jnp.square(centred)
        var = layout.segment_mean(
            jnp.stack([sq[:nd].mean(0), sq[nd : 2 * nd].mean(0), sq[2 * nd]], axis=0)
        )
        shapes = np.ones((n_tensors, 4), np.float32)
        for i, shape in enumerate(layout.shapes):
            dims = list(shape)
            if len(dims) > 4:
                dims = [int(np.prod(dims[:-3])), *dims[-3:]]
            shapes[i, : len(dims)] = dims
        ranks = np.asarray([len(shape) for shape in layout.shapes])
        scalars = {
            "g_norm": _clip_log_abs(jnp.sqrt(sums[1])),
            "is_scalar": jnp.asarray(np.where(ranks == 0, 1.0, -1.0), F32),
            "mean_ms_mag": _clip_log_abs(means[0]),
            "mean_ms_sign": jnp.sign(means[0]),
            "mean_rms": _clip_log_abs(means[1]),
            "mean_sign": jnp.sign(means[1]),
            "mean_v_mag": _clip_log_abs(means[2]),
            "mean_v_sign": jnp.sign(means[2]),
            "norm_weight": _clip_log_abs(jnp.sqrt(sums[0])),
            "train_loss_feat": jnp.full((n_tensors,), train_loss_feat),
            "valid_loss_feat": jnp.full((n_tensors,), valid_loss_feat),
            "var_ms": _clip_log_abs(var[0]),
            "var_rms": _clip_log_abs(var[1]),
            "var_v": _clip_log_abs(var[2]),
        }
        for j in range(4):
            scalars[f"shape_{j}"] = jnp.asarray(np.log(np.maximum(shapes[:, j], 1.0)) - 1.0, F32)
        blocks = {
            **{name: v[:, None] for name, v in scalars.items()},
            "from_mlp": s.from_mlp,
            "from_lstm": jnp.tile(s.from_lstm[None], (n_tensors, 1)),
        }
        # Sorted by name, so the LSTM's input order does not depend on dict order.
        rnn_in = jnp.concatenate([blocks[name] for name in sorted(blocks)], axis=1)
        lstm_out, next_hidden = lstm.apply(
            theta["rnn_params"], rnn_in, s.lstm_hidden_state, self.lstm_hidden_size
        )
        new_from_lstm = jnp.mean(
            lstm.linear_apply(theta["rnn_to_in_params"], "rnn_to_in", lstm_out), 0
        )
        ff_inputs = lstm.linear_apply(theta["rnn_to_ff_params"], "rnn_to_ff", lstm_out)

        # Per-parameter features, normalised over each tensor (names sorted).
        rsqrt = jax.lax.rsqrt(rms + 1e-6)
        per_param = jnp.concatenate(
            [g[None], p[None], jnp.log(jnp.abs(p) + 1e-8)[None], m, rms, m * rsqrt, rsqrt],
            axis=0,
        )
        per_param = second_moment_normalize(layout, per_param)
        n_norm = per_param.shape[0]
        # Features constant over a tensor enter through a per-tensor first-layer bias
        # instead of being tiled over its parameters.
        per_tensor = jnp.concatenate(
            [
                jnp.tile(sin_time_features(s.iteration)[None], (n_tensors, 1)),
                jnp.full((n_tensors, 1), np.log(float(n_tensors)) - 1.0, F32),
                jnp.log(jnp.sqrt(sums[0]) + 1e-8)[:, None],
                jnp.asarray(np.log(sizes)[:, None], F32),
                ff_inputs,
            ],
            axis=1,
        )
        layers = mlp_layers(theta["ffmod_params"])
        w0, b0 = layers[0]
        tensor_bias = layout.broadcast((b0 + per_tensor @ w0[n_norm:]).T)
        out = mlp_apply([(w0[:n_norm], b0), *layers[1:]], per_param, first_bias=tensor_bias)
        step = out[0] * jnp.exp(out[1] * self.exp_mult) * self.step_mult
        step = bounded_step(step, g, self.step_bound)
        return s.replace(
            params=layout.unflatten(p - step),
            momenta=m,
            rms=rms,
            lstm_hidden_state=next_hidden,
            from_mlp=layout.segment_mean(out[2:]).T,
            from_lstm=new_from_lstm,
            train_loss_accum=train_accum,
            dynamic_clip=next_clip,
        )
