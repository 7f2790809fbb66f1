"""Comparing a learned optimizer with Adam on held-out task samples: tables, JSON and plots."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

import lopt_core
from lopt_core import LearnedOptimizer, MetaParams, Optimizer, PRNGKey, TaskFamily
from lopt_core.validation import check_optimizer_instance
from lopt_outer.eval_training import multi_task_training_curves

__all__ = [
    "FixedOptimizer",
    "compare_with_adam",
    "curves_figure",
    "format_table",
    "pick_best_adam",
    "plot_curves",
    "summarize",
    "write_summary",
]


@lopt_core.declare
class FixedOptimizer(LearnedOptimizer):
    """A hand-designed Optimizer seen as a LearnedOptimizer with no meta-parameters.

    Lets `multi_task_training_curves` evaluate Adam and a learned optimizer
    through one code path (and, equal optimizers wrapping equal, one compilation).

    Attributes:
      opt: the optimizer.
    """

    opt: Optimizer

    def __post_init__(self) -> None:
        check_optimizer_instance(self.opt, "FixedOptimizer")

    @property
    def name(self) -> str:
        """The wrapped optimizer's name."""
        return self.opt.name

    def init(self, key: PRNGKey) -> MetaParams:
        """Empty theta."""
        del key
        return {}

    def opt_fn(self, theta: MetaParams, is_training: bool = False) -> Optimizer:
        """The wrapped optimizer."""
        del theta, is_training
        return self.opt


def _adam(lr: float) -> Optimizer:
    return lopt_core.get_optimizer("Adam", learning_rate=lr)


def summarize(curves: dict[str, np.ndarray], split: str = "test") -> dict[str, float]:
    """Scalars of one `multi_task_training_curves` result: final and mean losses over tasks.

    Each `<name>` (the mean over tasks) comes with `<name>_std`, the standard
    deviation over tasks of the per-task value: `final_<split>_loss` (last
    evaluation), `mean_<split>_loss` (mean over evaluations), `final_train_loss`
    (mean of the last 10 training losses) and `mean_train_loss`.
    """
    ev = np.asarray(curves[f"eval/{split}/loss"])
    train = np.asarray(curves["train/loss"])
    per_task = {
        f"final_{split}_loss": ev[:, -1],
        f"mean_{split}_loss": np.mean(ev, axis=1),
        "final_train_loss": np.mean(train[:, -10:], axis=1),
        "mean_train_loss": np.mean(train, axis=1),
    }
    out: dict[str, float] = {}
    for name, values in per_task.items():
        out[name] = float(np.mean(values))
        out[f"{name}_std"] = float(np.std(values))
    return out


def pick_best_adam(
    summary: dict[str, dict[str, float]], adam_labels: Sequence[str], select_split: str
) -> str:
    """The label of `adam_labels` with the lowest `final_<select_split>_loss` in `summary`.

    A non-finite loss never wins; when every one is non-finite, the first label.

    Raises:
      ValueError: no Adam labels, or a summary without `final_<select_split>_loss`
        (summarise the curves of that split: `summarize(curves, select_split)`).
    """
    if not adam_labels:
        raise ValueError(
            "pick_best_adam: no Adam labels to choose from; pass the Adam sweep's labels."
        )
    key = f"final_{select_split}_loss"
    missing = [label for label in adam_labels if key not in summary.get(label, {})]
    if missing:
        raise ValueError(
            f"pick_best_adam: the summaries of {missing} have no {key!r}; evaluate the "
            f"{select_split!r} split and summarise it (summarize(curves, {select_split!r}))."
        )

    def loss(label: str) -> float:
        value = summary[label][key]
        return value if math.isfinite(value) else math.inf

    return min(adam_labels, key=loss)


