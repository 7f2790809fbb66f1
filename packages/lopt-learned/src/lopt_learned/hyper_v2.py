"""HyperV2: VeLO's hypernetwork learned optimizer (a per-tensor LSTM writes per-parameter MLPs).

Every step, one LSTM (shared by all tensors, one sequence per tensor) reads 30
statistics of each tensor: the fraction of training done, features of the loss
history, the spread of the tensor's momenta and second moments, and its rank.
Its output mixes a bank of `param_inits` small MLPs into one MLP per tensor and
sets that tensor's step size. The mixed MLP then reads 30 per-parameter features
(gradient, momenta, second moments, Adafactor-style factored accumulators, the
parameter) and outputs a direction and a magnitude.

The theta uses the names and shapes of the reference implementation's haiku
modules, so a checkpoint of the reference (see `reference_checkpoint`) maps onto
it entry for entry.
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
from lopt_core.validation import (
    check_nonnegative,
    check_positive,
    check_positive_int,
    is_traced,
)
from lopt_learned import _lstm as lstm
from lopt_learned._common import F32, Layout, jitted_init, set_fields
from lopt_learned._driver import LearnedArchitecture, LearnedOptimizerState, StepInputs
from lopt_learned._plugin import CATALOG
from lopt_learned.adafac_mlp_lopt import (
    checked_decays,
    factored_dims,
    factored_tensors,
    zero_factored,
)
from lopt_learned.mlp_lopt import bounded_step, check_step_bound

FRACTION_TIMESCALES = (0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1)
"""Points of the training fraction `iteration / num_steps` embedded as `tanh(10 (x - c))`."""
NUM_LOSS_DECAYS = 10
"""Running means of the loss kept for the loss features (9 features: adjacent pairs)."""
NUM_RANKS = 5
"""The tensor rank (dims larger than 1) is one-hot over 0..4; rank 5 and above is all zeros."""
_GRAD_CLIP = 1000.0
_MIX_SCALE = 100.0
_OUTPUTS = 3  # direction, magnitude, and an output the step does not read


@flax.struct.dataclass
class LossHistoryState:
    """Running means of the training loss at `NUM_LOSS_DECAYS` half-lives.

    Attributes:
      means: float32 `(10,)` running means (not bias-corrected).
      running_min: float32 `(10,)` the smallest bias-corrected mean so far.
      decays: float32 `(10,)` the decays, from half-lives log-spaced in
        `[10, num_steps]` (all 10 with `bugged_loss_features`).
      updates: int32 number of losses recorded.
    """

    means: jax.Array
    running_min: jax.Array
    decays: jax.Array
    updates: jax.Array


def _loss_history_init(horizon: Any) -> LossHistoryState:
    halflife = jnp.logspace(1, jnp.log10(jnp.asarray(horizon, F32)), NUM_LOSS_DECAYS)
    return LossHistoryState(
        means=jnp.zeros((NUM_LOSS_DECAYS,), F32),
        running_min=jnp.full((NUM_LOSS_DECAYS,), 999999999999.0, F32),
        decays=jnp.exp(-1.0 / halflife).astype(F32),
        updates=jnp.asarray(0, jnp.int32),
    )


def _loss_history_next(s: LossHistoryState, loss: jax.Array) -> LossHistoryState:
    """Records a loss, clipped to twice the largest running mean (the first loss as is)."""
    correction = 1.0 - s.decays ** (s.updates + 1)
    ceiling = jnp.where(s.updates == 0, loss, jnp.max(s.means / correction))
    loss = jnp.minimum(jnp.abs(ceiling) * 2.0, loss)
    means = s.means * s.decays + loss * (1.0 - s.decays)
    running_min = jnp.minimum(s.running_min, means / correction)
    return LossHistoryState(means, running_min, s.decays, s.updates + 1)


def _loss_history_features(s: LossHistoryState) -> jax.Array:
    """9 features in [-1, 1]: each mean's height above its running minimum, relative to the
    next-longer mean's; zeros for the first two losses."""
    mean = s.means / (1.0 - s.decays**s.updates)
    low = s.running_min[:-1]
    height = (mean[:-1] - low) / jnp.maximum(1e-8, mean[1:] - low)
    feature = jnp.clip(height - 1.0, -1.0, 1.0)
    return jnp.where(s.updates <= 2, feature * 0.0, feature)


def _clip_log_abs(x: jax.Array) -> jax.Array:
    return jnp.clip(jnp.log(1e-8 + jnp.abs(x * 10.0)), -5.0, 5.0) * 0.5


