"""The evaluation plot: sorted legend outside the axes, mean +- std bands, labelled axes, title."""

import json

import jax
import numpy as np
import pytest
from outer_helpers import DataQuadraticFamily, LearnableSGD

from lopt_outer.evaluate import (
    compare_with_adam,
    curves_figure,
    format_table,
    plot_curves,
    summarize,
    write_summary,
)

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

TITLE = "ImageMLPFamily_Digits8 — theta: run1/theta.lopt"
#: Two tasks' evaluation losses (times a scale per optimizer): mean [2, 2, 3], std [1, 0, 1].
EVAL = np.array([[1.0, 2.0, 4.0], [3.0, 2.0, 2.0]])
#: Two tasks' training losses over 10 steps (too few to smooth): mean 1.5 + t, std 0.5.
TRAIN = np.array([np.arange(10) + 1.0, np.arange(10) + 2.0])
#: Labels in the order a run produced them, and the scale of each one's losses.
SCALES = {
    "Adam(lr=0.01)": 1.0,
    "learned (MLPLOpt)": 2.0,
    "Adam(lr=0.0001)": 4.0,
    "Adam(lr=0.001)": 8.0,
    "Adam(lr=0.003)": 16.0,
}
SORTED = [
    "learned (MLPLOpt)",
    "Adam(lr=0.001) (untuned baseline)",
    "Adam(lr=0.0001)",
    "Adam(lr=0.003)",
    "Adam(lr=0.01) (best Adam)",
]


def _curves(scale, split="test"):
    return {
        "train/loss": scale * TRAIN,
        "eval/xs": np.array([[0, 5, 10], [0, 5, 10]]),
        f"eval/{split}/loss": scale * EVAL,
    }


def _result(split="test", learning_rates=True, scales=SCALES):
    curves = {label: _curves(s, split) for label, s in scales.items()}
    result = {
        "curves": curves,
        "summary": {label: summarize(c, split) for label, c in curves.items()},
        "best_adam": "Adam(lr=0.01)",
        "learned": "learned (MLPLOpt)",
        "baseline": "Adam(lr=0.001)",
        "split": split,
        "n_tasks": 2,
    }
    if learning_rates:
        result["learning_rates"] = {
            label: None if label.startswith("learned") else float(label[8:-1]) for label in curves
        }
    return result


def _drawn(fig):
    FigureCanvasAgg(fig).draw()
    return fig


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def _legend_labels(fig):
    return [t.get_text() for t in fig.axes[1].get_legend().get_texts()]


def test_the_title_is_the_one_passed():
    fig = curves_figure(_result(), title=TITLE)
    assert fig.get_suptitle() == TITLE
    assert curves_figure(_result()).get_suptitle() == ""


def test_the_legend_lists_learned_baseline_then_the_sweep_by_learning_rate():
    assert _legend_labels(curves_figure(_result())) == SORTED
    # A result without learning_rates (written before they were recorded): read off labels.
    assert _legend_labels(curves_figure(_result(learning_rates=False))) == SORTED


def test_the_legend_is_right_of_both_axes_and_inside_the_figure():
    fig = _drawn(curves_figure(_result(), TITLE))
    renderer = fig.canvas.get_renderer()
    legend = fig.axes[1].get_legend().get_window_extent(renderer)
    for ax in fig.axes[:2]:
        assert legend.x0 > ax.get_window_extent(renderer).x1
    assert legend.x1 <= fig.bbox.x1 and fig.get_figwidth() > 2 * fig.get_figheight()
    left, right = (ax.get_window_extent(renderer) for ax in fig.axes[:2])
    assert left.x1 < right.x0  # the panels do not overlap either


def test_one_band_of_mean_plus_minus_std_per_curve():
    fig = curves_figure(_result())
    train_ax, eval_ax = fig.axes[:2]
    order = [label.split(" (")[0] if label.startswith("Adam") else label for label in SORTED]
    scales = [SCALES[label] for label in order]
    assert len(_bands(eval_ax)) == len(_bands(train_ax)) == len(SCALES)
    for band, line, scale in zip(_bands(eval_ax), eval_ax.get_lines(), scales):
        np.testing.assert_array_equal(line.get_ydata(), scale * np.array([2.0, 2.0, 3.0]))
        ys = band.get_paths()[0].vertices[:, 1]
        assert ys.min() == scale * 1.0 and ys.max() == scale * 4.0
        points = {tuple(v) for v in band.get_paths()[0].vertices}
        lower, upper = scale * np.array([1.0, 2.0, 2.0]), scale * np.array([3.0, 2.0, 4.0])
        for x, lo, hi in zip([0, 5, 10], lower, upper):
            assert (x, lo) in points and (x, hi) in points
    for band, line, scale in zip(_bands(train_ax), train_ax.get_lines(), scales):
        np.testing.assert_array_equal(line.get_ydata(), scale * (np.arange(10) + 1.5))
        ys = band.get_paths()[0].vertices[:, 1]
        assert ys.min() == scale * 1.0 and ys.max() == scale * 11.0


