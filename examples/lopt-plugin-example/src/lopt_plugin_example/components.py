"""The plugin's components: declarations against lopt-core's interfaces only.

Each component is a frozen dataclass (`@lopt_core.declare`) whose fields are its
configuration, checked in `__post_init__`, and is declared in the plugin's
catalog under the name `lopt` finds it by. The entry point names `CATALOG`.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

import lopt_core
from lopt_core.validation import (
    check_learning_rate,
    check_number,
    check_positive,
    check_positive_int,
)

CATALOG = lopt_core.Catalog()


@CATALOG.task("example_quadratic")
@lopt_core.declare
class ShiftedQuadratic(lopt_core.Task):
    """A quadratic bowl `sum((x - shift)^2)` in `dim` dimensions, without data.

    Args:
      dim: number of parameters.
      shift: location of the minimum.
    """

    dim: int = 4
    shift: float = 1.0

    def __post_init__(self) -> None:
        check_positive_int(self.dim, "ShiftedQuadratic", "dim")
        check_number(self.shift, "ShiftedQuadratic", "shift")

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


@CATALOG.optimizer("example_signsgd")
@lopt_core.declare
class SignSGD(lopt_core.Optimizer):
    """Sign SGD: `p -= learning_rate * sign(g)`.

    Args:
      learning_rate: the step size.

    References:
      Bernstein et al., signSGD: Compressed Optimisation for Non-Convex Problems, 2018.
    """

    learning_rate: float = 0.01

    def __post_init__(self) -> None:
        check_learning_rate(self.learning_rate, "SignSGD")

    def init(self, params, model_state=None, num_steps=None, key=None, **kwargs) -> SignSGDState:
        return SignSGDState(params, model_state, jnp.asarray(0, jnp.int32))

    def update(self, opt_state, grads, loss=None, model_state=None, key=None, **kwargs):
        params = jax.tree_util.tree_map(
            lambda p, g: p - self.learning_rate * jnp.sign(g).astype(p.dtype),
            opt_state.params,
            grads,
        )
        return SignSGDState(params, model_state, opt_state.iteration + 1)


@CATALOG.learned_optimizer("example_learnable_signsgd")
@lopt_core.declare
class LearnableSignSGD(lopt_core.LearnedOptimizer):
    """Sign SGD with a meta-learned log learning rate.

    Args:
      initial_lr: the learning rate theta starts from (> 0).
    """

    initial_lr: float = 0.01

    def __post_init__(self) -> None:
        check_positive(self.initial_lr, "LearnableSignSGD", "initial_lr")

    def init(self, key: jax.Array) -> dict[str, jax.Array]:
        return {"log_lr": jnp.log(jnp.asarray(self.initial_lr, jnp.float32))}

    def opt_fn(self, theta: Any, is_training: bool = False) -> SignSGD:
        return SignSGD(jnp.exp(theta["log_lr"]))
