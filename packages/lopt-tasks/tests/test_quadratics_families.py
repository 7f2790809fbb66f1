import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt_tasks import (
    BatchQuadraticTask,
    FixedDimQuadraticFamily,
    FixedDimQuadraticFamilyData,
    ImageConvFamily_Digits8,
    ImageMLPFamily_Digits8,
    NoisyMeanQuadraticTask,
    NoisyQuadraticFamily,
    QuadraticTask,
    sample_image_conv,
    sample_image_mlp,
)
from lopt_tasks._sampling import ACTIVATIONS, INITIALIZERS


def test_quadratic_task_values():
    task = QuadraticTask(4)
    params = task.init(jax.random.PRNGKey(0))
    assert params.shape == (4,)
    assert float(task.loss(jnp.ones(4), None, None)) == 4.0
    with pytest.raises(ValueError, match="positive dim"):
        QuadraticTask(0)


def test_batch_and_noisy_mean_quadratics():
    task = BatchQuadraticTask()
    assert next(task.datasets.train).shape == (4, 2)
    assert float(task.loss(jnp.ones(10), None, next(task.datasets.train))) == 10.0
    noisy = NoisyMeanQuadraticTask(dim=3, batch_size=2048, noise_std=0.1)
    batch = noisy.datasets.sample("train", jax.random.PRNGKey(0))
    loss_at_target = float(noisy.loss(jnp.asarray(noisy.target), None, batch))
    assert loss_at_target < 1e-3


def test_fixed_dim_families():
    family = FixedDimQuadraticFamily(5)
    cfg = family.sample(jax.random.PRNGKey(0))
    task = family.task_fn(cfg)
    assert float(task.loss(cfg, None, None)) == 0.0
    data_family = FixedDimQuadraticFamilyData(5)
    batch = next(data_family.datasets.train)
    assert np.shape(batch) == ()
    dtask = data_family.task_fn(cfg)
    assert float(dtask.loss(cfg, None, batch)) == pytest.approx(float(batch))
    assert float(dtask.normalizer(jnp.asarray(5000.0))) == 1000.0
    _, aux = dtask.loss_and_aux(jnp.ones(5), None, batch)
    assert float(aux["l2"]) == 1.0


def test_noisy_quadratic_family_noise_is_only_in_the_gradient():
    family = NoisyQuadraticFamily(dim=4, cov=0.5)
    center, scale = family.sample(jax.random.PRNGKey(0))
    assert float(scale.min()) >= 0.0 and float(scale.max()) < 25.0
    task = family.task_fn((center, scale))
    l1, g1 = jax.value_and_grad(task.loss)(center, jax.random.PRNGKey(1), None)
    l2, g2 = jax.value_and_grad(task.loss)(center, jax.random.PRNGKey(2), None)
    assert float(l1) == 0.0 and float(l2) == 0.0
    assert not np.allclose(g1, g2)


def test_vmapped_tasks_from_traced_cfgs():
    family = ImageMLPFamily_Digits8()
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    cfgs = jax.vmap(family.sample)(keys)
    batch = family.datasets.sample("train", jax.random.PRNGKey(0))

    @jax.jit
    def losses(cfgs, keys):
        def one(cfg, k):
            task = family.task_fn(cfg)
            return task.loss(task.init(k), k, batch)

        return jax.vmap(one)(cfgs, keys)

    out = losses(cfgs, keys)
    assert out.shape == (4,)
    assert bool(jnp.all(jnp.isfinite(out)))
    single = family.task_fn(jax.tree_util.tree_map(lambda x: x[1], cfgs))
    ref = single.loss(single.init(keys[1]), keys[1], batch)
    assert float(out[1]) == pytest.approx(float(ref), rel=1e-4, abs=1e-5)
    assert int(cfgs["activation"].max()) < len(ACTIVATIONS)
    assert int(cfgs["initializer"]["index"].max()) < len(INITIALIZERS)
    params = single.init(keys[1])
    assert params["mlp/~/linear_0"]["w"].shape == (64, 32)
    assert params["mlp/~/linear_1"]["w"].shape == (32, 10)


