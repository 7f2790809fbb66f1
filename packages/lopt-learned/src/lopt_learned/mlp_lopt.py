"""Per-parameter MLP learned optimizers: MLPLOpt ("LOLv2") and Part 6's PerParamMLP.

Both apply one small MLP to every scalar parameter. All leaves are concatenated
into one float32 vector (see `_common.Layout`), so the MLP is a single matmul
chain over every parameter (features laid out `(features, num_params)`);
per-tensor statistics are segment reductions.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

from lopt_core import LearnedOptimizer
from lopt_core.typing import MetaParams, ModelState, Params, PRNGKey
from lopt_learned._base import ThetaOptimizer, check_theta
from lopt_learned._common import (
    F32,
    TIMESCALES,
    check_grads,
    keep_model_state,
    layout_of,
    mlp_apply,
    mlp_layers,
    mlp_params,
    second_moment_normalize,
    tanh_time_features,
)

MOMENTUM_DECAYS = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
"""Decays of MLPLOpt's six momentum accumulators."""

_NORMALIZED = 2 + len(MOMENTUM_DECAYS)
NUM_FEATURES = _NORMALIZED + len(TIMESCALES)
"""MLPLOpt's inputs per parameter: gradient, parameter, 6 momenta, 11 time features."""


@flax.struct.dataclass
class MLPLOptState:
    """State of an MLPLOpt optimizer.

    Attributes:
      params: the parameters.
      model_state: the model state, or None.
      iteration: int32 number of updates applied.
      momenta: float32 `(6, num_params)`: every parameter's momenta, one row per
        decay in `MOMENTUM_DECAYS`, leaves concatenated in tree order.
    """

    params: Params
    model_state: ModelState
    iteration: jax.Array
    momenta: jax.Array


