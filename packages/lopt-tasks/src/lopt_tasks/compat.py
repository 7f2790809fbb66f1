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

Importing `lopt_tasks` applies them.
"""

from __future__ import annotations

from lopt_core import renamed_arguments
from lopt_tasks.adapters import HaikuTask, LinenTask
from lopt_tasks.conv import ConvTask
from lopt_tasks.parametric import ParametricImageConv, ParametricImageMLP

renamed_arguments(hidden_layers="hidden_sizes")(ParametricImageMLP)
renamed_arguments(hidden_units="hidden_sizes")(ParametricImageConv)
renamed_arguments(hidden_units="hidden_sizes")(ConvTask)
renamed_arguments(transformed="model")(HaikuTask)
renamed_arguments(module="model")(LinenTask)
