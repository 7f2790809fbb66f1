"""Reading the reference's HyperV2 (VeLO) checkpoints, and `lopt convert reference-checkpoint`.

The files are written here as the reference library writes them:
`flax.serialization.to_bytes` of a `ParameterCheckpoint(params=theta, gen_id,
step)` flax dataclass (learned_optimization's outer_trainers/gradient_learner),
with haiku's `LSTMState` in theta, as `checkpoints.save_state` does.
"""

from __future__ import annotations

import pickle
from typing import Any

import flax
import haiku as hk
import jax
import jax.numpy as jnp
import msgpack
import numpy as np
import pytest
from flax import serialization

import lopt_core
import lopt_learned
from lopt_core import CheckpointError, cli
from lopt_learned import HyperV2, load_reference_checkpoint


@flax.struct.dataclass
class ParameterCheckpoint:
    """The reference's checkpoint record: theta, the generation id and the outer step."""

    params: Any
    gen_id: str
    step: int


SMALL = {"lstm_hidden_size": 16, "param_inits": 8}


def reference_theta():
    """A random theta in the reference's layout, its LSTM state a haiku `LSTMState`.

    HyperV2's init has the reference's names and shapes (test_hyper_v2 checks it
    entry by entry); every entry is then moved by noise, so none is at its init.
    """
    theta = HyperV2(**SMALL).init(jax.random.PRNGKey(3))
    leaves, treedef = jax.tree_util.tree_flatten(theta)
    keys = jax.random.split(jax.random.PRNGKey(4), len(leaves))
    leaves = [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    theta = jax.tree_util.tree_unflatten(treedef, leaves)
    state = theta["lstm_init_state"]
    return {**theta, "lstm_init_state": hk.LSTMState(state["hidden"], state["cell"])}


def write_reference_checkpoint(path, theta, gen_id="gen-7", step=123):
    path.write_bytes(serialization.to_bytes(ParameterCheckpoint(theta, gen_id, step)))
    return path


def one_update(lopt, theta, steps=3):
    opt = lopt.opt_fn(theta)
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(4, 3), "b": jnp.ones(3)}
    state = opt.init(params, num_steps=10)
    for i in range(steps):
        grads = jax.tree_util.tree_map(lambda p, i=i: jnp.cos(p * (i + 1)), state.params)
        state = opt.update(state, grads, loss=2.0 - 0.1 * i)
    return state.params


def as_lopt_theta(theta):
    state = theta["lstm_init_state"]
    return {**theta, "lstm_init_state": {"hidden": state.hidden, "cell": state.cell}}


def test_load_reads_config_theta_and_metadata(tmp_path):
    theta = reference_theta()
    path = write_reference_checkpoint(tmp_path / "params", theta)
    loaded = load_reference_checkpoint(path)
    assert loaded.lopt == HyperV2(**SMALL, bugged_loss_features=False)
    assert loaded.metadata["source_gen_id"] == "gen-7"
    assert loaded.metadata["source_step"] == 123
    assert loaded.metadata["source_file"] == "params"
    want = jax.tree_util.tree_leaves_with_path(as_lopt_theta(theta))
    got = jax.tree_util.tree_leaves_with_path(loaded.theta)
    assert [p for p, _ in got] == [p for p, _ in want]
    for (_, a), (_, b) in zip(got, want):
        np.testing.assert_array_equal(a, b)
    flagged = load_reference_checkpoint(
        path, bugged_loss_features=True, bugged_next_lstm_state=True
    )
    assert flagged.lopt.bugged_loss_features and flagged.lopt.bugged_next_lstm_state


def test_cli_conversion_gives_the_same_updates(tmp_path, capsys):
    theta = reference_theta()
    source = write_reference_checkpoint(tmp_path / "params", theta)
    out = tmp_path / "velo.lopt"
    assert cli.main(["convert", "reference-checkpoint", str(source), str(out)]) == 0
    assert "Wrote" in capsys.readouterr().out
    loaded = lopt_learned.load_learned_optimizer(out)
    assert loaded.lopt == HyperV2(**SMALL, bugged_loss_features=False)
    assert loaded.metadata["source_step"] == 123
    via_api = load_reference_checkpoint(source)
    want = one_update(HyperV2(**SMALL, bugged_loss_features=False), as_lopt_theta(theta))
    for candidate in (loaded, via_api):
        got = one_update(candidate.lopt, candidate.theta)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_array_equal(a, b)
        assert not np.allclose(got["w"], np.linspace(-1.0, 1.0, 12).reshape(4, 3))
    # velo takes the converted file.
    tx = lopt_learned.velo(num_steps=10, theta=str(out))
    assert tx.init({"w": jnp.ones(3)}).num_steps == 10
    # The flags reach the written config.
    flagged = tmp_path / "flagged.lopt"
    argv = ["convert", "reference-checkpoint", str(source), str(flagged), "--bugged-loss-features"]
    assert cli.main(argv) == 0
    assert lopt_learned.load_learned_optimizer(flagged).lopt.bugged_loss_features is True


