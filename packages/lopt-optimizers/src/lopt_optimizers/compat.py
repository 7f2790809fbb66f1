"""The reference library's spellings, kept working in one place.

lopt-optimizers uses optax's argument names (`b1`, `b2`, `eps`, `eps_root`) and
one field name for model state (`model_state`). Code written for
learned_optimization (`Adam(beta1=0.9, epsilon=1e-8)`, `opt.beta1`,
`opt_state.state`) keeps working: the old argument names are accepted by the
constructors and readable as attributes, and `OptaxState.state` reads
`model_state`. Each class applies its spellings where it is defined.
"""

from __future__ import annotations

from typing import TypeVar

from lopt_core.component import old_spellings

__all__ = ["RENAMED", "model_state_as_state", "with_old_spellings"]

T = TypeVar("T")

#: class name -> {reference spelling: lopt spelling}.
RENAMED: dict[str, dict[str, str]] = {
    "Adam": {"beta1": "b1", "beta2": "b2", "epsilon": "eps", "epsilon_root": "eps_root"},
    "NAdamW": {"beta1": "b1", "beta2": "b2", "epsilon": "eps"},
    "RMSProp": {"epsilon": "eps"},
    "PiecewiseLinearAdam": {
        "beta1": "b1",
        "beta2": "b2",
        "epsilon": "eps",
        "epsilon_root": "eps_root",
    },
}

#: Class decorator: the old argument names are accepted and readable as attributes.
#: Applied where each class is defined, so they hold however the class is imported.
with_old_spellings = old_spellings(RENAMED, readers=True)


def model_state_as_state(cls: type[T]) -> type[T]:
    """Class decorator: a state's `model_state` is also readable as `state` (the reference's)."""
    cls.state = property(  # type: ignore[attr-defined]
        lambda self: self.model_state, doc="The older spelling of `model_state`."
    )
    return cls
