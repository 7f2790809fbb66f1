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

import lopt_core
from lopt_core.typing import MetaParams, Params, PRNGKey
from lopt_core.validation import check_positive, check_positive_int, check_unit_interval
from lopt_learned._common import (
    F32,
    TIMESCALES,
    Layout,
    check_step_and_mlp,
    mlp_apply,
    mlp_layers,
    mlp_params,
    second_moment_normalize,
    set_fields,
    tanh_time_features,
)
from lopt_learned._driver import LearnedArchitecture, LearnedOptimizerState, StepInputs
from lopt_learned._plugin import CATALOG

MOMENTUM_DECAYS = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
"""Decays of MLPLOpt's six momentum accumulators."""

_NORMALIZED = 2 + len(MOMENTUM_DECAYS)
NUM_FEATURES = _NORMALIZED + len(TIMESCALES)
"""MLPLOpt's inputs per parameter: gradient, parameter, 6 momenta, 11 time features."""


def check_step_bound(component: Any) -> None:
    """Checks a component's optional `step_bound`: None, or a finite number > 0.

    Raises:
      ValueError: `step_bound` is not None and not a finite number > 0.
    """
    if component.step_bound is not None:
        owner = type(component).__name__
        set_fields(
            component, step_bound=float(check_positive(component.step_bound, owner, "step_bound"))
        )


def bounded_step(step: jax.Array, grads: jax.Array, step_bound: float | None) -> jax.Array:
    """The `step_bound` option of the per-parameter architectures (`p -= step`).

    With a bound, every coordinate's step is squashed to `bound * tanh(step / bound)`,
    so it never moves by more than `bound`, and is zeroed where its sign disagrees
    with the current gradient's, so it never moves uphill to first order (the
    "cautious" mask of Liang et al., "Cautious Optimizers: Improving Training with
    One Line of Code", 2024). Together they keep even an untrained theta from
    diverging, at any horizon.

    Args:
      step: the raw steps `(total,)`, subtracted from the params.
      grads: the gradients `(total,)`.
      step_bound: the bound (> 0), or None for the raw step unchanged.

    Returns:
      The step to subtract, `(total,)`.
    """
    if step_bound is None:
        return step
    squashed = step_bound * jnp.tanh(step / step_bound)
    return jnp.where(squashed * grads > 0.0, squashed, 0.0)


@flax.struct.dataclass
class MLPLOptState(LearnedOptimizerState):
    """State of an MLPLOpt optimizer: `LearnedOptimizerState`'s fields, and

    Attributes:
      momenta: float32 `(6, num_params)`: every parameter's momenta, one row per
        decay in `MOMENTUM_DECAYS`, leaves concatenated in tree order.
    """

    momenta: jax.Array


@CATALOG.learned_optimizer("MLPLOpt", "per-parameter MLP on 19 features (LOLv2)")
@lopt_core.declare
class MLPLOpt(LearnedArchitecture):
    """A per-parameter MLP learned optimizer, the reference's "LOLv2".

    Every parameter gets 19 features: its gradient, its value and six momenta
    (decays 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999), each of these 8 divided by its
    root mean square over the tensor, plus 11 training-step features
    `tanh(t / tau - 1)` for tau in 1, 3, 10, ..., 100k. An MLP
    (19 -> hidden_size x hidden_layers -> 2, ReLU) gives a direction and a
    magnitude, and `p -= direction * exp(magnitude * exp_mult) * step_mult`.

    That step is unbounded: with an untrained theta the parameters drift until
    the loss diverges (1e3x the initial loss within 5,000 steps on a small MLP).
    `step_bound` (off by default, so the reference's behaviour is unchanged)
    bounds it by construction; see `bounded_step`.

    theta is the MLP's weights, named as haiku's `hk.nets.MLP` names them.

    State: 6 floats per parameter (the momenta), besides the parameters.

    Attributes:
      exp_mult: multiplier of the magnitude output inside the exponential (>= 0).
      step_mult: multiplier of the whole step (> 0).
      hidden_size: width of each hidden layer.
      hidden_layers: number of hidden layers (>= 0).
      step_bound: None (the reference's unbounded step), or a bound > 0 (e.g.
        `step_mult`): each coordinate then moves by at most `step_bound` per step
        and never against the sign of its gradient (`bounded_step`).

    Example:
      >>> lopt = MLPLOpt()
      >>> opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
      >>> state = opt.init({"w": jnp.ones([3, 2])})
      >>> state = opt.update(state, {"w": jnp.ones([3, 2])})

    References:
      Metz et al., "Understanding and correcting pathologies in the training of
      learned optimizers", ICML 2019 (arXiv:1810.10180).
    """

    exp_mult: float = 0.001
    step_mult: float = 0.001
    hidden_size: int = 32
    hidden_layers: int = 2
    step_bound: float | None = None
    state_class = MLPLOptState

    def __post_init__(self) -> None:
        check_step_and_mlp(self)
        check_step_bound(self)

    def init(self, key: PRNGKey) -> MetaParams:
        """The MLP's initial weights: `{"mlp/~/linear_i": {"w", "b"}}`."""
        sizes = [self.hidden_size] * self.hidden_layers + [2]
        return mlp_params(key, sizes, NUM_FEATURES)

    def init_state(
        self, theta: MetaParams, params: Params, layout: Layout, **kwargs: Any
    ) -> dict[str, Any]:
        """Zero momenta."""
        return {"momenta": jnp.zeros((len(MOMENTUM_DECAYS), layout.total), F32)}

    def step(self, theta: MetaParams, state: MLPLOptState, inputs: StepInputs) -> MLPLOptState:
        """Update the momenta, build the 19 features, apply the MLP."""
        layout = inputs.layout
        g, p = inputs.flat()
        decays = jnp.asarray(MOMENTUM_DECAYS, F32)[:, None]
        m = state.momenta * decays + (1.0 - decays) * g[None]
        feats = second_moment_normalize(layout, jnp.concatenate([g[None], p[None], m], 0))
        layers = mlp_layers(theta)
        w0, b0 = layers[0]
        # The time features are the same for every parameter: fold them into the
        # first layer's bias instead of tiling them over all parameters.
        time_bias = b0 + tanh_time_features(state.iteration) @ w0[_NORMALIZED:]
        out = mlp_apply([(w0[:_NORMALIZED], b0), *layers[1:]], feats, first_bias=time_bias)
        step = out[0] * jnp.exp(out[1] * self.exp_mult) * self.step_mult
        step = bounded_step(step, g, self.step_bound)
        return state.replace(params=layout.unflatten(p - step), momenta=m)


