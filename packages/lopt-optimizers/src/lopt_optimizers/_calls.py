"""Calls into any lopt Optimizer, passing optional arguments only when they carry a value.

Optimizers written by hand (as in the Part 1 and Part 6 notebooks) often declare
only some of `model_state`, `num_steps` and `key`; passing those only when they
are set lets the wrappers and `as_optax` drive such optimizers too. The loss is
always passed, since Part 1's `update(opt_state, grads, loss, ...)` requires it.
"""

from __future__ import annotations

from typing import Any

from lopt_core.typing import ModelState, OptState, Params, PRNGKey


def call_init(
    opt: Any,
    params: Params,
    model_state: ModelState = None,
    num_steps: int | None = None,
    key: PRNGKey | None = None,
    **kwargs: Any,
) -> OptState:
    """`opt.init(params, ...)` with only the optional arguments that are not None."""
    optional = {"model_state": model_state, "num_steps": num_steps, "key": key}
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    return opt.init(params, **kwargs)


def call_update(
    opt: Any,
    opt_state: OptState,
    grads: Params,
    loss: Any = None,
    model_state: ModelState = None,
    key: PRNGKey | None = None,
    **kwargs: Any,
) -> OptState:
    """`opt.update(opt_state, grads, loss=loss, ...)`, omitting a None model state or key."""
    optional = {"model_state": model_state, "key": key}
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    return opt.update(opt_state, grads, loss=loss, **kwargs)
