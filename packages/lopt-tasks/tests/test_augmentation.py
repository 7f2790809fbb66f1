"""Task augmentations: values, gradients, masks, dtypes and label noise, checked numerically."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core
from lopt_core import Task
from lopt_core.testing import check_task, check_task_family
from lopt_tasks import augmentation as aug
from lopt_tasks.digits import digits_datasets
from lopt_tasks.image_mlp import ImageMLPTask
from lopt_tasks.quadratics import (
    FixedDimQuadraticFamily,
    FixedDimQuadraticFamilyData,
    QuadraticTask,
)

KEY = jax.random.PRNGKey(0)
CENTER = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([[3.0, -1.0], [0.0, 2.0]])}
WEIGHT = {"a": jnp.array([1.0, 2.0, 3.0]), "b": jnp.array([[0.5, 1.0], [4.0, 1.5]])}


class ShiftedQuadratic(Task):
    """sum(w * (p - c)**2) + 3: minimum 3 at p = c, over a two-leaf dict."""

    def init(self, key):
        k1, k2 = jax.random.split(key)
        return {"a": jax.random.normal(k1, (3,)), "b": jax.random.normal(k2, (2, 2))}

    def loss(self, params, key, data):
        del key, data
        terms = jax.tree_util.tree_map(
            lambda p, c, w: jnp.sum(w * (p - c) ** 2), params, CENTER, WEIGHT
        )
        return sum(jax.tree_util.tree_leaves(terms)) + 3.0


class DtypeProbe(Task):
    """Records the dtypes its loss sees; loss = mean(x) * sum(p)."""

    seen = {}

    def init(self, key):
        return jax.random.normal(key, (3,))

    def loss(self, params, key, data):
        DtypeProbe.seen.update(p=params.dtype, x=data["x"].dtype, label=data["label"].dtype)
        return jnp.mean(data["x"]) * jnp.sum(params) + jnp.sum(data["label"])


@pytest.fixture(scope="module")
def digits_task():
    return ImageMLPTask(digits_datasets(batch_size=16), [8], name="Digits16_8")


def _tree_allclose(a, b, **kw):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), **kw)


# -- ReparamWeights ---------------------------------------------------------------------------

SCALES = {
    "global": 10.0,
    "tensor": {"a": 0.1, "b": 5.0},
    "parameter": {"a": jnp.array([0.5, 2.0, 20.0]), "b": jnp.array([[0.01, 1.0], [3.0, 100.0]])},
}


@pytest.mark.parametrize("level", aug.LEVELS)
def test_reparam_keeps_the_minimum_and_scales_the_gradient(level):
    base = ShiftedQuadratic()
    task = aug.ReparamWeights(base, SCALES[level])
    s = task._scales(CENTER)
    # init divides the base init: the initial function is unchanged.
    p0 = base.init(KEY)
    theta0 = task.init(KEY)
    _tree_allclose(theta0, jax.tree_util.tree_map(lambda p, x: p / x, p0, s), rtol=1e-6)
    np.testing.assert_allclose(task.loss(theta0, KEY, None), base.loss(p0, KEY, None), rtol=1e-5)
    # The minimum: 3.0 at theta = c / s, where the gradient vanishes; never below it.
    theta_star = jax.tree_util.tree_map(lambda c, x: c / x, CENTER, s)
    np.testing.assert_allclose(task.loss(theta_star, KEY, None), 3.0, rtol=1e-6)
    _tree_allclose(
        jax.grad(task.loss)(theta_star, KEY, None),
        {"a": np.zeros(3), "b": np.zeros((2, 2))},
        atol=1e-4,
    )
    for k in jax.random.split(KEY, 5):
        assert task.loss(base.init(k), KEY, None) >= 3.0
    # Gradient: grad_theta = s * grad_p at p = theta * s.
    g_theta = jax.grad(task.loss)(theta0, KEY, None)
    g_p = jax.grad(base.loss)(task.to_base(theta0), KEY, None)
    _tree_allclose(g_theta, jax.tree_util.tree_map(lambda g, x: g * x, g_p, s), rtol=1e-5)
    # The exact numbers of the global case: grad_a = 10 * 2 * w * (10 * theta - c).
    if level == "global":
        expected = 10.0 * 2 * WEIGHT["a"] * (10.0 * theta0["a"] - CENTER["a"])
        np.testing.assert_allclose(g_theta["a"], expected, rtol=1e-5)
    check_task(task)


@pytest.mark.parametrize("level", aug.LEVELS)
def test_reparam_family_samples_log_uniform_scales_per_level(level):
    family = aug.ReparamWeightsFamily(FixedDimQuadraticFamily(50), level, 0.1, 10.0)
    cfgs = jax.vmap(family.sample)(jax.random.split(KEY, 200))
    scale = np.asarray(cfgs["aug"]["scale"])
    assert scale.shape == {"global": (200,), "tensor": (200,), "parameter": (200, 50)}[level]
    assert scale.min() >= 0.1 and scale.max() <= 10.0
    # log-uniform on [log 0.1, log 10]: mean of log 0, std log(100)/sqrt(12) = 1.33.
    assert abs(np.log(scale).mean()) < 0.25 and abs(np.log(scale).std() - 1.33) < 0.15
    check_task_family(family)
    # A task of a traced cfg scales the gradient by its own sample.
    task = family.task_fn(family.sample(KEY))
    theta = task.init(KEY)
    g = jax.grad(task.loss)(theta, KEY, None)
    g_base = jax.grad(task.task.loss)(task.to_base(theta), KEY, None)
    np.testing.assert_allclose(g, g_base * family.sample(KEY)["aug"]["scale"], rtol=1e-5)


# -- ReducedBatchSize -------------------------------------------------------------------------


def test_kept_examples_numbers():
    assert [int(aug.kept_examples(f, 16)) for f in (0.01, 0.1, 0.25, 0.5, 1.0)] == [1, 2, 4, 8, 16]


def test_reduced_batch_masks_the_examples_beyond_the_fraction(digits_task):
    params = digits_task.init(KEY)
    batch = next(digits_task.datasets.train)
    first4 = jax.tree_util.tree_map(lambda x: x[:4], batch)
    expected = digits_task.loss(params, KEY, first4)
    masked = aug.ReducedBatchSize(digits_task, 0.25)
    np.testing.assert_allclose(masked.loss(params, KEY, batch), expected, rtol=1e-5)
    sliced = aug.ReducedBatchSize(digits_task, 0.25, mode="slice")
    np.testing.assert_allclose(sliced.loss(params, KEY, batch), expected, rtol=1e-5)
    # The examples beyond the first four get no gradient through the mask: changing them
    # changes nothing.
    other = {**batch, "label": batch["label"].at[4:].set((batch["label"][4:] + 1) % 10)}
    np.testing.assert_allclose(masked.loss(params, KEY, other), expected, rtol=1e-5)
    # A traced fraction (as in a vmapped family) under jit.
    loss_of = jax.jit(lambda f: aug.ReducedBatchSize(digits_task, f).loss(params, KEY, batch))
    np.testing.assert_allclose(loss_of(0.25), expected, rtol=1e-5)
    np.testing.assert_allclose(loss_of(1.0), digits_task.loss(params, KEY, batch), rtol=1e-5)
    check_task(masked)
    with pytest.raises(ValueError, match="mode='slice'.*concrete"):
        jax.jit(lambda f: aug.ReducedBatchSize(digits_task, f, mode="slice"))(0.5)


# -- ConvertFloatDType ------------------------------------------------------------------------


def test_convert_float_dtype_stores_bf16_and_returns_float32():
    task = aug.ConvertFloatDType(QuadraticTask(4))
    params = task.init(KEY)
    assert params.dtype == jnp.bfloat16
    np.testing.assert_array_equal(params, QuadraticTask(4).init(KEY).astype(jnp.bfloat16))
    loss, grads = jax.value_and_grad(task.loss)(params, KEY, None)
    assert loss.dtype == jnp.float32 and grads.dtype == jnp.bfloat16
    np.testing.assert_allclose(grads.astype(np.float32), 2 * params.astype(np.float32), rtol=1e-2)
    check_task(task)


def test_convert_float_dtype_casts_float_data_but_not_labels():
    task = aug.ConvertFloatDType(DtypeProbe())
    data = {"x": jnp.ones((2, 3)), "label": jnp.array([1, 2], jnp.int32)}
    loss = task.loss(task.init(KEY), KEY, data)
    assert DtypeProbe.seen == {"p": jnp.bfloat16, "x": jnp.bfloat16, "label": jnp.int32}
    assert loss.dtype == jnp.float32


def test_convert_float_dtype_on_digits(digits_task):
    task = aug.ConvertFloatDType(digits_task)
    params = task.init(KEY)
    assert {x.dtype for x in jax.tree_util.tree_leaves(params)} == {jnp.dtype(jnp.bfloat16)}
    batch = next(digits_task.datasets.train)
    base = digits_task.loss(digits_task.init(KEY), KEY, batch)
    np.testing.assert_allclose(task.loss(params, KEY, batch), base, rtol=2e-2)
    check_task(task)


# -- NormalizeGradients, SubsampleDirections --------------------------------------------------


def test_normalize_gradients_has_unit_norm_and_the_same_value():
    base = ShiftedQuadratic()
    task = aug.NormalizeGradients(base)
    params = base.init(KEY)
    loss, g = jax.value_and_grad(task.loss)(params, KEY, None)
    base_loss, g_base = jax.value_and_grad(base.loss)(params, KEY, None)
    assert loss == base_loss
    norm = np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree_util.tree_leaves(g_base)))
    assert norm > 1.0  # so unit norm is a real change
    _tree_allclose(g, jax.tree_util.tree_map(lambda x: x / norm, g_base), rtol=1e-5)
    np.testing.assert_allclose(float(aug._tree_norm(g)), 1.0, rtol=1e-6)
    check_task(task)


def test_subsample_directions_keeps_a_rescaled_random_fraction():
    base = QuadraticTask(2000)
    task = aug.SubsampleDirections(base, 0.3)
    params = base.init(KEY)
    k = jax.random.PRNGKey(7)
    loss, g = jax.value_and_grad(task.loss)(params, k, None)
    assert loss == base.loss(params, k, None)
    mask = np.asarray(task.direction_mask(params, jax.random.fold_in(k, 0x6A7D)))
    np.testing.assert_allclose(g, np.where(mask, 2 * params / 0.3, 0.0), rtol=1e-5)
    assert abs(mask.mean() - 0.3) < 0.03
    assert np.all((np.asarray(g) == 0) == ~mask)
    # Another loss key, another mask; the same key, the same one.
    g2 = jax.grad(task.loss)(params, jax.random.PRNGKey(8), None)
    assert 0.05 < np.mean((np.asarray(g2) == 0) != (np.asarray(g) == 0)) < 0.6
    np.testing.assert_array_equal(jax.grad(task.loss)(params, k, None), g)
    check_task(task)


# -- AsyncDelayedGradients --------------------------------------------------------------------


def _sgd_grads(task, steps=6, lr=0.1):
    params, state = task.init_with_state(KEY)
    history, grads = [], []
    for _ in range(steps):
        history.append(params)
        (loss, state), g = jax.value_and_grad(task.loss_with_state, has_aux=True)(
            params, state, KEY, None
        )
        np.testing.assert_allclose(loss, task.task.loss(params, KEY, None), rtol=1e-6)
        grads.append(g)
        params = jax.tree_util.tree_map(lambda p, x: p - lr * x, params, g)
    return history, grads


@pytest.mark.parametrize("delay,max_delay", [(1, None), (2, None), (2, 3)])
def test_async_delay_uses_the_gradient_of_k_steps_ago(delay, max_delay):
    base = ShiftedQuadratic()
    task = aug.AsyncDelayedGradients(base, delay, max_delay)
    history, grads = _sgd_grads(task)
    for t, g in enumerate(grads):
        expected = jax.grad(base.loss)(history[max(t - delay, 0)], KEY, None)
        _tree_allclose(g, expected, rtol=1e-5)
    # ...and not the current one (the params do move).
    assert not np.allclose(grads[4]["a"], jax.grad(base.loss)(history[4], KEY, None)["a"])
    check_task(task)


def test_async_delay_with_a_traced_delay():
    base = ShiftedQuadratic()
    params, state = aug.AsyncDelayedGradients(base, 1, 3).init_with_state(KEY)

    @jax.jit
    def step(delay, p, s):
        task = aug.AsyncDelayedGradients(base, delay, 3)
        (_, s), g = jax.value_and_grad(task.loss_with_state, has_aux=True)(p, s, KEY, None)
        return jax.tree_util.tree_map(lambda x, y: x - 0.1 * y, p, g), s, g

    history = []
    for t in range(5):
        history.append(params)
        params, state, g = step(3, params, state)
        _tree_allclose(g, jax.grad(base.loss)(history[max(t - 3, 0)], KEY, None), rtol=1e-5)


# -- ScaleLoss, LabelNoise --------------------------------------------------------------------


def test_scale_loss_scales_value_and_gradient_and_normalizer_undoes_it():
    base = FixedDimQuadraticFamily(4).task_fn(jnp.arange(4.0))
    task = aug.ScaleLoss(base, 7.5)
    params = base.init(KEY)
    loss, g = jax.value_and_grad(task.loss)(params, KEY, None)
    base_loss, g_base = jax.value_and_grad(base.loss)(params, KEY, None)
    np.testing.assert_allclose(loss, 7.5 * base_loss, rtol=1e-6)
    np.testing.assert_allclose(g, 7.5 * g_base, rtol=1e-6)
    np.testing.assert_allclose(task.normalizer(loss), base.normalizer(base_loss), rtol=1e-6)
    check_task(task)


def test_label_noise_replaces_labels_at_the_given_rate(digits_task):
    task = aug.LabelNoise(digits_task, 0.4)
    assert task.classes == 10
    labels = jnp.asarray(np.arange(20000) % 10, jnp.int32)
    noisy = np.asarray(task.noisy_labels(labels, KEY))
    # Replaced with probability 0.4 by a uniform class: changed at 0.4 * 0.9 = 0.36.
    assert abs(np.mean(noisy != np.asarray(labels)) - 0.36) < 0.015
    assert noisy.min() >= 0 and noisy.max() <= 9 and noisy.dtype == np.int32
    assert np.all(np.asarray(aug.LabelNoise(digits_task, 0.0).noisy_labels(labels, KEY)) == labels)
    # The loss is the base loss on the noisy labels of the loss key.
    params = digits_task.init(KEY)
    batch = next(digits_task.datasets.train)
    k = jax.random.PRNGKey(3)
    noisy_batch = {**batch, "label": task.noisy_labels(batch["label"], k)}
    np.testing.assert_allclose(
        task.loss(params, k, batch), digits_task.loss(params, k, noisy_batch), rtol=1e-6
    )
    check_task(task)


def test_label_noise_needs_labels_and_a_class_count():
    with pytest.raises(ValueError, match="num_classes="):
        aug.LabelNoise(QuadraticTask(3))
    task = aug.LabelNoise(QuadraticTask(3), 0.1, num_classes=10)
    with pytest.raises(ValueError, match="no integer labels under 'label'.*label_key="):
        task.loss(task.init(KEY), KEY, {"x": jnp.ones(3)})
    with pytest.raises(ValueError, match="no integer labels"):
        aug.LabelNoise(lopt_core.get_task("BatchQuadraticTask"), 0.1, num_classes=10)


# -- families over a traced cfg, the catalog, validation --------------------------------------

QUAD_FAMILIES = [
    aug.ReparamWeightsFamily(FixedDimQuadraticFamily(4), "tensor"),
    aug.ConvertFloatDTypeFamily(FixedDimQuadraticFamily(4)),
    aug.NormalizeGradientsFamily(FixedDimQuadraticFamily(4)),
    aug.SubsampleDirectionsFamily(FixedDimQuadraticFamily(4)),
    aug.AsyncDelayedGradientsFamily(FixedDimQuadraticFamily(4), 3),
    aug.ScaleLossFamily(FixedDimQuadraticFamily(4)),
]


@pytest.mark.parametrize("family", QUAD_FAMILIES, ids=lambda f: type(f).__name__)
def test_families_pass_the_contract_and_vmap_their_tasks(family):
    check_task_family(family)
    keys = jax.random.split(KEY, 3)
    cfgs = jax.vmap(family.sample)(keys)

    def one(cfg, k):
        task = family.task_fn(cfg)
        p, s = task.init_with_state(k)
        (loss, _), g = jax.value_and_grad(task.loss_with_state, has_aux=True)(p, s, k, None)
        return loss, g

    losses, grads = jax.jit(jax.vmap(one))(cfgs, keys)
    assert losses.shape == (3,) and grads.shape == (3, 4)
    for i in range(3):
        cfg = jax.tree_util.tree_map(lambda x, i=i: x[i], cfgs)
        loss, g = one(cfg, keys[i])
        np.testing.assert_allclose(losses[i], loss, rtol=1e-5)
        np.testing.assert_allclose(
            np.asarray(grads[i], np.float32), np.asarray(g, np.float32), rtol=1e-5
        )


def test_digits_families_from_the_catalog():
    family = lopt_core.get_task_family("LabelNoise_ImageMLPFamily_Digits8")
    assert isinstance(family, aug.LabelNoiseFamily)
    assert family.name == "LabelNoise_ImageMLPFamily_Digits8"
    family = lopt_core.get_task_family("ReparamWeights_ImageMLPFamily_Digits8", level="parameter")
    assert family.level == "parameter"
    cfg = family.sample(KEY)
    shapes = jax.tree_util.tree_map(np.shape, cfg["aug"]["scale"])
    params = family.task_fn(cfg).init(KEY)
    assert shapes == jax.tree_util.tree_map(np.shape, params)


def test_reduced_batch_family_samples_fractions_in_range():
    # check_task_family of the digits families runs in test_contracts.py (the catalog).
    family = aug.ReducedBatchSizeFamily(FixedDimQuadraticFamily(2), 0.05, 0.5)
    cfgs = jax.vmap(family.sample)(jax.random.split(KEY, 400))
    f = np.asarray(cfgs["aug"]["fraction"])
    assert f.min() >= 0.05 and f.max() <= 0.5
    # log-uniform: the median is the geometric mean sqrt(0.05 * 0.5) = 0.158.
    assert abs(np.median(f) - 0.158) < 0.02
    assert isinstance(family.task_fn(family.sample(KEY)), aug.ReducedBatchSize)


@pytest.mark.parametrize(
    "build,field",
    [
        (lambda: aug.ReparamWeights(QuadraticTask(), 0.0), "scale"),
        (lambda: aug.ReparamWeightsFamily(FixedDimQuadraticFamily(), "layer"), "level"),
        (
            lambda: aug.ReparamWeightsFamily(
                FixedDimQuadraticFamily(), min_scale=2.0, max_scale=1.0
            ),
            "min_scale",
        ),
        (lambda: aug.ReducedBatchSize(QuadraticTask(), 0.0), "fraction"),
        (lambda: aug.ReducedBatchSize(QuadraticTask(), 0.5, mode="crop"), "mode"),
        (lambda: aug.ReducedBatchSizeFamily(FixedDimQuadraticFamily(), 0.1, 1.5), "max_fraction"),
        (lambda: aug.ConvertFloatDType(QuadraticTask(), "int8"), "dtype"),
        (lambda: aug.SubsampleDirections(QuadraticTask(), 1.5), "fraction"),
        (lambda: aug.AsyncDelayedGradients(QuadraticTask(), 0), "delay"),
        (lambda: aug.AsyncDelayedGradients(QuadraticTask(), 4, 3), "delay"),
        (lambda: aug.AsyncDelayedGradientsFamily(FixedDimQuadraticFamily(), 0), "max_delay"),
        (lambda: aug.ScaleLoss(QuadraticTask(), -1.0), "scale"),
        (lambda: aug.LabelNoise(QuadraticTask(), 2.0, num_classes=3), "fraction"),
        (lambda: aug.LabelNoiseFamily(FixedDimQuadraticFamily(), 0.5, 0.2), "min_fraction"),
    ],
)
def test_fields_are_validated_with_messages_naming_them(build, field):
    with pytest.raises(ValueError, match=field):
        build()


def test_wrappers_need_a_task_and_a_family():
    with pytest.raises(TypeError, match="task must be a lopt Task"):
        aug.ScaleLoss(FixedDimQuadraticFamily(), 2.0)
    with pytest.raises(TypeError, match="family must be a lopt TaskFamily"):
        aug.ScaleLossFamily(QuadraticTask())


# -- aux through every wrapper ----------------------------------------------------------------


class AuxProbe(Task):
    """A batch-mean loss whose aux reads the params and the batch (labels, features)."""

    num_classes = 10

    def init(self, key):
        return jax.random.normal(key, (3,))

    def loss(self, params, key, data):
        del key
        pred = data["x"] @ params
        return jnp.mean((pred - data["label"]) ** 2)

    def loss_and_aux(self, params, key, data):
        return self.loss(params, key, data), {
            "p_sq": jnp.sum(params**2),
            "mean_label": jnp.mean(data["label"].astype(jnp.float32)),
            "mean_x": jnp.mean(data["x"], axis=0),  # a (3,) aux: the masked mean is per entry
        }


def _aux_batch():
    x = jax.random.normal(jax.random.PRNGKey(5), (8, 3))
    return {"x": x, "label": jnp.arange(8, dtype=jnp.int32)}


def _quadratic_data_task():
    # Target and params from different keys, so the gradient is not zero.
    return FixedDimQuadraticFamilyData(4).sample_task(jax.random.PRNGKey(11))


def _assert_aux_equal(aux, want, **kw):
    assert set(aux) == set(want)
    for k in want:
        np.testing.assert_allclose(np.asarray(aux[k]), np.asarray(want[k]), **kw)


def _same_loss_and_grad(task, params, key, data):
    # loss_and_aux gives exactly the loss (and gradient) of loss().
    (loss, aux), g = jax.value_and_grad(task.loss_and_aux, has_aux=True)(params, key, data)
    want, g_want = jax.value_and_grad(task.loss)(params, key, data)
    assert float(loss) == float(want)
    _tree_allclose(g, g_want, rtol=0, atol=0)
    return aux


@pytest.mark.parametrize("scale", [2.0, 0.25])
def test_reparam_aux_is_the_base_aux_at_theta_times_scale(scale):
    base = _quadratic_data_task()
    task = aug.ReparamWeights(base, scale)
    theta = task.init(KEY)
    aux = _same_loss_and_grad(task, theta, KEY, jnp.float32(0.3))
    p = theta * scale
    _assert_aux_equal(aux, {"l2": jnp.mean(p**2), "l1": jnp.mean(jnp.abs(p))}, rtol=1e-6)
    # The state path gives the same aux.
    _, state, aux2 = task.loss_with_state_and_aux(theta, None, KEY, jnp.float32(0.3))
    assert state is None
    _assert_aux_equal(aux2, aux, rtol=0)


def test_convert_float_dtype_aux_is_the_base_aux_on_the_cast_params_as_float32():
    base = _quadratic_data_task()
    task = aug.ConvertFloatDType(base)
    params = task.init(KEY)
    aux = _same_loss_and_grad(task, params, KEY, jnp.float32(0.3))
    assert {a.dtype for a in aux.values()} == {jnp.dtype(jnp.float32)}
    _, want = base.loss_and_aux(params, KEY, jnp.bfloat16(0.3))  # params are bfloat16
    _assert_aux_equal(aux, {k: v.astype(jnp.float32) for k, v in want.items()}, rtol=0)


@pytest.mark.parametrize(
    "wrap",
    [
        aug.NormalizeGradients,
        lambda t: aug.SubsampleDirections(t, 0.5),
        lambda t: aug.ScaleLoss(t, 7.5),
    ],
    ids=["NormalizeGradients", "SubsampleDirections", "ScaleLoss"],
)
def test_gradient_transforms_and_scale_loss_return_the_base_aux(wrap):
    base = _quadratic_data_task()
    task = wrap(base)
    params = task.init(KEY)
    aux = _same_loss_and_grad(task, params, KEY, jnp.float32(0.3))
    _assert_aux_equal(jax.jit(task.loss_and_aux)(params, KEY, jnp.float32(0.3))[1], aux, rtol=1e-6)
    _assert_aux_equal(aux, {"l2": jnp.mean(params**2), "l1": jnp.mean(jnp.abs(params))}, rtol=1e-6)


def test_gradient_transform_aux_survives_grad_of_loss_with_state_and_aux():
    task = aug.SubsampleDirections(_quadratic_data_task(), 0.5)
    params = task.init(KEY)

    def fn(p):
        loss, _, aux = task.loss_with_state_and_aux(p, None, KEY, jnp.float32(0.0))
        return loss, aux

    (_, aux), g = jax.value_and_grad(fn, has_aux=True)(params)
    np.testing.assert_array_equal(g, jax.grad(task.loss)(params, KEY, jnp.float32(0.0)))
    np.testing.assert_allclose(aux["l2"], jnp.mean(params**2), rtol=1e-6)


def test_async_delay_aux_is_the_base_aux_at_the_current_params():
    base = _quadratic_data_task()
    task = aug.AsyncDelayedGradients(base, 2)
    params, state = task.init_with_state(KEY)
    for _ in range(4):
        (loss, state_aux), g = jax.value_and_grad(
            lambda p, s: (lambda r: (r[0], (r[1], r[2])))(
                task.loss_with_state_and_aux(p, s, KEY, jnp.float32(0.0))
            ),
            has_aux=True,
        )(params, state)
        new_state, aux = state_aux
        want_loss, want_state = task.loss_with_state(params, state, KEY, jnp.float32(0.0))
        assert float(loss) == float(want_loss)
        _tree_allclose(new_state, want_state, rtol=0, atol=0)
        _assert_aux_equal(aux, base.loss_and_aux(params, KEY, jnp.float32(0.0))[1], rtol=1e-6)
        params, state = params - 0.1 * g, new_state
    with pytest.raises(ValueError, match="call loss_with_state"):
        task.loss_and_aux(params, KEY, jnp.float32(0.0))


def test_reduced_batch_aux_is_over_the_kept_examples():
    base, data = AuxProbe(), _aux_batch()
    params = base.init(KEY)
    first = jax.tree_util.tree_map(lambda x: x[:2], data)  # round(0.25 * 8) = 2 kept
    _, want = base.loss_and_aux(params, KEY, first)
    for mode in ("mask", "slice"):
        task = aug.ReducedBatchSize(base, 0.25, mode=mode)
        aux = _same_loss_and_grad(task, params, KEY, data)
        # mean_label 0.5 and mean_x over the kept two examples; p_sq does not read the batch.
        _assert_aux_equal(aux, want, rtol=1e-6)
        assert float(aux["mean_label"]) == 0.5 and aux["mean_x"].shape == (3,)
    # A traced fraction under jit, as in a family: 0.5 keeps four labels 0..3.
    mean_label = jax.jit(
        lambda f: aug.ReducedBatchSize(base, f).loss_and_aux(params, KEY, data)[1]["mean_label"]
    )
    assert float(mean_label(0.5)) == 1.5


def test_masked_mean_of_integer_aux_is_float():
    mask = jnp.array([True, True, False])
    out = aug._masked_mean(jnp.array([1, 2, 9], jnp.int32), mask)
    assert out.dtype == jnp.float32 and float(out) == 1.5
    out = aug._masked_mean(jnp.ones((3, 2), jnp.bfloat16), mask)
    assert out.dtype == jnp.bfloat16 and out.shape == (2,)


def test_label_noise_aux_is_the_base_aux_on_the_noisy_labels():
    base, data = AuxProbe(), _aux_batch()
    task = aug.LabelNoise(base, 0.8)
    params = base.init(KEY)
    k = jax.random.PRNGKey(3)
    aux = _same_loss_and_grad(task, params, k, data)
    noisy = {**data, "label": task.noisy_labels(data["label"], k)}
    assert not np.array_equal(np.asarray(noisy["label"]), np.asarray(data["label"]))
    _assert_aux_equal(aux, base.loss_and_aux(params, k, noisy)[1], rtol=0)


def test_family_aux_at_a_traced_cfg():
    family = aug.ReparamWeightsFamily(FixedDimQuadraticFamilyData(4), "tensor")
    cfgs = jax.vmap(family.sample)(jax.random.split(KEY, 3))

    def one(cfg, k):
        task = family.task_fn(cfg)
        theta = task.init(k)
        return task.loss_and_aux(theta, k, jnp.float32(0.0))[1], task.to_base(theta)

    aux, p = jax.jit(jax.vmap(one))(cfgs, jax.random.split(KEY, 3))
    np.testing.assert_allclose(aux["l2"], jnp.mean(p**2, axis=1), rtol=1e-6)


def test_a_base_without_aux_gives_empty_aux(digits_task):
    task = aug.LabelNoise(aug.ReducedBatchSize(digits_task, 0.5), 0.1)
    batch = next(digits_task.datasets.train)
    loss, aux = task.loss_and_aux(task.init(KEY), KEY, batch)
    assert aux == {} and float(loss) == float(task.loss(task.init(KEY), KEY, batch))


@pytest.mark.parametrize(
    "family,low,high,name",
    [
        (aug.ReparamWeightsFamily(FixedDimQuadraticFamily(2)), 0.01, 100.0, "scale"),
        (aug.ReducedBatchSizeFamily(FixedDimQuadraticFamily(2)), 0.1, 1.0, "fraction"),
        (aug.SubsampleDirectionsFamily(FixedDimQuadraticFamily(2), 0.2, 0.9), 0.2, 0.9, "fraction"),
        (aug.ScaleLossFamily(FixedDimQuadraticFamily(2)), 0.001, 1000.0, "scale"),
    ],
    ids=lambda x: type(x).__name__ if isinstance(x, lopt_core.TaskFamily) else None,
)
def test_log_uniform_families_sample_exp_uniform_of_the_aug_key(family, low, high, name):
    _, k_aug = jax.random.split(KEY)
    want = jnp.exp(jax.random.uniform(k_aug, (), minval=np.log(low), maxval=np.log(high)))
    assert family.bounds == (low, high)
    assert float(family.sample(KEY)["aug"][name]) == float(want)
