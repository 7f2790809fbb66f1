"""Registers this package's learned optimizers with lopt through the `lopt` entry point."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lopt_core
from lopt_learned.adafac_mlp_lopt import AdafacMLPLOpt
from lopt_learned.hparam_controller import HParamControllerLOPT
from lopt_learned.hparams import LearnableAdam, LearnableSGD, LearnableSGDM, MetaSGDWD
from lopt_learned.mlp_lopt import MLPLOpt, PerParamMLP
from lopt_learned.nn_adam import NNAdam
from lopt_learned.rnn_mlp_lopt import RNNMLPLOpt


@lopt_core.hookimpl
def lopt_register_learned_optimizers(register: Callable[..., Any]) -> None:
    """Registers every architecture of lopt-learned under its class name."""
    register("LearnableSGD", LearnableSGD, "SGD with a meta-learned learning rate")
    register("LearnableSGDM", LearnableSGDM, "SGD with momentum, lr and momentum meta-learned")
    register("LearnableAdam", LearnableAdam, "Adam with its four hyperparameters meta-learned")
    register("MetaSGDWD", MetaSGDWD, "SGD with meta-learned learning rate and weight decay")
    register("MLPLOpt", MLPLOpt, "per-parameter MLP on 19 features (LOLv2)")
    register("AdafacMLPLOpt", AdafacMLPLOpt, "per-parameter MLP on Adafactor-style features")
    register("PerParamMLP", PerParamMLP, "per-parameter MLP on (param, momentum, grad)")
    register("NNAdam", NNAdam, "Adam whose per-tensor hyperparameters a per-tensor LSTM sets")
    register("RNNMLPLOpt", RNNMLPLOpt, "per-tensor LSTM feeding a per-parameter MLP")
    register("HParamControllerLOPT", HParamControllerLOPT, "LSTM on the loss setting SGD's lr")
