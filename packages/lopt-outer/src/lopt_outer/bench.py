"""Evaluation suites scored against tuned baselines: the yardstick for every optimizer.

`run_baselines(suite)` trains every task of a `lopt_core.Suite` at each horizon
with each baseline of `DEFAULT_BASELINES` (learning-rate sweeps of Adam, AdamW
and SGD with momentum, a joint learning rate / weight decay / warm-up sweep of
NAdamW, and the tuning-free Prodigy, ScheduleFreeAdamW, DoG and Mechanic at
their defaults, one configuration each) over the suite's
seeds, and caches the curves as JSON, one file per task and baseline.
`run_suite(suite, optimizer)` trains the candidate the same way and scores it
against the tuned baselines (`score`).

How a run is measured:
- every configuration and seed of a baseline trains in one `jit`: the grid and
  the seeds are `vmap`ped axes, the hyperparameters traced values, and the inner
  loop `lax.scan`s; batches are drawn from keys inside `jit`, so the tasks'
  datasets must be keyed (`lopt_core.ArraySplit`);
- each horizon is its own run (an optimizer with a schedule over the horizon
  sees the horizon it is scored at); the train, validation (`outer_valid`) and
  test losses are evaluated `suite.num_evals + 1` times along it, each the mean
  of `suite.eval_batches` batches, at the optimizer's `eval_params` (for a
  schedule-free optimizer, not the point it trains at);
- tuning picks, per task and horizon, the configuration with the lowest final
  validation loss averaged over seeds (a non-finite one never wins); the scores
  report test losses;
- a seed diverged when a train-split evaluation is non-finite or its final train
  loss is not below its initial one; divergences are counted, never averaged
  into the losses.

The cache files are read as untrusted JSON: every field is checked against the
suite, task, baseline and settings it claims, and a file that does not match
is recomputed (`run_baselines`) or reported (`load_baseline`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import lopt_core
from lopt_core import Optimizer, Suite, Task
from lopt_core.component import component
from lopt_core.validation import check_positive_int
from lopt_outer._common import jit
from lopt_outer.eval_training import _train_steps

__all__ = [
    "DEFAULT_BASELINES",
    "SPLITS",
    "Baseline",
    "BaselineResult",
    "SuiteEvaluation",
    "Curves",
    "load_baseline",
    "run_baselines",
    "run_curves",
    "run_suite",
    "score",
    "summarize_scores",
    "tune",
]

#: The splits evaluated along every run, in the order of the curves' last axis.
SPLITS = ("train", "outer_valid", "test")
#: The cache format; a file of another format is recomputed.
CACHE_FORMAT = 1


@component
class Baseline:
    """A baseline optimizer and its tuning grid (the product of `grid`'s values).

    Attributes:
      name: the baseline's label ("Adam", "NAdamW", ...).
      optimizer: the registered optimizer name (`lopt_core.get_optimizer`).
      grid: `(argument, values)` pairs; every combination is one configuration.
        The argument `warmup_fraction` is not the optimizer's: it turns the
        learning rate into a linear warm-up over that fraction of the horizon,
        then constant.
      fixed: `(argument, value)` pairs every configuration shares.
    """

    name: str
    optimizer: str
    grid: tuple[tuple[str, tuple[float, ...]], ...] = ()
    fixed: tuple[tuple[str, Any], ...] = ()

    @property
    def configs(self) -> list[dict[str, float]]:
        """The configurations, in grid order (the last argument varies fastest)."""
        names = [n for n, _ in self.grid]
        return [dict(zip(names, vals)) for vals in itertools.product(*(v for _, v in self.grid))]

    @property
    def tuned(self) -> bool:
        """True when the grid has more than one configuration."""
        return len(self.configs) > 1

    def spec(self) -> dict[str, Any]:
        """The baseline as JSON (what its cache files record)."""
        return {
            "name": self.name,
            "optimizer": self.optimizer,
            "grid": [[n, [float(v) for v in vs]] for n, vs in self.grid],
            "fixed": [[n, v] for n, v in self.fixed],
        }


def _log_grid(low: float, high: float, n: int) -> tuple[float, ...]:
    return tuple(float(f"{v:.3g}") for v in np.geomspace(low, high, n))


_LRS = _log_grid(1e-4, 1e-1, 7)

#: The baselines every suite is scored against.
DEFAULT_BASELINES: tuple[Baseline, ...] = (
    Baseline("Adam", "Adam", (("learning_rate", _LRS),)),
    Baseline("AdamW", "AdamW", (("learning_rate", _LRS),), (("weight_decay", 1e-4),)),
    Baseline(
        "NAdamW",
        "NAdamW",
        (
            ("learning_rate", _LRS),
            ("adamw_weight_decay", (0.0, 1e-2)),
            ("warmup_fraction", (0.0, 0.05)),
        ),
    ),
    Baseline("SGDM", "SGDM", (("learning_rate", _log_grid(1e-3, 1.0, 7)),), (("momentum", 0.9),)),
    # Tuning-free optimizers: one configuration each, their defaults.
    Baseline("Prodigy", "Prodigy"),
    Baseline("ScheduleFreeAdamW", "ScheduleFreeAdamW"),
    Baseline("DoG", "DoG"),
    Baseline("Mechanic", "Mechanic"),
)


def _warmup(learning_rate: Any, fraction: Any, horizon: int) -> Callable[[Any], Any]:
    steps = jnp.maximum(fraction * horizon, 1.0)

    def schedule(count: Any) -> Any:
        ramp = jnp.where(fraction > 0, jnp.minimum(1.0, (count + 1.0) / steps), 1.0)
        return learning_rate * ramp

    return schedule


def _baseline_optimizer(baseline: Baseline, hp: Mapping[str, Any], horizon: int) -> Optimizer:
    kwargs = dict(baseline.fixed)
    kwargs.update({k: v for k, v in hp.items() if k != "warmup_fraction"})
    if "warmup_fraction" in hp:
        kwargs["learning_rate"] = _warmup(kwargs["learning_rate"], hp["warmup_fraction"], horizon)
    return lopt_core.get_optimizer(baseline.optimizer, **kwargs)


@dataclasses.dataclass(frozen=True)
class Curves:
    """The curves of runs of one task at one horizon.

    Attributes:
      xs: the inner steps evaluated, `(E,)`.
      loss: the losses, `(configs, seeds, E, 3)`; the last axis follows `SPLITS`.
    """

    xs: np.ndarray
    loss: np.ndarray

    def split(self, name: str) -> np.ndarray:
        """The losses of one split, `(configs, seeds, E)`."""
        return self.loss[..., SPLITS.index(name)]


def _eval_points(horizon: int, num_evals: int) -> tuple[int, int, np.ndarray]:
    n = min(num_evals, horizon)
    every = horizon // n
    rest = horizon - every * n
    xs = np.concatenate([np.arange(n) * every, [horizon]])
    return every, rest, xs


def _check_keyed(task: Task, name: str) -> None:
    ds = task.datasets
    if ds is not None and not ds.keyed:
        raise ValueError(
            f"bench: task {name!r} reads its batches from iterators; suites draw batches from "
            "keys inside jit. Give the task keyed datasets (lopt_core.ArraySplit)."
        )


def run_curves(
    task: Task,
    make_optimizer: Callable[[Mapping[str, Any], int], Optimizer],
    grid: Mapping[str, np.ndarray],
    shared: Any,
    seeds: Sequence[int],
    horizon: int,
    num_evals: int = 20,
    eval_batches: int = 4,
) -> Curves:
    """Trains `task` for `horizon` steps for every configuration of `grid` and every seed.

    Args:
      task: the task (keyed datasets, or none).
      make_optimizer: `(hyperparameters, horizon) -> Optimizer`; it is called
        inside `jit`, with each configuration's values (and `shared`'s) traced.
      grid: argument -> values, all of one length C (C configurations); `{}` for one.
      shared: a pytree every configuration shares, passed to `make_optimizer`
        under the key "shared" (a learned optimizer's theta); None for none.
      seeds: the seeds; seed s draws the initial parameters and every batch.
      horizon: inner training steps.
      num_evals: evaluations along the run besides the one at step 0.
      eval_batches: batches averaged per evaluation and split.

    Returns:
      The `Curves`, `(C, len(seeds), E, 3)`.
    """
    ds = task.datasets
    every, rest, xs = _eval_points(horizon, num_evals)
    n_blocks = len(xs) - 1 - (1 if rest else 0)
    names = sorted(grid)
    values = [jnp.asarray(np.asarray(grid[n], np.float32)) for n in names]

    def evaluate(opt: Optimizer, state: Any, key: jax.Array) -> jax.Array:
        # The evaluation point (schedule-free optimizers train at another one).
        p, s = lopt_core.evaluation_point(opt, state)
        losses = []
        for split, k in zip(SPLITS, jax.random.split(key, len(SPLITS))):

            def one(k: jax.Array, split: str = split) -> jax.Array:
                k_loss, k_data = jax.random.split(k)
                data = None if ds is None else ds.sample(split, k_data)
                return task.loss_with_state(p, s, k_loss, data)[0]

            losses.append(jnp.mean(lax.map(one, jax.random.split(k, eval_batches))))
        return jnp.stack(losses)

    def one_run(vals: Sequence[jax.Array], shared: Any, seed: jax.Array) -> jax.Array:
        hp = dict(zip(names, vals))
        if shared is not None:
            hp["shared"] = shared
        opt = make_optimizer(hp, horizon)
        key = jax.random.PRNGKey(seed)
        k_init, k_opt, k_run = jax.random.split(key, 3)
        params, model_state = task.init_with_state(k_init)
        state = opt.init(params, model_state, num_steps=horizon, key=k_opt)

        def block(state: Any, k: jax.Array, n: int) -> tuple[Any, jax.Array]:
            k_eval, k_train = jax.random.split(k)
            row = evaluate(opt, state, k_eval)
            state, _ = _train_steps(task, opt, ds, state, k_train, None, n)
            return state, row

        k_blocks, k_rest, k_last = jax.random.split(k_run, 3)
        state, rows = lax.scan(
            lambda s, k: block(s, k, every), state, jax.random.split(k_blocks, n_blocks)
        )
        rows = [rows]
        if rest:
            state, row = block(state, k_rest, rest)
            rows.append(row[None])
        rows.append(evaluate(opt, state, k_last)[None])
        return jnp.concatenate(rows)

    per_seed = jax.vmap(one_run, in_axes=(None, None, 0))
    per_config = jax.vmap(per_seed, in_axes=(0, None, None)) if values else None

    @jit
    def run_all(values: Any, shared: Any, seeds: jax.Array) -> jax.Array:
        if per_config is None:
            return per_seed([], shared, seeds)[None]
        return per_config(values, shared, seeds)

    loss = run_all(values, shared, jnp.asarray(np.asarray(seeds, np.uint32)))
    return Curves(xs=xs, loss=np.asarray(jax.device_get(loss), np.float64))


@dataclasses.dataclass(frozen=True)
class BaselineResult:
    """A baseline's curves on one task, per horizon, with the configurations they belong to."""

    baseline: Baseline
    configs: list[dict[str, float]]
    curves: dict[int, Curves]


def _cache_path(cache_dir: Path, suite: Suite, task: str, baseline: Baseline) -> Path:
    return cache_dir / f"{suite.name}-{suite.version}" / f"{task}__{baseline.name}.json"


def _cache_key(suite: Suite, task: str, baseline: Baseline) -> dict[str, Any]:
    return {
        "format": CACHE_FORMAT,
        "suite": suite.name,
        "version": suite.version,
        "task": task,
        "baseline": baseline.spec(),
        "seeds": suite.seeds,
        "num_evals": suite.num_evals,
        "eval_batches": suite.eval_batches,
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"jax": jax.__version__}
    for dist in ("lopt-core", "lopt-outer", "lopt-optimizers", "lopt-tasks"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def _write_cache(
    path: Path,
    key: Mapping[str, Any],
    result: BaselineResult,
    cost: Mapping[str, float] | None = None,
) -> None:
    body = {
        **key,
        "versions": _versions(),
        # What computing it took (wall and process CPU seconds, compiles included);
        # benchmarks/suite_time.py sums it over a suite. Not part of the key.
        "cost": dict(cost or {}),
        "configs": result.configs,
        "horizons": {
            str(h): {"xs": c.xs.tolist(), "loss": _json_floats(c.loss)}
            for h, c in result.curves.items()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)


def _json_floats(a: np.ndarray) -> Any:
    return np.where(np.isfinite(a), a, np.nan).astype(object).tolist() if a.size else []


class CacheMismatch(ValueError):
    """A cache file that does not hold what it should (another suite, baseline or format)."""


def _read_cache(
    path: Path, key: Mapping[str, Any], baseline: Baseline, horizons: Sequence[int]
) -> BaselineResult:
    try:
        body = json.loads(path.read_text(), parse_constant=lambda c: float(c))
    except (OSError, ValueError) as exc:
        raise CacheMismatch(f"{path}: not a readable JSON file ({exc}).") from exc
    if not isinstance(body, dict):
        raise CacheMismatch(f"{path}: expected a JSON object.")
    for k, v in key.items():
        if body.get(k) != v:
            raise CacheMismatch(f"{path}: its {k!r} is {body.get(k)!r}, expected {v!r}.")
    configs = body.get("configs")
    if configs != baseline.configs:
        raise CacheMismatch(f"{path}: its configurations differ from the baseline's grid.")
    curves = {}
    stored = body.get("horizons")
    if not isinstance(stored, dict):
        raise CacheMismatch(f"{path}: no 'horizons' object.")
    for h in horizons:
        entry = stored.get(str(h))
        if not isinstance(entry, dict):
            raise CacheMismatch(f"{path}: no results for horizon {h}.")
        _, _, xs = _eval_points(h, key["num_evals"])
        try:
            got_xs = np.asarray(entry["xs"], np.int64)
            loss = np.asarray(
                [
                    [[[np.nan if v is None else v for v in row] for row in s] for s in c]
                    for c in entry["loss"]
                ],
                np.float64,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CacheMismatch(f"{path}: horizon {h} holds malformed numbers ({exc}).") from exc
        want = (len(configs), key["seeds"], len(xs), len(SPLITS))
        if not np.array_equal(got_xs, xs) or loss.shape != want:
            raise CacheMismatch(
                f"{path}: horizon {h} has steps {got_xs.tolist()[:4]}... and shape {loss.shape}, "
                f"expected steps {xs.tolist()[:4]}... and shape {want}."
            )
        curves[h] = Curves(xs=xs, loss=loss)
    return BaselineResult(baseline, configs, curves)


def default_cache_dir() -> Path:
    """The cache shipped with lopt-outer (`lopt_outer/bench_cache`)."""
    return Path(__file__).parent / "bench_cache"


def load_baseline(
    suite: Suite, task: str, baseline: Baseline, cache_dir: str | os.PathLike | None = None
) -> BaselineResult:
    """The cached curves of `baseline` on `task` at every horizon of `suite`.

    Raises:
      FileNotFoundError: no cache file (run `lopt bench baselines --suite NAME`).
      CacheMismatch: the file holds another suite version, baseline, seeds or
        settings, or malformed values.
    """
    path = _cache_path(Path(cache_dir or default_cache_dir()), suite, task, baseline)
    if not path.is_file():
        raise FileNotFoundError(
            f"No cached {baseline.name} results for {task} in suite {suite.name} "
            f"{suite.version} ({path}); run `lopt bench baselines --suite {suite.name}`."
        )
    return _read_cache(path, _cache_key(suite, task, baseline), baseline, suite.horizons)


def _grid_arrays(baseline: Baseline) -> dict[str, np.ndarray]:
    configs = baseline.configs
    if not baseline.grid:
        return {}
    return {n: np.asarray([c[n] for c in configs], np.float32) for n, _ in baseline.grid}


def run_baseline(suite: Suite, task_name: str, baseline: Baseline) -> BaselineResult:
    """Trains `baseline`'s every configuration on one task at the suite's horizons and seeds."""
    task = lopt_core.get_task(task_name)
    _check_keyed(task, task_name)
    make = functools.partial(_make_baseline, baseline)
    curves = {
        h: run_curves(
            task,
            make,
            _grid_arrays(baseline),
            None,
            range(suite.seeds),
            h,
            suite.num_evals,
            suite.eval_batches,
        )
        for h in suite.horizons
    }
    return BaselineResult(baseline, baseline.configs, curves)


def _make_baseline(baseline: Baseline, hp: Mapping[str, Any], horizon: int) -> Optimizer:
    return _baseline_optimizer(baseline, hp, horizon)


def run_baselines(
    suite: Suite,
    baselines: Sequence[Baseline] = DEFAULT_BASELINES,
    cache_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, BaselineResult]]:
    """The baselines' results on every task of `suite`, from the cache or computed and cached.

    A file is reused when it matches the suite version, task, baseline, seeds
    and settings; otherwise (or with `rebuild`) the baseline runs and the file
    is written. Each file is written as soon as it is computed, so an
    interrupted rebuild resumes where it stopped.

    Returns:
      `{task: {baseline name: BaselineResult}}`.
    """
    cache = Path(cache_dir or default_cache_dir())
    out: dict[str, dict[str, BaselineResult]] = {}
    for t in suite.task_names:
        out[t] = {}
        for b in baselines:
            path = _cache_path(cache, suite, t, b)
            key = _cache_key(suite, t, b)
            if not rebuild and path.is_file():
                try:
                    out[t][b.name] = _read_cache(path, key, b, suite.horizons)
                    continue
                except CacheMismatch as exc:
                    if progress:
                        progress(f"recomputing: {exc}")
            if progress:
                progress(f"{t}: {b.name} ({len(b.configs)} configurations)")
            wall, cpu = time.perf_counter(), time.process_time()
            result = run_baseline(suite, t, b)
            cost = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
            _write_cache(path, key, result, cost)
            out[t][b.name] = result
    return out


def tune(result: BaselineResult, horizon: int) -> int:
    """The configuration with the lowest final validation loss (mean over seeds) at `horizon`.

    Non-finite losses never win; when every configuration is non-finite, the first.
    """
    final_valid = result.curves[horizon].split("outer_valid")[:, :, -1]
    mean = np.where(np.isfinite(final_valid), final_valid, np.inf).mean(axis=1)
    return int(np.argmin(mean))


def _diverged(train: np.ndarray) -> np.ndarray:
    """Per seed (`(seeds, E)` train-split losses): non-finite anywhere, or final >= initial."""
    return ~np.isfinite(train).all(axis=-1) | ~(train[:, -1] < train[:, 0])


def _first_reach(xs: np.ndarray, curve: np.ndarray, target: float) -> float | None:
    hit = np.nonzero(np.isfinite(curve) & (curve <= target))[0]
    return float(xs[hit[0]]) if hit.size and math.isfinite(target) else None


def score(candidate: Curves, tuned_adam: Curves) -> dict[str, Any]:
    """Scores one candidate run (one configuration) against tuned Adam's, at one horizon.

    Returns:
      final and mean train and test losses (means over the seeds that did not
      diverge, NaN when all did), the number of diverged seeds, Adam's final test
      loss, the steps the candidate needs to reach it and Adam's own steps to it,
      their ratio (`speedup`, None when the candidate never reaches it) and
      `win` (the candidate's final test loss below Adam's).
    """
    xs = candidate.xs
    train, test = candidate.split("train")[0], candidate.split("test")[0]
    diverged = _diverged(train)
    ok = ~diverged

    def mean_over_ok(values: np.ndarray) -> float:
        return float(np.mean(values[ok])) if ok.any() else float("nan")

    adam_test = tuned_adam.split("test")[0].mean(axis=0)
    adam_final = float(adam_test[-1])
    cand_test = test.mean(axis=0)
    steps = _first_reach(xs, cand_test, adam_final)
    adam_steps = _first_reach(xs, adam_test, adam_final)
    final_test = mean_over_ok(test[:, -1])
    return {
        "final_train": mean_over_ok(train[:, -1]),
        "mean_train": mean_over_ok(train.mean(axis=1)),
        "final_test": final_test,
        "mean_test": mean_over_ok(test.mean(axis=1)),
        "diverged": int(diverged.sum()),
        "seeds": len(diverged),
        "adam_final_test": adam_final,
        "steps_to_adam": steps,
        "adam_steps": adam_steps,
        "speedup": (adam_steps / max(steps, 1.0)) if steps is not None and adam_steps else None,
        "win": bool(math.isfinite(final_test) and final_test < adam_final and not diverged.any()),
    }


def summarize_scores(scores: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> dict[str, Any]:
    """The VeLO-style summary per horizon: win fraction, speed-up distribution, divergences."""
    horizons = sorted({h for per in scores.values() for h in per})
    out: dict[str, Any] = {}
    for h in horizons:
        rows = [per[h] for per in scores.values() if h in per]
        speedups = np.asarray([r["speedup"] for r in rows if r["speedup"] is not None])
        out[str(h)] = {
            "tasks": len(rows),
            "win_fraction": float(np.mean([r["win"] for r in rows])),
            "diverged_runs": int(sum(r["diverged"] for r in rows)),
            "tasks_with_divergence": int(sum(r["diverged"] > 0 for r in rows)),
            "reached_adam": len(speedups),
            "speedup_median": float(np.median(speedups)) if speedups.size else None,
            "speedup_quartiles": (
                [float(q) for q in np.percentile(speedups, [25, 75])] if speedups.size else None
            ),
        }
    return out


def run_suite(
    suite: Suite,
    optimizer: Optimizer | None = None,
    *,
    learned_optimizer: Any = None,
    theta: Any = None,
    baselines: Sequence[Baseline] = DEFAULT_BASELINES,
    cache_dir: str | os.PathLike | None = None,
    compute_missing: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Scores a candidate on `suite` against the tuned baselines.

    Pass a hand-designed `optimizer`, or a `learned_optimizer` with its `theta`
    (theta flows into the compiled program as an argument).

    Returns:
      `{"suite", "version", "candidate", "tasks": {task: {horizon: score}},
      "baselines": {task: {horizon: {baseline: {"config", "final_test"}}}},
      "summary": summarize_scores(...), "curves": {task: {horizon: {...}}}}`.

    Raises:
      ValueError: neither or both candidates given, or a task without keyed data.
      FileNotFoundError: a baseline is not cached and `compute_missing` is False.
    """
    if (optimizer is None) == (learned_optimizer is None):
        raise ValueError(
            "run_suite: pass either optimizer= (a lopt Optimizer) or learned_optimizer= with "
            "theta=, not both or neither."
        )
    if learned_optimizer is not None and theta is None:
        raise ValueError("run_suite: learned_optimizer= needs its theta=.")
    if not any(b.name == "Adam" for b in baselines):
        raise ValueError("run_suite: the baselines must include 'Adam', which the scores use.")
    if compute_missing:
        results = run_baselines(suite, baselines, cache_dir, progress=progress)
    else:
        results = {
            t: {b.name: load_baseline(suite, t, b, cache_dir) for b in baselines}
            for t in suite.task_names
        }
    if optimizer is not None:
        label = optimizer.name

        def make(hp: Mapping[str, Any], horizon: int) -> Optimizer:
            return optimizer

        shared = None
    else:
        label = getattr(learned_optimizer, "name", type(learned_optimizer).__name__)

        def make(hp: Mapping[str, Any], horizon: int) -> Optimizer:
            return learned_optimizer.opt_fn(hp["shared"])

        shared = theta
    scores: dict[str, dict[int, dict[str, Any]]] = {}
    tuned: dict[str, dict[str, Any]] = {}
    curves_out: dict[str, dict[str, Any]] = {}
    for t in suite.task_names:
        if progress:
            progress(f"{t}: {label}")
        task = lopt_core.get_task(t)
        _check_keyed(task, t)
        scores[t], tuned[t], curves_out[t] = {}, {}, {}
        for h in suite.horizons:
            cand = run_curves(
                task, make, {}, shared, range(suite.seeds), h, suite.num_evals, suite.eval_batches
            )
            picked = {}
            for name, res in results[t].items():
                i = tune(res, h)
                picked[name] = {
                    "config": res.configs[i],
                    "final_test": float(res.curves[h].split("test")[i, :, -1].mean()),
                    "curves": res.curves[h],
                    "index": i,
                }
            adam = picked["Adam"]
            adam_curves = Curves(xs=adam["curves"].xs, loss=adam["curves"].loss[[adam["index"]]])
            scores[t][h] = score(cand, adam_curves)
            tuned[t][str(h)] = {
                n: {"config": p["config"], "final_test": p["final_test"]} for n, p in picked.items()
            }
            curves_out[t][str(h)] = {
                "xs": cand.xs.tolist(),
                "candidate_test": cand.split("test")[0].mean(axis=0).tolist(),
                **{
                    f"{n}_test": p["curves"].split("test")[p["index"]].mean(axis=0).tolist()
                    for n, p in picked.items()
                },
            }
    return {
        "suite": suite.name,
        "version": suite.version,
        "candidate": label,
        "horizons": list(suite.horizons),
        "seeds": suite.seeds,
        "tasks": {t: {str(h): s for h, s in per.items()} for t, per in scores.items()},
        "baselines": tuned,
        "summary": summarize_scores(scores),
        "curves": curves_out,
    }


@component
class SuiteEvaluation:
    """Continuous evaluation: score theta on a (small) suite every `every` outer steps.

    Give it to `RunConfig(evaluation=...)`; the run loop calls it on every
    `every`-th step and on the last, and writes its scores into that step's metrics
    row, so every metric writer (JSONL, TensorBoard, ...) records them. The
    baselines come from the cache in `cache_dir` (computed once and cached when
    missing, unless `compute_missing` is False).

    Attributes:
      suite: a registered suite name or a `Suite` (use `Suite.subset` for a small one).
      every: outer steps between evaluations.
      cache_dir: the baseline cache (None: the one shipped with lopt-outer).
      compute_missing: run and cache missing baselines (False: a missing one is
        a FileNotFoundError naming the command that builds it).

    Example:
      >>> small = lopt_core.get_suite("offline").subset(("QuadraticTask",), (50,), 1)
      >>> ev = SuiteEvaluation(small, every=100)
    """

    suite: Any
    every: int = 100
    cache_dir: str | None = None
    compute_missing: bool = True

    def __post_init__(self) -> None:
        owner = "SuiteEvaluation"
        if isinstance(self.suite, str):
            object.__setattr__(self, "suite", lopt_core.get_suite(self.suite))
        if not isinstance(self.suite, Suite):
            raise TypeError(
                f"{owner}: suite must be a registered suite name or a lopt_core.Suite, got "
                f"{type(self.suite).__name__}; see `lopt list suites`."
            )
        object.__setattr__(self, "every", check_positive_int(self.every, owner, "every"))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", os.fspath(self.cache_dir))

    def due(self, step: int, num_steps: int) -> bool:
        """True when outer step `step` (counted from 1) is evaluated."""
        return step % self.every == 0 or step == num_steps

    def __call__(self, learned_optimizer: Any, theta: Any) -> dict[str, float]:
        """The scores of `theta` as flat metrics named `suite/<suite>/...`.

        Per horizon: `h<H>/win_fraction`, `h<H>/diverged_runs`, `h<H>/reached_adam`
        and `h<H>/speedup_median` (NaN when no task reached tuned Adam's loss); per
        task and horizon: `<task>/h<H>/final_test` and `<task>/h<H>/speedup`.
        """
        report = run_suite(
            self.suite,
            learned_optimizer=learned_optimizer,
            theta=theta,
            cache_dir=self.cache_dir,
            compute_missing=self.compute_missing,
        )
        prefix = f"suite/{self.suite.name}"
        out: dict[str, float] = {}
        for h, s in report["summary"].items():
            out[f"{prefix}/h{h}/win_fraction"] = float(s["win_fraction"])
            out[f"{prefix}/h{h}/diverged_runs"] = float(s["diverged_runs"])
            out[f"{prefix}/h{h}/reached_adam"] = float(s["reached_adam"])
            med = s["speedup_median"]
            out[f"{prefix}/h{h}/speedup_median"] = float("nan") if med is None else float(med)
        for task, per in report["tasks"].items():
            for h, s in per.items():
                out[f"{prefix}/{task}/h{h}/final_test"] = float(s["final_test"])
                sp = s["speedup"]
                out[f"{prefix}/{task}/h{h}/speedup"] = float("nan") if sp is None else float(sp)
        return out
