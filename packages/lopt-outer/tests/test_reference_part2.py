# ruff: noqa: B007, F401, I001, RUF059  (the notebook cells are kept verbatim)
"""Part 2 of the reference notebooks ("Custom tasks"), with only its imports changed.

Every code cell runs here as written, in the notebook's order; the imports follow
the table in the root README (`tasks.base` and `tasks.datasets.base` resolve to the
`lopt_core.tasks` and `lopt_core.datasets` modules, `optimizers.base` to
`lopt_optimizers`, `learned_optimizers` to `lopt_learned`, the tasks to
`lopt_tasks`, the outer trainers and `eval_training` to `lopt_outer`). The cells'
last expressions, which the notebook displays, are bound to names so that the
tests can check their values.

Two things are added around the cells, not changed in them:
- the noisy-quadratic cell draws its data from NumPy's global generator, so the
  test seeds it (and restores it afterwards) to recompute the loss exactly;
- ImageMLP_FashionMnist8_Relu32 reads Fashion-MNIST from TFDS, which cannot be
  downloaded here, so that cell runs on `tfds.testing.mock_data` (random images,
  as packages/lopt-tasks/tests/conftest.py does) with `$LOPT_DATA_DIR` pointing at
  an empty folder. Building the task reads no data; the test also draws a batch.
"""

import numpy as np
import jax.numpy as jnp
import jax
from matplotlib import pylab as plt

from lopt_outer import full_es
from lopt_outer import truncated_pes
from lopt_outer import gradient_learner
from lopt_outer import truncation_schedule

from lopt_tasks import quadratics
from lopt_tasks import image_mlp
from lopt_core import tasks as tasks_base
from lopt_core import datasets as datasets_base

import lopt_learned as lopt_base
from lopt_learned import mlp_lopt
import lopt_optimizers as opt_base

import lopt_optimizers as optimizers
from lopt_outer import eval_training

import haiku as hk
import tqdm

import pytest
import tensorflow_datasets as tfds

from lopt_optimizers import Adam
from lopt_tasks import tfds_data


def test_part2_imports_resolve():
    assert full_es.FullES and truncated_pes.TruncatedPES
    assert gradient_learner.SingleMachineGradientLearner
    assert truncation_schedule.ConstantTruncationSchedule
    assert eval_training.single_task_training_curves
    assert quadratics and image_mlp.ImageMLP_FashionMnist8_Relu32
    assert tasks_base.Task and tasks_base.TaskFamily and tasks_base.single_task_to_family
    assert datasets_base.Datasets and datasets_base.dataset_lru_cache
    assert lopt_base.LearnableAdam and mlp_lopt.MLPLOpt
    assert opt_base.Adam is optimizers.Adam is Adam


def test_part2_custom_dataset():
    import numpy as np

    def data_iterator():
        bs = 3
        while True:
            batch = {"data": np.zeros([bs, 5])}
            yield batch

    @datasets_base.dataset_lru_cache
    def get_datasets():
        return datasets_base.Datasets(
            train=data_iterator(),
            inner_valid=data_iterator(),
            outer_valid=data_iterator(),
            test=data_iterator(),
        )

    ds = get_datasets()
    out = next(ds.train)

    assert set(out) == {"data"}
    np.testing.assert_array_equal(out["data"], np.zeros([3, 5]))
    # The cache hands every caller the same Datasets (and so the same iterators).
    assert get_datasets() is ds
    for split in ("inner_valid", "outer_valid", "test"):
        assert next(ds.split(split))["data"].shape == (3, 5)
    # Plain iterators: no abstract batch, and no drawing from keys.
    assert ds.abstract_batch is None and not ds.keyed


@pytest.fixture
def seeded_numpy():
    state = np.random.get_state()
    np.random.seed(0)
    yield
    np.random.set_state(state)


def test_part2_custom_task(seeded_numpy):
    # First we construct data iterators.
    def noise_datasets():
        def _fn():
            while True:
                yield np.random.normal(size=[4, 2]).astype(dtype=np.float32)

        return datasets_base.Datasets(train=_fn(), inner_valid=_fn(), outer_valid=_fn(), test=_fn())

    class MyTask(tasks_base.Task):
        datasets = noise_datasets()

        def loss(self, params, rng, data):
            return jnp.sum(jnp.square(params - data))

        def init(self, key):
            return jax.random.normal(key, shape=(4, 2))

    task = MyTask()
    key = jax.random.PRNGKey(0)
    key1, key = jax.random.split(key)
    params = task.init(key)

    out = task.loss(params, key1, next(task.datasets.train))

    # The first batch is NumPy's first draw from seed 0; the loss is its squared error.
    data = np.random.RandomState(0).normal(size=[4, 2]).astype(np.float32)
    np.testing.assert_allclose(out, np.sum(np.square(np.asarray(params) - data)), rtol=1e-6)
    np.testing.assert_array_equal(params, jax.random.normal(key, shape=(4, 2)))
    assert params.shape == (4, 2) and out.shape == ()
    # Measured (NumPy seed 0, PRNGKey(0)); the expected loss of two standard normals is 16.
    np.testing.assert_allclose(out, 42.516003, rtol=1e-5)
    assert task.name == "MyTask"


PRNGKey = jnp.ndarray
TaskParams = jnp.ndarray


