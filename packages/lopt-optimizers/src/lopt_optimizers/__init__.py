"""lopt-optimizers: hand-designed optimizers for lopt, through one adapter from optax.

Every optimizer here is an optax transform behind `OptaxOptimizer`; wrappers
(`GradientClipOptimizer`, `WeightDecayWrapper`, `GraftedOptimizer`,
`GradientAccumulator`) work on any lopt `Optimizer`; `as_optax` goes the other
way and turns any lopt `Optimizer`, learned ones included, into an optax
transform. `lopt_optimizers.schedules` holds the reference library's learning-rate
schedules; an optimizer whose schedule depends on the training horizon needs
`num_steps` at `init` (`needs_num_steps`), and `as_optax(opt, num_steps=N)` passes it.
The tuning-free optimizers of `optax.contrib` (`TUNING_FREE`: Prodigy,
ScheduleFreeAdamW, DoG, Mechanic) need no learning-rate search; evaluate models
at `opt.eval_params(state)`, which for ScheduleFreeAdamW is not the training point.

Example:
  >>> import jax.numpy as jnp
  >>> from lopt_optimizers import Adam
  >>> opt = Adam(1e-4)
  >>> state = opt.init({"a": jnp.zeros(2)})
  >>> state = opt.update(state, {"a": jnp.ones(2)}, 10.0)
  >>> opt.get_params(state)["a"]
  Array([-9.9999335e-05, -9.9999335e-05], dtype=float32)
"""

from lopt_core.lazy import attach, indexed_exports

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "CATALOG": "_plugin",
        "OptaxBacked": "optax_optimizer",
        "OptaxOptimizer": "optax_optimizer",
        "OptaxState": "optax_optimizer",
        "AdaBelief": "optimizers",
        "AdaGrad": "optimizers",
        "Adafactor": "optimizers",
        "Adam": "optimizers",
        "AdamW": "optimizers",
        "Lamb": "optimizers",
        "Lars": "optimizers",
        "NAdamW": "optimizers",
        "RAdam": "optimizers",
        "RMSProp": "optimizers",
        "SGD": "optimizers",
        "SGDM": "optimizers",
        "SM3": "optimizers",
        "Yogi": "optimizers",
        "TUNING_FREE": "tuning_free",
        "as_optax": "to_optax",
        "needs_loss": "to_optax",
        "needs_num_steps": "to_optax",
        "HorizonState": "optax_optimizer",
        "GradientAccumulator": "wrappers",
        "GradientAccumulatorState": "wrappers",
        "GradientClipOptimizer": "wrappers",
        "GraftedOptimizer": "wrappers",
        "GraftedOptimizerState": "wrappers",
        "WeightDecayWrapper": "wrappers",
    }
    | indexed_exports(__name__, "lopt_optimizers._plugin:CATALOG"),
    ("compat", "schedules"),
    catalog="CATALOG",
)