@flax.struct.dataclass
class PerParamMLPState(LearnedOptimizerState):
    """State of a PerParamMLP optimizer: `LearnedOptimizerState`'s fields, and

    Attributes:
      momentums: float32 `(num_params,)`, leaves concatenated in tree order.
    """

    momentums: jax.Array


@CATALOG.learned_optimizer("PerParamMLP", "per-parameter MLP on (param, momentum, grad)")
@lopt_core.declare
class PerParamMLP(LearnedArchitecture):
    """Part 6's per-parameter MLP: (param, momentum, grad) -> 2 outputs -> a step.

    The momentum is `m = decay * m + (1 - decay) * g`, the step
    `p -= scale * 0.01 * exp(mag * 0.01)` from the MLP's two outputs. theta is
    `{"nn": weights of hk.nets.MLP([hidden_size, 2])}` on 3 inputs; the same key
    gives the same theta as the notebook's class.

    State: 1 float per parameter (the momentum), besides the parameters.

    Attributes:
      decay: the momentum decay, in [0, 1).
      hidden_size: the MLP's hidden width.
      step_bound: None (the notebook's unbounded step, the default), or a bound
        > 0 per coordinate and step, with steps never against the gradient's sign
        (`bounded_step`); untrained, the unbounded step diverges within 5,000 steps.
    """

    decay: float = 0.9
    hidden_size: int = 64
    step_bound: float | None = None
    state_class = PerParamMLPState

    def __post_init__(self) -> None:
        check_unit_interval(self.decay, "PerParamMLP", "decay")
        set_fields(
            self, hidden_size=check_positive_int(self.hidden_size, "PerParamMLP", "hidden_size")
        )
        check_step_bound(self)

    def init(self, key: PRNGKey) -> MetaParams:
        """`{"nn": MLP weights}`: 3 -> hidden_size -> 2."""
        return {"nn": mlp_params(key, [self.hidden_size, 2], 3)}

    def init_state(
        self, theta: MetaParams, params: Params, layout: Layout, **kwargs: Any
    ) -> dict[str, Any]:
        """Zero momentum."""
        return {"momentums": jnp.zeros((layout.total,), F32)}

    def step(
        self, theta: MetaParams, state: PerParamMLPState, inputs: StepInputs
    ) -> PerParamMLPState:
        """Updates the momentum, then `p -= scale * 0.01 * exp(mag * 0.01)` from the MLP."""
        layout = inputs.layout
        g, p = inputs.flat()
        m = state.momentums * self.decay + g * (1.0 - self.decay)
        out = mlp_apply(mlp_layers(theta["nn"]), jnp.stack([p, m, g], axis=0))
        step = bounded_step(out[0] * 0.01 * jnp.exp(out[1] * 0.01), g, self.step_bound)
        return state.replace(params=layout.unflatten(p - step), momentums=m)