def test_structure_samplers_are_log_uniform_and_deterministic():
    cfgs = [sample_image_mlp(jax.random.PRNGKey(i)) for i in range(40)]
    assert cfgs[3] == sample_image_mlp(jax.random.PRNGKey(3))
    for c in cfgs:
        assert 4 <= c.image_size <= 32 and 4 <= c.batch_size <= 512
        assert len(c.hidden) <= 4 and all(8 <= h <= 128 for h in c.hidden)
        assert c.dataset == "digits"
    # Log-uniform: about half the batch sizes fall below the geometric middle (~45).
    below = sum(c.batch_size < 45 for c in cfgs)
    assert 10 <= below <= 30
    conv = sample_image_conv(jax.random.PRNGKey(0), datasets=("digits", "cifar10"))
    assert conv.kind == "conv" and conv.dataset in ("digits", "cifar10")
    family = cfgs[0].make()
    assert family.datasets.abstract_batch["image"].shape[1:3] == (cfgs[0].image_size,) * 2
    with pytest.raises(ValueError, match="Unknown image datasets"):
        sample_image_mlp(jax.random.PRNGKey(0), datasets=("imagenet",))


def test_switched_activation_matches_the_sampled_entry():
    from lopt_tasks._sampling import switched_activation

    x = jnp.linspace(-3.0, 3.0, 11)
    for i, fn in enumerate(ACTIVATIONS):
        np.testing.assert_allclose(
            switched_activation(jnp.asarray(i))(x), fn(x), rtol=1e-5, atol=1e-6
        )
    batched = jax.vmap(lambda i: switched_activation(i)(x))(jnp.arange(len(ACTIVATIONS)))
    np.testing.assert_allclose(
        batched, jnp.stack([f(x) for f in ACTIVATIONS]), rtol=1e-5, atol=1e-6
    )


def test_conv_family_samples_the_conv_initializer_but_not_the_head():
    family = ImageConvFamily_Digits8()
    cfg = family.sample(jax.random.PRNGKey(0))
    other = {
        "activation": cfg["activation"],
        "initializer": {
            "index": (cfg["initializer"]["index"] + 1) % len(INITIALIZERS),
            "init_scale": cfg["initializer"]["init_scale"] + 0.5,
        },
    }
    key = jax.random.PRNGKey(1)
    a, b = family.task_fn(cfg).init(key), family.task_fn(other).init(key)
    assert not np.allclose(a["conv2_d"]["w"], b["conv2_d"]["w"])
    np.testing.assert_array_equal(a["linear"]["w"], b["linear"]["w"])


@pytest.mark.parametrize("shape", [(64, 32), (100, 3), (8, 8), (1, 1)])
def test_orthonormalize_is_the_qr_factor_with_positive_diagonal(shape):
    from lopt_tasks._sampling import _orthonormalize

    a = np.asarray(jax.random.normal(jax.random.PRNGKey(3), shape), np.float64)
    q_ref, r = np.linalg.qr(a)
    q_ref = q_ref * np.sign(np.diag(r))
    q = np.asarray(_orthonormalize(jnp.asarray(a, jnp.float32)))
    np.testing.assert_allclose(q, q_ref, atol=2e-6)
    np.testing.assert_allclose(q.T @ q, np.eye(shape[1]), atol=2e-6)


def test_two_sampled_autoencoder_inits_in_one_vmapped_program_finish():
    # The program that hung in jnp.linalg.qr's LAPACK call (jaxlib 0.10 on CPU): two
    # initialisations of a sampled network, every initializer branch traced, under vmap.
    from lopt_tasks.parametric import ImageMLPAEFamily_Digits8

    family = ImageMLPAEFamily_Digits8()

    def two_inits(k):
        task = family.task_fn(family.sample(k))
        return task.init(k), task.init(jax.random.fold_in(k, 1))

    first, second = jax.jit(jax.vmap(two_inits))(jax.random.split(jax.random.PRNGKey(1), 8))
    w0 = first["mlp/~/linear_0"]["w"]
    assert w0.shape[0] == 8 and np.isfinite(np.asarray(w0)).all()
    assert not np.allclose(w0, second["mlp/~/linear_0"]["w"])
