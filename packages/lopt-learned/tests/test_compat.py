"""The older spellings of constructor arguments, kept working by `lopt_learned.compat` alone."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import lopt_core
from lopt_learned import (
    LearnableAdam,
    LearnableSGD,
    LearnableSGDM,
    MetaSGDWD,
    NNAdam,
    RNNMLPLOpt,
    compat,
    load_learned_optimizer,
)

OLD_SPELLINGS = [
    (LearnableSGD, {"initial_lr": 0.1}, {"initial_learning_rate": 0.1}),
    (
        LearnableSGDM,
        {"initial_lr": 0.1, "initial_momentum": 0.5},
        {"initial_learning_rate": 0.1, "initial_momentum": 0.5},
    ),
    (
        LearnableAdam,
        {"initial_lr": 1e-2, "initial_beta1": 0.8, "initial_beta2": 0.99, "initial_epsilon": 1e-6},
        {"initial_learning_rate": 1e-2, "initial_b1": 0.8, "initial_b2": 0.99, "initial_eps": 1e-6},
    ),
    (
        MetaSGDWD,
        {"initial_lr": 1e-2, "initial_wd": 1e-3},
        {"initial_learning_rate": 1e-2, "initial_weight_decay": 1e-3},
    ),
    (
        NNAdam,
        {"initial_beta1": 0.8, "initial_beta2": 0.99, "initial_epsilon": 1e-6},
        {"initial_b1": 0.8, "initial_b2": 0.99, "initial_eps": 1e-6},
    ),
    (
        RNNMLPLOpt,
        {"step_multiplier": 0.01, "magnitude_rate": 0.02, "hidden_layer": 1},
        {"step_mult": 0.01, "exp_mult": 0.02, "hidden_layers": 1},
    ),
]


@pytest.mark.parametrize(("cls", "old", "new"), OLD_SPELLINGS)
def test_the_old_spelling_builds_the_same_configuration(cls, old, new):
    built = cls(**old)
    assert built == cls(**new)
    assert hash(built) == hash(cls(**new))
    for name, value in new.items():
        assert getattr(built, name) == value
    # Only the new names are fields, so only they are recorded.
    assert not (set(old) - set(new)) & set(lopt_core.config_of(built))


def test_every_renamed_class_is_tested_here():
    assert {cls.__name__ for cls, _, _ in OLD_SPELLINGS} == set(compat.RENAMED)
    for cls, old, new in OLD_SPELLINGS:
        renamed = compat.RENAMED[cls.__name__]
        assert {renamed.get(k, k) for k in old} == set(new)


def test_both_spellings_at_once_are_refused():
    with pytest.raises(TypeError, match="got both 'initial_lr' and 'initial_learning_rate'"):
        LearnableAdam(initial_lr=1e-2, initial_learning_rate=1e-2)
    with pytest.raises(TypeError, match="got both 'step_multiplier' and 'step_mult'"):
        RNNMLPLOpt(step_multiplier=0.1, step_mult=0.1)


def test_a_bad_value_under_the_old_spelling_names_the_new_argument():
    with pytest.raises(
        ValueError, match=r"LearnableSGD: initial_learning_rate must be a finite number > 0\.0"
    ):
        LearnableSGD(initial_lr=0)
    with pytest.raises(ValueError, match=r"LearnableAdam: initial_eps must be a finite number > 0"):
        LearnableAdam(initial_epsilon=0.0)


def test_old_spellings_reach_registry_lookups():
    lopt = lopt_core.get_learned_optimizer("LearnableSGD", initial_lr=0.01)
    assert lopt == LearnableSGD(initial_learning_rate=0.01)


def test_a_checkpoint_recorded_with_old_names_loads(tmp_path):
    theta = LearnableAdam().init(jax.random.PRNGKey(0))
    producer = {
        "class": "lopt_learned.hparams:LearnableAdam",
        "config": {"initial_lr": 1e-2, "initial_beta1": 0.8, "initial_beta2": 0.99},
    }
    lopt_core.save(tmp_path / "old.lopt", theta, {"producer": producer})
    loaded = load_learned_optimizer(tmp_path / "old.lopt", expected=LearnableAdam(1e-2, 0.8, 0.99))
    assert loaded.lopt == LearnableAdam(initial_learning_rate=1e-2, initial_b1=0.8, initial_b2=0.99)
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded.theta, theta)
    producer = {
        "class": "lopt_learned.rnn_mlp_lopt:RNNMLPLOpt",
        "config": {"step_multiplier": 0.01, "magnitude_rate": 0.001, "hidden_layer": 2},
    }
    lopt_core.save(
        tmp_path / "rnn.lopt", RNNMLPLOpt().init(jax.random.PRNGKey(0)), {"producer": producer}
    )
    assert load_learned_optimizer(tmp_path / "rnn.lopt").lopt == RNNMLPLOpt(step_mult=0.01)
