# ruff: noqa: F401, F811, I001, RUF059, UP006, UP035, UP045  (the notebook cells are kept verbatim)
"""Part 4 of the reference notebooks ("GradientEstimators"), with only its imports changed.

Every code cell runs here as written, in the notebook's order; the imports follow
the table in the root README (`outer_trainers.*`, `training` and `eval_training`
resolve to `lopt_outer` modules, `tasks.base` to `lopt_core.tasks`,
`optimizers.base` to `lopt_optimizers`, `learned_optimizers.base` to
`lopt_learned`, the tasks to `lopt_tasks`). `outer_trainers.common`, which the
notebook imports (twice) but never uses, has no public lopt_outer module; it is
imported as `lopt_outer._common`. The cells' displayed values
(`gradient_estimator_state`, `out.grad`, the shape trees) are bound to names and
the printed ones captured, so that the tests can check them. The notebook has no
step counts to shorten (unrolls of 10 and 5 steps) and reads no dataset (a
quadratic family).

Things added around the cells, not changed in them:
- the notebook's cells share globals: the FullES, TruncatedPES and TruncatedGrad
  sections each run in their own test, and the later ones first rerun the cells
  they build on (`_setup_cell`: the task family, learned optimizer and first
  truncated step; the TruncatedGrad section reuses the PES section's
  `trunc_sched`, rerun as its first line);
- the notebook's own `GradientEstimator` class (the interface it shows, every
  method raising NotImplementedError) is defined at module level, as in the
  notebook; one test instantiates it.
"""

import numpy as np
import jax.numpy as jnp
import jax
import functools
from matplotlib import pylab as plt
from typing import Optional, Tuple, Mapping

from lopt_outer import full_es
from lopt_outer import truncated_pes
from lopt_outer import truncated_grad
from lopt_outer import gradient_learner
from lopt_outer import truncation_schedule
from lopt_outer import _common as common
from lopt_outer import lopt_truncated_step
from lopt_outer import truncated_step as truncated_step_mod
from lopt_outer.gradient_learner import WorkerWeights, GradientEstimatorState, GradientEstimatorOut
from lopt_outer import _common as common

from lopt_tasks import quadratics
from lopt_tasks import image_mlp
from lopt_core import tasks as tasks_base

import lopt_learned as lopt_base
from lopt_learned import mlp_lopt
import lopt_optimizers as opt_base

import lopt_optimizers as optimizers
from lopt_outer import training
from lopt_outer import eval_training

import haiku as hk
import tqdm

import pytest

THETA_NAMES = {"log_epsilon", "log_lr", "one_minus_beta1", "one_minus_beta2"}


def test_part4_imports_resolve():
    assert full_es.FullES and truncated_pes.TruncatedPES and truncated_grad.TruncatedGrad
    assert gradient_learner.SingleMachineGradientLearner and gradient_learner.OuterState
    assert gradient_learner.WorkerWeights is WorkerWeights
    assert GradientEstimatorOut.__name__ == "GradientEstimatorOut"
    assert issubclass(full_es.FullESState, GradientEstimatorState)
    assert truncation_schedule.NeverEndingTruncationSchedule
    assert lopt_truncated_step.VectorizedLOptTruncatedStep
    assert truncated_step_mod.TruncatedStep
    assert quadratics.FixedDimQuadraticFamily and image_mlp.ImageMLP_FashionMnist8_Relu32
    assert tasks_base.Task and lopt_base.LearnableAdam and mlp_lopt.MLPLOpt
    assert opt_base.Adam is optimizers.Adam
    assert training.vec_get_batch and eval_training.single_task_training_curves


PRNGKey = jnp.ndarray


class GradientEstimator:
    truncated_step: truncated_step_mod.TruncatedStep

    def init_worker_state(
        self, worker_weights: WorkerWeights, key: PRNGKey
    ) -> GradientEstimatorState:
        raise NotImplementedError()

    def compute_gradient_estimate(
        self,
        worker_weights: WorkerWeights,
        key: PRNGKey,
        state: GradientEstimatorState,
        with_summary: Optional[bool],
    ) -> Tuple[GradientEstimatorOut, Mapping[str, jnp.ndarray]]:
        raise NotImplementedError()


def test_part4_gradient_estimator_interface():
    est = GradientEstimator()
    weights = WorkerWeights(theta=None, theta_model_state=None, outer_state=None)
    with pytest.raises(NotImplementedError):
        est.init_worker_state(weights, jax.random.PRNGKey(0))
    with pytest.raises(NotImplementedError):
        est.compute_gradient_estimate(weights, jax.random.PRNGKey(0), None, with_summary=False)
    # The interface it shows is lopt's: the same two methods, the same arguments.
    import inspect

    from lopt_core import GradientEstimator as LoptGradientEstimator

    for name in ("init_worker_state", "compute_gradient_estimate"):
        want = list(inspect.signature(getattr(LoptGradientEstimator, name)).parameters)
        assert list(inspect.signature(getattr(GradientEstimator, name)).parameters) == want
    assert GradientEstimator.__annotations__["truncated_step"] is truncated_step_mod.TruncatedStep


