"""Calls into any lopt Optimizer, passing optional arguments only when they carry a value.

Optimizers written by hand (as in the Part 1 and Part 6 notebooks) often declare
only some of `model_state`, `num_steps` and `key`; passing those only when they
are set lets the wrappers and `as_optax` drive such optimizers too. The loss is
always passed, since Part 1's `update(opt_state, grads, loss, ...)` requires it.
"""

from __future__ import annotations

from typing import Any

from lopt_core.typing import OptState, Params

_INIT_OPTIONAL = ("model_state", "num_steps", "key")
_UPDATE_OPTIONAL = ("model_state", "key")


def _given(names: tuple[str, ...], values: tuple[Any, ...], call: str) -> dict[str, Any]:
    if len(values) > len(names):
        raise TypeError(f"{call} takes at most {len(names)} optional arguments ({names}).")
    return {k: v for k, v in zip(names, values) if v is not None}


def call_init(opt: Any, params: Params, *optional: Any, **kwargs: Any) -> OptState:
    """`opt.init(params, ...)`; `optional` is `(model_state, num_steps, key)`, Nones left out."""
    return opt.init(params, **kwargs, **_given(_INIT_OPTIONAL, optional, "call_init"))


def call_update(
    opt: Any, opt_state: OptState, grads: Params, loss: Any = None, *optional: Any, **kwargs: Any
) -> OptState:
    """`opt.update(opt_state, grads, loss=loss, ...)`; `optional` is `(model_state, key)`."""
    extra = _given(_UPDATE_OPTIONAL, optional, "call_update")
    return opt.update(opt_state, grads, loss=loss, **kwargs, **extra)
