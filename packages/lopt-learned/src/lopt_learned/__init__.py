"""lopt_learned: learned optimizer architectures, usable in lopt or in any optax loop.

Every architecture is a frozen dataclass whose fields are its configuration,
declared beside its class in this package's `CATALOG`, which registers it with
lopt; `__all__` is the catalog's names plus the states and the export functions.

Example:
  >>> import jax, optax
  >>> from lopt_learned import LearnableAdam, as_optax
  >>> lopt = LearnableAdam(initial_learning_rate=1e-2)
  >>> tx = as_optax(lopt, lopt.init(jax.random.PRNGKey(0)))
"""

from lopt_learned import compat
from lopt_learned._driver import LearnedOptimizerState, ThetaOptimizer
from lopt_learned._plugin import CATALOG
from lopt_learned.adafac_mlp_lopt import AdafacMLPLOpt as AdafacMLPLOpt
from lopt_learned.adafac_mlp_lopt import AdafacMLPLOptState
from lopt_learned.celo import Celo as Celo
from lopt_learned.celo import Celo2 as Celo2
from lopt_learned.celo import CeloState as CeloState
from lopt_learned.export import (
    LoadedLearnedOptimizer,
    as_optax,
    load_learned_optimizer,
    save_learned_optimizer,
)
from lopt_learned.hparam_controller import HParamControllerLOPT as HParamControllerLOPT
from lopt_learned.hparam_controller import HParamControllerState
from lopt_learned.hparams import HParamState
from lopt_learned.hparams import LearnableAdam as LearnableAdam
from lopt_learned.hparams import LearnableSGD as LearnableSGD
from lopt_learned.hparams import LearnableSGDM as LearnableSGDM
from lopt_learned.hparams import MetaSGDWD as MetaSGDWD
from lopt_learned.hyper_v2 import HyperV2 as HyperV2
from lopt_learned.hyper_v2 import HyperV2State as HyperV2State
from lopt_learned.mlp_lopt import MLPLOpt as MLPLOpt
from lopt_learned.mlp_lopt import MLPLOptState, PerParamMLPState
from lopt_learned.mlp_lopt import PerParamMLP as PerParamMLP
from lopt_learned.mu_lopt import MuAdafacMLPLOpt as MuAdafacMLPLOpt
from lopt_learned.mu_lopt import MuAdafacMLPLOptState as MuAdafacMLPLOptState
from lopt_learned.mu_lopt import mup_lr_scales as mup_lr_scales
from lopt_learned.nn_adam import NNAdam as NNAdam
from lopt_learned.nn_adam import NNAdamState
from lopt_learned.prefab import velo as velo
from lopt_learned.pretrained import list_pretrained, load_pretrained
from lopt_learned.reference_checkpoint import (
    load_reference_checkpoint as load_reference_checkpoint,
)
from lopt_learned.rnn_mlp_lopt import RNNMLPLOpt as RNNMLPLOpt
from lopt_learned.rnn_mlp_lopt import RNNMLPLOptState

__all__ = CATALOG.exported_names()
__all__ += [
    "CATALOG",
    "AdafacMLPLOptState",
    "CeloState",
    "HParamControllerState",
    "HParamState",
    "HyperV2State",
    "LearnedOptimizerState",
    "LoadedLearnedOptimizer",
    "MLPLOptState",
    "MuAdafacMLPLOptState",
    "NNAdamState",
    "PerParamMLPState",
    "RNNMLPLOptState",
    "ThetaOptimizer",
    "as_optax",
    "compat",
    "list_pretrained",
    "load_learned_optimizer",
    "load_pretrained",
    "load_reference_checkpoint",
    "mup_lr_scales",
    "save_learned_optimizer",
    "velo",
]
