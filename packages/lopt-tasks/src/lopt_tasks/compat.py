"""Older argument spellings, kept working as aliases: the one place they live.

lopt-tasks uses one name per concept: `hidden_sizes` for the widths (or channels)
of hidden layers, `model` for the model an adapter wraps. The reference library's
spellings, and this package's earlier ones, still work:

| class | older spelling | name |
| --- | --- | --- |
| `ParametricImageMLP` | `hidden_layers` | `hidden_sizes` |
| `ParametricImageConv`, `ConvTask` | `hidden_units` | `hidden_sizes` |
| `HaikuTask` | `transformed` | `model` |
| `LinenTask` | `module` | `model` |

Each class applies its own where it is defined (`with_old_spellings`).
"""

from __future__ import annotations

from lopt_core.component import old_spellings

__all__ = ["RENAMED", "with_old_spellings"]

#: class name -> {old argument name: new argument name}.
RENAMED: dict[str, dict[str, str]] = {
    "ParametricImageMLP": {"hidden_layers": "hidden_sizes"},
    "ParametricImageConv": {"hidden_units": "hidden_sizes"},
    "ParametricImageMLPVAE": {"n_z": "latent_size"},
    "ConvTask": {"hidden_units": "hidden_sizes"},
    "HaikuTask": {"transformed": "model"},
    "LinenTask": {"module": "model"},
}

#: Class decorator applying `RENAMED`, where each class is defined, so the aliases hold
#: however the class is imported.
with_old_spellings = old_spellings(RENAMED)
