"""lopt-optimizers: hand-designed optimizers for lopt, through one adapter from optax.

Every optimizer here is an optax transform behind `OptaxOptimizer`; wrappers
(`GradientClipOptimizer`, `WeightDecayWrapper`, `GraftedOptimizer`,
`GradientAccumulator`) work on any lopt `Optimizer`; `as_optax` goes the other
way and turns any lopt `Optimizer`, learned ones included, into an optax
transform.

Example:
  >>> import jax.numpy as jnp
  >>> from lopt_optimizers import Adam
  >>> opt = Adam(1e-4)
  >>> state = opt.init({"a": jnp.zeros(2)})
  >>> state = opt.update(state, {"a": jnp.ones(2)}, 10.0)
  >>> opt.get_params(state)["a"]
  Array([-9.9999335e-05, -9.9999335e-05], dtype=float32)
"""

from lopt_optimizers import compat
from lopt_optimizers._plugin import CATALOG
from lopt_optimizers.optax_optimizer import OptaxBacked, OptaxOptimizer, OptaxState
from lopt_optimizers.optimizers import (
    SGD,
    SGDM,
    SM3,
    AdaBelief,
    Adafactor,
    AdaGrad,
    Adam,
    AdamW,
    Lamb,
    Lars,
    NAdamW,
    RAdam,
    RMSProp,
    Yogi,
)
from lopt_optimizers.to_optax import as_optax, needs_loss
from lopt_optimizers.wrappers import (
    GradientAccumulator,
    GradientAccumulatorState,
    GradientClipOptimizer,
    GraftedOptimizer,
    GraftedOptimizerState,
    WeightDecayWrapper,
)

#: The registered optimizers (from the catalog) and the other public names.
__all__ = sorted(
    {
        *CATALOG.exported_names(),
        "CATALOG",
        "GradientAccumulatorState",
        "GraftedOptimizerState",
        "OptaxBacked",
        "OptaxState",
        "as_optax",
        "compat",
        "needs_loss",
    }
)
