import pickle

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sklearn.datasets
from task_helpers import adam_train

from lopt_core import SPLITS
from lopt_core.testing import check_task
from lopt_tasks import CATALOG, synthetic, tabular
from lopt_tasks.synthetic import RosenbrockTask
from lopt_tasks.tabular import (
    TabularMLPClassifier,
    tabular_datasets,
    tabular_split_indices,
    tabular_standardization,
)

# name -> (sklearn loader, examples, features, classes; 0 = regression)
DATA = {
    "breast_cancer": (sklearn.datasets.load_breast_cancer, 569, 30, 2),
    "wine": (sklearn.datasets.load_wine, 178, 13, 3),
    "diabetes": (sklearn.datasets.load_diabetes, 442, 10, 0),
}
TASKS = {
    "MLP_BreastCancer_32": "breast_cancer",
    "MLP_Wine_32": "wine",
    "MLP_Diabetes_32": "diabetes",
}


def test_the_new_components_are_declared():
    tasks = CATALOG.names("tasks")
    for name in [*TASKS, "Rosenbrock_10D"]:
        assert name in tasks, name
    factories = CATALOG.factories("tasks")
    assert factories["MLP_Wine_32"] is tabular.MLP_Wine_32
    assert factories["Rosenbrock_10D"] is synthetic.Rosenbrock_10D


@pytest.mark.parametrize("name", list(DATA))
def test_splits_are_disjoint_cover_and_are_fixed(name):
    _, n, _, _ = DATA[name]
    idx = tabular_split_indices(name)
    assert list(idx) == list(SPLITS)
    num_test = round(0.2 * n)
    sizes = {k: len(v) for k, v in idx.items()}
    assert sizes["test"] == num_test
    assert sizes["inner_valid"] + sizes["outer_valid"] == round(0.2 * n)
    assert sizes["train"] == n - num_test - round(0.2 * n)
    joined = np.concatenate(list(idx.values()))
    assert len(joined) == n
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))
    # The fixed permutation, cut in split order.
    np.testing.assert_array_equal(joined, np.random.default_rng(0).permutation(n))


def test_wine_split_sizes():
    assert {k: len(v) for k, v in tabular_split_indices("wine").items()} == {
        "train": 106,
        "inner_valid": 18,
        "outer_valid": 18,
        "test": 36,
    }


@pytest.mark.parametrize("name", list(DATA))
def test_standardisation_uses_train_statistics_only(name):
    loader, n, f, k = DATA[name]
    bunch = loader()
    x_raw = np.asarray(bunch.data, np.float64)
    y_raw = np.asarray(bunch.target)
    assert x_raw.shape == (n, f)
    idx = tabular_split_indices(name)
    mean = x_raw[idx["train"]].mean(0)
    std = x_raw[idx["train"]].std(0)
    std = np.where(std > 0, std, 1.0)
    stats = tabular_standardization(name)
    np.testing.assert_array_equal(stats["x_mean"], mean)
    np.testing.assert_array_equal(stats["x_std"], std)
    for split in SPLITS:
        arrays = tabular._load_split(split, name=name)
        expected = ((x_raw[idx[split]] - mean) / std).astype(np.float32)
        np.testing.assert_array_equal(arrays["x"], expected)
        assert arrays["x"].dtype == np.float32
        if k:
            np.testing.assert_array_equal(arrays["y"], y_raw[idx[split]].astype(np.int32))
            assert arrays["y"].dtype == np.int32
        else:
            y_train = y_raw[idx["train"]].astype(np.float64)
            y_expected = (y_raw[idx[split]] - y_train.mean()) / y_train.std()
            np.testing.assert_array_equal(arrays["y"], y_expected.astype(np.float32))
            assert arrays["y"].dtype == np.float32
    train = tabular._load_split("train", name=name)
    np.testing.assert_allclose(train["x"].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train["x"].std(0), 1.0, atol=1e-5)
    # Other splits were standardised with the train statistics, not their own.
    assert np.abs(tabular._load_split("test", name=name)["x"].mean(0)).max() > 1e-3
    if not k:
        np.testing.assert_allclose(train["y"].mean(), 0.0, atol=1e-5)
        np.testing.assert_allclose(train["y"].std(), 1.0, atol=1e-5)


def test_a_constant_feature_is_centred_not_divided_by_zero():
    mean, std = tabular._mean_std(np.array([[3.0, 1.0], [3.0, 2.0], [3.0, 3.0]]))
    np.testing.assert_array_equal(mean, [3.0, 2.0])
    np.testing.assert_allclose(std, [1.0, np.sqrt(2.0 / 3.0)])


@pytest.mark.parametrize("name", list(DATA))
def test_batches_have_the_declared_shapes_and_dtypes(name):
    _, _, f, k = DATA[name]
    ds = tabular_datasets(name, batch_size=5)
    assert not ds.train.loaded  # building reads nothing
    assert ds.extra_info["num_features"] == f
    assert ds.extra_info.get("num_classes") == (k or None)
    batch = next(ds.train)
    assert batch["x"].shape == (5, f) and batch["x"].dtype == jnp.float32
    assert batch["y"].shape == (5,)
    assert batch["y"].dtype == (jnp.int32 if k else jnp.float32)
    assert ds.abstract_batch["x"].shape == (5, f)
    assert ds.abstract_batch["y"].dtype == batch["y"].dtype
    if k:
        assert set(np.unique(ds.train.arrays["y"])) <= set(range(k))


