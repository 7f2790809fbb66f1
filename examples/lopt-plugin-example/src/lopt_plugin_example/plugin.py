"""Registers the example components with lopt; named by the `lopt` entry point."""

import lopt_core
from lopt_plugin_example.components import LearnableSignSGD, ShiftedQuadratic, SignSGD


@lopt_core.hookimpl
def lopt_register_tasks(register):
    register("example_quadratic", ShiftedQuadratic)


@lopt_core.hookimpl
def lopt_register_optimizers(register):
    register("example_signsgd", SignSGD)


@lopt_core.hookimpl
def lopt_register_learned_optimizers(register):
    register("example_learnable_signsgd", LearnableSignSGD)
