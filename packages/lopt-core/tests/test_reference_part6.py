"""Part 6's "Meta-Learnable hyper parameters" section, with only its imports changed."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

import lopt_core as lopt_base  # was: learned_optimization.learned_optimizers.base
import lopt_core as opt_base  # was: learned_optimization.optimizers.base
from lopt_core import testing


@flax.struct.dataclass
class LOptState:
    params: Any
    model_state: Any
    iteration: jnp.ndarray


MetaParams = Any


class MetaSGDWD(lopt_base.LearnedOptimizer):
    def __init__(self, initial_lr=1e-3, initial_wd=1e-2):
        self._initial_lr = initial_lr
        self._initial_wd = initial_wd

    def init(self, key) -> MetaParams:
        return {"log_lr": jnp.log(self._initial_lr), "log_wd": jnp.log(self._initial_wd)}

    def opt_fn(self, theta: MetaParams) -> opt_base.Optimizer:
        class _Opt(opt_base.Optimizer):
            def init(self, params, model_state=None, **kwargs) -> LOptState:
                return LOptState(
                    params=params,
                    model_state=model_state,
                    iteration=jnp.asarray(0, dtype=jnp.int32),
                )

            def update(self, opt_state: LOptState, grads, model_state=None, **kwargs) -> LOptState:
                lr = jnp.exp(theta["log_lr"])
                wd = jnp.exp(theta["log_wd"])

                def _update_one(p, g):
                    return p - g * lr - p * wd

                next_params = jax.tree_util.tree_map(_update_one, opt_state.params, grads)
                return LOptState(
                    params=next_params, model_state=model_state, iteration=opt_state.iteration + 1
                )

        return _Opt()


def test_meta_sgd_wd_cell_prints_reference_params():
    lopt = MetaSGDWD()
    key = jax.random.PRNGKey(0)
    theta = lopt.init(key)
    opt = lopt.opt_fn(theta)
    fake_params = {"a": 1.0, "b": 2.0}
    opt_state = opt.init(fake_params)
    fake_grads = {"a": -1.0, "b": 1.0}
    new_opt_state = opt.update(opt_state, fake_grads)

    params = opt.get_params(new_opt_state)
    np.testing.assert_allclose(float(params["a"]), 0.991, rtol=1e-6)
    np.testing.assert_allclose(float(params["b"]), 1.979, rtol=1e-6)
    assert int(new_opt_state.iteration) == 1
    # Defaults of the base class work on a subclass that never called super().__init__().
    assert opt.get_state(new_opt_state) is None
    assert lopt.name == "MetaSGDWD"
    assert opt.name == "_Opt"


def test_meta_sgd_wd_cell_passes_the_optimizer_contract():
    lopt = MetaSGDWD()
    testing.check_optimizer(lopt.opt_fn(lopt.init(jax.random.PRNGKey(0))))