class MLPLOptOptimizer(ThetaOptimizer):
    """The optimizer an `MLPLOpt` theta describes (see `MLPLOpt`)."""

    def init(
        self,
        params: Params,
        model_state: ModelState = None,
        num_steps: int | None = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> MLPLOptState:
        """Zero momenta, iteration 0; `num_steps` and `key` are unused."""
        del num_steps, key, kwargs
        layout = layout_of(params)
        return MLPLOptState(
            params=params,
            model_state=model_state,
            iteration=jnp.asarray(0, jnp.int32),
            momenta=jnp.zeros((len(MOMENTUM_DECAYS), layout.total), F32),
        )

    def update(
        self,
        opt_state: MLPLOptState,
        grads: Params,
        loss: Any = None,
        model_state: ModelState = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> MLPLOptState:
        """One step: update the momenta, build the 19 features, apply the MLP.

        Raises:
          ValueError: grads are not shaped like the params.
        """
        del loss, key, kwargs
        lopt = self.lopt
        layout = layout_of(opt_state.params)
        check_grads(layout, grads, type(lopt).__name__)
        g = layout.flatten(grads)
        p = layout.flatten(opt_state.params)
        decays = jnp.asarray(MOMENTUM_DECAYS, F32)[:, None]
        m = opt_state.momenta * decays + (1.0 - decays) * g[None]
        feats = second_moment_normalize(layout, jnp.concatenate([g[None], p[None], m], 0))
        layers = mlp_layers(self.theta)
        w0, b0 = layers[0]
        # The time features are the same for every parameter: fold them into the
        # first layer's bias instead of tiling them over all parameters.
        time_bias = b0 + tanh_time_features(opt_state.iteration) @ w0[_NORMALIZED:]
        out = mlp_apply([(w0[:_NORMALIZED], b0), *layers[1:]], feats, first_bias=time_bias)
        step = out[0] * jnp.exp(out[1] * lopt.exp_mult) * lopt.step_mult
        return MLPLOptState(
            params=layout.unflatten(p - step),
            model_state=keep_model_state(opt_state.model_state, model_state),
            iteration=opt_state.iteration + 1,
            momenta=m,
        )


class MLPLOpt(LearnedOptimizer):
    """A per-parameter MLP learned optimizer, the reference's "LOLv2".

    Every parameter gets 19 features: its gradient, its value and six momenta
    (decays 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999), each of these 8 divided by its
    root mean square over the tensor, plus 11 training-step features
    `tanh(t / tau - 1)` for tau in 1, 3, 10, ..., 100k. An MLP
    (19 -> hidden_size x hidden_layers -> 2, ReLU) gives a direction and a
    magnitude, and `p -= direction * exp(magnitude * exp_mult) * step_mult`.

    theta is the MLP's weights, named as haiku's `hk.nets.MLP` names them.

    Example:
      >>> lopt = MLPLOpt()
      >>> opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
      >>> state = opt.init({"w": jnp.ones([3, 2])})
      >>> state = opt.update(state, {"w": jnp.ones([3, 2])})

    References:
      Metz et al., "Understanding and correcting pathologies in the training of
      learned optimizers", ICML 2019 (arXiv:1810.10180).
    """

    def __init__(
        self,
        exp_mult: float = 0.001,
        step_mult: float = 0.001,
        hidden_size: int = 32,
        hidden_layers: int = 2,
    ) -> None:
        """Args:
        exp_mult: multiplier of the magnitude output inside the exponential.
        step_mult: multiplier of the whole step.
        hidden_size: width of each hidden layer.
        hidden_layers: number of hidden layers.
        """
        self.exp_mult = exp_mult
        self.step_mult = step_mult
        self.hidden_size = int(hidden_size)
        self.hidden_layers = int(hidden_layers)

    def init(self, key: PRNGKey) -> MetaParams:
        """The MLP's initial weights: `{"mlp/~/linear_i": {"w", "b"}}`."""
        sizes = [self.hidden_size] * self.hidden_layers + [2]
        return mlp_params(key, sizes, NUM_FEATURES)

    def opt_fn(self, theta: MetaParams, is_training: bool = False) -> MLPLOptOptimizer:
        """The optimizer using these MLP weights."""
        layers = tuple(f"mlp/~/linear_{i}" for i in range(self.hidden_layers + 1))
        check_theta(theta, layers, type(self).__name__)
        return MLPLOptOptimizer(self, theta, is_training)


@flax.struct.dataclass
class PerParamMLPState:
    """State of a PerParamMLP optimizer.

    Attributes:
      params: the parameters.
      model_state: the model state, or None.
      iteration: int32 number of updates applied.
      momentums: float32 `(num_params,)`, leaves concatenated in tree order.
    """

    params: Params
    model_state: ModelState
    iteration: jax.Array
    momentums: jax.Array


class PerParamMLPOptimizer(ThetaOptimizer):
    """The optimizer a `PerParamMLP` theta describes."""

    def init(
        self,
        params: Params,
        model_state: ModelState = None,
        num_steps: int | None = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> PerParamMLPState:
        """Zero momentum, iteration 0."""
        del num_steps, key, kwargs
        layout = layout_of(params)
        return PerParamMLPState(
            params=params,
            model_state=model_state,
            iteration=jnp.asarray(0, jnp.int32),
            momentums=jnp.zeros((layout.total,), F32),
        )

    def update(
        self,
        opt_state: PerParamMLPState,
        grads: Params,
        loss: Any = None,
        model_state: ModelState = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> PerParamMLPState:
        """Updates the momentum, then `p -= scale * 0.01 * exp(mag * 0.01)` from the MLP."""
        del loss, key, kwargs
        decay = self.lopt.decay
        layout = layout_of(opt_state.params)
        check_grads(layout, grads, type(self.lopt).__name__)
        g = layout.flatten(grads)
        p = layout.flatten(opt_state.params)
        m = opt_state.momentums * decay + g * (1.0 - decay)
        out = mlp_apply(mlp_layers(self.theta["nn"]), jnp.stack([p, m, g], axis=0))
        step = out[0] * 0.01 * jnp.exp(out[1] * 0.01)
        return PerParamMLPState(
            params=layout.unflatten(p - step),
            model_state=keep_model_state(opt_state.model_state, model_state),
            iteration=opt_state.iteration + 1,
            momentums=m,
        )


class PerParamMLP(LearnedOptimizer):
    """Part 6's per-parameter MLP: (param, momentum, grad) -> 2 outputs -> a step.

    theta is `{"nn": weights of hk.nets.MLP([hidden_size, 2])}` on 3 inputs; the
    same key gives the same theta as the notebook's class.
    """

    def __init__(self, decay: float = 0.9, hidden_size: int = 64) -> None:
        """Args: decay: the momentum decay; hidden_size: the MLP's hidden width."""
        self.decay = decay
        self.hidden_size = int(hidden_size)

    def init(self, key: PRNGKey) -> MetaParams:
        """`{"nn": MLP weights}`: 3 -> hidden_size -> 2."""
        return {"nn": mlp_params(key, [self.hidden_size, 2], 3)}

    def opt_fn(self, theta: MetaParams, is_training: bool = False) -> PerParamMLPOptimizer:
        """The optimizer using these MLP weights."""
        check_theta(theta, ("nn",), type(self).__name__)
        return PerParamMLPOptimizer(self, theta, is_training)
