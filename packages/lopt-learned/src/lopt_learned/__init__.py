"""lopt_learned: learned optimizer architectures, usable in lopt or any optax loop."""

from lopt_learned.adafac_mlp_lopt import AdafacMLPLOpt
from lopt_learned.hparams import LearnableAdam, LearnableSGD, LearnableSGDM, MetaSGDWD
from lopt_learned.mlp_lopt import MLPLOpt, PerParamMLP

__all__ = [
    "AdafacMLPLOpt",
    "LearnableAdam",
    "LearnableSGD",
    "LearnableSGDM",
    "MLPLOpt",
    "MetaSGDWD",
    "PerParamMLP",
]
