"""The in-process backend: every gradient estimate is computed here, one outer step at a time."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, ClassVar

import jax

import lopt_core
from lopt_outer import run as run_layer
from lopt_outer.gradient_learner import SingleMachineState
from lopt_outer.run import Backend, Callback, Learner, MetaTrainResult, RunConfig

__all__ = ["InProcessBackend"]


@lopt_core.declare
class InProcessBackend(Backend):
    """Runs `SingleMachineGradientLearner.update` in this process, once per outer step.

    The key of step `t` is `step_key(seed, t)`; the whole learner state (theta,
    the meta-optimizer, every inner-training state) is checkpointed to
    `<output_dir>/checkpoint.lopt`. A killed run started again with the same
    config resumes from its last checkpoint and ends with bit-identical theta to a
    run never interrupted, for keyed datasets and for streamed splits that report
    their position (`get_state`/`set_state`, e.g. `lopt_tasks.streaming.GrainSplit`),
    which the checkpoint records; other plain Python iterators cannot be rewound.

    Example:
      >>> result = meta_train(learner, RunConfig(num_steps=100), InProcessBackend())
    """

    checkpoint_name: ClassVar[str] = run_layer.CHECKPOINT_NAME
    resumes_from: ClassVar[tuple[str, ...]] = (run_layer.CHECKPOINT_NAME,)

    def run(
        self, learner: Learner, config: RunConfig, callback: Callback | None = None
    ) -> MetaTrainResult:
        """Meta-trains `learner` in this process as `config` says.

        Raises:
          ValueError: the checkpoint to resume from was written with another seed.
          CheckpointError: it does not match this learner, or is malformed.
          RunInterrupted: Ctrl-C or SIGTERM stopped the run; the last completed
            step was checkpointed first.
        """
        state = learner.init(jax.random.PRNGKey(config.seed))
        saved = run_layer.find_checkpoint(config, self)
        start = 0
        if saved is not None:
            state = SingleMachineState(
                saved.restored_learner_state(state.gradient_learner_state),
                saved.restored_worker_states(0, state.gradient_estimator_states),
            )
            start = saved.step
            saved.restore_data_state(learner)  # after init, which may read batches
        # The streamed splits' positions after the last completed step: what a
        # checkpoint of that step records, also when a signal stops the next one.
        positions = {"latest": lopt_core.iterator_states(learner)}
        with run_layer.RunLoop(
            config,
            start,
            functools.partial(_save, learner, config, positions),
            callback,
            theta_of=learner.get_meta_params,
            start_state=state,
            learned_optimizer=learner.gradient_learner.learned_optimizer,
        ) as loop:
            while loop.running:
                record = config.summaries and loop.logs(loop.step + 1)
                state, loss, metrics = learner.update(
                    state, run_layer.step_key(config.seed, loop.step), with_metrics=record
                )
                positions["latest"] = lopt_core.iterator_states(learner)
                loop.advance(state)
                loop.report(state, loss, metrics)
            loop.finish(state)
        return MetaTrainResult(state=state, theta=learner.get_meta_params(state), **loop.summary())


def _save(
    learner: Learner,
    config: RunConfig,
    positions: dict[str, Any],
    state: SingleMachineState,
    step: int,
) -> Path:
    """Writes the in-process checkpoint of `state`, a `SingleMachineState`, and the data
    positions after the step that made it (`positions["latest"]`)."""
    return run_layer.save_checkpoint(
        config,
        run_layer.CHECKPOINT_NAME,
        state.gradient_learner_state,
        {"0": state.gradient_estimator_states},
        run_layer.RunCounters(step, step),
        producer=learner.gradient_learner.meta_init,
        data_state=positions["latest"],
    )
