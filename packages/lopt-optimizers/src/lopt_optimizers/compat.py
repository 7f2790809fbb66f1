"""The reference library's spellings, kept working in one place.

lopt-optimizers uses optax's argument names (`b1`, `b2`, `eps`, `eps_root`) and
one field name for model state (`model_state`). Code written for
learned_optimization (`Adam(beta1=0.9, epsilon=1e-8)`, `opt.beta1`,
`opt_state.state`) keeps working: the old argument names are accepted by the
constructors and readable as attributes, and `OptaxState.state` reads
`model_state`. Importing `lopt_optimizers` applies this module.
"""

from __future__ import annotations

from lopt_core.component import renamed_arguments
from lopt_optimizers.optax_optimizer import OptaxState
from lopt_optimizers.optimizers import Adam, NAdamW, RMSProp
from lopt_optimizers.wrappers import GraftedOptimizerState

#: class -> {reference spelling: lopt spelling}.
RENAMED: dict[type, dict[str, str]] = {
    Adam: {"beta1": "b1", "beta2": "b2", "epsilon": "eps", "epsilon_root": "eps_root"},
    NAdamW: {"beta1": "b1", "beta2": "b2", "epsilon": "eps"},
    RMSProp: {"epsilon": "eps"},
}


def _reader(new: str) -> property:
    return property(lambda self: getattr(self, new), doc=f"The older spelling of `{new}`.")


def _apply() -> None:
    for cls, names in RENAMED.items():
        renamed_arguments(**names)(cls)
        for old, new in names.items():
            setattr(cls, old, _reader(new))
    for state in (OptaxState, GraftedOptimizerState):
        state.state = _reader("model_state")  # type: ignore[attr-defined]


_apply()
