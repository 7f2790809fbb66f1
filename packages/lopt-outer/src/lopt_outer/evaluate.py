"""Comparing a learned optimizer with Adam on held-out task samples: tables, JSON and plots."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
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
    "format_table",
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
    """Scalars of one `multi_task_training_curves` result: final and mean losses over tasks."""
    ev = curves[f"eval/{split}/loss"]
    return {
        f"final_{split}_loss": float(np.mean(ev[:, -1])),
        f"final_{split}_loss_std": float(np.std(ev[:, -1])),
        f"mean_{split}_loss": float(np.mean(ev)),
        "final_train_loss": float(np.mean(curves["train/loss"][:, -10:])),
        "mean_train_loss": float(np.mean(curves["train/loss"])),
    }


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

    Returns:
      `{"curves": {label: curves}, "summary": {label: scalars}, "best_adam": label,
      "learned": label, "baseline": label}`.
    """
    key = jax.random.PRNGKey(10_000) if key is None else key
    splits = ("train", split) if split != "train" else ("train",)
    common = {"n_tasks": n_tasks, "key": key, "steps": steps, "eval_every": eval_every}
    common |= {"steps_per_jit": steps_per_jit, "n_eval_batches_vec": n_eval_batches_vec}
    common["splits"] = splits
    labels: dict[str, tuple[LearnedOptimizer, MetaParams]] = {
        f"learned ({learned_opt.name})": (learned_opt, theta)
    }
    baseline = f"Adam(lr={baseline_lr:g})"
    labels[baseline] = (FixedOptimizer(_adam(baseline_lr)), {})
    for lr in adam_lrs:
        label = f"Adam(lr={lr:g})"
        if label not in labels:
            labels[label] = (FixedOptimizer(_adam(lr)), {})
    curves = {
        label: multi_task_training_curves(task_family, lopt, th, **common)
        for label, (lopt, th) in labels.items()
    }
    summary = {label: summarize(c, split) for label, c in curves.items()}
    adam_labels = [label for label in labels if label.startswith("Adam(")]
    best_adam = min(adam_labels, key=lambda label: summary[label][f"final_{split}_loss"])
    return {
        "curves": curves,
        "summary": summary,
        "best_adam": best_adam,
        "learned": next(iter(labels)),
        "baseline": baseline,
        "split": split,
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
    return "\n".join(lines)


def plot_curves(result: dict[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """Writes a PNG of train and evaluation loss curves (mean over tasks) for every optimizer.

    Raises:
      ImportError: matplotlib is missing; install `lopt-outer[plot]`.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "Plotting needs matplotlib: pip install 'lopt-outer[plot]' (or pip install matplotlib)."
        ) from exc
    split = result["split"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, c in result["curves"].items():
        lw = 2.5 if label == result["learned"] else 1.2
        ls = "-" if label in (result["learned"], result["baseline"]) else ":"
        train = np.mean(c["train/loss"], axis=0)
        window = max(1, len(train) // 50)
        smooth = np.convolve(train, np.ones(window) / window, mode="valid")
        axes[0].plot(np.arange(len(smooth)) + window - 1, smooth, ls, lw=lw, label=label)
        axes[1].plot(
            c["eval/xs"][0], np.mean(c[f"eval/{split}/loss"], axis=0), ls, lw=lw, label=label
        )
    axes[0].set(xlabel="inner step", ylabel="train loss (smoothed)", yscale="log")
    axes[1].set(xlabel="inner step", ylabel=f"{split} loss", yscale="log")
    axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_summary(result: dict[str, Any], path: str | os.PathLike, **extra: Any) -> Path:
    """Writes the summary (no curves) of `compare_with_adam` as JSON."""
    doc = {
        "split": result["split"],
        "learned": result["learned"],
        "baseline": result["baseline"],
        "best_adam": result["best_adam"],
        "summary": result["summary"],
        **extra,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