def compare_with_adam(
    task_family: TaskFamily,
    learned_opt: LearnedOptimizer,
    theta: MetaParams,
    *,
    n_tasks: int = 4,
    steps: int = 500,
    key: PRNGKey | None = None,
    baseline_lr: float = 1e-3,
    adam_lrs: Sequence[float] = (1e-4, 3e-4, 3e-3, 1e-2, 3e-2),
    eval_every: int = 50,
    steps_per_jit: int = 50,
    n_eval_batches_vec: int = 4,
    split: str = "test",
    select_split: str = "outer_valid",
    progress: Callable[[list[str], int], None] | None = None,
) -> dict[str, Any]:
    """Trains the same held-out task samples with the learned optimizer and with Adam.

    Every optimizer sees the same task samples and inits (same key). Use a key
    that meta-training never used to get held-out samples.

    Args:
      task_family: the family to sample evaluation tasks from.
      learned_opt: the learned optimizer.
      theta: its (meta-trained) parameters.
      n_tasks: held-out task samples.
      steps: inner steps.
      key: random key of the samples; PRNGKey(10_000) by default.
      baseline_lr: learning rate of the untuned Adam baseline.
      adam_lrs: the learning-rate sweep of Adam.
      eval_every: steps between evaluations.
      steps_per_jit: steps per jitted call.
      n_eval_batches_vec: batches per evaluation.
      split: split the table reports.
      select_split: split that picks the best Adam of the sweep (the lowest mean
        final loss on it); its loss on `split` is then reported. A validation
        split by default, so the choice never looks at the reported test loss.
      progress: called as `progress(labels, i)` before the i-th of the optimizers
        `labels` trains (the learned optimizer, the baseline, then the sweep).

    Returns:
      `{"curves": {label: curves}, "summary": {label: scalars}, "best_adam": label,
      "learned": label, "baseline": label, "split": split, "select_split":
      select_split, "n_tasks": n_tasks, "learning_rates": {label: lr}}`: `curves`
      holds every task's curves (a leading `n_tasks` axis, see
      `multi_task_training_curves`), `summary` the means over tasks and their
      standard deviations on `split` and on `select_split` (see `summarize`),
      `best_adam` the Adam label with the lowest `final_<select_split>_loss`, and
      `learning_rates` Adam's learning rate of each Adam label (None for the
      learned optimizer).
    """
    key = jax.random.PRNGKey(10_000) if key is None else key
    splits = tuple(dict.fromkeys(("train", select_split, split)))
    common = {"n_tasks": n_tasks, "key": key, "steps": steps, "eval_every": eval_every}
    common |= {"steps_per_jit": steps_per_jit, "n_eval_batches_vec": n_eval_batches_vec}
    common["splits"] = splits
    learned = f"learned ({learned_opt.name})"
    labels: dict[str, tuple[LearnedOptimizer, MetaParams]] = {learned: (learned_opt, theta)}
    learning_rates: dict[str, float | None] = {learned: None}
    baseline = f"Adam(lr={baseline_lr:g})"
    labels[baseline] = (FixedOptimizer(_adam(baseline_lr)), {})
    learning_rates[baseline] = float(baseline_lr)
    for lr in adam_lrs:
        label = f"Adam(lr={lr:g})"
        if label not in labels:
            labels[label] = (FixedOptimizer(_adam(lr)), {})
            learning_rates[label] = float(lr)
    curves = {}
    for i, (label, (lopt, th)) in enumerate(labels.items()):
        if progress is not None:
            progress(list(labels), i)
        curves[label] = multi_task_training_curves(task_family, lopt, th, **common)
    summary = {
        label: {**summarize(c, select_split), **summarize(c, split)} for label, c in curves.items()
    }
    adam_labels = [label for label in labels if label.startswith("Adam(")]
    return {
        "curves": curves,
        "summary": summary,
        "best_adam": pick_best_adam(summary, adam_labels, select_split),
        "learned": learned,
        "baseline": baseline,
        "split": split,
        "select_split": select_split,
        "n_tasks": n_tasks,
        "learning_rates": learning_rates,
    }


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of `compare_with_adam`'s summary, best first."""
    split = result["split"]
    key = f"final_{split}_loss"
    rows = sorted(result["summary"].items(), key=lambda kv: kv[1][key])
    head = ("optimizer", f"final {split} loss", "+-", f"mean {split} loss", "final train loss")
    body = [
        (
            label + (" *" if label == result["baseline"] else ""),
            f"{s[key]:.4f}",
            f"{s[key + '_std']:.4f}",
            f"{s[f'mean_{split}_loss']:.4f}",
            f"{s['final_train_loss']:.4f}",
        )
        for label, s in rows
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("* untuned baseline")
    if result.get("select_split") and result.get("best_adam"):
        lines.append(
            f"best Adam of the sweep, picked on the final {result['select_split']} loss: "
            f"{result['best_adam']}"
        )
    return "\n".join(lines)


def _label_lr(result: dict[str, Any], label: str) -> float:
    """Adam's learning rate of `label`: from `learning_rates`, else read off `Adam(lr=...)`."""
    lr = result.get("learning_rates", {}).get(label)
    if lr is None and label.startswith("Adam(lr=") and label.endswith(")"):
        try:
            lr = float(label[len("Adam(lr=") : -1])
        except ValueError:
            lr = None
    return math.inf if lr is None else float(lr)


def _legend_order(result: dict[str, Any]) -> list[str]:
    """The labels of `result["curves"]`: learned, baseline, then the rest by learning rate."""
    first = [result.get("learned"), result.get("baseline")]
    first = [label for label in dict.fromkeys(first) if label in result["curves"]]
    rest = [label for label in result["curves"] if label not in first]
    return first + sorted(rest, key=lambda label: _label_lr(result, label))


def _n_tasks(result: dict[str, Any]) -> int:
    if result.get("n_tasks") is not None:
        return int(result["n_tasks"])
    for c in result["curves"].values():
        return int(np.shape(c["train/loss"])[0])
    return 0


def _band(ax: Any, xs: np.ndarray, per_task: np.ndarray, **style: Any) -> tuple[Any, Any]:
    """The mean over tasks (rows of `per_task`) as a line, and mean +- std as a band."""
    mean, std = np.mean(per_task, axis=0), np.std(per_task, axis=0)
    (line,) = ax.plot(xs, mean, **style)
    band = ax.fill_between(
        xs, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0
    )
    return line, band


def curves_figure(result: dict[str, Any], title: str = "") -> Any:
    """The figure `plot_curves` writes: train and evaluation losses of every optimizer.

    Two panels (train loss, smoothed; the evaluation split's loss), each curve the
    mean over the evaluated tasks with a band of one standard deviation over
    tasks. The legend, right of the panels, lists the learned optimizer, the
    untuned baseline, then the Adam sweep by increasing learning rate.

    Args:
      result: what `compare_with_adam` returns.
      title: the figure's title (`lopt eval` passes the task family and theta file).

    Returns:
      A `matplotlib.figure.Figure` (not registered with pyplot: no need to close it).

    Raises:
      ImportError: matplotlib is missing; install `lopt-outer[plot]`.
    """
    try:
        import matplotlib  # noqa: F401 (first: matplotlib.figure may be cached without it)
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "Plotting needs matplotlib: pip install 'lopt-outer[plot]' (or pip install matplotlib)."
        ) from exc
    split = result["split"]
    n = _n_tasks(result)
    over = f"mean ± std over {n} task{'s' if n != 1 else ''}"
    fig = Figure(figsize=(13, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    positive = True
    for i, label in enumerate(_legend_order(result)):
        c = result["curves"][label]
        style = {
            "color": f"C{i % 10}",
            "lw": 2.5 if label == result.get("learned") else 1.2,
            "ls": "-" if label in (result.get("learned"), result.get("baseline")) else ":",
        }
        notes = [
            note
            for note, key in (("untuned baseline", "baseline"), ("best Adam", "best_adam"))
            if label == result.get(key)
        ]
        shown = f"{label} ({', '.join(notes)})" if notes else label
        train = np.asarray(c["train/loss"], dtype=np.float64)
        window = max(1, train.shape[1] // 50)
        kernel = np.ones(window) / window
        smooth = np.stack([np.convolve(row, kernel, mode="valid") for row in train])
        _band(axes[0], np.arange(smooth.shape[1]) + window - 1, smooth, **style)
        ev = np.asarray(c[f"eval/{split}/loss"], dtype=np.float64)
        _band(axes[1], np.asarray(c["eval/xs"])[0], ev, label=shown, **style)
        positive &= bool(np.all(np.mean(smooth, axis=0) > 0) and np.all(np.mean(ev, axis=0) > 0))
    yscale = "log" if positive else "linear"
    axes[0].set(xlabel="inner step", ylabel=f"train loss, smoothed ({over})", yscale=yscale)
    axes[1].set(xlabel="inner step", ylabel=f"{split} loss ({over})", yscale=yscale)
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
    axes[1].legend(
        loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, frameon=False
    )
    if title:
        fig.suptitle(title)
    return fig


def plot_curves(result: dict[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """Writes `curves_figure(result, title)` as a PNG and returns its path.

    Raises:
      ImportError: matplotlib is missing; install `lopt-outer[plot]`.
    """
    fig = curves_figure(result, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def write_summary(result: dict[str, Any], path: str | os.PathLike, **extra: Any) -> Path:
    """Writes the summary (no curves) of `compare_with_adam` as JSON."""
    doc = {
        "split": result["split"],
        "learned": result["learned"],
        "baseline": result["baseline"],
        "best_adam": result["best_adam"],
        **({"best_adam_picked_on": result["select_split"]} if "select_split" in result else {}),
        **({"n_tasks": result["n_tasks"]} if "n_tasks" in result else {}),
        "summary": result["summary"],
        **extra,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