def test_the_y_axes_name_the_loss_and_the_number_of_tasks():
    train_ax, eval_ax = curves_figure(_result()).axes[:2]
    assert eval_ax.get_ylabel() == "test loss (mean ± std over 2 tasks)"
    assert train_ax.get_ylabel() == "train loss, smoothed (mean ± std over 2 tasks)"
    assert eval_ax.get_yscale() == "log"
    _, eval_ax = curves_figure(_result(split="train")).axes[:2]
    assert eval_ax.get_ylabel() == "train loss (mean ± std over 2 tasks)"
    one = _result()
    one["curves"] = {k: {n: a[:1] for n, a in c.items()} for k, c in one["curves"].items()}
    del one["n_tasks"]  # read off the curves
    assert curves_figure(one).axes[1].get_ylabel() == "test loss (mean ± std over 1 task)"


def test_negative_losses_are_drawn_on_a_linear_scale():
    result = _result(scales={"learned (MLPLOpt)": -1.0, "Adam(lr=0.001)": 1.0})
    result["best_adam"] = "Adam(lr=0.001)"
    fig = curves_figure(result)
    assert [ax.get_yscale() for ax in fig.axes[:2]] == ["linear", "linear"]
    assert _legend_labels(fig) == [
        "learned (MLPLOpt)",
        "Adam(lr=0.001) (untuned baseline, best Adam)",
    ]


def test_plot_curves_writes_the_whole_figure_as_a_png(tmp_path):
    path = plot_curves(_result(), tmp_path / "sub" / "curves.png", title=TITLE)
    assert path == tmp_path / "sub" / "curves.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > 2.5 * height  # widened for the legend, and the legend was kept


def test_the_summary_has_the_std_over_tasks_of_every_scalar():
    s = summarize(_curves(1.0), "test")
    assert s == {
        "final_test_loss": 3.0,
        "final_test_loss_std": 1.0,
        "mean_test_loss": 7.0 / 3.0,
        "mean_test_loss_std": 0.0,
        "final_train_loss": 6.0,
        "final_train_loss_std": 0.5,
        "mean_train_loss": 6.0,
        "mean_train_loss_std": 0.5,
    }


def test_compare_with_adam_carries_tasks_learning_rates_and_stds(tmp_path):
    lopt = LearnableSGD(0.05)
    res = compare_with_adam(
        DataQuadraticFamily(),
        lopt,
        lopt.init(jax.random.PRNGKey(0)),
        n_tasks=3,
        steps=20,
        baseline_lr=1e-3,
        adam_lrs=(0.1, 1e-4, 1e-3),
        eval_every=10,
        steps_per_jit=10,
    )
    assert res["n_tasks"] == 3
    assert res["learning_rates"] == {
        "learned (LearnableSGD)": None,
        "Adam(lr=0.001)": 1e-3,
        "Adam(lr=0.1)": 0.1,
        "Adam(lr=0.0001)": 1e-4,
    }
    for label, c in res["curves"].items():
        ev, train, s = c["eval/test/loss"], c["train/loss"], res["summary"][label]
        assert ev.shape == (3, 3) and train.shape == (3, 20)
        assert s["final_test_loss_std"] == float(np.std(ev[:, -1]))
        assert s["mean_test_loss_std"] == float(np.std(np.mean(ev, axis=1)))
        assert s["final_train_loss_std"] == float(np.std(np.mean(train[:, -10:], axis=1)))
        assert s["mean_train_loss_std"] == float(np.std(np.mean(train, axis=1)))
    assert "Adam(lr=0.001) *" in format_table(res)
    doc = json.loads(write_summary(res, tmp_path / "s.json", theta="t.lopt").read_text())
    assert doc["n_tasks"] == 3 and doc["theta"] == "t.lopt"
    assert doc["summary"] == res["summary"]
    assert {"final_test_loss_std", "mean_test_loss_std", "mean_train_loss_std"} <= set(
        doc["summary"]["learned (LearnableSGD)"]
    )
    fig = curves_figure(res, "DataQuadraticFamily — theta: t.lopt")
    labels = _legend_labels(fig)
    assert labels[:2] == ["learned (LearnableSGD)", "Adam(lr=0.001) (untuned baseline)"]
    assert [label.split(" (")[0] for label in labels[2:]] == ["Adam(lr=0.0001)", "Adam(lr=0.1)"]
    assert len(_bands(fig.axes[1])) == 4
