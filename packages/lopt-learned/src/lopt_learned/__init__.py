"""lopt_learned: learned optimizer architectures, usable in lopt or in any optax loop.

Example:
  >>> import jax, optax
  >>> from lopt_learned import LearnableAdam, as_optax
  >>> lopt = LearnableAdam(initial_lr=1e-2)
  >>> tx = as_optax(lopt, lopt.init(jax.random.PRNGKey(0)))
"""

from lopt_learned.adafac_mlp_lopt import AdafacMLPLOpt, AdafacMLPLOptState
from lopt_learned.export import (
    LoadedLearnedOptimizer,
    as_optax,
    load_learned_optimizer,
    save_learned_optimizer,
)
from lopt_learned.hparam_controller import HParamControllerLOPT, HParamControllerState
from lopt_learned.hparams import (
    HParamState,
    LearnableAdam,
    LearnableSGD,
    LearnableSGDM,
    MetaSGDWD,
)
from lopt_learned.mlp_lopt import MLPLOpt, MLPLOptState, PerParamMLP, PerParamMLPState
from lopt_learned.nn_adam import NNAdam, NNAdamState
from lopt_learned.pretrained import list_pretrained, load_pretrained
from lopt_learned.rnn_mlp_lopt import RNNMLPLOpt, RNNMLPLOptState

__all__ = [
    "AdafacMLPLOpt",
    "AdafacMLPLOptState",
    "HParamControllerLOPT",
    "HParamControllerState",
    "HParamState",
    "LearnableAdam",
    "LearnableSGD",
    "LearnableSGDM",
    "LoadedLearnedOptimizer",
    "MLPLOpt",
    "MLPLOptState",
    "MetaSGDWD",
    "NNAdam",
    "NNAdamState",
    "PerParamMLP",
    "PerParamMLPState",
    "RNNMLPLOpt",
    "RNNMLPLOptState",
    "as_optax",
    "list_pretrained",
    "load_learned_optimizer",
    "load_pretrained",
    "save_learned_optimizer",
]
