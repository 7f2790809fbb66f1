"""NNAdam: Adam whose per-tensor hyperparameters are steered by a per-tensor LSTM.

Every step, each tensor's statistics (means and variances of its momentum,
second moment, value and gradient, plus its current hyperparameters) go through
an LSTM shared by all tensors. A zero-initialised linear head maps the LSTM
output to four increments, one each for the tensor's learning rate, beta1,
beta2 and epsilon, which move in scaled log spaces and are clipped to valid
ranges. The step is Adam's, modified so that a large epsilon turns off the
second-moment scaling without the learning rate having to grow with it:
`step = lr * (1 + eps) / (eps + sqrt(rms + 1e-10)) * m` (no bias correction).
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

import lopt_core
from lopt_core.typing import MetaParams, Params, PRNGKey
from lopt_core.validation import check_nonnegative, check_positive, check_unit_interval
from lopt_learned import _lstm as lstm
from lopt_learned._common import (
    F32,
    Layout,
    jitted_init,
)
from lopt_learned._driver import LearnedArchitecture, LearnedOptimizerState, StepInputs
from lopt_learned._plugin import CATALOG
from lopt_learned.compat import with_old_spellings

NUM_LSTM_FEATURES = 19
LSTM_HIDDEN_SIZE = 32


def _log_to_param(x: Any) -> jax.Array:
    """A learning rate or an epsilon in its scaled space `0.1 log x`."""
    return 0.1 * jnp.log(jnp.asarray(x, F32))


def _param_to_lr(x: jax.Array) -> jax.Array:
    return jnp.clip(jnp.exp(10.0 * x), 1e-8, 1e3)


def _param_to_eps(x: jax.Array) -> jax.Array:
    return jnp.clip(jnp.exp(10.0 * x), 1e-11, 1e4)


def _beta_to_param(x: Any) -> jax.Array:
    return 0.1 * jnp.log(1.0 - jnp.asarray(x, F32))


def _param_to_beta(x: jax.Array) -> jax.Array:
    return 1.0 - jnp.exp(jnp.clip(10.0 * x, -10.0, 0.0))


def _clip_log_abs(value: jax.Array) -> jax.Array:
    return jnp.clip(jnp.log(1e-8 + jnp.abs(value)), -5.0, 5.0) * 0.5


@flax.struct.dataclass
class NNAdamState(LearnedOptimizerState):
    """State of an NNAdam optimizer: `LearnedOptimizerState`'s fields, and

    Attributes:
      m: float32 `(num_params,)` first moments, leaves concatenated in tree order.
      rms: float32 `(num_params,)` second moments.
      per_layer_lr, per_layer_beta1, per_layer_beta2, per_layer_epsilon: float32
        `(num_tensors,)`, each tensor's hyperparameters in their scaled spaces
        (`0.1 log lr`, `0.1 log(1 - beta)`, `0.1 log eps`).
      lstm_hidden_state: `{"hidden", "cell"}`, float32 `(num_tensors, 32)` each.
    """

    m: jax.Array
    rms: jax.Array
    per_layer_lr: jax.Array
    per_layer_beta1: jax.Array
    per_layer_beta2: jax.Array
    per_layer_epsilon: jax.Array
    lstm_hidden_state: dict[str, jax.Array]


@CATALOG.learned_optimizer("NNAdam", "Adam whose per-tensor hyperparameters a per-tensor LSTM sets")
@with_old_spellings
@lopt_core.declare
class NNAdam(LearnedArchitecture):
    """Adam with per-tensor hyperparameters that a per-tensor LSTM adjusts every step.

    theta: `{"lstm_init_state", "rnn_params", "rnn_to_controls_params",
    "per_layer_lr", "per_layer_beta1", "per_layer_beta2", "per_layer_epsilon"}`:
    the LSTM's initial state and weights (`hk.LSTM(32)` on 19 features), its
    zero-initialised linear head to 4 controls, and the initial hyperparameters
    in their scaled spaces.

    Attributes:
      output_scale: multiplier of the LSTM's increments (how fast hparams move), >= 0.
      initial_learning_rate: the learning rate every tensor starts from (> 0).
      initial_b1: the first-moment decay every tensor starts from, in [0, 1).
      initial_b2: the second-moment decay every tensor starts from, in [0, 1).
      initial_eps: the epsilon every tensor starts from (> 0).

    Example:
      >>> lopt = NNAdam()
      >>> opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
      >>> state = opt.update(opt.init({"w": jnp.ones([3])}), {"w": jnp.ones([3])})

    References:
      The reference library's `nn_adam` (learned_optimization); Kingma & Ba,
      "Adam", ICLR 2015.
    """

    output_scale: float = 0.01
    initial_learning_rate: float = 1e-4
    initial_b1: float = 0.9
    initial_b2: float = 0.999
    initial_eps: float = 1e-8
    state_class = NNAdamState

    def __post_init__(self) -> None:
        check_nonnegative(self.output_scale, "NNAdam", "output_scale")
        check_positive(self.initial_learning_rate, "NNAdam", "initial_learning_rate")
        check_unit_interval(self.initial_b1, "NNAdam", "initial_b1")
        check_unit_interval(self.initial_b2, "NNAdam", "initial_b2")
        check_positive(self.initial_eps, "NNAdam", "initial_eps")

    def init(self, key: PRNGKey) -> MetaParams:
        """The LSTM and head weights, a zero initial LSTM state, the initial hparams."""
        return jitted_init(self, key)

    def _init(self, key: PRNGKey) -> MetaParams:
        k_rnn, k_head = jax.random.split(key)
        return {
            "lstm_init_state": lstm.initial_state(LSTM_HIDDEN_SIZE),
            "per_layer_beta1": _beta_to_param(self.initial_b1),
            "per_layer_beta2": _beta_to_param(self.initial_b2),
            "per_layer_epsilon": _log_to_param(self.initial_eps),
            "per_layer_lr": _log_to_param(self.initial_learning_rate),
            "rnn_params": lstm.init_params(k_rnn, NUM_LSTM_FEATURES, LSTM_HIDDEN_SIZE),
            "rnn_to_controls_params": lstm.linear_init(
                k_head, LSTM_HIDDEN_SIZE, 4, "rnn_to_controls", zero=True
            ),
        }

    def init_state(
        self, theta: MetaParams, params: Params, layout: Layout, **kwargs: Any
    ) -> dict[str, Any]:
        """Zero moments; every tensor starts from theta's hyperparameters and LSTM state."""
        n = layout.num_leaves

        def per_layer(name: str) -> jax.Array:
            return jnp.full((n,), jnp.asarray(theta[name], F32))

        return {
            "m": jnp.zeros((layout.total,), F32),
            "rms": jnp.zeros((layout.total,), F32),
            "per_layer_lr": per_layer("per_layer_lr"),
            "per_layer_beta1": per_layer("per_layer_beta1"),
            "per_layer_beta2": per_layer("per_layer_beta2"),
            "per_layer_epsilon": per_layer("per_layer_epsilon"),
            "lstm_hidden_state": lstm.tile_state(theta["lstm_init_state"], n),
        }

    def step(self, theta: MetaParams, state: NNAdamState, inputs: StepInputs) -> NNAdamState:
        """An Adam-like step at the current hyperparameters, then the LSTM moves them."""
        layout = inputs.layout
        g, p = inputs.flat()
        g = jnp.clip(g, -1000.0, 1000.0)
        s = state
        b1 = layout.broadcast(_param_to_beta(s.per_layer_beta1))
        b2 = layout.broadcast(_param_to_beta(s.per_layer_beta2))
        eps = layout.broadcast(_param_to_eps(s.per_layer_epsilon))
        lr = layout.broadcast(_param_to_lr(s.per_layer_lr))
        m = b1 * s.m + (1.0 - b1) * g
        rms = b2 * s.rms + (1.0 - b2) * g * g
        new_p = p - (lr * (1.0 + eps)) / (eps + jnp.sqrt(rms + 1e-10)) * m

        stats = jnp.stack([m, rms, p, g, jnp.abs(g)], axis=0)
        means = layout.segment_mean(stats)
        centred = stats[:4] - layout.broadcast(means[:4])
        var = layout.segment_mean(jnp.square(centred))
        ranks = np.asarray([len(shape) for shape in layout.shapes])
        feats = {
            "mean_m_mag": _clip_log_abs(means[0]),
            "mean_m_sign": jnp.sign(means[0]),
            "var_m": _clip_log_abs(var[0]),
            "mean_rms": _clip_log_abs(means[1]),
            "mean_sign": jnp.sign(means[1]),
            "var_rms": _clip_log_abs(var[1]),
            "mean_p_mag": _clip_log_abs(means[2]),
            "mean_p_sign": jnp.sign(means[2]),
            "var_p": _clip_log_abs(var[2]),
            "mean_g_mag": _clip_log_abs(means[3]),
            "mean_g_sign": jnp.sign(means[3]),
            "var_g": _clip_log_abs(var[3]),
            "mean_gabs_mag": _clip_log_abs(means[4]),
            "is_scalar": jnp.asarray(np.where(ranks == 0, 1.0, -1.0), F32),
            "is_bias": jnp.asarray(np.where(ranks == 1, 1.0, -1.0), F32),
            "lr": jnp.clip(s.per_layer_lr, -5, 5) * 0.2,
            "beta1": jnp.clip(s.per_layer_beta1, -5, 5) * 0.2,
            "beta2": jnp.clip(s.per_layer_beta2, -5, 5) * 0.2,
            "epsilon": jnp.clip(s.per_layer_epsilon, -5, 5) * 0.2,
        }
        # Sorted by name, so the LSTM's input order does not depend on dict order.
        inputs = jnp.stack([feats[k] for k in sorted(feats)], axis=1)
        out, next_hidden = lstm.apply(
            theta["rnn_params"], inputs, s.lstm_hidden_state, LSTM_HIDDEN_SIZE
        )
        deltas = (
            lstm.linear_apply(theta["rnn_to_controls_params"], "rnn_to_controls", out)
            * self.output_scale
        )
        new_lr = _log_to_param(_param_to_lr(s.per_layer_lr + deltas[:, 0]))
        new_b1 = jnp.clip(10.0 * (s.per_layer_beta1 + deltas[:, 1]), -10.0, 0.0) / 10.0
        new_b2 = jnp.clip(10.0 * (s.per_layer_beta2 + deltas[:, 2]), -10.0, 0.0) / 10.0
        new_eps = _log_to_param(_param_to_eps(s.per_layer_epsilon + deltas[:, 3]))
        return s.replace(
            params=layout.unflatten(new_p),
            m=m,
            rms=rms,
            per_layer_lr=new_lr,
            per_layer_beta1=new_b1,
            per_layer_beta2=new_b2,
            per_layer_epsilon=new_eps,
            lstm_hidden_state=next_hidden,
        )
