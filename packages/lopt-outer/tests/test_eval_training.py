import functools
import sys

import flax
import jax
import numpy as np
import pytest
from outer_helpers import DataQuadraticFamily, LearnableSGD, LrSGD, QuadraticFamily

import lopt_core
from lopt_outer import eval_training, evaluate
from lopt_outer.evaluate import FixedOptimizer, compare_with_adam, format_table, plot_curves


def test_single_task_training_curves_keys_and_falling_loss():
    fam = DataQuadraticFamily()
    task = fam.task_fn(1.0)
    out = eval_training.single_task_training_curves(
        task,
        LrSGD(np.log(0.05)),
        30,
        jax.random.PRNGKey(0),
        eval_every=10,
        eval_batches=2,
        last_eval_batches=4,
    )
    # As the reference: num_steps + 1 training steps, the last after the last evaluation.
    assert out["train/loss"].shape == (31,) and list(out["train/xs"]) == list(range(31))
    assert list(out["eval/xs"]) == [0, 10, 20, 30]
    for s in ("train", "outer_valid", "test"):
        assert out[f"eval/{s}/loss"].shape == (4,)
        assert out[f"eval/{s}/loss_normalized"].shape == (4,)
    assert out["eval/test/loss"][-1] < 0.5 * out["eval/test/loss"][0]
    assert int(out["eval/last_eval_batches"]) == 4 and int(out["eval/eval_batches"]) == 2


def test_single_task_curves_with_plain_iterators_and_no_data():
    fam = DataQuadraticFamily(keyed=False)
    out = eval_training.single_task_training_curves(
        fam.task_fn(1.0), LrSGD(np.log(0.05)), 12, jax.random.PRNGKey(0), eval_every=5
    )
    assert list(out["eval/xs"]) == [0, 5, 10, 12]
    task = QuadraticFamily().task_fn(np.ones(4, np.float32))
    task.datasets = None
    out = eval_training.single_task_training_curves(
        task, LrSGD(np.log(0.1)), 10, jax.random.PRNGKey(0), eval_every=5
    )
    assert out["train/loss"][-1] < out["train/loss"][0]


@flax.struct.dataclass
class _ParamsState:
    params: dict
    model_state: object


class _NoisyInitOpt(lopt_core.Optimizer):
    """Subtracts N(0, 1) noise drawn from its init key from the params; never updates."""

    def init(self, params, model_state=None, num_steps=None, key=None, **kwargs):
        noise = jax.random.normal(key, params["x"].shape)
        return _ParamsState({"x": params["x"] - noise}, model_state)

    def update(self, opt_state, grads, loss=None, model_state=None, key=None, **kwargs):
        return opt_state


def test_single_task_curves_give_the_optimizer_init_its_own_key():
    # QuadraticTask draws x ~ N(0, 1) from its init key: were the optimizer handed
    # the same key, its noise would equal x and the loss would be exactly 0.
    task = QuadraticFamily().task_fn(np.ones(4, np.float32))
    task.datasets = None
    out = eval_training.single_task_training_curves(
        task, _NoisyInitOpt(), 2, jax.random.PRNGKey(0), eval_every=2
    )
    assert out["eval/train/loss"][0] > 0.01


def test_multi_task_training_curves_keys_shapes_and_reproducibility():
    lopt = LearnableSGD(0.05)
    theta = lopt.init(jax.random.PRNGKey(0))
    kw = dict(
        n_tasks=3,
        steps=20,
        eval_every=10,
        steps_per_jit=5,
        splits=("train", "test"),
        n_eval_batches_vec=2,
    )
    out = eval_training.multi_task_training_curves(
        DataQuadraticFamily(), lopt, theta, key=jax.random.PRNGKey(1), **kw
    )
    assert out["train/loss"].shape == (3, 20) and out["train/xs"].shape == (3, 20)
    assert out["eval/xs"].tolist() == [[0, 10, 20]] * 3
    assert out["eval/test/loss"].shape == (3, 3) and out["eval/train/norm_loss"].shape == (3, 3)
    assert np.all(out["eval/test/loss"][:, -1] < out["eval/test/loss"][:, 0])
    again = eval_training.multi_task_training_curves(
        DataQuadraticFamily(), lopt, theta, key=jax.random.PRNGKey(1), **kw
    )
    np.testing.assert_array_equal(out["train/loss"], again["train/loss"])
    with pytest.raises(ValueError, match="multiples of steps_per_jit"):
        eval_training.multi_task_training_curves(
            DataQuadraticFamily(), lopt, theta, 2, steps=12, steps_per_jit=5
        )


