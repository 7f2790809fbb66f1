"""Learned optimizers are declarations: equality, hashing, static jit arguments, validation, repr."""

from __future__ import annotations

import dataclasses
import functools
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core
from lopt_core import CheckpointError
from lopt_core.testing import count_compiles
from lopt_learned import (
    CATALOG,
    AdafacMLPLOpt,
    Celo,
    Celo2,
    HParamControllerLOPT,
    HyperV2,
    LearnableAdam,
    LearnableSGD,
    LearnableSGDM,
    MetaSGDWD,
    MLPLOpt,
    MuAdafacMLPLOpt,
    NNAdam,
    PerParamMLP,
    RNNMLPLOpt,
    load_learned_optimizer,
    save_learned_optimizer,
)

NAMES = sorted(CATALOG.names("learned_optimizers"))
FACTORIES = CATALOG.factories("learned_optimizers")


@pytest.mark.parametrize("name", NAMES)
def test_equal_configurations_compare_and_hash_equal(name):
    cls = FACTORIES[name]
    a, b = cls(), cls()
    assert dataclasses.is_dataclass(a)
    assert a == b and a is not b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.hidden_size = 3  # type: ignore[misc]
    # The configuration is the fields, all of them recorded.
    fields = [f.name for f in dataclasses.fields(a)]
    assert list(lopt_core.config_of(a)) == fields


def test_another_configuration_differs():
    assert MLPLOpt(hidden_size=8) != MLPLOpt()
    assert hash(LearnableSGD(0.1)) != hash(LearnableSGD(0.2))
    # Sequences are normalised to tuples, so a list gives an equal, hashable config.
    listed = AdafacMLPLOpt(initial_momentum_decays=[0.5, 0.9, 0.99])
    assert listed == AdafacMLPLOpt(initial_momentum_decays=(0.5, 0.9, 0.99))
    assert listed.initial_momentum_decays == (0.5, 0.9, 0.99)
    assert hash(listed) == hash(AdafacMLPLOpt(initial_momentum_decays=(0.5, 0.9, 0.99)))
    assert RNNMLPLOpt(decays=[0.9]).decays == (0.9,)
    assert MLPLOpt(hidden_size=8.0).hidden_size == 8
    assert type(MLPLOpt(hidden_size=8.0).hidden_size) is int


@functools.partial(jax.jit, static_argnums=0)
def _one_step(lopt, theta, params):
    opt = lopt.opt_fn(theta)
    state = opt.init(params)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    return opt.get_params(opt.update(state, grads, loss=jnp.asarray(1.0)))


@pytest.mark.parametrize(
    ("make", "other"),
    [
        (lambda: LearnableSGD(0.1), lambda: LearnableSGD(0.2)),
        (lambda: MLPLOpt(hidden_size=8), lambda: MLPLOpt(hidden_size=8, step_mult=0.01)),
        (lambda: HParamControllerLOPT(hidden_size=4), lambda: HParamControllerLOPT(hidden_size=5)),
    ],
)
def test_an_equal_new_instance_does_not_recompile_a_jit_taking_it_as_static(make, other):
    params = {"w": jnp.full((3, 2), 0.5)}
    theta = make().init(jax.random.PRNGKey(0))
    first = _one_step(make(), theta, params)
    with count_compiles() as compiles:
        again = _one_step(make(), theta, params)  # a new, equal instance
    assert compiles["n"] == 0
    np.testing.assert_array_equal(first["w"], again["w"])
    other_theta = other().init(jax.random.PRNGKey(0))
    with count_compiles() as compiles:
        moved = _one_step(other(), other_theta, params)
    assert compiles["n"] == 1
    assert not np.array_equal(moved["w"], first["w"])


def test_the_compiled_theta_init_is_shared_by_equal_instances():
    theta = NNAdam(output_scale=0.02).init(jax.random.PRNGKey(0))
    with count_compiles() as compiles:
        again = NNAdam(output_scale=0.02).init(jax.random.PRNGKey(0))
    assert compiles["n"] == 0
    jax.tree_util.tree_map(np.testing.assert_array_equal, theta, again)


