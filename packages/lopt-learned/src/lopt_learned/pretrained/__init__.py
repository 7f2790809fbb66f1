"""Meta-trained thetas that ship with lopt-learned.

| name | architecture | meta-trained on |
| --- | --- | --- |
| `MLPLOpt_Digits8` | `MLPLOpt()` | `ImageMLPFamily_Digits8` (8x8 digit MLPs, 200-step horizons), PES, by `mlp_lopt_digits8.recipe.toml` |

Example:
  >>> from lopt_learned import as_optax, load_pretrained
  >>> loaded = load_pretrained("MLPLOpt_Digits8")
  >>> tx = as_optax(loaded.lopt, loaded.theta)
"""

from __future__ import annotations

import difflib
from importlib import resources

from lopt_learned.export import LoadedLearnedOptimizer, load_learned_optimizer
from lopt_learned.mlp_lopt import MLPLOpt

# name -> (file, the architecture it must hold: a replaced file cannot switch it).
_FILES = {"MLPLOpt_Digits8": ("mlp_lopt_digits8.lopt", MLPLOpt)}


def list_pretrained() -> list[str]:
    """Names of the meta-trained thetas shipped with this package."""
    return sorted(_FILES)


def load_pretrained(name: str) -> LoadedLearnedOptimizer:
    """Loads a shipped meta-trained learned optimizer by name.

    Args:
      name: one of `list_pretrained()`.

    Returns:
      `LoadedLearnedOptimizer(lopt, theta, metadata)`; the metadata says what it
      was meta-trained on and for how many outer steps.

    Raises:
      KeyError: no shipped theta has that name (the message lists close matches).
      lopt_core.CheckpointError: the shipped file was damaged or replaced (it is
        read with every check of `load_learned_optimizer`, and must hold the
        architecture listed above).
    """
    if name not in _FILES:
        close = difflib.get_close_matches(name, list(_FILES), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(
            f"No pretrained learned optimizer named {name!r}.{hint} Known: {list_pretrained()}."
        )
    filename, architecture = _FILES[name]
    with resources.as_file(resources.files(__name__) / filename) as path:
        return load_learned_optimizer(path, expected=architecture)