def test_compare_with_adam_table_and_plot(tmp_path):
    lopt = LearnableSGD(0.1)
    res = compare_with_adam(
        QuadraticFamily(),
        lopt,
        lopt.init(jax.random.PRNGKey(0)),
        n_tasks=2,
        steps=20,
        adam_lrs=(0.1,),
        eval_every=10,
        steps_per_jit=10,
        split="train",
    )
    assert set(res["summary"]) == {"learned (LearnableSGD)", "Adam(lr=0.001)", "Adam(lr=0.1)"}
    assert res["best_adam"] == "Adam(lr=0.1)"  # on a quadratic from x~N(0,1), 0.1 beats 1e-3
    table = format_table(res)
    assert table.splitlines()[0].startswith("optimizer") and "Adam(lr=0.001) *" in table
    path = plot_curves(res, tmp_path / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(FixedOptimizer(lopt_core.get_optimizer("Adam")).init(None), dict)


def _disagreeing_curves(task_family, learned_opt, theta, *, n_tasks, steps, splits, **kw):
    """Curves where the validation loss favours small learning rates and the test loss large ones."""
    lr = getattr(getattr(learned_opt, "opt", None), "learning_rate", 1.0)
    final = {"outer_valid": 1.0 + np.log10(lr), "test": 1.0 - np.log10(lr), "train": 1.0}
    evals = np.linspace(0.0, 1.0, 3)
    out = {"train/loss": np.ones((n_tasks, steps)), "eval/xs": np.tile([0, 10, 20], (n_tasks, 1))}
    for split in splits:
        out[f"eval/{split}/loss"] = np.tile(10.0 - (10.0 - final[split]) * evals, (n_tasks, 1))
    return out


def test_the_best_adam_is_picked_on_the_validation_loss_not_the_test_loss(monkeypatch):
    seen_splits = []

    def curves(*args, splits, **kw):
        seen_splits.append(tuple(splits))
        return _disagreeing_curves(*args, splits=splits, **kw)

    monkeypatch.setattr(evaluate, "multi_task_training_curves", curves)
    lopt = LearnableSGD(0.1)
    compare = functools.partial(
        compare_with_adam,
        QuadraticFamily(),
        lopt,
        lopt.init(jax.random.PRNGKey(0)),
        n_tasks=2,
        steps=20,
        adam_lrs=(1e-4, 1e-2, 1e-1),
        eval_every=10,
        steps_per_jit=10,
    )
    res = compare()
    assert all(s == ("train", "outer_valid", "test") for s in seen_splits)
    s = res["summary"]
    by_test = min((k for k in s if k.startswith("Adam(")), key=lambda k: s[k]["final_test_loss"])
    assert by_test == "Adam(lr=0.1)"  # the test loss would pick the largest learning rate ...
    assert res["best_adam"] == "Adam(lr=0.0001)"  # ... validation picks the smallest
    assert (res["split"], res["select_split"]) == ("test", "outer_valid")
    assert s["Adam(lr=0.0001)"]["final_outer_valid_loss"] == pytest.approx(-3.0)
    assert s["Adam(lr=0.0001)"]["final_test_loss"] == pytest.approx(5.0)  # what is reported
    table = format_table(res)
    assert "picked on the final outer_valid loss: Adam(lr=0.0001)" in table
    # Picking on another split is a choice of the caller: on the test split, the test loss.
    res = compare(select_split="test")
    assert seen_splits[-1] == ("train", "test")
    assert res["best_adam"] == "Adam(lr=0.1)"


def test_pick_best_adam_skips_non_finite_losses_and_names_a_missing_split():
    summary = {
        "Adam(lr=0.1)": {"final_outer_valid_loss": float("nan")},
        "Adam(lr=0.01)": {"final_outer_valid_loss": 2.0},
        "Adam(lr=0.001)": {"final_outer_valid_loss": 3.0},
    }
    assert evaluate.pick_best_adam(summary, list(summary), "outer_valid") == "Adam(lr=0.01)"
    with pytest.raises(ValueError, match="final_inner_valid_loss"):
        evaluate.pick_best_adam(summary, list(summary), "inner_valid")
    with pytest.raises(ValueError, match="no Adam labels"):
        evaluate.pick_best_adam(summary, [], "outer_valid")


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"lopt-outer\[plot\]"):
        plot_curves({"split": "test", "curves": {}}, tmp_path / "x.png")
