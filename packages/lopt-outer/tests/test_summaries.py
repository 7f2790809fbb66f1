"""In-jit summaries through the estimators, the learner and `meta_train` (`with_summary`).

A task records its first parameter with `lopt_core.summary` inside its loss. On
FixedQuadraticTask under LearnableSGD(lr) that parameter is exactly
`(1 - lr * 0.5) ** t` after t steps, so the recorded values are checked against it.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from outer_helpers import FixedQuadraticFamily, FixedQuadraticTask, LearnableSGD

import lopt_core
from lopt_core.summary import summary
from lopt_optimizers import Adam
from lopt_outer import (
    ConstantTruncationSchedule,
    RunConfig,
    SingleMachineGradientLearner,
    TruncatedGrad,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
    meta_train,
)

OUTER = lopt_core.OuterState(0)
LR = 0.1


class RecordingTask(FixedQuadraticTask):
    def loss(self, params, key, data):
        summary("x0", params["x"][0], aggregation="collect")
        summary("x0_mean", params["x"][0])
        return super().loss(params, key, data)


class RecordingFamily(FixedQuadraticFamily):
    def task_fn(self, cfg):
        return RecordingTask()


def _step(num_tasks=2):
    return VectorizedLOptTruncatedStep(
        RecordingFamily(), LearnableSGD(LR), ConstantTruncationSchedule(100), num_tasks
    )


def _estimate(est, with_summary):
    key = jax.random.PRNGKey(3)
    theta = est.truncated_step.outer_init(key)
    weights = lopt_core.WorkerWeights(theta, None, OUTER)
    state = est.init_worker_state(weights, jax.random.PRNGKey(1))
    return est.compute_gradient_estimate(weights, key, state, with_summary=with_summary)


@pytest.mark.parametrize("steps_per_jit", [None, 2])
def test_truncated_grad_records_the_task_summaries_exactly(steps_per_jit):
    est = TruncatedGrad(_step(), unroll_length=4, steps_per_jit=steps_per_jit)
    plain_out, plain = _estimate(est, with_summary=False)
    out, metrics = _estimate(est, with_summary=True)
    assert not any("||" in k for k in plain)
    # Recording changes nothing the estimate computes.
    np.testing.assert_array_equal(out.grad["log_lr"], plain_out.grad["log_lr"])
    assert {k: float(v) for k, v in plain.items()} == {
        k: float(v) for k, v in metrics.items() if "||" not in k
    }
    x0 = np.asarray(metrics["collect||x0"], np.float64)
    exact = (1 - LR * 0.5) ** np.arange(5)
    close = np.isclose(x0[:, None], exact[None, :], rtol=1e-6)
    # Every loss evaluation saw the parameter after 0..4 SGD steps, and all of 0..3 appear.
    assert close.any(axis=1).all() and close.any(axis=0)[:4].all()
    assert float(metrics["mean||x0_mean"]) == pytest.approx(float(np.mean(metrics["collect||x0"])))


def test_pes_adds_a_sampled_loss_difference():
    est = TruncatedPES(_step(), unroll_length=3, std=0.01)
    _, metrics = _estimate(est, with_summary=True)
    assert "sample||delta_loss_sample" in metrics
    assert np.isfinite(float(metrics["sample||delta_loss_sample"]))
    # The antithetic copies perturb the learning rate, so x0 values spread around the exact ones.
    assert metrics["collect||x0"].size >= 2 * 2 * 3
    _, plain = _estimate(est, with_summary=False)
    assert "sample||delta_loss_sample" not in plain


def _learner():
    return SingleMachineGradientLearner(
        LearnableSGD(LR), [TruncatedGrad(_step(), unroll_length=2)], Adam(1e-3)
    )


def test_the_learner_names_summaries_by_estimator_and_keeps_the_aggregation_first():
    learner = _learner()
    name = learner.gradient_estimators[0].cfg_name()
    state = learner.init(jax.random.PRNGKey(0))
    _, _, plain = learner.update(state, jax.random.PRNGKey(1))
    _, _, metrics = learner.update(state, jax.random.PRNGKey(1), with_metrics=True)
    assert not any("||" in k for k in plain)
    # A 2-step unroll evaluates the loss after 0 and 1 steps: the mean of 1 and 0.95.
    assert float(metrics[f"mean||{name}/x0_mean"]) == pytest.approx(0.975, rel=1e-6)


def test_meta_train_writes_summaries_on_logged_steps(tmp_path):
    learner = _learner()
    name = learner.gradient_estimators[0].cfg_name()
    config = RunConfig(
        num_steps=3, output_dir=tmp_path, log_every=2, summaries=True, progress=False
    )
    meta_train(learner, config)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 3]
    # The unrolls continue: step 2 sees x0 after 2 and 3 inner steps, step 3 after 4 and 5.
    recorded = [r[f"mean||{name}/x0_mean"] for r in rows]
    assert recorded == pytest.approx([(0.95**2 + 0.95**3) / 2, (0.95**4 + 0.95**5) / 2], rel=1e-3)
    # Without the flag, nothing is recorded.
    meta_train(_learner(), RunConfig(num_steps=1, output_dir=tmp_path / "b", progress=False))
    (row,) = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert not any("||" in k for k in row)


def test_run_config_summaries_is_a_bool():
    assert RunConfig(num_steps=1, summaries=1).summaries is True
    assert jnp.asarray(RunConfig(num_steps=1).summaries).item() is False
