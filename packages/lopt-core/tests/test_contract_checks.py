"""The contract checks catch real violations, and pass honest components."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import pytest

from lopt_core import (
    GradientEstimator,
    GradientEstimatorOut,
    LearnedOptimizer,
    Optimizer,
    TruncatedStep,
    testing,
)


@flax.struct.dataclass
class SGDState:
    params: Any
    model_state: Any
    iteration: jnp.ndarray


class SGD(Optimizer):
    def __init__(self, lr=0.1):
        self.lr = lr

    def init(self, params, model_state=None, num_steps=None, key=None, **kw):
        return SGDState(params, model_state, jnp.asarray(0, jnp.int32))

    def update(self, opt_state, grads, loss=None, model_state=None, key=None, **kw):
        params = jax.tree_util.tree_map(lambda p, g: p - self.lr * g, opt_state.params, grads)
        return SGDState(params, model_state, opt_state.iteration + 1)


class LearnableSGD(LearnedOptimizer):
    def init(self, key):
        return {"log_lr": jnp.log(0.1)}

    def opt_fn(self, theta, is_training=False):
        return _ThetaSGD(theta)


class _ThetaSGD(SGD):
    def __init__(self, theta):
        self.lr = jnp.exp(theta["log_lr"])


def test_honest_optimizer_and_learned_optimizer_pass():
    testing.check_optimizer(SGD())
    testing.check_learned_optimizer(LearnableSGD())


def test_dtype_change_is_caught():
    class Upcasts(SGD):
        def update(self, opt_state, grads, loss=None, **kw):
            s = super().update(opt_state, grads)
            return s.replace(iteration=s.iteration.astype(jnp.float32))

    with pytest.raises(
        AssertionError, match="dtype at .*iteration.* changed from int32 to float32"
    ):
        testing.check_optimizer(Upcasts())


def test_structure_change_is_caught():
    class DropsLeaf(SGD):
        def update(self, opt_state, grads, loss=None, **kw):
            s = super().update(opt_state, grads)
            return s.replace(params={k: v for k, v in s.params.items() if k != "b"})

    with pytest.raises(AssertionError, match=r"\['b'\]"):
        testing.check_optimizer(DropsLeaf())


def test_count_compiles_sees_a_recompilation():
    f = jax.jit(lambda x, n: x * n, static_argnums=1)
    x = jnp.ones(3)
    f(x, 1)
    with testing.count_compiles() as c:
        f(x, 2)  # a new static argument: compiles again
    assert c["n"] == 1
    with testing.count_compiles() as c:
        f(x, 2)
    assert c["n"] == 0


def test_optimizer_that_recompiles_every_call_is_caught():
    class Recompiles(SGD):
        calls = 0

        def update(self, opt_state, grads, loss=None, **kw):
            # A Python counter baked into the trace: every trace differs from the last.
            Recompiles.calls += 1
            s = super().update(opt_state, grads)
            return s.replace(iteration=s.iteration + Recompiles.calls)

    # jax.jit caches on the function object, so the check's own jit must retrace to see it;
    # a learned optimizer that builds a new jitted function per call is the realistic case.
    opt = Recompiles()
    step = lambda s, k: jax.jit(lambda s: opt.update(s, s.params))(s)  # noqa: E731
    state = opt.init({"w": jnp.ones(2)})
    state = step(state, None)
    with pytest.raises(AssertionError, match="compiled 1 more time"):
        testing._assert_no_recompile("Recompiles", step, state, None)


class ExactQuadraticStep(TruncatedStep):
    """SGD on f(x) = x^2 with learning rate exp(theta["log_lr"])."""

    def outer_init(self, key):
        return {"log_lr": jnp.log(0.1)}

    def init_step_state(
        self, theta, outer_state, key, theta_is_vector=False, num_steps_override=None
    ):
        return jax.random.normal(key, (2,))

    def unroll_step(self, theta, unroll_state, key, data, outer_state, theta_is_vector=False):
        x = unroll_state - jnp.exp(theta["log_lr"]) * 2 * unroll_state
        return x, None

    def meta_loss_batch(self, theta, unroll_state, key, data, outer_state, theta_is_vector=False):
        return jnp.sum(unroll_state**2)


class ExactGrad(GradientEstimator):
    """Exact meta-gradient of 3 SGD steps on f(x) = x^2 from x = state."""

    truncated_step = ExactQuadraticStep()

    def init_worker_state(self, worker_weights, key):
        return jax.random.normal(key, (2,))

    def compute_gradient_estimate(self, worker_weights, key, state, with_summary=False):
        return _estimate(worker_weights.theta, state), {}


@jax.jit
def _estimate(theta, x0):
    def meta_loss(t):
        x = x0
        for _ in range(3):
            x = x - jnp.exp(t["log_lr"]) * 2 * x
        return jnp.sum(x**2), x

    (loss, x), g = jax.value_and_grad(meta_loss, has_aux=True)(theta)
    return GradientEstimatorOut(mean_loss=loss, grad=g, unroll_state=x)


def test_gradient_estimator_check_passes_and_catches_bad_grads():
    testing.check_gradient_estimator(ExactGrad())

    class WrongGrad(ExactGrad):
        def compute_gradient_estimate(self, worker_weights, key, state, with_summary=False):
            out, m = super().compute_gradient_estimate(worker_weights, key, state)
            return out.replace(grad={"lr": out.grad["log_lr"]}), m

    with pytest.raises(AssertionError, match="grad vs theta"):
        testing.check_gradient_estimator(WrongGrad())
