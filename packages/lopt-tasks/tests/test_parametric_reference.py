"""The reference's parametric autoencoder and VAE families, and conv kernel sizes / strides."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt_tasks
from lopt_tasks.conv import ConvTask
from lopt_tasks.generative import gaussian_kl, quantized_normal_log_prob
from lopt_tasks.parametric import (
    ImageFamilyConfig,
    ParametricImageConv,
    ParametricImageMLPAE,
    ParametricImageMLPVAE,
    sample_image_mlp_ae,
    sample_image_mlp_vae,
)


@pytest.fixture(scope="module")
def digits():
    return lopt_tasks.digits_datasets(batch_size=32, image_size=(8, 8))


def _cfg(family, **flags):
    """A sample with ReLU, truncated-normal init at scale 1, and the given flags."""
    cfg = family.sample(jax.random.PRNGKey(0))
    cfg["activation"] = jnp.asarray(0, jnp.int32)
    cfg["initializer"] = {"index": jnp.asarray(2, jnp.int32), "init_scale": jnp.float32(1.0)}
    return {**cfg, **{k: jnp.asarray(v) for k, v in flags.items()}}


def _adam_losses(task, steps=30, lr=3e-3):
    params = task.init(jax.random.PRNGKey(0))
    batch = next(task.datasets.train)
    opt = optax.adam(lr)

    def step(carry, key):
        params, state = carry
        loss, grad = jax.value_and_grad(task.loss)(params, key, batch)
        updates, state = opt.update(grad, state, params)
        return (optax.apply_updates(params, updates), state), loss

    keys = jax.random.split(jax.random.PRNGKey(1), steps)
    _, losses = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), keys))(params)
    return np.asarray(losses)


# -- autoencoder family ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ae_family():
    return lopt_tasks.ImageMLPAEFamily_Digits8()


@pytest.fixture(scope="module")
def vae_family():
    return lopt_tasks.ImageMLPVAEFamily_Digits8()


def test_autoencoder_family_sample_and_shapes(ae_family):
    family = ae_family
    cfg = family.sample(jax.random.PRNGKey(3))
    assert set(cfg) == {"activation", "initializer", "log_loss", "center_data", "constrain_output"}
    assert all(cfg[k].dtype == jnp.bool_ and cfg[k].shape == () for k in family.flags)
    other = family.sample(jax.random.PRNGKey(4))
    assert jax.tree_util.tree_all(
        jax.tree_util.tree_map(lambda a, b: bool(a == b), cfg, family.sample(jax.random.PRNGKey(3)))
    )
    assert any(bool(cfg[k] != other[k]) for k in cfg if k != "initializer")
    params = family.task_fn(cfg).init(jax.random.PRNGKey(0))
    assert {k: v["w"].shape for k, v in params.items()} == {
        "mlp/~/linear_0": (64, 32),
        "mlp/~/linear_1": (32, 32),
        "mlp/~/linear_2": (32, 64),
    }
    images = next(family.datasets.train)["image"]
    predicted, target = family._apply_jit(cfg, params, jax.random.PRNGKey(1), images)
    assert predicted.shape == target.shape == images.shape == (128, 8, 8, 1)


def test_autoencoder_loss_is_the_reference_squared_error(ae_family):
    family = ae_family
    batch = next(family.datasets.train)
    cfg = _cfg(family, log_loss=False, center_data=False, constrain_output=True)
    task = family.task_fn(cfg)
    params = task.init(jax.random.PRNGKey(0))
    loss = float(task.loss(params, jax.random.PRNGKey(1), batch))
    # Sigmoid outputs near 0.5 against pixels in [0, 1] (mostly dark): between 0.1 and 0.3.
    assert 0.1 < loss < 0.3
    predicted, _ = family._apply_jit(cfg, params, jax.random.PRNGKey(1), batch["image"])
    assert float(jnp.min(predicted)) > 0.0 and float(jnp.max(predicted)) < 1.0
    err = np.square(np.asarray(predicted) - np.asarray(batch["image"]))
    np.testing.assert_allclose(loss, err.mean(), rtol=1e-5)
    # The log loss logs the error averaged over axis 1 (rows), as the reference does.
    log_cfg = {**cfg, "log_loss": jnp.asarray(True)}
    log_loss = float(family.task_fn(log_cfg).loss(params, jax.random.PRNGKey(1), batch))
    np.testing.assert_allclose(log_loss, np.log(err.mean(axis=1) + 1e-8).mean(), rtol=1e-5)
    # Centered data and a tanh output: the prediction lies in (-1, 1) and so does the target.
    c_cfg = {**cfg, "center_data": jnp.asarray(True)}
    predicted, images = family._apply_jit(c_cfg, params, jax.random.PRNGKey(1), batch["image"])
    assert float(jnp.min(predicted)) > -1.0 and float(jnp.min(images)) == pytest.approx(-1.0)
    np.testing.assert_allclose(images, 2 * batch["image"] - 1, rtol=1e-6)


def test_autoencoder_normalizer(ae_family):
    family = ae_family
    plain = family.task_fn(_cfg(family, log_loss=False))
    logged = family.task_fn(_cfg(family, log_loss=True))
    assert float(plain.normalizer(jnp.exp(-2.0))) == pytest.approx(9.0, abs=1e-5)
    assert float(logged.normalizer(jnp.asarray(-2.0))) == pytest.approx(9.0)
    assert float(plain.normalizer(jnp.asarray(0.0))) == pytest.approx(4.0)  # log(1e-8) -> -12
    for bad in (jnp.nan, jnp.inf, 100.0):
        assert float(plain.normalizer(jnp.asarray(bad))) == pytest.approx(10.5)


def test_adam_lowers_the_autoencoder_family_loss(ae_family):
    family = ae_family
    task = family.task_fn(_cfg(family, log_loss=False, center_data=False, constrain_output=True))
    losses = _adam_losses(task, lr=1e-2)
    assert losses[-1] < 0.7 * losses[0]


# -- VAE family -------------------------------------------------------------------------------


def test_vae_family_shapes_and_finite_loss(vae_family):
    family = vae_family
    cfg = family.sample(jax.random.PRNGKey(0))
    assert set(cfg) == {"activation", "initializer", "center_data", "per_dim_loss"}
    task = family.task_fn(_cfg(family, center_data=False, per_dim_loss=False))
    params = task.init(jax.random.PRNGKey(0))
    assert {k: v["w"].shape for k, v in params.items()} == {
        "mlp_encoder/~/linear_0": (64, 32),
        "mlp_encoder/~/linear_1": (32, 16),  # mean and log std of an 8-dim latent
        "mlp_decoder/~/linear_0": (8, 32),
        "mlp_decoder/~/linear_1": (32, 128),  # mean and log std of 64 pixels
    }
    batch = next(task.datasets.train)
    loss = task.loss(params, jax.random.PRNGKey(1), batch)
    assert np.isfinite(float(loss))
    per_dim = family.task_fn(_cfg(family, center_data=False, per_dim_loss=True))
    np.testing.assert_allclose(
        per_dim.loss(params, jax.random.PRNGKey(1), batch), loss / 64, rtol=1e-5
    )
    # The loss key draws z and the dequantization noise: another key, another loss.
    assert float(task.loss(params, jax.random.PRNGKey(2), batch)) != float(loss)
    assert float(task.normalizer(loss)) == pytest.approx(float(np.clip(loss / 64, 0, 10)))
    assert float(per_dim.normalizer(jnp.asarray(3.0))) == pytest.approx(3.0)
    assert float(per_dim.normalizer(jnp.asarray(jnp.nan))) == pytest.approx(10.0)


def test_vae_likelihood_and_kl_terms():
    x = jnp.asarray([[0.2, 0.6]])
    mean, log_std = jnp.asarray([[0.0, 0.5]]), jnp.asarray([[0.0, np.log(0.5)]])
    key = jax.random.PRNGKey(0)
    noise = jax.random.uniform(key, x.shape, x.dtype, -0.5 / 255, 0.5 / 255)
    xd = np.asarray(x + noise)
    sigma = np.array([1.0, 0.5])
    want = np.sum(
        -0.5 * ((xd - np.array([0.0, 0.5])) / sigma) ** 2
        - np.log(sigma)
        - 0.5 * np.log(2 * np.pi)
        + np.log(1 / 255)
    )
    got = quantized_normal_log_prob(x, mean, log_std, key)
    np.testing.assert_allclose(got, [want], rtol=1e-5)
    np.testing.assert_allclose(gaussian_kl(jnp.zeros((1, 3)), jnp.zeros((1, 3))), [0.0])
    # KL(N(1, 0.5^2) || N(0, 1)) = 0.5 (0.25 + 1 - 1 - 2 log 0.5).
    kl = gaussian_kl(jnp.ones((1, 1)), jnp.full((1, 1), np.log(0.5)))
    np.testing.assert_allclose(kl, [0.5 * (0.25 - 2 * np.log(0.5))], rtol=1e-5)


def test_adam_lowers_the_vae_family_loss(vae_family):
    family = vae_family
    task = family.task_fn(_cfg(family, center_data=False, per_dim_loss=True))
    losses = _adam_losses(task, lr=1e-2)
    assert np.all(np.isfinite(losses))
    # The per-pixel negative ELBO falls from about 16 to under 6.
    assert losses[-1] < 0.5 * losses[0]


# -- samplers ---------------------------------------------------------------------------------


def test_generative_samplers_are_deterministic_and_in_range():
    aes = [sample_image_mlp_ae(jax.random.PRNGKey(i)) for i in range(30)]
    vaes = [sample_image_mlp_vae(jax.random.PRNGKey(i)) for i in range(30)]
    assert aes[4] == sample_image_mlp_ae(jax.random.PRNGKey(4))
    assert vaes[4] == sample_image_mlp_vae(jax.random.PRNGKey(4))
    assert len(set(aes)) > 20 and len(set(vaes)) > 20
    for c in aes:
        assert c.kind == "mlp_ae" and c.dataset == "digits"
        assert 4 <= c.image_size <= 32 and 4 <= c.batch_size <= 512
        assert len(c.hidden) <= 4 and all(8 <= h <= 128 for h in c.hidden)
    for c in vaes:
        assert c.kind == "mlp_vae" and 2 <= c.latent_size <= 128
        assert len(c.hidden) <= 4 and len(c.decoder_hidden) <= 4
        assert all(4 <= h <= 128 for h in c.hidden + c.decoder_hidden)
    family = vaes[0].make()
    assert isinstance(family, ParametricImageMLPVAE)
    assert family.latent_size == vaes[0].latent_size
    assert family.dec_hidden_sizes == vaes[0].decoder_hidden
    assert family.datasets.abstract_batch["image"].shape[1:3] == (vaes[0].image_size,) * 2
    assert isinstance(lopt_tasks.SampledImageMLPAEFamily(seed=4), ParametricImageMLPAE)
    assert lopt_tasks.SampledImageMLPVAEFamily(seed=4).name == vaes[4].make().name


def test_registered_families_are_listed():
    import lopt_core

    families = lopt_core.list_task_families()
    for name in (
        "ImageMLPAEFamily_Digits8",
        "ImageMLPVAEFamily_Digits8",
        "SampledImageMLPAEFamily",
        "SampledImageMLPVAEFamily",
    ):
        assert name in families, name


# -- conv kernel sizes and strides ----------------------------------------------------------


def _feature_maps(network, images):
    """The output shape of every Conv2D when `network(images)` runs."""
    shapes = []

    def record(next_f, args, kwargs, context):
        out = next_f(*args, **kwargs)
        if isinstance(context.module, hk.Conv2D) and context.method_name == "__call__":
            shapes.append(out.shape)
        return out

    def run(x):
        with hk.intercept_methods(record):
            return network(x)

    hk.transform(run).init(jax.random.PRNGKey(0), images)
    return shapes


def test_conv_strides_set_the_feature_map_sizes(digits):
    images = jnp.ones((2, 8, 8, 1))
    default = ConvTask(digits, [4, 6, 5])
    assert default.kernel_sizes == (3, 3, 3) and default.strides == (2, 1, 1)
    assert _feature_maps(default._network, images) == [(2, 4, 4, 4), (2, 4, 4, 6), (2, 4, 4, 5)]
    # "SAME" padding: a stride s maps size n to ceil(n / s): 8 -> 8 -> 3 -> 2 for (1, 3, 2).
    strided = ConvTask(digits, [4, 6, 5], kernel_sizes=[5, (1, 3), 3], strides=[1, 3, (2, 1)])
    assert _feature_maps(strided._network, images) == [(2, 8, 8, 4), (2, 3, 3, 6), (2, 2, 3, 5)]
    params = strided.init(jax.random.PRNGKey(0))
    assert params["conv2_d_1"]["w"].shape == (1, 3, 4, 6)


def test_parametric_conv_kernel_sizes_and_strides(digits):
    family = ParametricImageConv(digits, 10, [4, 6], kernel_sizes=[(5, 5), 1], strides=[1, 2])
    cfg = family.sample(jax.random.PRNGKey(0))
    params = family.task_fn(cfg).init(jax.random.PRNGKey(0))
    assert params["conv2_d"]["w"].shape == (5, 5, 1, 4)
    assert params["conv2_d_1"]["w"].shape == (1, 1, 4, 6)

    def forward(x):
        return family._forward(cfg, x)

    assert _feature_maps(forward, jnp.ones((2, 8, 8, 1))) == [(2, 8, 8, 4), (2, 4, 4, 6)]
    task = family.task_fn(cfg)
    loss = task.loss(params, jax.random.PRNGKey(1), next(digits.train))
    assert np.isfinite(float(loss))
    built = ImageFamilyConfig("conv", "digits", 8, 16, (4, 6), strides=(1, 2)).make()
    assert built.strides == (1, 2) and built.kernel_sizes == (3, 3)
    assert built.name == "ParametricCONV_digits8_bs16_4x6_s1x2"


def test_conv_defaults_are_the_old_network(digits):
    # The layout before kernel_sizes / strides existed: 3x3 convs, stride 2 then 1.
    task = lopt_tasks.Conv_Digits8_16x32()

    def old(images):
        x = images
        for i, ch in enumerate((16, 32)):
            x = jax.nn.relu(hk.Conv2D(ch, 3, stride=2 if i == 0 else 1)(x))
        return hk.Linear(10)(jnp.mean(x, axis=(1, 2)))

    batch = next(task.datasets.train)
    old_net = hk.transform(old)
    # Both jitted, as the task's init and apply are: equal bit for bit.
    old_params = jax.jit(old_net.init)(jax.random.PRNGKey(0), batch["image"])
    params = task.init(jax.random.PRNGKey(0))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(old_params)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(old_params)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        task._mod.apply(params, None, batch["image"]),
        jax.jit(old_net.apply)(old_params, None, batch["image"]),
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"kernel_sizes": [3]},
            ValueError,
            r"ConvTask: kernel_sizes has 1 entries but hidden_sizes has 2 \(\(4, 6\)\); give one",
        ),
        ({"strides": [1, 2, 2]}, ValueError, "strides has 3 entries but hidden_sizes has 2"),
        ({"strides": 2}, TypeError, "strides must be a sequence with one entry per conv layer"),
        ({"kernel_sizes": [3, 0]}, ValueError, r"kernel_sizes\[1\] must be a positive integer"),
        ({"kernel_sizes": [3, (1, 2, 3)]}, ValueError, r"\(height, width\) pair"),
    ],
)
def test_conv_layout_errors(digits, kwargs, error, match):
    with pytest.raises(error, match=match):
        ConvTask(digits, [4, 6], **kwargs)


def test_family_errors(digits):
    with pytest.raises(ValueError, match="ParametricImageConv: strides has 1 entries"):
        ParametricImageConv(digits, 10, [4, 6], strides=[1])
    with pytest.raises(ValueError, match="ParametricImageMLPVAE: latent_size must be a positive"):
        ParametricImageMLPVAE(digits, latent_size=0)
    with pytest.raises(ValueError, match=r"ParametricImageMLPAE: hidden_sizes\[0\]"):
        ParametricImageMLPAE(digits, (0,))
    with pytest.raises(ValueError, match="kind 'mlp_vae' needs decoder_hidden and latent_size"):
        ImageFamilyConfig("mlp_vae", "digits", 8, 16, (8,)).make()
    with pytest.raises(ValueError, match="ImageFamilyConfig: kind must be one of"):
        ImageFamilyConfig("gan", "digits", 8, 16, (8,)).make()
    with pytest.raises(ValueError, match="Unknown image datasets"):
        sample_image_mlp_vae(jax.random.PRNGKey(0), datasets=("imagenet",))
