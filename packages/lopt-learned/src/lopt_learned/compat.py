"""Older spellings of this package's constructor arguments, kept working.

The architectures use optax's names (`learning_rate`, `b1`, `b2`, `eps`,
`weight_decay`) and one name per concept (`step_mult`, `exp_mult`,
`hidden_layers` for every per-parameter MLP). The spellings of the reference
library and of earlier lopt versions are accepted here, and only here: importing
`lopt_learned` applies them, so `LearnableAdam(initial_lr=1e-2)` builds
`LearnableAdam(initial_learning_rate=1e-2)` and checkpoints recorded with the old
names still load.

Example:
  >>> from lopt_learned import LearnableAdam
  >>> LearnableAdam(initial_lr=1e-2) == LearnableAdam(initial_learning_rate=1e-2)
  True
"""

from __future__ import annotations

from lopt_core import renamed_arguments
from lopt_learned.hparams import LearnableAdam, LearnableSGD, LearnableSGDM, MetaSGDWD
from lopt_learned.nn_adam import NNAdam
from lopt_learned.rnn_mlp_lopt import RNNMLPLOpt

_ADAM = {
    "initial_beta1": "initial_b1",
    "initial_beta2": "initial_b2",
    "initial_epsilon": "initial_eps",
}

RENAMED = {
    LearnableSGD: {"initial_lr": "initial_learning_rate"},
    LearnableSGDM: {"initial_lr": "initial_learning_rate"},
    LearnableAdam: {"initial_lr": "initial_learning_rate", **_ADAM},
    MetaSGDWD: {"initial_lr": "initial_learning_rate", "initial_wd": "initial_weight_decay"},
    NNAdam: _ADAM,
    RNNMLPLOpt: {
        "step_multiplier": "step_mult",
        "magnitude_rate": "exp_mult",
        "hidden_layer": "hidden_layers",
    },
}
"""class -> {old argument name: new argument name}."""

for _cls, _names in RENAMED.items():
    renamed_arguments(**_names)(_cls)
