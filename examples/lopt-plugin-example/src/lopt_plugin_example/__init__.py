"""An example third-party lopt plugin: a task, an optimizer and a learned optimizer."""

from lopt_plugin_example.components import LearnableSignSGD, ShiftedQuadratic, SignSGD, SignSGDState

__all__ = ["LearnableSignSGD", "ShiftedQuadratic", "SignSGD", "SignSGDState"]
