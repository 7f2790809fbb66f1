import sys

import flax
import jax
import numpy as np
import pytest
from outer_helpers import DataQuadraticFamily, LearnableSGD, LrSGD, QuadraticFamily

import lopt_core
from lopt_outer import eval_training
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


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"lopt-outer\[plot\]"):
        plot_curves({"split": "test", "curves": {}}, tmp_path / "x.png")
