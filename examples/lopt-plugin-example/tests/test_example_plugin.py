"""Runs against the installed (non-editable) plugin, found through its entry point."""

import jax
import jax.numpy as jnp
import numpy as np

import lopt_core
from lopt_core import testing

PLUGIN = "lopt-plugin-example"


def test_components_are_registered_under_the_plugin_name():
    for kind, name in [
        ("tasks", "example_quadratic"),
        ("optimizers", "example_signsgd"),
        ("learned_optimizers", "example_learnable_signsgd"),
    ]:
        entry = lopt_core.REGISTRY.entry(kind, name)
        assert entry.plugin == PLUGIN
        assert entry.description  # from the first docstring line
    assert lopt_core.REGISTRY.entry("tasks", "example_quadratic").description.startswith(
        "A quadratic bowl"
    )


def test_get_task_builds_the_task_with_kwargs():
    task = lopt_core.get_task("example_quadratic", dim=3, shift=2.0)
    params = task.init(jax.random.PRNGKey(0))
    assert params["x"].shape == (3,)
    assert float(task.loss({"x": jnp.full(3, 2.0)}, None, None)) == 0.0


def test_contract_checks_pass_on_all_three():
    testing.check_task(lopt_core.get_task("example_quadratic"))
    testing.check_optimizer(lopt_core.get_optimizer("example_signsgd"))
    testing.check_learned_optimizer(lopt_core.get_learned_optimizer("example_learnable_signsgd"))


def test_sign_sgd_solves_the_task():
    task = lopt_core.get_task("example_quadratic", dim=4, shift=1.0)
    opt = lopt_core.get_optimizer("example_signsgd", learning_rate=0.01)
    state = opt.init(task.init(jax.random.PRNGKey(0)))

    @jax.jit
    def step(s):
        loss, g = jax.value_and_grad(task.loss)(opt.get_params(s), None, None)
        return opt.update(s, g, loss)

    first = float(task.loss(opt.get_params(state), None, None))
    for _ in range(300):
        state = step(state)
    final = float(task.loss(opt.get_params(state), None, None))
    assert final < 1e-2 * first
    np.testing.assert_allclose(opt.get_params(state)["x"], np.ones(4), atol=0.02)
