import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core
from lopt_core import ArraySplit, Datasets, Task, TaskFamily, single_task_to_family, testing


class LinearRegression(Task):
    """y = x @ w on fixed synthetic data."""

    def __init__(self):
        rng = np.random.RandomState(0)
        x = rng.randn(64, 3).astype(np.float32)
        y = x @ np.array([1.0, -2.0, 0.5], np.float32)
        split = ArraySplit({"x": x, "y": y}, batch_size=8)
        self.datasets = Datasets(split, split, split, split, extra_info={"n": 64})

    def init(self, key):
        return {"w": jax.random.normal(key, (3,))}

    def loss(self, params, key, data):
        return jnp.mean((data["x"] @ params["w"] - data["y"]) ** 2)


class WithState(Task):
    def init_with_state(self, key):
        return {"w": jnp.ones(2)}, {"count": jnp.zeros([], jnp.int32)}

    def loss_with_state(self, params, state, key, data):
        return jnp.sum(params["w"] ** 2), {"count": state["count"] + 1}


def test_task_defaults():
    task = LinearRegression()
    key = jax.random.PRNGKey(0)
    params, state = task.init_with_state(key)
    assert state is None
    batch = next(task.datasets.train)
    loss = task.loss(params, key, batch)
    loss2, state2 = task.loss_with_state(params, None, key, batch)
    assert float(loss) == float(loss2) and state2 is None
    loss3, aux = task.loss_and_aux(params, key, batch)
    assert float(loss3) == float(loss) and aux == {}
    loss4, state4, aux4 = task.loss_with_state_and_aux(params, None, key, batch)
    assert float(loss4) == float(loss) and state4 is None and aux4 == {}
    assert task.normalizer(3.0) == 3.0
    assert task.name == "LinearRegression"


def test_task_with_state_only_overrides_state_methods():
    task = WithState()
    params = task.init(jax.random.PRNGKey(0))
    assert params["w"].shape == (2,)
    with pytest.raises(ValueError, match="has no model state"):
        LinearRegression().loss_with_state({"w": jnp.ones(3)}, {"s": 1}, None, None)
    _, state = task.loss_with_state(params, {"count": jnp.asarray(0)}, None, None)
    assert int(state["count"]) == 1
    testing.check_task(task)


def test_task_that_overrides_nothing_says_what_to_override():
    with pytest.raises(TypeError, match=r"must override init\(\) or init_with_state\(\)"):
        Task().init(jax.random.PRNGKey(0))
    with pytest.raises(TypeError, match=r"must override loss\(\) or loss_with_state\(\)"):
        Task().loss({}, None, None)


def test_check_task_passes_and_sgd_lowers_the_loss():
    task = LinearRegression()
    testing.check_task(task)
    params = task.init(jax.random.PRNGKey(1))
    grad_fn = jax.jit(jax.value_and_grad(task.loss))
    first = None
    for i in range(100):
        batch = task.datasets.sample("train", jax.random.PRNGKey(i))
        loss, g = grad_fn(params, None, batch)
        first = float(loss) if first is None else first
        params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, g)
    assert float(loss) < 1e-3 * first
    np.testing.assert_allclose(params["w"], [1.0, -2.0, 0.5], atol=1e-2)


def test_single_task_to_family():
    task = LinearRegression()
    fam = single_task_to_family(task, name="fam")
    assert fam.name == "fam" and fam.datasets is task.datasets
    cfg = fam.sample(jax.random.PRNGKey(0))
    assert cfg.shape == () and cfg.dtype == jnp.int32
    assert fam.task_fn(cfg) is task and fam.eval_task_fn(cfg) is task
    assert fam.sample_task(jax.random.PRNGKey(3)) is task
    other = WithState()
    assert single_task_to_family(task, eval_task=other).eval_task_fn(cfg) is other
    assert single_task_to_family(task).name == "SingleTask_LinearRegression"
    testing.check_task_family(fam)


class ScaledQuadraticFamily(TaskFamily):
    """Quadratics with a sampled scale: a vmappable cfg."""

    def sample(self, key):
        return {"scale": jax.random.uniform(key, (), minval=0.5, maxval=2.0)}

    def task_fn(self, cfg):
        return _Scaled(cfg["scale"])


class _Scaled(Task):
    def __init__(self, scale):
        self.scale = scale

    def init(self, key):
        return {"x": jax.random.normal(key, (4,))}

    def loss(self, params, key, data):
        return self.scale * jnp.sum(params["x"] ** 2)


def test_check_task_family_on_a_vmappable_family():
    fam = ScaledQuadraticFamily()
    testing.check_task_family(fam)
    assert fam.name == "ScaledQuadraticFamily"
    with pytest.raises(TypeError, match=r"must override sample\(\)"):
        TaskFamily().sample(None)


def test_check_task_rejects_a_vector_loss():
    class VectorLoss(LinearRegression):
        def loss(self, params, key, data):
            return data["x"] @ params["w"]

    with pytest.raises(AssertionError, match="loss must be a scalar"):
        testing.check_task(VectorLoss())


def test_check_task_rejects_a_nondeterministic_init():
    class Random(LinearRegression):
        calls = 0

        def init(self, key):
            Random.calls += 1
            return {"w": jnp.full((3,), float(Random.calls))}

    with pytest.raises(AssertionError, match="init_with_state with the same key"):
        testing.check_task(Random())


def test_datasets_split_and_errors():
    task = LinearRegression()
    ds = task.datasets
    assert ds.split("test") is ds.test
    assert ds.keyed
    assert ds.abstract_batch["x"].shape == (8, 3)
    with pytest.raises(ValueError, match="Unknown split 'valid'"):
        ds.split("valid")
    plain = Datasets(iter([1]), iter([2]), iter([3]), iter([4]))
    assert not plain.keyed
    with pytest.raises(TypeError, match="cannot draw batches from keys"):
        plain.sample("train", jax.random.PRNGKey(0))
    assert lopt_core.SPLITS == ("train", "inner_valid", "outer_valid", "test")


def test_loss_with_state_and_aux_returns_the_aux_of_loss_and_aux():
    class WithAux(Task):
        def init(self, key):
            return {"w": jnp.ones(2)}

        def loss(self, params, key, data):
            return jnp.sum(params["w"] ** 2)

        def loss_and_aux(self, params, key, data):
            return self.loss(params, key, data), {"norm": jnp.sum(jnp.abs(params["w"]))}

    loss, state, aux = WithAux().loss_with_state_and_aux({"w": jnp.ones(2)}, None, None, None)
    assert float(loss) == 2.0
    assert state is None
    assert float(aux["norm"]) == 2.0

    class NoAux(Task):
        def init(self, key):
            return {"w": jnp.ones(2)}

        def loss(self, params, key, data):
            return jnp.sum(params["w"])

    assert NoAux().loss_with_state_and_aux({"w": jnp.ones(2)}, None, None, None)[2] == {}