def test_bad_dataset_arguments_name_the_problem():
    with pytest.raises(ValueError, match="name must be one of 'breast_cancer'"):
        tabular_datasets("iris")
    with pytest.raises(ValueError, match="positive batch_size"):
        tabular_datasets("wine", batch_size=0)
    with pytest.raises(ValueError, match="extra_info has no 'num_classes'"):
        TabularMLPClassifier(tabular_datasets("diabetes"))


@pytest.mark.parametrize("task_name", list(TASKS))
def test_named_tabular_tasks_pass_check_task(task_name):
    task = getattr(tabular, task_name)()
    assert task.name == task_name
    assert task.datasets.train.batch_size == 32
    check_task(task)
    _, _, f, k = DATA[TASKS[task_name]]
    params = task.init(jax.random.PRNGKey(0))
    assert params["mlp/~/linear_0"]["w"].shape == (f, 32)
    assert params["mlp/~/linear_1"]["w"].shape == (32, k or 1)
    # The normalizer is finite and capped for a diverged loss.
    assert float(task.normalizer(jnp.nan)) == pytest.approx(1.5 * np.log(k) if k else 1.5, rel=1e-6)


def _adam_steps(task, params, num_steps):
    return adam_train(task, params, jax.random.PRNGKey(1), num_steps, 1e-2)[0]


@pytest.mark.parametrize("task_name", list(TASKS))
def test_named_tabular_tasks_learn_with_adam(task_name):
    task = getattr(tabular, task_name)()
    k = DATA[TASKS[task_name]][3]
    params = task.init(jax.random.PRNGKey(0))
    # The whole train split as one batch: a deterministic loss to compare.
    full = dict(task.datasets.train.arrays)
    before = float(task.loss(params, None, full))
    after = float(task.loss(_adam_steps(task, params, 100), None, full))
    # Measured: 0.63 -> 0.023 (breast cancer), 1.15 -> 0.005 (wine), 1.42 -> 0.40 (diabetes).
    assert after < (0.1 if k else 0.5) * before, (before, after)
    if k:
        assert before == pytest.approx(np.log(k), rel=0.5)


def test_a_tabular_task_pickles():
    task = tabular.MLP_Wine_32()
    params = task.init(jax.random.PRNGKey(0))
    batch = task.datasets.train.sample(jax.random.PRNGKey(2))
    copy = pickle.loads(pickle.dumps(task))
    assert copy.name == "MLP_Wine_32"
    assert float(copy.loss(params, None, batch)) == float(task.loss(params, None, batch))


def _rosenbrock_grad(x):
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    g[:-1] += -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return g


def test_rosenbrock_values_and_gradient():
    task = synthetic.Rosenbrock_10D()
    assert task.name == "Rosenbrock_10D"
    assert task.datasets is None
    assert float(task.loss(jnp.ones(10), None, None)) == 0.0
    assert float(task.loss(jnp.zeros(10), None, None)) == 9.0
    np.testing.assert_array_equal(np.asarray(jax.grad(task.loss)(jnp.ones(10), None, None)), 0.0)
    assert float(RosenbrockTask(2).loss(jnp.array([-1.2, 1.0]), None, None)) == pytest.approx(
        24.2, rel=1e-6
    )
    x = jax.random.uniform(jax.random.PRNGKey(3), (10,), minval=-2.0, maxval=2.0)
    grad = jax.grad(task.loss)(x, None, None)
    np.testing.assert_allclose(np.asarray(grad), _rosenbrock_grad(x), rtol=1e-5, atol=1e-3)
    check_task(task)


def test_rosenbrock_init_and_normalizer():
    task = RosenbrockTask(dim=10)
    assert task.name == "RosenbrockTask"
    params = task.init(jax.random.PRNGKey(0))
    assert params.shape == (10,) and params.dtype == jnp.float32
    np.testing.assert_array_equal(params, task.init(jax.random.PRNGKey(0)))
    draws = jax.vmap(task.init)(jax.random.split(jax.random.PRNGKey(0), 20000))
    assert float(draws.min()) >= -2.0 and float(draws.max()) <= 2.0
    assert float(draws.min()) < -1.99 and float(draws.max()) > 1.99
    # The normalizer's reference is the expected initial loss, 9 * 1367 / 3 = 4101.
    losses = jax.vmap(lambda p: task.loss(p, None, None))(draws)
    assert float(jnp.mean(losses)) == pytest.approx(4101.0, rel=0.03)
    assert float(task.normalizer(4101.0)) == pytest.approx(7.0, abs=1e-4)
    assert float(task.normalizer(41.01)) == pytest.approx(3.0, abs=1e-3)
    assert float(task.normalizer(jnp.nan)) == 10.0


def test_rosenbrock_descends_with_adam():
    task = RosenbrockTask(dim=10)
    params = task.init(jax.random.PRNGKey(0))
    opt = optax.adam(1e-2)
    state = opt.init(params)

    @jax.jit
    def step(p, s):
        g = jax.grad(task.loss)(p, None, None)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    before = float(task.loss(params, None, None))
    for _ in range(100):
        params, state = step(params, state)
    assert float(task.loss(params, None, None)) < 0.2 * before


@pytest.mark.parametrize("dim", [1, 0, 2.5, True])
def test_rosenbrock_rejects_a_bad_dim(dim):
    with pytest.raises(ValueError, match=r"RosenbrockTask: dim must be an integer >= 2.*dim >= 2"):
        RosenbrockTask(dim)