BAD_ARGUMENTS = [
    (LearnableSGD, {"initial_learning_rate": 0}, r"LearnableSGD: initial_learning_rate must be a finite number > 0\.0, got 0\."),
    (LearnableSGD, {"initial_learning_rate": -1e-3}, r"initial_learning_rate must be a finite number > 0\.0"),
    (LearnableSGDM, {"initial_learning_rate": float("nan")}, r"LearnableSGDM: initial_learning_rate must be a finite"),
    (LearnableSGDM, {"initial_momentum": 1.0}, r"LearnableSGDM: initial_momentum must be a finite number >= 0\.0 and < 1\.0, got 1\.0"),
    (LearnableAdam, {"initial_learning_rate": 0.0}, r"LearnableAdam: initial_learning_rate must be a finite number > 0\.0"),
    (LearnableAdam, {"initial_b1": 1.0}, r"LearnableAdam: initial_b1 must be a finite number >= 0\.0 and < 1\.0"),
    (LearnableAdam, {"initial_b2": -0.1}, r"LearnableAdam: initial_b2 must be a finite number >= 0\.0 and < 1\.0"),
    (LearnableAdam, {"initial_eps": 0.0}, r"LearnableAdam: initial_eps must be a finite number > 0\.0"),
    (MetaSGDWD, {"initial_learning_rate": 0}, r"MetaSGDWD: initial_learning_rate must be a finite number > 0\.0"),
    (MetaSGDWD, {"initial_weight_decay": 0}, r"MetaSGDWD: initial_weight_decay must be a finite number > 0\.0"),
    (MLPLOpt, {"hidden_size": 0}, r"MLPLOpt: hidden_size must be a positive integer, got 0\."),
    (MLPLOpt, {"hidden_size": 2.5}, r"MLPLOpt: hidden_size must be a positive integer, got 2\.5\."),
    (MLPLOpt, {"hidden_layers": -1}, r"MLPLOpt: hidden_layers must be an integer >= 0, got -1\."),
    (MLPLOpt, {"step_mult": 0.0}, r"MLPLOpt: step_mult must be a finite number > 0\.0"),
    (MLPLOpt, {"exp_mult": -1.0}, r"MLPLOpt: exp_mult must be a finite number >= 0\.0"),
    (AdafacMLPLOpt, {"hidden_size": 0}, r"AdafacMLPLOpt: hidden_size must be a positive integer"),
    (AdafacMLPLOpt, {"initial_rms_decays": (0.9, 0.99)}, r"AdafacMLPLOpt: initial_rms_decays must hold exactly 1 decay"),
    (AdafacMLPLOpt, {"initial_adafactor_decays": (0.9,)}, r"AdafacMLPLOpt: initial_adafactor_decays must hold exactly 3 decay"),
    (AdafacMLPLOpt, {"initial_momentum_decays": (0.9, 1.0, 0.999)}, r"AdafacMLPLOpt: initial_momentum_decays\[1\] must be a finite number >= 0\.0 and < 1\.0"),
    (AdafacMLPLOpt, {"initial_momentum_decays": ()}, r"AdafacMLPLOpt: initial_momentum_decays must hold at least one decay"),
    (PerParamMLP, {"decay": 1.5}, r"PerParamMLP: decay must be a finite number >= 0\.0 and < 1\.0, got 1\.5"),
    (PerParamMLP, {"hidden_size": 0}, r"PerParamMLP: hidden_size must be a positive integer"),
    (NNAdam, {"initial_learning_rate": 0.0}, r"NNAdam: initial_learning_rate must be a finite number > 0\.0"),
    (NNAdam, {"initial_b1": 1.0}, r"NNAdam: initial_b1 must be a finite number >= 0\.0 and < 1\.0"),
    (NNAdam, {"initial_eps": -1e-8}, r"NNAdam: initial_eps must be a finite number > 0\.0"),
    (NNAdam, {"output_scale": -0.01}, r"NNAdam: output_scale must be a finite number >= 0\.0"),
    (RNNMLPLOpt, {"step_mult": 0.0}, r"RNNMLPLOpt: step_mult must be a finite number > 0\.0"),
    (RNNMLPLOpt, {"hidden_layers": -1}, r"RNNMLPLOpt: hidden_layers must be an integer >= 0"),
    (RNNMLPLOpt, {"lstm_hidden_size": 0}, r"RNNMLPLOpt: lstm_hidden_size must be a positive integer"),
    (RNNMLPLOpt, {"from_mlp_size": 0}, r"RNNMLPLOpt: from_mlp_size must be a positive integer"),
    (RNNMLPLOpt, {"decays": ()}, r"RNNMLPLOpt: decays must hold at least one decay"),
    (HParamControllerLOPT, {"hidden_size": 0}, r"HParamControllerLOPT: hidden_size must be a positive integer, got 0\."),
    (MLPLOpt, {"step_bound": 0.0}, r"MLPLOpt: step_bound must be a finite number > 0\.0, got 0\.0"),
    (Celo2, {"hidden_size": 1}, r"Celo2: hidden_size must be >= 2 \(two units carry the initial Adam direction\), got 1"),
    (Celo, {"learning_rate": 0.0}, r"Celo: learning_rate must be a finite number > 0\.0, got 0\.0"),
    (MuAdafacMLPLOpt, {"base_fan_in": 0}, r"MuAdafacMLPLOpt: base_fan_in must be a positive integer, got 0"),
    (HyperV2, {"param_inits": 0}, r"HyperV2: param_inits must be a positive integer, got 0"),
]  # fmt: skip