def test_the_other_reference_layouts(tmp_path):
    theta = reference_theta()
    as_tuple = tmp_path / "tuple.checkpoint"
    as_tuple.write_bytes(serialization.to_bytes((theta, "", 0)))
    bare = tmp_path / "theta"
    bare.write_bytes(serialization.to_bytes(theta))
    for path in (as_tuple, bare):
        loaded = load_reference_checkpoint(path)
        assert loaded.lopt.lstm_hidden_size == 16 and loaded.lopt.param_inits == 8
    default = HyperV2()
    path = write_reference_checkpoint(tmp_path / "big", default.init(jax.random.PRNGKey(0)))
    assert load_reference_checkpoint(path).lopt == HyperV2(bugged_loss_features=False)


def _bad(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_refusals_name_the_problem(tmp_path, capsys):
    theta = reference_theta()
    doc = serialization.to_state_dict(ParameterCheckpoint(theta, "g", 1))

    pickled = _bad(tmp_path, "p.pkl", pickle.dumps({"params": 1}))
    with pytest.raises(CheckpointError, match="looks like a Python pickle.*never read"):
        load_reference_checkpoint(pickled)

    lopt_file = tmp_path / "mine.lopt"
    lopt_learned.save_learned_optimizer(lopt_file, HyperV2(**SMALL), as_lopt_theta(theta))
    with pytest.raises(CheckpointError, match="load_learned_optimizer"):
        load_reference_checkpoint(lopt_file)

    truncated = _bad(tmp_path, "t", serialization.to_bytes(ParameterCheckpoint(theta, "", 0))[:500])
    with pytest.raises(CheckpointError, match="is not a valid msgpack document"):
        load_reference_checkpoint(truncated)

    other = _bad(tmp_path, "o", serialization.msgpack_serialize({"weights": np.zeros(3)}))
    with pytest.raises(CheckpointError, match="not a reference checkpoint's"):
        load_reference_checkpoint(other)

    doc_str = jax.tree_util.tree_map(lambda x: x, doc)
    doc_str["params"]["rnn_params"]["step_size"]["b"] = "import os"
    stringy = _bad(tmp_path, "s", serialization.msgpack_serialize(doc_str))
    with pytest.raises(CheckpointError, match=r"\['step_size'\]\['b'\] is a Python str"):
        load_reference_checkpoint(stringy)

    wide = serialization.to_state_dict(theta)
    wide["rnn_params"]["rnn_to_controls"]["w"] = np.zeros((16, 9), np.float32)
    mismatched = _bad(tmp_path, "m", serialization.msgpack_serialize(wide))
    with pytest.raises(CheckpointError, match=r"rnn_to_controls.*\(16, 8\)"):
        load_reference_checkpoint(mismatched)

    no_bank = {k: v for k, v in serialization.to_state_dict(theta).items() if k != "ff_mod_stack"}
    no_bank = _bad(
        tmp_path,
        "nb",
        serialization.msgpack_serialize({"params": no_bank, "gen_id": "", "step": 0}),
    )
    with pytest.raises(CheckpointError, match=r"no entry \['ff_mod_stack'\]"):
        load_reference_checkpoint(no_bank)

    doubles = jax.tree_util.tree_map(
        lambda x: np.asarray(x, np.float64), serialization.to_state_dict(theta)
    )
    wide_dtype = _bad(tmp_path, "d", serialization.msgpack_serialize(doubles))
    with pytest.raises(CheckpointError, match="float64 array"):
        load_reference_checkpoint(wide_dtype)

    # A msgpack extension that is not an array is refused, never decoded.
    ext = msgpack.packb({"params": msgpack.ExtType(42, b"x"), "gen_id": "", "step": 0})
    with pytest.raises(CheckpointError, match="extension of type 42"):
        load_reference_checkpoint(_bad(tmp_path, "e", ext))

    with pytest.raises(CheckpointError, match="does not exist"):
        load_reference_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="over the limit of max_bytes"):
        load_reference_checkpoint(write_reference_checkpoint(tmp_path / "ok", theta), max_bytes=100)

    assert cli.main(["convert", "reference-checkpoint", str(pickled), str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "lopt convert reference-checkpoint:" in err and "pickle" in err
    assert not (tmp_path / "x").exists()


def test_convert_is_a_registered_command():
    entries = lopt_core.REGISTRY.entries("commands")
    assert entries["convert"].plugin == "lopt-learned"