class FixedDimQuadraticFamily(tasks_base.TaskFamily):
    """A simple TaskFamily with a fixed dimensionality but sampled target."""

    def __init__(self, dim: int):
        super().__init__()
        self._dim = dim
        self.datasets = None

    def sample(self, key: PRNGKey) -> TaskParams:
        # Sample the target for the quadratic task.
        return jax.random.normal(key, shape=(self._dim,))

    def task_fn(self, task_params: TaskParams) -> tasks_base.Task:
        dim = self._dim

        class _Task(tasks_base.Task):
            def loss(self, params, rng, _):
                # Compute MSE to the target task.
                return jnp.sum(jnp.square(task_params - params))

            def init(self, key):
                return jax.random.normal(key, shape=(dim,))

        return _Task()


def test_part2_task_family_instances_and_vmap(capsys):
    task_family = FixedDimQuadraticFamily(10)
    key = jax.random.PRNGKey(0)
    task_cfg = task_family.sample(key)
    task = task_family.task_fn(task_cfg)

    key1, key = jax.random.split(key)
    params = task.init(key)
    batch = None
    out = task.loss(params, key, batch)

    np.testing.assert_array_equal(task_cfg, jax.random.normal(jax.random.PRNGKey(0), (10,)))
    np.testing.assert_allclose(
        out, np.sum(np.square(np.asarray(task_cfg) - np.asarray(params))), rtol=1e-6
    )
    assert task_cfg.shape == (10,) and params.shape == (10,)

    def train_task(cfg, key):
        task = task_family.task_fn(cfg)
        key1, key = jax.random.split(key)
        params = task.init(key1)
        opt = opt_base.Adam()

        opt_state = opt.init(params)

        for i in range(4):
            params = opt.get_params(opt_state)
            loss, grad = jax.value_and_grad(task.loss)(params, key, None)
            opt_state = opt.update(opt_state, grad, loss=loss)
        loss = task.loss(params, key, None)
        return loss

    task_cfg = task_family.sample(key)
    print("single loss", train_task(task_cfg, key))

    keys = jax.random.split(key, 32)
    task_cfgs = jax.vmap(task_family.sample)(keys)
    losses = jax.vmap(train_task)(task_cfgs, keys)
    print("multiple losses", losses)

    out = capsys.readouterr().out
    assert out.startswith("single loss ") and "\nmultiple losses [" in out
    assert task_cfgs.shape == (32, 10) and losses.shape == (32,)
    # The vmapped runs are the single runs, one per (cfg, key).
    for i in (0, 31):
        np.testing.assert_allclose(losses[i], train_task(task_cfgs[i], keys[i]), rtol=1e-5)
    # Each task trains: the returned loss is that of the parameters after 3 Adam steps
    # (the 4th update is not read back), every coordinate moving about
    # learning_rate = 0.01 toward its target per step, so every loss goes down.
    lr = opt_base.Adam().learning_rate
    init_params = jax.vmap(lambda k: jax.random.normal(jax.random.split(k)[0], (10,)))(keys)
    init_losses = np.sum(np.square(np.asarray(task_cfgs) - np.asarray(init_params)), axis=1)
    assert np.all(np.asarray(losses) < init_losses)
    diff = np.asarray(task_cfgs) - np.asarray(init_params)
    stepped = init_params + 3 * lr * np.sign(diff) * (np.abs(diff) > 3 * lr)
    approx = np.sum(np.square(np.asarray(task_cfgs) - stepped), axis=1)
    np.testing.assert_allclose(losses, approx, rtol=1e-3)


@pytest.fixture
def mock_tfds(tmp_path, monkeypatch):
    """TFDS datasets replaced by random mock data; the data folder is empty."""
    monkeypatch.setenv("LOPT_DATA_DIR", str(tmp_path))
    with tfds_data.mock_tfds_data(num_examples=24):
        yield


def test_part2_single_task_to_family(mock_tfds, capsys):
    key = jax.random.PRNGKey(0)

    single_task = image_mlp.ImageMLP_FashionMnist8_Relu32()
    task_family = tasks_base.single_task_to_family(single_task)

    cfg = task_family.sample(key)
    print("config only contains a dummy value:", cfg)
    task = task_family.task_fn(cfg)
    # Tasks are the same
    assert task == single_task

    assert capsys.readouterr().out == "config only contains a dummy value: 0\n"
    assert cfg.shape == () and cfg.dtype == jnp.int32
    assert task is single_task and task_family.eval_task_fn(cfg) is single_task
    assert task_family.name == "SingleTask_ImageMLP_FashionMnist8_Relu32"
    assert task_family.datasets is single_task.datasets
    # The dummy cfg vmaps like any other: one zero per key.
    np.testing.assert_array_equal(jax.vmap(task_family.sample)(jax.random.split(key, 4)), 0)

    # The family's datasets serve (mock) 8x8 Fashion-MNIST batches of 128, and the
    # task trains on them.
    batch = next(task_family.datasets.train)
    assert batch["image"].shape == (128, 8, 8, 1) and batch["label"].shape == (128,)
    params = task.init(key)
    assert params["mlp/~/linear_0"]["w"].shape == (64, 32)
    opt = opt_base.Adam()
    opt_state = opt.init(params)
    step = jax.jit(lambda s: opt.update(s, jax.grad(task.loss)(opt.get_params(s), key, batch)))
    first = float(task.loss(params, key, batch))
    for _ in range(20):
        opt_state = step(opt_state)
    last = float(task.loss(opt.get_params(opt_state), key, batch))
    assert 1.5 < first < 3.5
    assert last < first - 0.2