def _setup_cell():
    """The notebook's cell that builds the task family, learned optimizer and first step."""
    task_family = quadratics.FixedDimQuadraticFamily(10)
    lopt = lopt_base.LearnableAdam()
    # With FullES, there are no truncations, so we set trunc_sched to never ending.
    trunc_sched = truncation_schedule.NeverEndingTruncationSchedule()
    truncated_step = lopt_truncated_step.VectorizedLOptTruncatedStep(
        task_family,
        lopt,
        trunc_sched,
        num_tasks=3,
    )
    return task_family, lopt, trunc_sched, truncated_step


def _finite(tree):
    return all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(tree))


def test_part4_full_es():
    task_family, lopt, trunc_sched, truncated_step = _setup_cell()

    es_trunc_sched = truncation_schedule.ConstantTruncationSchedule(10)
    gradient_estimator = full_es.FullES(truncated_step, truncation_schedule=es_trunc_sched)

    key = jax.random.PRNGKey(0)
    theta = truncated_step.outer_init(key)
    worker_weights = gradient_learner.WorkerWeights(
        theta=theta, theta_model_state=None, outer_state=gradient_learner.OuterState(0)
    )

    gradient_estimator_state = gradient_estimator.init_worker_state(worker_weights, key=key)
    shown_state = gradient_estimator_state

    out, metrics = gradient_estimator.compute_gradient_estimate(
        worker_weights, key=key, state=gradient_estimator_state, with_summary=False
    )

    shown_grad = out.grad

    # "This gradient estimator has no state": an empty GradientEstimatorState.
    assert isinstance(shown_state, GradientEstimatorState)
    assert jax.tree_util.tree_leaves(shown_state) == []
    assert repr(shown_state) == "FullESState()"
    # The gradient: one scalar per meta-parameter of LearnableAdam, finite, not zero.
    assert set(shown_grad) == THETA_NAMES == set(theta)
    assert all(np.shape(g) == () for g in shown_grad.values()) and _finite(shown_grad)
    assert any(float(g) != 0.0 for g in shown_grad.values())
    # The full unroll lasts the estimator's schedule (10 steps) from fresh tasks, the
    # step's never-ending schedule resets nothing, and Adam brings every loss down.
    losses = np.asarray(out.unroll_info.loss)
    assert losses.shape == (10, 3)
    np.testing.assert_array_equal(
        np.asarray(out.unroll_info.iteration), np.tile(np.arange(1, 11)[:, None], 3)
    )
    assert not np.asarray(out.unroll_info.is_done).any()
    assert np.all(losses[-1] < losses[0])
    assert np.isfinite(float(out.mean_loss)) and float(metrics["mean_loss"]) == float(out.mean_loss)
    assert float(metrics["delta_loss_abs_mean"]) > 0 and int(metrics["nonfinite_tasks"]) == 0
    assert out.unroll_state == gradient_estimator_state