def _rank_one_hot(shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros((NUM_RANKS,), np.float32)
    rank = int(np.sum(np.asarray(shape) > 1))
    if rank < NUM_RANKS:
        out[rank] = 1.0
    return out


@flax.struct.dataclass
class HyperV2State(LearnedOptimizerState):
    """State of a HyperV2 optimizer: `LearnedOptimizerState`'s fields, and

    Attributes:
      momenta: float32 `(num_momentum_decays, num_params)`, leaves concatenated.
      rms: float32 `(num_rms_decays, num_params)` second moments.
      fac_rows, fac_cols, fac_diag: per leaf, the Adafactor accumulators, as in
        `AdafacMLPLOptState` (factored rows and columns for rank >= 2, a full
        accumulator for rank < 2, empty `(k, 0)` arrays otherwise).
      num_steps: int32, the training horizon given to `init`.
      lstm_hidden_state: `{"hidden", "cell"}`, float32 `(num_tensors, lstm_hidden_size)`.
      loss_history: the running loss means the loss features read.
    """

    momenta: jax.Array
    rms: jax.Array
    fac_rows: tuple
    fac_cols: tuple
    fac_diag: tuple
    num_steps: jax.Array
    lstm_hidden_state: dict[str, jax.Array]
    loss_history: LossHistoryState


@CATALOG.learned_optimizer("HyperV2", "VeLO's per-tensor LSTM hypernetwork over per-parameter MLPs")
@lopt_core.declare
class HyperV2(LearnedArchitecture):
    """VeLO's learned optimizer: a per-tensor LSTM that writes the weights of per-parameter MLPs.

    Per tensor, the LSTM reads 30 features, in this order: 9 embeddings
    `tanh(10 (iteration / num_steps - c))` of the fraction of training done; 9
    loss-history features (running loss means at 10 half-lives, compared with
    their running minima); the clipped log mean second moment, the one-hot
    rank (dims > 1), and the clipped log variances of the 3 momenta and of the
    second moment about the momenta's means, all after dividing by the
    tensor's root mean square value. Before the LSTM, the features pass a
    linear layer plus the max over tensors of another linear layer's ReLU (the
    only exchange between tensors). The LSTM's output gives `param_inits`
    mixing weights `c` and a step size `s` per tensor; the tensor's MLP has
    weights `100 * mean_j(c_j * theta_j)` over the bank `theta_j`.

    The MLP (30 -> `ff_hidden_size` x `ff_hidden_layers` -> 3, ReLU) reads per
    parameter, each feature divided by its root mean square over the tensor:
    the clipped (at 1000) gradient `g`, `clip(g, -0.1, 0.1)`, the parameter, 3
    momenta `m`, the second moment `v`, `m / sqrt(v)`, `1 / sqrt(v)`, the
    Adafactor-preconditioned gradient (3 decays), `g / sqrt(v)`, and the
    Adafactor row and column accumulators, their inverse roots, and the
    factored-preconditioned momenta (3 each; tensors of rank < 2 use a full
    accumulator instead). The update is
    `p -= s * direction * exp(exp_mult * magnitude) * step_mult * rms(p)`, with
    `rms(p)` the tensor's root mean square value. There is no weight decay
    here; `lopt_learned.velo` adds it. The step is unbounded, as the
    reference's; `step_bound` (off by default) bounds it (`bounded_step`),
    which keeps an untrained theta from diverging.

    `init` needs the horizon: `opt.init(params, num_steps=N)`. The loss is
    read at every step (`needs_loss`).

    State per parameter: 4 float32 values (3 momenta and 1 second moment)
    besides the parameter itself, plus, per tensor of rank >= 2, 3 factored
    accumulators over the rows and 3 over the columns of its two largest dims,
    or, per tensor of rank < 2, 3 more values per parameter. Per tensor: the
    LSTM state (`2 * lstm_hidden_size`); per run: 30 loss-history values and
    counters. For one large matrix that is 4 floats per parameter.

    Of the reference implementation's options, the defaults (`mix_layers`,
    `param_scale_mult`, every feature on, no output preconditioning, fixed
    decays) are built in; `bugged_loss_features` and `bugged_next_lstm_state`
    keep its two flags that checkpoints depend on.

    Attributes:
      lstm_hidden_size: width of the per-tensor LSTM (VeLO: 512).
      ff_hidden_size: width of the per-parameter MLP's hidden layers.
      ff_hidden_layers: number of hidden layers of the per-parameter MLP (>= 0).
      initial_momentum_decays: momentum decays, each in [0, 1).
      initial_rms_decays: the second-moment decay (one value).
      initial_adafactor_decays: factored accumulator decays, as many as momenta.
      param_inits: MLPs in the bank the LSTM mixes (VeLO: 256).
      exp_mult: multiplier of the magnitude output inside the exponential (>= 0).
      step_mult: multiplier of the whole step (> 0).
      bugged_loss_features: True (the reference's default; its older
        checkpoints) runs every loss mean at a 10-step half-life whatever
        `num_steps` is; VeLO was meta-trained with False (half-lives
        log-spaced from 10 to `num_steps`).
      bugged_next_lstm_state: True keeps the LSTM state at its initial value
        (the reference's older checkpoints were trained so); False carries it.
      step_bound: None (the reference's step), or a bound > 0: each
        coordinate's step is squashed to `bound * tanh(step / bound)` and zeroed
        where it would move uphill against the gradient.

    Example:
      >>> lopt = HyperV2()
      >>> opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
      >>> state = opt.init({"w": jnp.ones([3, 2])}, num_steps=100)
      >>> state = opt.update(state, {"w": jnp.ones([3, 2])}, loss=1.0)

    References:
      Metz, Harrison, Freeman, Merchant, Beyer, Bradbury, Agrawal, Poole,
      Mordatch, Roberts, Sohl-Dickstein, "VeLO: Training Versatile Learned
      Optimizers by Scaling Up", 2022 (arXiv:2211.09760).
    """

    lstm_hidden_size: int = 128
    ff_hidden_size: int = 4
    ff_hidden_layers: int = 2
    initial_momentum_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
    initial_rms_decays: tuple[float, ...] = (0.999,)
    initial_adafactor_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
    param_inits: int = 64
    exp_mult: float = 0.001
    step_mult: float = 0.001
    bugged_loss_features: bool = True
    bugged_next_lstm_state: bool = False
    step_bound: float | None = None
    state_class = HyperV2State
    needs_loss = True

    def __post_init__(self) -> None:
        owner = "HyperV2"
        check_nonnegative(self.exp_mult, owner, "exp_mult")
        check_positive(self.step_mult, owner, "step_mult")
        check_step_bound(self)
        for flag in ("bugged_loss_features", "bugged_next_lstm_state"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(
                    f"{owner}: {flag} must be True or False, got {getattr(self, flag)!r}."
                )
        set_fields(
            self,
            lstm_hidden_size=check_positive_int(self.lstm_hidden_size, owner, "lstm_hidden_size"),
            ff_hidden_size=check_positive_int(self.ff_hidden_size, owner, "ff_hidden_size"),
            ff_hidden_layers=check_positive_int(
                self.ff_hidden_layers, owner, "ff_hidden_layers", minimum=0
            ),
            param_inits=check_positive_int(self.param_inits, owner, "param_inits"),
            **checked_decays(self, owner),
        )

    @property
    def input_sizes(self) -> tuple[int, ...]:
        """Rows of each per-parameter input block, in the MLP's order (its `w0__i` weights)."""
        k, r = len(self.initial_momentum_decays), len(self.initial_rms_decays)
        # g, clip(g), p, m, v, m/sqrt(v), 1/sqrt(v), fac_g, g/sqrt(v), row, col,
        # rsqrt(row), rsqrt(col), factored-preconditioned m.
        return (1, 1, 1, k, r, k, r, k, r, k, k, k, k, k)

    @property
    def num_tensor_features(self) -> int:
        """Inputs of the LSTM per tensor (30 by default)."""
        k, r = len(self.initial_momentum_decays), len(self.initial_rms_decays)
        return len(FRACTION_TIMESCALES) + (NUM_LOSS_DECAYS - 1) + r + NUM_RANKS + 2 * k

    def init(self, key: PRNGKey) -> MetaParams:
        """The bank of MLPs, the mixing layers, the LSTM and its heads (haiku's inits).

        Weights are truncated normal with standard deviation `1 / sqrt(fan_in)`
        (the MLP's first layer: over all 30 inputs), biases zero, and the LSTM
        state starts at zero.
        """
        return jitted_init(self, key)

    def _init(self, key: PRNGKey) -> MetaParams:
        keys = jax.random.split(key, 7)
        n_in, width = self.num_tensor_features, self.lstm_hidden_size
        rnn: dict[str, Any] = {}
        for name, k in zip(("linear", "linear_1", "linear_2"), keys[:3]):
            rnn.update(lstm.linear_init(k, n_in, width, name))
        rnn.update(lstm.init_params(keys[3], width, width))
        rnn.update(lstm.linear_init(keys[4], width, self.param_inits, "rnn_to_controls"))
        rnn.update(lstm.linear_init(keys[5], width, 1, "step_size"))
        bank = jax.vmap(hk.transform(self._make_mlp).init)(
            jax.random.split(keys[6], self.param_inits)
        )
        return {
            "ff_mod_stack": bank,
            "lstm_init_state": lstm.initial_state(width),
            "rnn_params": rnn,
        }

    def _make_mlp(self) -> None:
        """Creates one MLP of the bank: `w0__i` per input block, then `w1`, `w2`, ..."""
        sizes = [self.ff_hidden_size] * self.ff_hidden_layers + [_OUTPUTS]
        last = sum(self.input_sizes)
        for i, width in enumerate(sizes):
            w_init = hk.initializers.TruncatedNormal(stddev=1.0 / np.sqrt(last))
            if i == 0:
                for j, rows in enumerate(self.input_sizes):
                    hk.get_parameter(f"w0__{j}", (rows, width), F32, init=w_init)
            else:
                hk.get_parameter(f"w{i}", (last, width), F32, init=w_init)
            hk.get_parameter(f"b{i}", (width,), F32, init=jnp.zeros)
            last = width

    def init_state(
        self, theta: MetaParams, params: Params, layout: Layout, **kwargs: Any
    ) -> dict[str, Any]:
        """Zero accumulators, the LSTM state from theta, and the horizon `num_steps`.

        Raises:
          ValueError: `num_steps` is missing or not a positive integer.
        """
        num_steps = kwargs.get("num_steps")
        if num_steps is None:
            raise ValueError(
                "HyperV2 needs the training horizon: its features read iteration / "
                "num_steps. Call opt.init(params, num_steps=N) with the number of steps "
                "the run will take (lopt_learned.velo(num_steps) does this for optax)."
            )
        if not is_traced(num_steps):
            check_positive_int(num_steps, "HyperV2", "num_steps")
        k = len(self.initial_adafactor_decays)
        rows, cols, diag = zero_factored(layout, k)
        horizon = 10 if self.bugged_loss_features else num_steps
        return {
            "momenta": jnp.zeros((len(self.initial_momentum_decays), layout.total), F32),
            "rms": jnp.zeros((len(self.initial_rms_decays), layout.total), F32),
            "fac_rows": tuple(rows),
            "fac_cols": tuple(cols),
            "fac_diag": tuple(diag),
            "num_steps": jnp.asarray(num_steps, jnp.int32),
            "lstm_hidden_state": lstm.tile_state(theta["lstm_init_state"], layout.num_leaves),
            "loss_history": _loss_history_init(horizon),
        }

    def _tensor_features(
        self, s: HyperV2State, layout: Layout, p: jax.Array, loss_features: jax.Array
    ) -> jax.Array:
        """The LSTM's inputs `(num_tensors, 30)`, from the state before this step's update."""
        n = layout.num_leaves
        scale = jax.lax.rsqrt(jnp.maximum(1e-9, layout.segment_mean(jnp.square(p)[None])[0]))
        mean_m = layout.segment_mean(s.momenta)
        spread_m = s.momenta - layout.broadcast(mean_m)
        # The second moment's spread is taken about the momenta's means.
        spread_v = s.rms - layout.broadcast(mean_m)
        spreads = layout.segment_mean(jnp.square(jnp.concatenate([spread_m, spread_v], 0)))
        k = mean_m.shape[0]
        var_m, var_v = spreads[:k] * scale**2, spreads[k:] * scale**2
        mean_v = layout.segment_mean(s.rms) * scale
        fraction = jnp.asarray(s.iteration, F32) / jnp.asarray(s.num_steps, F32)
        fraction = jnp.tanh((fraction - jnp.asarray(FRACTION_TIMESCALES, F32)) * 10.0)
        ranks = np.stack([_rank_one_hot(shape) for shape in layout.shapes])
        return jnp.concatenate(
            [
                jnp.tile(fraction[None], (n, 1)),
                jnp.tile(loss_features[None], (n, 1)),
                _clip_log_abs(mean_v).T,
                jnp.asarray(ranks),
                _clip_log_abs(var_m).T,
                _clip_log_abs(var_v).T,
            ],
            axis=1,
        )

    def _mixed_mlps(self, theta: MetaParams, controls: jax.Array) -> list[tuple]:
        """Each tensor's MLP, `100 * mean_j(c_j theta_j)`: `(w, b)` with a leading tensor axis."""
        bank = theta["ff_mod_stack"]["~"]
        scale = _MIX_SCALE / self.param_inits

        def mix(x: jax.Array) -> jax.Array:
            return jnp.tensordot(controls, x, axes=1) * scale

        w0 = jnp.concatenate([bank[f"w0__{j}"] for j in range(len(self.input_sizes))], axis=1)
        layers = [(mix(w0), mix(bank["b0"]))]
        for i in range(1, self.ff_hidden_layers + 1):
            layers.append((mix(bank[f"w{i}"]), mix(bank[f"b{i}"])))
        return layers

    def step(self, theta: MetaParams, state: HyperV2State, inputs: StepInputs) -> HyperV2State:
        """One update: loss history, LSTM over tensors, accumulators, then each tensor's MLP."""
        layout = inputs.layout
        loss = jnp.asarray(inputs.loss, F32)
        history = _loss_history_next(state.loss_history, loss)
        g, p = inputs.flat()
        g = jnp.clip(g, -_GRAD_CLIP, _GRAD_CLIP)

        # Per-tensor LSTM (on the accumulators before this step's gradient).
        x = self._tensor_features(state, layout, p, _loss_history_features(history))
        rnn = theta["rnn_params"]
        pooled = jnp.max(jax.nn.relu(lstm.linear_apply(rnn, "linear_1", x)), axis=0)
        x = lstm.linear_apply(rnn, "linear_2", x) + pooled[None]
        out, next_hidden = lstm.apply(
            {"rnn/linear": rnn["rnn/linear"]},
            x,
            state.lstm_hidden_state,
            self.lstm_hidden_size,
        )
        if self.bugged_next_lstm_state:
            next_hidden = state.lstm_hidden_state
        controls = lstm.linear_apply(rnn, "rnn_to_controls", out)
        step_size = lstm.linear_apply(rnn, "step_size", out)[:, 0]
        layers = self._mixed_mlps(theta, controls)

        mom_d = jnp.asarray(self.initial_momentum_decays, F32)[:, None]
        rms_d = jnp.asarray(self.initial_rms_decays, F32)[:, None]
        fac_d = jnp.asarray(self.initial_adafactor_decays, F32)
        m = state.momenta * mom_d + (1.0 - mom_d) * g[None]
        rms = state.rms * rms_d + (1.0 - rms_d) * jnp.square(g)[None]
        rsqrt = jax.lax.rsqrt(rms + 1e-6)
        k = m.shape[0]

        rows, cols, diag, facs = factored_tensors(layout, g, m, state, fac_d)
        steps = []
        pieces = zip(layout.offsets, layout.sizes, layout.shapes, facs, diag)
        for i, (off, size, shape, fac, d) in enumerate(pieces):
            span = slice(off, off + size)
            ml, gi, pi, rs = m[:, span], g[None, span], p[None, span], rsqrt[:, span]
            if factored_dims(shape) is None:
                # Unfactored tensors precondition the momenta by v ** -0.5, without an epsilon.
                fac = jnp.concatenate([fac[:-k], ml * jnp.reshape(d, (k, size)) ** -0.5], 0)
            feats = jnp.concatenate(
                [
                    gi,
                    jnp.clip(gi, -0.1, 0.1),
                    pi,
                    ml,
                    rms[:, span],
                    ml * rs,
                    rs,
                    fac[:k],
                    gi * rs,
                    fac[k:],
                ],
                0,
            )
            # The per-tensor normalisation of each feature row scales one input of the
            # first layer: fold it into this tensor's weights.
            inv = jax.lax.rsqrt(1e-5 + jnp.sum(jnp.square(feats), axis=1) / max(size, 1))
            w0, b0 = layers[0]
            h = (w0[i] * inv[:, None]).T @ feats + b0[i][:, None]
            for w, b in layers[1:]:
                h = w[i].T @ jax.nn.relu(h) + b[i][:, None]
            p_scale = jnp.sqrt(jnp.sum(jnp.square(pi)) / max(size, 1) + 1e-9)
            steps.append(h[0] * (p_scale * jnp.exp(h[1] * self.exp_mult)) * self.step_mult)
        step = jnp.concatenate(steps) if len(steps) > 1 else steps[0]
        step = bounded_step(step * layout.broadcast(step_size), g, self.step_bound)
        return state.replace(
            params=layout.unflatten(p - step),
            momenta=m,
            rms=rms,
            fac_rows=tuple(rows),
            fac_cols=tuple(cols),
            fac_diag=tuple(diag),
            lstm_hidden_state=next_hidden,
            loss_history=history,
        )
