"""An example third-party lopt plugin: a task, an optimizer and a learned optimizer.

The entry point `lopt_plugin_example:CATALOG` names the catalog that declares them.
"""

from lopt_plugin_example.components import (
    CATALOG,
    LearnableSignSGD,
    ShiftedQuadratic,
    SignSGD,
    SignSGDState,
)

__all__ = ["CATALOG", "LearnableSignSGD", "ShiftedQuadratic", "SignSGD", "SignSGDState"]
