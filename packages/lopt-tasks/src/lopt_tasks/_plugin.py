"""Registers this package's components with lopt through the `lopt` entry point.

Registering builds nothing: each entry is a factory, and a task reads its data on
its first batch.
"""

from __future__ import annotations

import lopt_core
from lopt_tasks import _cli, conv, generative, image_mlp, lm, parametric, quadratics


@lopt_core.hookimpl
def lopt_register_tasks(register):
    """Registers the quadratic and image tasks."""
    register("QuadraticTask", quadratics.QuadraticTask)
    register("BatchQuadraticTask", quadratics.BatchQuadraticTask)
    register("NoisyMeanQuadraticTask", quadratics.NoisyMeanQuadraticTask)
    for factory in [
        *image_mlp.NAMED_TASKS,
        *conv.NAMED_TASKS,
        *generative.NAMED_TASKS,
        *lm.NAMED_TASKS,
    ]:
        register(factory.__name__, factory)


@lopt_core.hookimpl
def lopt_register_task_families(register):
    """Registers the quadratic and parametric image families."""
    register("FixedDimQuadraticFamily", quadratics.FixedDimQuadraticFamily)
    register("FixedDimQuadraticFamilyData", quadratics.FixedDimQuadraticFamilyData)
    register("NoisyQuadraticFamily", quadratics.NoisyQuadraticFamily)
    register("ImageMLPFamily_Digits8", parametric.ImageMLPFamily_Digits8)
    register("ImageConvFamily_Digits8", parametric.ImageConvFamily_Digits8)
    register("SampledImageMLPFamily", parametric.SampledImageMLPFamily)
    register("SampledImageConvFamily", parametric.SampledImageConvFamily)
    register("LMRNNFamily_EmbeddedText", lm.LMRNNFamily_EmbeddedText)
    register("SampledLMRNNFamily", lm.SampledLMRNNFamily)


@lopt_core.hookimpl
def lopt_register_commands(register):
    """Registers `lopt data prepare NAME` and `lopt data status NAME`."""
    register("data", _cli.setup_data_command, "prepare TFDS datasets and check they are readable")
