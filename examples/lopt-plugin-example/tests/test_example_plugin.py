"""Runs against the installed (non-editable) plugin, found through its entry point."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lopt_plugin_example import CATALOG, LearnableSignSGD, ShiftedQuadratic, SignSGD

import lopt_core
from lopt_core import testing

PLUGIN = "lopt-plugin-example"


def test_the_entry_point_registers_the_catalog_under_the_plugin_name():
    assert CATALOG.names("tasks") == ["example_quadratic"]
    assert CATALOG.names("optimizers") == ["example_signsgd"]
    assert CATALOG.names("learned_optimizers") == ["example_learnable_signsgd"]
    for kind in ("tasks", "optimizers", "learned_optimizers"):
        for name, factory in CATALOG.factories(kind).items():
            entry = lopt_core.REGISTRY.entry(kind, name)
            assert entry.plugin == PLUGIN
            assert entry.factory is factory
    assert lopt_core.REGISTRY.entry("tasks", "example_quadratic").description == (
        "A quadratic bowl `sum((x - shift)^2)` in `dim` dimensions, without data."
    )
    assert CATALOG.exported_names() == ["LearnableSignSGD", "ShiftedQuadratic", "SignSGD"]


def test_contract_checks_pass_on_everything_the_catalog_declares():
    for factory in CATALOG.factories("tasks").values():
        testing.check_task(factory())
    for factory in CATALOG.factories("optimizers").values():
        testing.check_optimizer(factory())
    for factory in CATALOG.factories("learned_optimizers").values():
        testing.check_learned_optimizer(factory())


def test_get_task_builds_the_task_with_kwargs():
    task = lopt_core.get_task("example_quadratic", dim=3, shift=2.0)
    assert task == ShiftedQuadratic(dim=3, shift=2.0)
    params = task.init(jax.random.PRNGKey(0))
    assert params["x"].shape == (3,)
    assert float(task.loss({"x": jnp.full(3, 2.0)}, None, None)) == 0.0
    assert float(task.loss({"x": jnp.zeros(3)}, None, None)) == 12.0


def test_components_are_declarations():
    assert repr(SignSGD(0.1)) == "SignSGD(learning_rate=0.1)"
    assert SignSGD(0.1) == SignSGD(learning_rate=0.1)
    assert hash(SignSGD(0.1)) == hash(SignSGD(0.1))
    assert SignSGD(0.1) != SignSGD(0.2)
    assert lopt_core.config_of(ShiftedQuadratic(dim=2)) == {"dim": 2, "shift": 1.0}
    assert lopt_core.config_of(LearnableSignSGD(0.05)) == {"initial_lr": 0.05}
    with pytest.raises(AttributeError):
        SignSGD(0.1).learning_rate = 0.2


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: ShiftedQuadratic(dim=0),
            "ShiftedQuadratic: dim must be a positive integer, got 0",
        ),
        (
            lambda: SignSGD(-1.0),
            r"SignSGD: learning_rate must be a finite number >= 0 \(or an optax schedule\)",
        ),
        (
            lambda: LearnableSignSGD(initial_lr=0.0),
            "LearnableSignSGD: initial_lr must be a finite number > 0.0, got 0.0",
        ),
    ],
)
def test_bad_configurations_name_the_field(build, message):
    with pytest.raises(ValueError, match=message):
        build()


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
    assert int(state.iteration) == 300


def test_the_learned_optimizer_steps_at_its_learned_rate():
    lopt = lopt_core.get_learned_optimizer("example_learnable_signsgd", initial_lr=0.5)
    theta = lopt.init(jax.random.PRNGKey(0))
    np.testing.assert_allclose(theta["log_lr"], np.log(0.5), rtol=1e-6)
    opt = lopt.opt_fn(theta)
    state = opt.update(opt.init({"x": jnp.zeros(2)}), {"x": jnp.asarray([3.0, -1.0])})
    np.testing.assert_allclose(opt.get_params(state)["x"], [-0.5, 0.5], rtol=1e-6)


def test_the_catalog_index_is_current_so_lopt_list_imports_no_plugin_code():
    testing.check_catalog_index("lopt_plugin_example:CATALOG")
