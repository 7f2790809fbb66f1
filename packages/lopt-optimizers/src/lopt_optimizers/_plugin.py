"""Registers this package's optimizers with lopt through the `lopt` entry point."""

import lopt_core
from lopt_optimizers import optimizers, wrappers
from lopt_optimizers.optax_optimizer import OptaxOptimizer

#: name -> (factory, one-line description). Wrappers and OptaxOptimizer need their
#: inner optimizer or optax transform as an argument.
OPTIMIZERS = {
    "SGD": (optimizers.SGD, "Stochastic gradient descent (optax.sgd)."),
    "SGDM": (optimizers.SGDM, "SGD with heavy-ball momentum (optax.sgd with momentum)."),
    "Adam": (optimizers.Adam, "Adam with eps_root, the reference's defaults (optax.adam)."),
    "AdamW": (optimizers.AdamW, "Adam with decoupled weight decay (optax.adamw)."),
    "NAdamW": (optimizers.NAdamW, "Nesterov Adam with decoupled and L2 weight decay."),
    "RMSProp": (optimizers.RMSProp, "RMSProp with optional momentum (optax.rmsprop)."),
    "AdaBelief": (optimizers.AdaBelief, "AdaBelief: Adam on the gradient's deviation (optax)."),
    "AdaGrad": (optimizers.AdaGrad, "AdaGrad: summed squared gradients (optax.adagrad)."),
    "Adafactor": (optimizers.Adafactor, "Adafactor: factored second moments (optax.adafactor)."),
    "Lamb": (optimizers.Lamb, "LAMB: Adam with a layer-wise trust ratio (optax.lamb)."),
    "Lars": (optimizers.Lars, "LARS: momentum SGD with a layer-wise trust ratio (optax.lars)."),
    "RAdam": (optimizers.RAdam, "Rectified Adam (optax.radam)."),
    "Yogi": (optimizers.Yogi, "Yogi: Adam with an additive second moment (optax.yogi)."),
    "SM3": (optimizers.SM3, "SM3: memory-efficient cover-set accumulators (optax)."),
    "OptaxOptimizer": (OptaxOptimizer, "Any optax.GradientTransformation as a lopt optimizer."),
    "GradientClipOptimizer": (
        wrappers.GradientClipOptimizer,
        "Wrapper: clips gradients by value before any optimizer's step.",
    ),
    "WeightDecayWrapper": (
        wrappers.WeightDecayWrapper,
        "Wrapper: adds an L2 penalty to any optimizer's gradients and loss.",
    ),
    "GraftedOptimizer": (
        wrappers.GraftedOptimizer,
        "Wrapper: one optimizer's step norm with another's step direction.",
    ),
    "GradientAccumulator": (
        wrappers.GradientAccumulator,
        "Wrapper: averages gradients over k calls, then steps any optimizer.",
    ),
}


@lopt_core.hookimpl
def lopt_register_optimizers(register):
    """Registers every optimizer and wrapper of lopt-optimizers."""
    for name, (factory, description) in OPTIMIZERS.items():
        register(name, factory, description)
