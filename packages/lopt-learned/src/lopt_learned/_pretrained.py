"""Meta-trained thetas that ship with lopt-learned (the files are in `lopt_learned/pretrained/`).

| name | architecture | meta-trained on | unroll horizons |
| --- | --- | --- | --- |
| `Celo2_General` | `Celo2()` | a mixture of 8x8-digit MLPs (fixed and sampled, weights re-parametrised in [1e-3, 1e3]), MLP autoencoders and quadratics, by `celo2_general.recipe.toml` | 100 to 2,000 steps |
| `MLPLOpt_Digits8` | `MLPLOpt()` | `ImageMLPFamily_Digits8` (8x8 digit MLPs), PES, by `mlp_lopt_digits8.recipe.toml` | 200 steps |

`pretrained(name)` is the optax transform; `load_pretrained(name)` gives the
architecture, theta and metadata (the recipe, the lopt version, the outer steps
and, for `Celo2_General`, its offline-suite report).

Example:
  >>> import optax
  >>> from lopt_learned import pretrained
  >>> tx = pretrained("Celo2_General")
  >>> opt_state = tx.init(params)
  >>> updates, opt_state = tx.update(grads, opt_state, params)
  >>> params = optax.apply_updates(params, updates)
"""

from __future__ import annotations

import difflib
from importlib import resources
from typing import NamedTuple

import optax

from lopt_learned.celo import Celo2
from lopt_learned.export import LoadedLearnedOptimizer, as_optax, load_learned_optimizer
from lopt_learned.mlp_lopt import MLPLOpt


class _Shipped(NamedTuple):
    file: str
    architecture: type  # the class the file must hold: a replaced file cannot switch it
    trained_on: str
    horizon: str


_SHIPPED = {
    "Celo2_General": _Shipped(
        "celo2_general.lopt",
        Celo2,
        "digit MLPs (fixed, sampled, re-parametrised), MLP autoencoders, quadratics",
        "unrolls of 100-2000 steps; needs no horizon",
    ),
    "MLPLOpt_Digits8": _Shipped(
        "mlp_lopt_digits8.lopt",
        MLPLOpt,
        "ImageMLPFamily_Digits8 (1-hidden-layer digit MLPs); the demo's optimizer",
        "200-step unrolls; degrades past about 200 steps",
    ),
}


def list_pretrained() -> dict[str, str]:
    """The shipped meta-trained optimizers: name -> one line (architecture, data, horizon).

    Iterating it gives the names, sorted; `name in list_pretrained()` tests one.
    """
    return {
        name: f"{s.architecture.__name__}; trained on {s.trained_on}; {s.horizon}"
        for name, s in sorted(_SHIPPED.items())
    }


def _entry(name: str) -> _Shipped:
    if name not in _SHIPPED:
        close = difflib.get_close_matches(name, list(_SHIPPED), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(
            f"No pretrained learned optimizer named {name!r}.{hint} Known: {sorted(_SHIPPED)}."
        )
    return _SHIPPED[name]


def load_pretrained(name: str) -> LoadedLearnedOptimizer:
    """Loads a shipped meta-trained learned optimizer by name.

    Args:
      name: one of `list_pretrained()`.

    Returns:
      `LoadedLearnedOptimizer(lopt, theta, metadata)`; the metadata says what it
      was meta-trained on, by which recipe, and for how many outer steps.

    Raises:
      KeyError: no shipped theta has that name (the message lists close matches).
      lopt_core.CheckpointError: the shipped file was damaged or replaced (it is
        read with every check of `load_learned_optimizer`, and must hold the
        architecture listed above).
    """
    entry = _entry(name)
    with resources.as_file(resources.files("lopt_learned") / "pretrained" / entry.file) as path:
        return load_learned_optimizer(path, expected=entry.architecture)


def pretrained(name: str, *, num_steps: int | None = None) -> optax.GradientTransformationExtraArgs:
    """A shipped meta-trained learned optimizer as a ready optax transform.

    `as_optax(lopt, theta, num_steps=num_steps)` of `load_pretrained(name)`:
    `tx.init(params)`, then `tx.update(grads, state, params)` (the shipped
    optimizers need no `loss=`) returns the update to add with
    `optax.apply_updates`.

    Args:
      name: one of `list_pretrained()`.
      num_steps: the training horizon, for architectures whose schedule reads the
        fraction of training done; the shipped ones need none (None).

    Raises:
      KeyError: no shipped theta has that name.
    """
    loaded = load_pretrained(name)
    return as_optax(loaded.lopt, loaded.theta, num_steps=num_steps)
