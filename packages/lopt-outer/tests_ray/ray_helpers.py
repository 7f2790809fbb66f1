"""A small meta-training problem for the Ray tests.

It is real lopt components end to end: a registered quadratic task family
from lopt-tasks, `VectorizedLOptTruncatedStep`, `TruncatedPES` and the registered
Adam as the meta-optimizer. The learned optimizer is a per-parameter learning rate
and momentum defined here, small so that each worker compiles in about a second.
"""

from __future__ import annotations

import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

import lopt_core
from lopt_outer.gradient_learner import SingleMachineGradientLearner
from lopt_outer.lopt_truncated_step import VectorizedLOptTruncatedStep
from lopt_outer.truncated_pes import TruncatedPES
from lopt_outer.truncation_schedule import ConstantTruncationSchedule


@flax.struct.dataclass
class MomentumState:
    params: Any
    model_state: Any
    momentum: Any
    iteration: jax.Array


class LearnedMomentumSGD(lopt_core.Optimizer):
    """SGD with momentum whose log learning rate and momentum logit are theta."""

    def __init__(self, theta: Any) -> None:
        self.theta = theta

    def init(self, params, model_state=None, num_steps=None, key=None, **kwargs):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return MomentumState(params, model_state, zeros, jnp.asarray(0, jnp.int32))

    def update(self, opt_state, grads, loss=None, model_state=None, key=None, **kwargs):
        lr = jnp.exp(self.theta["log_lr"])
        beta = jax.nn.sigmoid(self.theta["momentum_logit"])
        mom = jax.tree_util.tree_map(lambda m, g: beta * m + g, opt_state.momentum, grads)
        params = jax.tree_util.tree_map(lambda p, m: p - lr * m, opt_state.params, mom)
        return MomentumState(params, model_state, mom, opt_state.iteration + 1)


class LearnableMomentumSGD(lopt_core.LearnedOptimizer):
    """theta = {log_lr, momentum_logit}."""

    def init(self, key):
        del key
        return {
            "log_lr": jnp.asarray(jnp.log(0.05), jnp.float32),
            "momentum_logit": jnp.asarray(0.0, jnp.float32),
        }

    def opt_fn(self, theta, is_training=False):
        return LearnedMomentumSGD(theta)


def make_learner(num_tasks: int = 4, trunc_length: int = 5) -> SingleMachineGradientLearner:
    """A PES learner on the registered 4-d quadratic family (20-step truncations)."""
    family = lopt_core.get_task_family("FixedDimQuadraticFamily", dim=4)
    step = VectorizedLOptTruncatedStep(
        family, LearnableMomentumSGD(), ConstantTruncationSchedule(20), num_tasks
    )
    pes = TruncatedPES(step, trunc_length=trunc_length, std=0.01)
    theta_opt = lopt_core.get_optimizer("Adam", learning_rate=3e-2)
    return SingleMachineGradientLearner(LearnableMomentumSGD(), [pes], theta_opt)


class EstimatorThatCannotStart(lopt_core.GradientEstimator):
    """An estimator whose worker state cannot be built (a worker that fails to start)."""

    def __init__(self, truncated_step: Any) -> None:
        self.truncated_step = truncated_step

    def init_worker_state(self, worker_weights, key):
        raise ValueError("this estimator cannot build a worker state")

    def compute_gradient_estimate(self, worker_weights, key, state, with_summary=False):
        raise AssertionError("never reached: the worker state cannot be built")


class SlowEstimator(lopt_core.GradientEstimator):
    """Another estimator, slowed by `delay_s` per estimate so that workers overlap in time."""

    def __init__(self, inner: lopt_core.GradientEstimator, delay_s: float) -> None:
        self.inner = inner
        self.truncated_step = inner.truncated_step
        self.delay_s = delay_s

    def init_worker_state(self, worker_weights, key):
        return self.inner.init_worker_state(worker_weights, key)

    def compute_gradient_estimate(self, worker_weights, key, state, with_summary=False):
        time.sleep(self.delay_s)
        return self.inner.compute_gradient_estimate(worker_weights, key, state, with_summary)


def leaves(tree: Any) -> list[np.ndarray]:
    """The leaves of a pytree as numpy arrays, for exact comparisons."""
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
