"""RelativeLossNormalizer(Family): one normalised scale, 7 at each task's initial loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core
from lopt_core import Datasets, Task, TaskFamily
from lopt_core.testing import check_task, check_task_family
from lopt_tasks import augmentation as aug
from lopt_tasks.mixture import MixtureTaskFamily
from lopt_tasks.quadratics import (
    FixedDimQuadraticFamily,
    FixedDimQuadraticFamilyData,
    NoisyQuadraticFamily,
)

KEY = jax.random.PRNGKey(0)


def _measurement_keys(key):
    """The documented derivation: split(fold_in(key, 0x1A17), 3) = (init, batch, loss)."""
    return jax.random.split(jax.random.fold_in(key, 0x1A17), 3)


def test_the_normalizer_reads_seven_at_the_initial_loss_and_two_less_per_decade():
    base = FixedDimQuadraticFamilyData(4).sample_task(KEY)
    task = aug.RelativeLossNormalizer(base, 20.0)
    f = lambda x: float(task.normalizer(jnp.float32(x)))  # noqa: E731
    assert f(20.0) == pytest.approx(7.0, abs=1e-4)
    assert f(2.0) == pytest.approx(5.0, abs=1e-4)
    assert f(0.2) == pytest.approx(3.0, abs=1e-3)  # the +1e-5 inside the log: 3.0009
    assert f(0.0) == pytest.approx(-3.0, abs=1e-4)  # clipped below
    assert f(-5.0) == pytest.approx(-3.0, abs=1e-4)
    assert f(20.0 * 1e6) == 10.0 and f(jnp.nan) == 10.0 and f(jnp.inf) == 10.0
    # The base's own normalizer clips to [0, 1000]: a different scale.
    assert float(base.normalizer(jnp.float32(20.0))) == 20.0
    # A traced initial loss (as in a vmapped family).
    g = jax.jit(lambda i: aug.RelativeLossNormalizer(base, i).normalizer(jnp.float32(3.0)))
    assert float(g(30.0)) == pytest.approx(5.0, abs=1e-4)


def test_everything_but_the_normalizer_is_the_base_tasks():
    base = FixedDimQuadraticFamilyData(4).sample_task(jax.random.PRNGKey(3))
    task = aug.RelativeLossNormalizer(base, 12.0)
    params = task.init(KEY)
    np.testing.assert_array_equal(params, base.init(KEY))
    assert task.datasets is base.datasets
    data = jnp.float32(0.25)
    (loss, aux), g = jax.value_and_grad(task.loss_and_aux, has_aux=True)(params, KEY, data)
    (want, want_aux), g_want = jax.value_and_grad(base.loss_and_aux, has_aux=True)(
        params, KEY, data
    )
    assert float(loss) == float(want) and float(task.loss(params, KEY, data)) == float(want)
    np.testing.assert_array_equal(g, g_want)
    assert {k: float(v) for k, v in aux.items()} == {k: float(v) for k, v in want_aux.items()}
    assert task.name == f"RelativeLossNormalizer_{base.name}"
    check_task(task, data=data)
    with pytest.raises(ValueError, match="initial_loss"):
        aug.RelativeLossNormalizer(base, 0.0)


def test_vmapped_sample_measures_each_tasks_initial_loss():
    base = FixedDimQuadraticFamily(5)
    family = aug.RelativeLossNormalizerFamily(base)
    keys = jax.random.split(KEY, 4)
    cfgs = jax.jit(jax.vmap(family.sample))(keys)
    measured = np.asarray(cfgs["aug"]["initial_loss"])
    assert measured.shape == (4,) and measured.dtype == np.float32
    for i, key in enumerate(keys):
        target = jax.random.normal(key, (5,))  # the base cfg: the base sample of the same key
        np.testing.assert_array_equal(np.asarray(cfgs["base"][i]), np.asarray(target))
        k_init, _, _ = _measurement_keys(key)
        p0 = jax.random.normal(k_init, (5,))  # FixedDimQuadraticFamily's init
        by_hand = float(np.sum((np.asarray(target) - np.asarray(p0)) ** 2))
        assert measured[i] == pytest.approx(by_hand, rel=1e-5)
        # ...and the task of that cfg reads 7 there.
        cfg = jax.tree_util.tree_map(lambda x, i=i: x[i], cfgs)
        task = family.task_fn(cfg)
        assert float(task.normalizer(task.loss(p0, KEY, None))) == pytest.approx(7.0, abs=1e-4)
    assert len(set(measured.tolist())) == 4  # one measurement per task


def test_the_batch_is_drawn_from_the_train_split_of_the_sample_key():
    base = FixedDimQuadraticFamilyData(3)
    family = aug.RelativeLossNormalizerFamily(base)
    cfg = family.sample(KEY)
    k_init, k_batch, k_loss = _measurement_keys(KEY)
    task = base.task_fn(cfg["base"])
    batch = base.datasets.split("train").sample(k_batch)
    want = abs(float(task.loss(task.init(k_init), k_loss, batch)))
    assert float(cfg["aug"]["initial_loss"]) == pytest.approx(want, rel=1e-6)


class _ConstantTask(Task):
    def __init__(self, value):
        self.value = value

    def init(self, key):
        return jax.random.normal(key, (2,))

    def loss(self, params, key, data):
        del key, data
        return jnp.sum(params) * 0.0 + self.value


class _ConstantFamily(TaskFamily):
    """Tasks whose loss is the cfg, whatever the params: for the edge cases."""

    def __init__(self, value, datasets=None):
        self.value, self.datasets = value, datasets

    def sample(self, key):
        del key
        return jnp.float32(self.value)

    def task_fn(self, cfg):
        return _ConstantTask(cfg)


@pytest.mark.parametrize(
    "value,want", [(-4.0, 4.0), (0.0, 1e-12), (float("nan"), 1.0), (float("inf"), 1.0)]
)
def test_the_measured_initial_loss_is_positive_and_finite(value, want):
    family = aug.RelativeLossNormalizerFamily(_ConstantFamily(value))
    measured = float(family.sample(KEY)["aug"]["initial_loss"])
    assert measured == pytest.approx(want, rel=1e-6)


def test_a_family_whose_data_is_not_keyed_is_refused_with_the_fix():
    plain = Datasets(*(iter([jnp.zeros(2)]) for _ in range(4)))
    family = _ConstantFamily(1.0, plain)
    with pytest.raises(ValueError, match=r"cannot draw batches from keys.*ArraySplit"):
        aug.RelativeLossNormalizerFamily(family)
    with pytest.raises(ValueError, match="normalizer='task'"):
        MixtureTaskFamily((FixedDimQuadraticFamily(2), family))
    mixed = MixtureTaskFamily((FixedDimQuadraticFamily(2), family), normalizer="task")
    assert mixed.families == mixed.members
    with pytest.raises(ValueError, match="normalizer"):
        MixtureTaskFamily((FixedDimQuadraticFamily(2),), normalizer="own")


@pytest.mark.parametrize(
    "base", [FixedDimQuadraticFamily(4), FixedDimQuadraticFamilyData(4), NoisyQuadraticFamily(3)]
)
def test_the_family_passes_the_contract(base):
    family = aug.RelativeLossNormalizerFamily(base)
    assert family.name == f"RelativeLossNormalizer_{base.name}"
    assert family.datasets is base.datasets
    check_task_family(family)


def test_the_catalog_entry_wraps_the_digits_family():
    family = lopt_core.get_task_family("RelativeLossNormalizer_ImageMLPFamily_Digits8")
    assert isinstance(family, aug.RelativeLossNormalizerFamily)
    assert family.name == "RelativeLossNormalizer_ImageMLPFamily_Digits8"
    assert "RelativeLossNormalizerFamily" in aug.__all__ and "RelativeLossNormalizer" in aug.__all__


def _normalised_initial_losses(family, index, seeds=(0, 1, 2)):
    """The normalised loss at init of mixture tasks of member `index`, one per seed."""
    out = []
    for seed in seeds:
        cfg = family.sample(jax.random.PRNGKey(seed))
        cfg = {"family": jnp.asarray(index, jnp.int32), "cfgs": cfg["cfgs"]}
        task = family.task_fn(cfg)
        params = task.init(jax.random.PRNGKey(100 + seed))
        batch = family.datasets.sample("train", jax.random.PRNGKey(200 + seed))
        out.append(float(task.normalizer(task.loss(params, KEY, batch))))
    return out


def test_a_mixture_puts_a_clipped_quadratic_and_a_classifier_on_one_scale():
    members = (FixedDimQuadraticFamilyData(10), lopt_core.get_task_family("ImageMLPFamily_Digits8"))
    family = MixtureTaskFamily(members)
    assert family.normalizer == "relative" and family.members == members
    assert all(isinstance(f, aug.RelativeLossNormalizerFamily) for f in family.families)
    assert family.name == "Mixture(FixedDimQuadraticFamilyData,ImageMLPFamily_Digits8)"
    # Measured: quadratic about 6.4-7.6 (another init than the measured one), digits
    # about 7.0. With the members' own normalizers: the quadratic's raw loss, about
    # 10-30, next to the classifier's 0-1 scale.
    for index in (0, 1):
        for value in _normalised_initial_losses(family, index):
            assert 5.5 < value < 8.5, (index, value)
    own = MixtureTaskFamily(members, normalizer="task")
    assert own.families == members
    assert min(_normalised_initial_losses(own, 0)) > 8.5


def test_the_registered_mixture_is_relative():
    family = lopt_core.get_task_family("MixtureFamily_Quadratic10_Digits8")
    assert family.normalizer == "relative"
    cfg = family.sample(KEY)
    assert all(c["aug"]["initial_loss"].shape == () for c in cfg["cfgs"])