def test_part4_truncated_pes(capsys):
    task_family, lopt, trunc_sched, truncated_step = _setup_cell()

    trunc_sched = truncation_schedule.ConstantTruncationSchedule(10)
    truncated_step = lopt_truncated_step.VectorizedLOptTruncatedStep(
        task_family, lopt, trunc_sched, num_tasks=3, random_initial_iteration_offset=10
    )

    gradient_estimator = truncated_pes.TruncatedPES(truncated_step=truncated_step, trunc_length=10)

    key = jax.random.PRNGKey(1)
    theta = truncated_step.outer_init(key)
    worker_weights = gradient_learner.WorkerWeights(
        theta=theta, theta_model_state=None, outer_state=gradient_learner.OuterState(0)
    )

    gradient_estimator_state = gradient_estimator.init_worker_state(worker_weights, key=key)

    state_shapes = jax.tree_util.tree_map(lambda x: x.shape, gradient_estimator_state)

    out, metrics = gradient_estimator.compute_gradient_estimate(
        worker_weights, key=key, state=gradient_estimator_state, with_summary=False
    )

    shown_grad = out.grad

    out_state_shapes = jax.tree_util.tree_map(lambda x: x.shape, out.unroll_state)
    first = out

    print("Progress on inner problem before", out.unroll_state.pos_state.inner_step)
    out, metrics = gradient_estimator.compute_gradient_estimate(
        worker_weights, key=key, state=out.unroll_state, with_summary=False
    )
    print("Progress on inner problem after", out.unroll_state.pos_state.inner_step)
    printed = capsys.readouterr().out.splitlines()

    # "2 instances of SingleState": the positive and negative copies of every task
    # (opt_state, truncation state, task parameters, inner_step, is_done), and the
    # accumulator of perturbations, one per task and meta-parameter.
    start = gradient_estimator_state
    assert state_shapes.pos_state == state_shapes.neg_state
    assert state_shapes.pos_state.inner_opt_state.params == (3, 10)
    assert state_shapes.pos_state.task_param == (3, 10)
    assert state_shapes.pos_state.inner_step == (3,) == state_shapes.pos_state.is_done
    assert state_shapes.accumulator == {name: (3,) for name in THETA_NAMES}
    assert all(not np.any(a) for a in jax.tree_util.tree_leaves(start.accumulator))
    assert out_state_shapes == state_shapes
    # The tasks start at random inner steps below 10 (random_initial_iteration_offset).
    offsets = np.asarray(start.pos_state.inner_step)
    assert np.all((offsets >= 0) & (offsets < 10)) and len(set(offsets.tolist())) > 1
    # The gradient: finite, one scalar per meta-parameter.
    assert set(shown_grad) == THETA_NAMES and _finite(shown_grad) and _finite(out.grad)
    assert any(float(g) != 0.0 for g in shown_grad.values())
    assert np.isfinite(float(first.mean_loss)) and float(first.mean_loss) > 0
    # Each estimate trains 10 more steps; a task's unroll lasts 10 steps and the step
    # after its end resets it to 0, so the inner step moves (s + 10) mod 11.
    before = np.asarray(first.unroll_state.pos_state.inner_step)
    after = np.asarray(out.unroll_state.pos_state.inner_step)
    np.testing.assert_array_equal(before, (offsets + 10) % 11)
    np.testing.assert_array_equal(after, (before + 10) % 11)
    assert printed == [
        f"Progress on inner problem before {before}",
        f"Progress on inner problem after {after}",
    ]
    # Both copies train in lock step; the accumulator holds this truncation's
    # perturbations since each task's reset (every task was reset in the first).
    np.testing.assert_array_equal(out.unroll_state.neg_state.inner_step, after)
    assert _finite(first.unroll_state.accumulator)
    assert all(np.all(a != 0) for a in jax.tree_util.tree_leaves(first.unroll_state.accumulator))
    assert int(metrics["resets"]) == 3


def test_part4_truncated_grad():
    task_family, lopt, _, _ = _setup_cell()
    trunc_sched = truncation_schedule.ConstantTruncationSchedule(10)  # the PES section's

    truncated_step = lopt_truncated_step.VectorizedLOptTruncatedStep(
        task_family, lopt, trunc_sched, num_tasks=3, random_initial_iteration_offset=10
    )

    gradient_estimator = truncated_grad.TruncatedGrad(
        truncated_step=truncated_step, unroll_length=5, steps_per_jit=5
    )

    key = jax.random.PRNGKey(1)
    theta = truncated_step.outer_init(key)
    worker_weights = gradient_learner.WorkerWeights(
        theta=theta, theta_model_state=None, outer_state=gradient_learner.OuterState(0)
    )

    gradient_estimator_state = gradient_estimator.init_worker_state(worker_weights, key=key)

    state_shapes = jax.tree_util.tree_map(lambda x: x.shape, gradient_estimator_state)

    out, metrics = gradient_estimator.compute_gradient_estimate(
        worker_weights, key=key, state=gradient_estimator_state, with_summary=False
    )

    shown_grad = out.grad

    # The state is the vectorised inner-training state itself (no antithetic copies).
    assert state_shapes.inner_opt_state.params == (3, 10) and state_shapes.inner_step == (3,)
    offsets = np.asarray(gradient_estimator_state.inner_step)
    np.testing.assert_array_equal(out.unroll_state.inner_step, (offsets + 5) % 11)
    assert np.asarray(out.unroll_info.loss).shape == (5, 3)
    assert set(shown_grad) == THETA_NAMES and _finite(shown_grad)
    # Backprop through the truncation: a larger learning rate lowers these losses.
    assert float(shown_grad["log_lr"]) < 0
    # The gradient is the exact one of the truncation's mean loss: a central finite
    # difference of the estimator's own mean loss in log_lr (same key, same state).
    h = 0.05

    def mean_loss_at(shift):
        th = dict(theta, log_lr=theta["log_lr"] + shift)
        w = gradient_learner.WorkerWeights(th, None, gradient_learner.OuterState(0))
        o, _ = gradient_estimator.compute_gradient_estimate(w, key, gradient_estimator_state)
        return float(o.mean_loss)

    fd = (mean_loss_at(h) - mean_loss_at(-h)) / (2 * h)
    np.testing.assert_allclose(float(shown_grad["log_lr"]), fd, rtol=0.05)
    assert float(metrics["mean_loss"]) == float(out.mean_loss) > 0
