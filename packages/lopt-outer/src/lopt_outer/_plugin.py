"""Registers this package's components with lopt through the `lopt` entry point."""

from __future__ import annotations

import importlib.util

import lopt_core


@lopt_core.hookimpl
def lopt_register_outer_trainers(register) -> None:
    from lopt_outer import (
        full_es,
        lopt_truncated_step,
        truncated_es,
        truncated_grad,
        truncated_pes,
        truncation_schedule,
    )

    register("TruncatedPES", truncated_pes.TruncatedPES)
    register("TruncatedES", truncated_es.TruncatedES)
    register("FullES", full_es.FullES)
    register("TruncatedGrad", truncated_grad.TruncatedGrad)
    register("FullGrad", truncated_grad.FullGrad)
    register("ConstantTruncationSchedule", truncation_schedule.ConstantTruncationSchedule)
    register("LogUniformLengthSchedule", truncation_schedule.LogUniformLengthSchedule)
    register("NeverEndingTruncationSchedule", truncation_schedule.NeverEndingTruncationSchedule)
    register("ScheduledTruncationSchedule", truncation_schedule.ScheduledTruncationSchedule)
    register("VectorizedLOptTruncatedStep", lopt_truncated_step.VectorizedLOptTruncatedStep)


@lopt_core.hookimpl
def lopt_register_metric_writers(register) -> None:
    from lopt_outer import metric_writers

    register("jsonl", metric_writers.JsonlWriter)
    if importlib.util.find_spec("tensorboardX") is not None:
        register("tensorboard", metric_writers.TensorBoardWriter)


@lopt_core.hookimpl
def lopt_register_commands(register) -> None:
    from lopt_outer import cli

    register("meta-train", cli.setup_meta_train, "meta-train a learned optimizer on a task family")
    register("eval", cli.setup_eval, "compare a (meta-trained) learned optimizer with Adam")