@pytest.mark.parametrize(("cls", "kwargs", "message"), BAD_ARGUMENTS)
def test_bad_constructor_arguments_raise_naming_the_argument(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_wrongly_typed_arguments_raise_naming_the_argument():
    with pytest.raises(
        TypeError, match=r"LearnableAdam: initial_eps must be a number, got the bool"
    ):
        LearnableAdam(initial_eps=True)
    with pytest.raises(
        TypeError, match=r"AdafacMLPLOpt: initial_momentum_decays must be a sequence"
    ):
        AdafacMLPLOpt(initial_momentum_decays=0.9)
    with pytest.raises(ValueError, match=r"MLPLOpt: hidden_size must be a positive integer"):
        MLPLOpt(hidden_size="32")


def test_every_architecture_refuses_a_bad_argument():
    """The table covers every catalogued architecture."""
    assert {cls.__name__ for cls, _, _ in BAD_ARGUMENTS} == set(NAMES)


def test_reprs_show_the_configuration_and_not_theta():
    lopt = MLPLOpt()
    assert repr(lopt) == "MLPLOpt()"
    assert repr(MLPLOpt(hidden_size=64)) == "MLPLOpt(hidden_size=64)"
    assert repr(LearnableSGD(0.1)) == "LearnableSGD(initial_learning_rate=0.1)"
    theta = lopt.init(jax.random.PRNGKey(0))
    opt = lopt.opt_fn(theta)
    assert repr(opt) == f"{lopt!r}.opt_fn(theta: 1762 floats)"
    assert repr(lopt.opt_fn(theta, is_training=True)).endswith(
        ".opt_fn(theta: 1762 floats, is_training=True)"
    )
    assert opt.name == "MLPLOpt_opt"
    seen = []

    @jax.jit
    def traced(th):
        seen.append(repr(lopt.opt_fn(th)))
        return th

    traced(theta)
    assert seen == [f"{lopt!r}.opt_fn(theta: 1762 floats)"]


def test_a_loaded_learned_optimizer_prints_compactly(tmp_path):
    lopt = MLPLOpt(hidden_size=8)
    save_learned_optimizer(tmp_path / "t.lopt", lopt, lopt.init(jax.random.PRNGKey(0)), {"step": 3})
    text = repr(load_learned_optimizer(tmp_path / "t.lopt"))
    assert text == (
        "LoadedLearnedOptimizer(MLPLOpt(hidden_size=8), theta=250 params, metadata={step})"
    )


def test_a_recorded_config_that_fails_validation_names_the_field(tmp_path):
    theta = MLPLOpt().init(jax.random.PRNGKey(0))
    producer = {"class": "lopt_learned.mlp_lopt:MLPLOpt", "config": {"hidden_size": 0}}
    lopt_core.save(tmp_path / "bad.lopt", theta, {"producer": producer})
    with pytest.raises(
        CheckpointError, match=r"does not build a MLPLOpt: MLPLOpt: hidden_size must be a positive"
    ):
        load_learned_optimizer(tmp_path / "bad.lopt")
    producer["config"] = {"width": 32}
    lopt_core.save(tmp_path / "unknown.lopt", theta, {"producer": producer})
    with pytest.raises(CheckpointError, match=r"does not build a MLPLOpt: .*'width'"):
        load_learned_optimizer(tmp_path / "unknown.lopt")


def test_theta_is_checked_against_the_structure_init_gives():
    """The theta schema comes from init: sizes, not only the top-level keys, must match."""
    small = MLPLOpt(hidden_size=8)
    with pytest.raises(
        ValueError,
        match=r"MLPLOpt\.opt_fn: theta does not match MLPLOpt\.init's: path "
        r"\['mlp/~/linear_0'\]\['b'\] has shape \(32,\), expected \(8,\)",
    ):
        small.opt_fn(MLPLOpt().init(jax.random.PRNGKey(0)))
    with pytest.raises(ValueError, match=r"theta must be the dict that LearnableSGD\.init returns"):
        LearnableSGD().opt_fn(jnp.zeros(()))
    # Python numbers are fine where init gives scalars.
    opt = LearnableSGD().opt_fn({"log_lr": -2.0})
    state = opt.update(opt.init({"w": jnp.ones(2)}), {"w": jnp.ones(2)})
    np.testing.assert_allclose(opt.get_params(state)["w"], 1.0 - np.exp(-2.0), rtol=1e-6)


def test_the_driver_keeps_model_state_counts_and_forwards_needs_loss():
    lopt = LearnableSGD(0.5)
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    assert opt.needs_loss is False and lopt_core.validation.needs_loss(opt) is False
    assert RNNMLPLOpt().opt_fn(RNNMLPLOpt().init(jax.random.PRNGKey(0))).needs_loss is True
    state = opt.init({"w": jnp.ones(2)}, model_state={"bn": jnp.zeros(1)})
    state = opt.update(state, {"w": jnp.ones(2)})
    assert int(state.iteration) == 1
    np.testing.assert_array_equal(opt.get_state(state)["bn"], [0.0])
    state = opt.update(state, {"w": jnp.ones(2)}, model_state={"bn": jnp.ones(1)})
    assert int(state.iteration) == 2
    np.testing.assert_array_equal(opt.get_state(state)["bn"], [1.0])
    np.testing.assert_allclose(opt.get_params(state)["w"], [0.0, 0.0], atol=1e-7)
    moved = opt.set_params(state, {"w": jnp.full(2, 3.0)})
    np.testing.assert_array_equal(opt.get_params(moved)["w"], [3.0, 3.0])
    with pytest.raises(ValueError, match="parameter tree has no array leaves"):
        opt.init({})


def test_a_validation_step_reads_no_gradients():
    lopt = RNNMLPLOpt()
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    after = opt.update(state, None, loss=2.0, is_valid=True)
    assert int(after.iteration) == 1
    np.testing.assert_array_equal(opt.get_params(after)["w"], params["w"])
    assert int(after.valid_loss_accum.updates) == 1
    with pytest.raises(ValueError, match="the gradients do not match the parameters"):
        opt.update(state, None, loss=2.0)
