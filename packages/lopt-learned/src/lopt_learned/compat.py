"""Older spellings of this package's constructor arguments, kept working.

The architectures use optax's names (`learning_rate`, `b1`, `b2`, `eps`,
`weight_decay`) and one name per concept (`step_mult`, `exp_mult`,
`hidden_layers` for every per-parameter MLP). The spellings of the reference
library and of earlier lopt versions are accepted here, and only here: defining
the class applies them, so `LearnableAdam(initial_lr=1e-2)` builds
`LearnableAdam(initial_learning_rate=1e-2)` and checkpoints recorded with the old
names still load.

Example:
  >>> from lopt_learned import LearnableAdam
  >>> LearnableAdam(initial_lr=1e-2) == LearnableAdam(initial_learning_rate=1e-2)
  True
"""

from __future__ import annotations

from lopt_core.component import old_spellings

__all__ = ["RENAMED", "with_old_spellings"]

_ADAM = {
    "initial_beta1": "initial_b1",
    "initial_beta2": "initial_b2",
    "initial_epsilon": "initial_eps",
}

#: class name -> {old argument name: new argument name}.
RENAMED: dict[str, dict[str, str]] = {
    "LearnableSGD": {"initial_lr": "initial_learning_rate"},
    "LearnableSGDM": {"initial_lr": "initial_learning_rate"},
    "LearnableAdam": {"initial_lr": "initial_learning_rate", **_ADAM},
    "MetaSGDWD": {"initial_lr": "initial_learning_rate", "initial_wd": "initial_weight_decay"},
    "NNAdam": _ADAM,
    "RNNMLPLOpt": {
        "step_multiplier": "step_mult",
        "magnitude_rate": "exp_mult",
        "hidden_layer": "hidden_layers",
    },
}

#: Class decorator: the class's constructor also accepts its spellings in `RENAMED`.
#: Applied where each class is defined, so they hold however the class is imported.
with_old_spellings = old_spellings(RENAMED)
