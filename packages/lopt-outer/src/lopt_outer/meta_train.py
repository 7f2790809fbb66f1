"""The meta-training loop: progress, metrics, periodic atomic checkpoints, exact resume."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

import lopt_core
from lopt_core import MetaParams
from lopt_outer.gradient_learner import SingleMachineGradientLearner, SingleMachineState
from lopt_outer.metric_writers import JsonlWriter, to_floats

__all__ = ["CHECKPOINT_NAME", "MetaTrainResult", "meta_train", "step_key"]

CHECKPOINT_NAME = "checkpoint.lopt"


@dataclasses.dataclass
class MetaTrainResult:
    """What `meta_train` returns.

    Attributes:
      state: the final learner state.
      theta: the final meta-parameters.
      steps: outer steps completed (including those before a resume).
      history: the logged metrics, one dict per logged step of this process.
      stopped_by: "num_steps" or "time_budget".
      resumed_from: the step the run resumed from (0 for a fresh run).
    """

    state: SingleMachineState
    theta: MetaParams
    steps: int
    history: list[dict[str, float]]
    stopped_by: str
    resumed_from: int


def step_key(seed: int, step: int) -> jax.Array:
    """The key of outer step `step`: a function of the seed and step only, so resumes are exact."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), step + 1)


def _writers(names: Sequence[Any] | None, run_dir: Path) -> list[Any]:
    if names is None:
        names = [n for n in lopt_core.list_metric_writers() if n != "jsonl"]
    out = []
    for item in names:
        if not isinstance(item, str):
            out.append(item)
            continue
        try:
            out.append(lopt_core.get_metric_writer(item, run_dir=run_dir))
        except ImportError as exc:
            warnings.warn(f"metric writer {item!r} skipped: {exc}", stacklevel=3)
    return out


def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", desc="meta-train", dynamic_ncols=True)


def meta_train(
    learner: SingleMachineGradientLearner,
    num_steps: int,
    *,
    seed: int = 0,
    output_dir: str | Path | None = None,
    checkpoint_every: int = 100,
    log_every: int = 1,
    time_budget_s: float | None = None,
    resume: bool = True,
    metric_writers: Sequence[Any] | None = None,
    progress: bool = True,
    callback: Callable[[int, SingleMachineState, dict[str, float]], None] | None = None,
) -> MetaTrainResult:
    """Meta-trains until `num_steps` outer steps are done or the time budget runs out.

    The key of each outer step depends only on `seed` and the step number, and the
    whole learner state (theta, the meta-optimizer, every inner-training state) is
    checkpointed atomically to `<output_dir>/checkpoint.lopt`. A killed run started
    again with the same arguments resumes from its last checkpoint and ends with
    bit-identical theta to a run never interrupted (for keyed datasets; plain
    Python iterators cannot be rewound).

    Args:
      learner: the learner, with its estimators and meta-optimizer.
      num_steps: total outer steps.
      seed: the run's seed.
      output_dir: folder for `checkpoint.lopt`, `metrics.jsonl` and writer output;
        None keeps everything in memory (no checkpoints).
      checkpoint_every: outer steps between checkpoints (also one at the end).
      log_every: outer steps between metric records.
      time_budget_s: stop (after a checkpoint) once this many seconds have passed.
      resume: continue from `<output_dir>/checkpoint.lopt` if it exists.
      metric_writers: names of registered writers or writer objects; None uses
        every registered writer (JSON lines are always written).
      progress: show a progress bar with meta-loss and steps/s.
      callback: called as `callback(step, state, metrics)` after every step.

    Returns:
      A `MetaTrainResult`.

    Raises:
      ValueError: bad arguments, or a checkpoint written with another seed.
    """
    if num_steps < 0 or checkpoint_every < 1 or log_every < 1:
        raise ValueError(
            "num_steps must be >= 0 and checkpoint_every, log_every >= 1; got "
            f"{num_steps}, {checkpoint_every}, {log_every}."
        )
    run_dir = Path(output_dir) if output_dir is not None else None
    ckpt = run_dir / CHECKPOINT_NAME if run_dir is not None else None
    state = learner.init(jax.random.PRNGKey(seed))
    start = 0
    if ckpt is not None and resume and ckpt.exists():
        meta = lopt_core.load_metadata(ckpt)
        if meta.get("seed") != seed:
            raise ValueError(
                f"{ckpt} was written by a run with seed {meta.get('seed')}, not {seed}; "
                "pass the same seed, another output_dir, or resume=False."
            )
        tree, meta = lopt_core.load(ckpt, like=state)
        state = jax.tree_util.tree_map(jnp.asarray, tree)
        start = int(meta["step"])

    writers: list[Any] = []
    if run_dir is not None:
        jsonl = JsonlWriter(run_dir)
        jsonl.truncate_after(start)
        writers = [jsonl, *_writers(metric_writers, run_dir)]

    def save(step: int) -> None:
        if ckpt is not None:
            lopt_core.save(
                ckpt,
                state,
                {"step": step, "seed": seed, "num_steps": num_steps},
                producer=learner.gradient_learner.meta_init,
            )

    bar = _progress(num_steps, start, progress)
    history: list[dict[str, float]] = []
    stopped_by = "num_steps"
    t0 = last_t = time.perf_counter()
    last_step = step = start
    try:
        while step < num_steps:
            state, loss, metrics = learner.update(state, step_key(seed, step))
            step += 1
            if step % log_every == 0 or step == num_steps:
                now = time.perf_counter()
                row = to_floats(metrics)
                row["meta_loss"] = float(loss)
                row["steps_per_s"] = (step - last_step) / max(now - last_t, 1e-9)
                row["elapsed_s"] = now - t0
                last_t, last_step = now, step
                history.append({"step": step, **row})
                for w in writers:
                    w.write(step, row)
                if bar is not None:
                    post = {"meta_loss": f"{row['meta_loss']:.4f}"}
                    if time_budget_s is not None:
                        # The bar's ETA assumes num_steps; the budget may end the run first.
                        post["budget_left"] = f"{max(0.0, time_budget_s - row['elapsed_s']):.0f}s"
                    bar.set_postfix(post, refresh=False)
            if bar is not None:
                bar.update(1)
            if callback is not None:
                callback(step, state, history[-1] if history else {})
            if step % checkpoint_every == 0:
                save(step)
            if time_budget_s is not None and time.perf_counter() - t0 >= time_budget_s:
                stopped_by = "time_budget"
                break
        if step % checkpoint_every:
            save(step)
    finally:
        if bar is not None:
            bar.close()
        for w in writers:
            w.close()
    return MetaTrainResult(
        state=state,
        theta=learner.get_meta_params(state),
        steps=step,
        history=history,
        stopped_by=stopped_by,
        resumed_from=start,
    )
