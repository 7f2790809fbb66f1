"""Saving and loading theta with the architecture and its config."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core
from lopt_core import CheckpointError
from lopt_learned import (
    AdafacMLPLOpt,
    LearnableAdam,
    MLPLOpt,
    NNAdam,
    RNNMLPLOpt,
    load_learned_optimizer,
    save_learned_optimizer,
)

PLUGIN = "lopt-learned"


def _names():
    entries = lopt_core.REGISTRY.entries("learned_optimizers")
    return sorted(n for n, e in entries.items() if e.plugin == PLUGIN)


@pytest.mark.parametrize("name", _names())
def test_round_trip_rebuilds_architecture_config_and_theta(tmp_path, name):
    lopt = lopt_core.get_learned_optimizer(name)
    theta = jax.tree_util.tree_map(
        lambda x: x + 0.25, lopt.init(jax.random.PRNGKey(3))
    )  # a "trained" theta, unlike init
    path = save_learned_optimizer(tmp_path / f"{name}.lopt", lopt, theta, {"step": 7})
    loaded = load_learned_optimizer(path)
    assert type(loaded.lopt) is type(lopt)
    assert lopt_core.checkpoint.config_of(loaded.lopt) == lopt_core.checkpoint.config_of(lopt)
    assert loaded.metadata["step"] == 7
    assert jax.tree_util.tree_structure(loaded.theta) == jax.tree_util.tree_structure(theta)
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded.theta, theta)


def test_config_is_restored_from_the_file_alone(tmp_path):
    lopt = MLPLOpt(exp_mult=0.01, step_mult=0.1, hidden_size=8, hidden_layers=1)
    theta = lopt.init(jax.random.PRNGKey(0))
    save_learned_optimizer(tmp_path / "t.lopt", lopt, theta)
    loaded = load_learned_optimizer(tmp_path / "t.lopt", expected=MLPLOpt)
    assert (loaded.lopt.exp_mult, loaded.lopt.step_mult) == (0.01, 0.1)
    assert loaded.theta["mlp/~/linear_0"]["w"].shape == (19, 8)
    params = {"w": jnp.ones((3, 2))}
    opt_a, opt_b = lopt.opt_fn(theta), loaded.lopt.opt_fn(loaded.theta)
    sa = opt_a.update(opt_a.init(params), params)
    sb = opt_b.update(opt_b.init(params), params)
    np.testing.assert_array_equal(opt_a.get_params(sa)["w"], opt_b.get_params(sb)["w"])

    ada = AdafacMLPLOpt(initial_momentum_decays=(0.5, 0.9, 0.99))
    save_learned_optimizer(tmp_path / "a.lopt", ada, ada.init(jax.random.PRNGKey(0)))
    again = AdafacMLPLOpt(initial_momentum_decays=(0.5, 0.9, 0.99))
    loaded = load_learned_optimizer(tmp_path / "a.lopt", expected=again)
    assert loaded.lopt.initial_momentum_decays == (0.5, 0.9, 0.99)
    with pytest.raises(CheckpointError, match="with config"):
        load_learned_optimizer(tmp_path / "a.lopt", expected=AdafacMLPLOpt())


def test_file_from_another_architecture_is_refused(tmp_path):
    adam = LearnableAdam()
    save_learned_optimizer(tmp_path / "adam.lopt", adam, adam.init(jax.random.PRNGKey(0)))
    with pytest.raises(CheckpointError, match="holds a LearnableAdam theta, not a MLPLOpt one"):
        load_learned_optimizer(tmp_path / "adam.lopt", expected=MLPLOpt())
    with pytest.raises(CheckpointError, match="holds a LearnableAdam theta, not a NNAdam one"):
        load_learned_optimizer(tmp_path / "adam.lopt", expected=NNAdam)
    small = MLPLOpt(hidden_size=8)
    save_learned_optimizer(tmp_path / "small.lopt", small, small.init(jax.random.PRNGKey(0)))
    with pytest.raises(CheckpointError, match="with config"):
        load_learned_optimizer(tmp_path / "small.lopt", expected=MLPLOpt())


def test_theta_of_another_architecture_under_a_producer_is_refused(tmp_path):
    # A file claiming to be an MLPLOpt but holding an RNNMLPLOpt theta.
    rnn = RNNMLPLOpt()
    lopt_core.save(tmp_path / "mixed.lopt", rnn.init(jax.random.PRNGKey(0)), producer=MLPLOpt())
    with pytest.raises(CheckpointError, match="does not match the expected tree"):
        load_learned_optimizer(tmp_path / "mixed.lopt")


def test_plain_checkpoint_without_producer_is_refused(tmp_path):
    lopt_core.save(tmp_path / "plain.lopt", {"w": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match="records no learned optimizer"):
        load_learned_optimizer(tmp_path / "plain.lopt")


def test_corrupted_and_truncated_files_are_refused(tmp_path):
    lopt = MLPLOpt()
    path = save_learned_optimizer(tmp_path / "t.lopt", lopt, lopt.init(jax.random.PRNGKey(0)))
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "bad.lopt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_learned_optimizer(tmp_path / "bad.lopt")
    (tmp_path / "short.lopt").write_bytes(bytes(data[:20]))
    with pytest.raises(CheckpointError, match="not a lopt checkpoint"):
        load_learned_optimizer(tmp_path / "short.lopt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_learned_optimizer(tmp_path / "missing.lopt")
