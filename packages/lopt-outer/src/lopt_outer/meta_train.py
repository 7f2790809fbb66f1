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
      state: the final learner state (a `SingleMachineState`; with backend "ray",
        the learner's `GradientLearnerState`, the worker states staying on the workers).
      theta: the final meta-parameters.
      steps: outer steps completed (including those before a resume).
      history: the logged metrics, one dict per logged step of this process.
      stopped_by: "num_steps" or "time_budget".
      resumed_from: the step the run resumed from (0 for a fresh run).
    """

    state: Any
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


class _Reporter:
    """Progress bar, metric writers, history and callback: shared by every backend."""

    def __init__(
        self,
        run_dir: Path | None,
        start: int,
        num_steps: int,
        metric_writers: Sequence[Any] | None,
        progress: bool,
        time_budget_s: float | None,
        callback: Callable[[int, Any, dict[str, float]], None] | None,
    ) -> None:
        self.writers: list[Any] = []
        if run_dir is not None:
            jsonl = JsonlWriter(run_dir)
            jsonl.truncate_after(start)  # lines past the checkpoint describe lost work
            self.writers = [jsonl, *_writers(metric_writers, run_dir)]
        self.bar = _progress(num_steps, start, progress)
        self.time_budget_s = time_budget_s
        self.callback = callback
        self.history: list[dict[str, float]] = []

    def step(self, step: int, state: Any, row: dict[str, float] | None) -> None:
        """Records outer step `step`; `row` (without "step") is None on steps not logged."""
        if row is not None:
            self.history.append({"step": step, **row})
            for w in self.writers:
                w.write(step, row)
            if self.bar is not None:
                post = {"meta_loss": f"{row['meta_loss']:.4f}"}
                if self.time_budget_s is not None:
                    # The bar's ETA assumes num_steps; the budget may end the run first.
                    post["budget_left"] = f"{max(0.0, self.time_budget_s - row['elapsed_s']):.0f}s"
                self.bar.set_postfix(post, refresh=False)
        if self.bar is not None:
            self.bar.update(1)
        if self.callback is not None:
            self.callback(step, state, self.history[-1] if self.history else {})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        for w in self.writers:
            w.close()


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
    backend: str = "inprocess",
    num_workers: int = 1,
    address: str | None = None,
    max_staleness: int | None = None,
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
      backend: "inprocess" (the default) or "ray": gradient estimates are computed
        by `num_workers` Ray actors and applied by this process (needs
        `lopt-outer[ray]`; see `lopt_outer.distributed` and docs/scaling.md). With
        one worker the result equals the in-process one.
      num_workers: Ray worker actors (backend "ray" only).
      address: an existing Ray cluster to join ("auto" or "HOST:PORT"); None
        starts a local one (backend "ray" only).
      max_staleness: drop estimates computed on a theta more than this many updates
        old (backend "ray" only; default: the number of workers).

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
    if backend == "ray":
        return _meta_train_ray(
            learner,
            num_steps,
            seed=seed,
            run_dir=run_dir,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
            time_budget_s=time_budget_s,
            resume=resume,
            metric_writers=metric_writers,
            progress=progress,
            callback=callback,
            num_workers=num_workers,
            address=address,
            max_staleness=max_staleness,
        )
    if backend != "inprocess":
        raise ValueError(f"Unknown backend {backend!r}; expected 'inprocess' or 'ray'.")
    if num_workers != 1 or address is not None or max_staleness is not None:
        raise ValueError(
            "num_workers, address and max_staleness apply to backend='ray' only; "
            "pass backend='ray' to meta-train on Ray workers."
        )
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

    def save(step: int) -> None:
        if ckpt is not None:
            lopt_core.save(
                ckpt,
                state,
                {"step": step, "seed": seed, "num_steps": num_steps},
                producer=learner.gradient_learner.meta_init,
            )

    reporter = _Reporter(
        run_dir, start, num_steps, metric_writers, progress, time_budget_s, callback
    )
    stopped_by = "num_steps"
    t0 = last_t = time.perf_counter()
    last_step = step = start
    try:
        while step < num_steps:
            state, loss, metrics = learner.update(state, step_key(seed, step))
            step += 1
            row = None
            if step % log_every == 0 or step == num_steps:
                now = time.perf_counter()
                row = to_floats(metrics)
                row["meta_loss"] = float(loss)
                row["steps_per_s"] = (step - last_step) / max(now - last_t, 1e-9)
                row["elapsed_s"] = now - t0
                last_t, last_step = now, step
            reporter.step(step, state, row)
            if step % checkpoint_every == 0:
                save(step)
            if time_budget_s is not None and time.perf_counter() - t0 >= time_budget_s:
                stopped_by = "time_budget"
                break
        if step % checkpoint_every:
            save(step)
    finally:
        reporter.close()
    return MetaTrainResult(
        state=state,
        theta=learner.get_meta_params(state),
        steps=step,
        history=reporter.history,
        stopped_by=stopped_by,
        resumed_from=start,
    )


def _meta_train_ray(
    learner: SingleMachineGradientLearner,
    num_steps: int,
    *,
    seed: int,
    run_dir: Path | None,
    checkpoint_every: int,
    log_every: int,
    time_budget_s: float | None,
    resume: bool,
    metric_writers: Sequence[Any] | None,
    progress: bool,
    callback: Callable[[int, Any, dict[str, float]], None] | None,
    num_workers: int,
    address: str | None,
    max_staleness: int | None,
) -> MetaTrainResult:
    """`meta_train` on Ray: the learner here, estimates from worker actors."""
    from lopt_outer.distributed import meta_train_ray

    reporter: _Reporter | None = None

    def on_update(step: int, learner_state: Any, row: dict[str, float]) -> None:
        nonlocal reporter
        if reporter is None:  # the first update tells where a resumed run starts
            reporter = _Reporter(
                run_dir, step - 1, num_steps, metric_writers, progress, time_budget_s, callback
            )
        logged = step % log_every == 0 or step == num_steps
        reporter.step(
            step, learner_state, {k: v for k, v in row.items() if k != "step"} if logged else None
        )

    try:
        result = meta_train_ray(
            learner.gradient_learner,
            learner.gradient_estimators,
            num_steps,
            num_workers=num_workers,
            seed=seed,
            address=address,
            max_staleness=max_staleness,
            output_dir=run_dir,
            checkpoint_every=checkpoint_every,
            resume=resume,
            time_budget_s=time_budget_s,
            callback=on_update,
        )
    finally:
        if reporter is not None:
            reporter.close()
    return MetaTrainResult(
        state=result.learner_state,
        theta=result.theta,
        steps=result.steps,
        history=reporter.history if reporter is not None else [],
        stopped_by=result.stopped_by,
        resumed_from=result.resumed_from,
    )
