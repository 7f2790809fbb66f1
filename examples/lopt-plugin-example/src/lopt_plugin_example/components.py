"""The plugin's components, written against lopt-core's interfaces only."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

import lopt_core


class ShiftedQuadratic(lopt_core.Task):
    """A quadratic bowl `sum((x - shift)^2)` in `dim` dimensions, without data.

    Args:
      dim: number of parameters.
      shift: location of the minimum.
    """

    def __init__(self, dim: int = 4, shift: float = 1.0) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive; got {dim}.")
        self.dim = dim
        self.shift = shift

    def init(self, key: jax.Array) -> dict[str, jax.Array]:
        return {"x": jax.random.normal(key, (self.dim,))}

    def loss(self, params: Any, key: jax.Array, data: Any) -> jax.Array:
        return jnp.sum(jnp.square(params["x"] - self.shift))


@flax.struct.dataclass
class SignSGDState:
    """Parameters, model state and step count of sign SGD."""

    params: Any
    model_state: Any
    iteration: jax.Array


class SignSGD(lopt_core.Optimizer):
    """Sign SGD: `p -= lr * sign(g)`.

    Args:
      learning_rate: the step size.

    References:
      Bernstein et al., signSGD: Compressed Optimisation for Non-Convex Problems, 2018.
    """

    def __init__(self, learning_rate: float = 0.01) -> None:
        self.learning_rate = learning_rate

    def init(self, params, model_state=None, num_steps=None, key=None, **kwargs) -> SignSGDState:
        return SignSGDState(params, model_state, jnp.asarray(0, jnp.int32))

    def update(self, opt_state, grads, loss=None, model_state=None, key=None, **kwargs):
        params = jax.tree_util.tree_map(
            lambda p, g: p - self.learning_rate * jnp.sign(g).astype(p.dtype),
            opt_state.params,
            grads,
        )
        return SignSGDState(params, model_state, opt_state.iteration + 1)


class _ThetaSignSGD(SignSGD):
    def __init__(self, theta: Any) -> None:
        self.learning_rate = jnp.exp(theta["log_lr"])


class LearnableSignSGD(lopt_core.LearnedOptimizer):
    """Sign SGD with a meta-learned log learning rate.

    Args:
      initial_lr: the learning rate theta starts from.
    """

    def __init__(self, initial_lr: float = 0.01) -> None:
        self.initial_lr = initial_lr

    def init(self, key: jax.Array) -> dict[str, jax.Array]:
        return {"log_lr": jnp.log(jnp.asarray(self.initial_lr, jnp.float32))}

    def opt_fn(self, theta: Any, is_training: bool = False) -> SignSGD:
        return _ThetaSignSGD(theta)
