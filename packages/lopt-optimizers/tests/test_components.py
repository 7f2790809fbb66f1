"""Optimizers are declarations: equal configurations are equal, hashable and share compiles."""

import jax
import jax.numpy as jnp
import optax
import pytest

import lopt_core
import lopt_optimizers
from lopt_core.testing import count_compiles
from lopt_optimizers import (
    CATALOG,
    SGD,
    Adafactor,
    Adam,
    AdamW,
    GradientClipOptimizer,
    GraftedOptimizer,
    OptaxOptimizer,
)


def test_equal_configurations_compare_and_hash_equal():
    assert Adam(1e-3) == Adam(1e-3)
    assert hash(Adam(1e-3)) == hash(Adam(1e-3))
    assert Adam(1e-3) != Adam(2e-3)
    assert GradientClipOptimizer(Adam(1e-3), 1.0) == GradientClipOptimizer(Adam(1e-3), 1.0)
    assert hash(GraftedOptimizer(Adam(), SGD())) == hash(GraftedOptimizer(Adam(), SGD()))
    assert len({Adam(1e-3), Adam(1e-3), SGD(1e-3)}) == 2


def test_an_equal_new_instance_does_not_recompile_a_jit_taking_it_as_static():
    def step(opt, params, grads):
        state = opt.init(params)
        return opt.get_params(opt.update(state, grads))

    jitted = jax.jit(step, static_argnums=0)
    params, grads = {"w": jnp.ones(3)}, {"w": jnp.full(3, 0.5)}
    first = jitted(GradientClipOptimizer(Adam(1e-2), 1.0), params, grads)
    with count_compiles() as c:
        second = jitted(GradientClipOptimizer(Adam(1e-2), 1.0), params, grads)
    assert c["n"] == 0
    assert jnp.array_equal(first["w"], second["w"])
    with count_compiles() as c:
        jitted(GradientClipOptimizer(Adam(1e-1), 1.0), params, grads)
    assert c["n"] == 1


def test_repr_shows_the_configuration_changed_from_the_defaults():
    assert repr(Adam(1e-3)) == "Adam(learning_rate=0.001)"
    assert repr(Adam()) == "Adam()"
    assert repr(GradientClipOptimizer(SGD(0.1), 2.0)) == (
        "GradientClipOptimizer(opt=SGD(learning_rate=0.1), grad_clip=2.0)"
    )


def test_a_checkpoint_records_every_argument_or_refuses_naming_the_field(tmp_path):
    mask = lambda params: jax.tree_util.tree_map(lambda p: p.ndim > 1, params)  # noqa: E731
    with pytest.raises(lopt_core.ConfigError, match=r"AdamW\.mask = .* cannot be recorded"):
        lopt_core.save(tmp_path / "a", {"w": jnp.ones(1)}, producer=AdamW(mask=mask))
    assert not (tmp_path / "a").exists()
    ada = Adafactor(1e-2, min_dim_size_to_factor=64, decay_offset=3, dtype_momentum="bfloat16")
    lopt_core.save(tmp_path / "b", {"w": jnp.ones(1)}, producer=ada)
    config = lopt_core.load_metadata(tmp_path / "b")["producer"]["config"]
    assert config == {
        "learning_rate": 0.01,
        "min_dim_size_to_factor": 64,
        "decay_rate": 0.8,
        "decay_offset": 3,
        "multiply_by_parameter_scale": True,
        "clipping_threshold": 1.0,
        "momentum": None,
        "dtype_momentum": "bfloat16",
        "weight_decay_rate": None,
        "eps": 1e-30,
        "factored": True,
        "weight_decay_mask": None,
    }
    assert Adafactor(**config) == ada
    clip = GradientClipOptimizer(Adam(1e-3), 1.0)
    assert lopt_core.config_of(clip)["opt"]["config"]["learning_rate"] == 0.001


def test_wrappers_forward_needs_loss():
    hungry = OptaxOptimizer(optax.sgd(0.1), needs_loss=True)
    assert GradientClipOptimizer(hungry).needs_loss is True
    assert GraftedOptimizer(SGD(), hungry).needs_loss is True
    assert GraftedOptimizer(SGD(), Adam()).needs_loss is False
    assert lopt_optimizers.GradientAccumulator(hungry).needs_loss is True


def test_the_catalog_is_the_registry_entries_and_the_public_names():
    entries = lopt_core.REGISTRY.entries("optimizers")
    mine = sorted(n for n, e in entries.items() if e.plugin == "lopt-optimizers")
    assert mine == sorted(CATALOG.names("optimizers"))
    assert set(CATALOG.exported_names()) <= set(lopt_optimizers.__all__)
    for name, factory in CATALOG.factories("optimizers").items():
        assert entries[name].factory is factory


def test_adafactor_keeps_its_momentum_dtype_as_a_name():
    ada = Adafactor(momentum=0.9, dtype_momentum=jnp.bfloat16)
    assert ada == Adafactor(momentum=0.9, dtype_momentum="bfloat16")
    assert ada.dtype_momentum == "bfloat16"
    assert lopt_core.config_of(ada)["dtype_momentum"] == "bfloat16"
    state = ada.init({"w": jnp.ones((2, 3))})
    momentum = [x for x in state.optax_opt_state if hasattr(x, "ema")]
    assert [m.ema["w"].dtype for m in momentum] == [jnp.bfloat16]
