"""Optimizers, learned optimizers and loaded thetas print as one short line."""

from __future__ import annotations

import jax
import optax
import pytest

import lopt_core
from lopt_learned import (
    HyperV2,
    LearnableAdam,
    LearnableSGD,
    MLPLOpt,
    RNNMLPLOpt,
    load_learned_optimizer,
    load_pretrained,
    save_learned_optimizer,
)
from lopt_learned.export import LoadedLearnedOptimizer
from lopt_optimizers import (
    SGD,
    Adam,
    AdamW,
    GradientAccumulator,
    GradientClipOptimizer,
    GraftedOptimizer,
    OptaxOptimizer,
    WeightDecayWrapper,
)

CASES = [
    # Optimizers: only the fields changed from their defaults.
    (Adam(), "Adam()"),
    (Adam(1e-3), "Adam(learning_rate=0.001)"),
    (Adam(b1=0.8, eps_root=0.0), "Adam(b1=0.8, eps_root=0.0)"),
    (AdamW(mask=lambda params: params), "AdamW(mask=<lambda>)"),
    # Wrappers: the wrapped optimizer has no default, and prints compactly too.
    (GradientClipOptimizer(Adam(1e-3)), "GradientClipOptimizer(opt=Adam(learning_rate=0.001))"),
    (
        GradientClipOptimizer(SGD(0.1), 2.0),
        "GradientClipOptimizer(opt=SGD(learning_rate=0.1), grad_clip=2.0)",
    ),
    (WeightDecayWrapper(Adam(), 1e-3), "WeightDecayWrapper(opt=Adam(), weight_decay=0.001)"),
    (
        GraftedOptimizer(Adam(), SGD(0.1)),
        "GraftedOptimizer(magnitude_opt=Adam(), direction_opt=SGD(learning_rate=0.1))",
    ),
    (GradientAccumulator(Adam(), 4), "GradientAccumulator(opt=Adam(), num_steps=4)"),
    # An optax transform is named by what made it, not by its functions.
    (OptaxOptimizer(optax.adam(1e-3)), "OptaxOptimizer(opt=optax.transforms.chain(...))"),
    (
        OptaxOptimizer(optax.scale_by_sign(), needs_loss=True),
        "OptaxOptimizer(opt=optax.scale_by_sign(...), needs_loss=True)",
    ),
    (
        Adam(optax.linear_schedule(1e-3, 0.0, 100)),
        "Adam(learning_rate=optax.schedules.polynomial_schedule(...))",
    ),
    # Learned optimizers.
    (MLPLOpt(), "MLPLOpt()"),
    (MLPLOpt(hidden_size=64), "MLPLOpt(hidden_size=64)"),
    (MLPLOpt(hidden_size=32), "MLPLOpt()"),
    (LearnableSGD(0.1), "LearnableSGD(initial_learning_rate=0.1)"),
    (LearnableAdam(initial_b1=0.5), "LearnableAdam(initial_b1=0.5)"),
    (RNNMLPLOpt(decays=(0.5, 0.9)), "RNNMLPLOpt(decays=(0.5, 0.9))"),
    (HyperV2(), "HyperV2()"),
    (
        HyperV2(lstm_hidden_size=16, bugged_loss_features=False),
        "HyperV2(lstm_hidden_size=16, bugged_loss_features=False)",
    ),
    # What opt_fn(theta) returns shows the architecture and theta's size.
    (
        MLPLOpt().opt_fn(MLPLOpt().init(jax.random.PRNGKey(0))),
        "MLPLOpt().opt_fn(theta: 1762 floats)",
    ),
    # A loaded theta: the architecture, theta's size, the source file and metadata keys.
    (
        LoadedLearnedOptimizer(MLPLOpt(hidden_size=8), {}, {"lopt_version": "0", "step": 3}),
        "LoadedLearnedOptimizer(MLPLOpt(hidden_size=8), theta=0 params, metadata={step})",
    ),
    (
        LoadedLearnedOptimizer(HyperV2(), {}, {"source_file": "params", "source_step": 1}),
        "LoadedLearnedOptimizer(HyperV2(), theta=0 params, from='params', metadata={source_step})",
    ),
    (
        LoadedLearnedOptimizer(MLPLOpt(), {}, {f"key{i}": i for i in range(7)}),
        "LoadedLearnedOptimizer(MLPLOpt(), theta=0 params, "
        "metadata={key0, key1, key2, key3, ... (7 keys)})",
    ),
    (
        LoadedLearnedOptimizer(MLPLOpt(), {}, {}),
        "LoadedLearnedOptimizer(MLPLOpt(), theta=0 params)",
    ),
]


@pytest.mark.parametrize(("obj", "expected"), CASES, ids=[e for _, e in CASES])
def test_reprs_are_compact(obj, expected):
    assert repr(obj) == expected


def test_the_shipped_theta_prints_on_one_short_line():
    text = repr(load_pretrained("MLPLOpt_Digits8"))
    assert text == (
        "LoadedLearnedOptimizer(MLPLOpt(), theta=1,762 params, "
        "metadata={task_family, estimator, outer_steps, seed, recipe})"
    )


def test_a_saved_and_loaded_theta_prints_its_configuration(tmp_path):
    lopt = MLPLOpt(hidden_size=8, step_mult=0.01)
    save_learned_optimizer(tmp_path / "t.lopt", lopt, lopt.init(jax.random.PRNGKey(0)), {"a": 1})
    assert repr(load_learned_optimizer(tmp_path / "t.lopt")) == (
        "LoadedLearnedOptimizer(MLPLOpt(step_mult=0.01, hidden_size=8), theta=250 params, "
        "metadata={a})"
    )


@pytest.mark.parametrize("kind", ["optimizers", "learned_optimizers"])
def test_every_registered_component_prints_its_defaults_as_empty_parentheses(kind):
    built = 0
    for name, entry in lopt_core.REGISTRY.entries(kind).items():
        try:
            obj = entry.factory()
        except TypeError:  # a wrapper: it needs the optimizer it wraps (covered above)
            continue
        built += 1
        assert repr(obj) == f"{type(obj).__name__}()", name
    assert built >= 10


def test_equality_and_hashing_do_not_depend_on_the_repr():
    assert MLPLOpt(hidden_size=32) == MLPLOpt() and hash(MLPLOpt(hidden_size=32)) == hash(MLPLOpt())
    assert MLPLOpt(hidden_size=64) != MLPLOpt()
    assert GradientClipOptimizer(Adam(1e-3)) == GradientClipOptimizer(Adam(learning_rate=1e-3))
