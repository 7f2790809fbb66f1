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

from lopt_core.lazy import attach, indexed_exports

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "LearnedOptimizerState": "_driver",
        "ThetaOptimizer": "_driver",
        "CATALOG": "_plugin",
        "AdafacMLPLOpt": "adafac_mlp_lopt",
        "AdafacMLPLOptState": "adafac_mlp_lopt",
        "Celo": "celo",
        "Celo2": "celo",
        "CeloState": "celo",
        "LoadedLearnedOptimizer": "export",
        "as_optax": "export",
        "load_learned_optimizer": "export",
        "save_learned_optimizer": "export",
        "HParamControllerLOPT": "hparam_controller",
        "HParamControllerState": "hparam_controller",
        "HParamState": "hparams",
        "LearnableAdam": "hparams",
        "LearnableSGD": "hparams",
        "LearnableSGDM": "hparams",
        "MetaSGDWD": "hparams",
        "HyperV2": "hyper_v2",
        "HyperV2State": "hyper_v2",
        "MLPLOpt": "mlp_lopt",
        "MLPLOptState": "mlp_lopt",
        "PerParamMLP": "mlp_lopt",
        "PerParamMLPState": "mlp_lopt",
        "MuAdafacMLPLOpt": "mu_lopt",
        "MuAdafacMLPLOptState": "mu_lopt",
        "mup_lr_scales": "mu_lopt",
        "NNAdam": "nn_adam",
        "NNAdamState": "nn_adam",
        "velo": "prefab",
        "list_pretrained": "_pretrained",
        "pretrained": "_pretrained",
        "load_pretrained": "_pretrained",
        "load_reference_checkpoint": "reference_checkpoint",
        "RNNMLPLOpt": "rnn_mlp_lopt",
        "RNNMLPLOptState": "rnn_mlp_lopt",
    }
    | indexed_exports(__name__, "lopt_learned._plugin:CATALOG"),
    ("_cli", "compat"),
    catalog="CATALOG",
)
