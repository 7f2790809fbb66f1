"""The reference library's spellings, kept working by lopt_optimizers.compat."""

import jax.numpy as jnp
import pytest

import lopt_optimizers
from lopt_optimizers import SGD, Adam, GraftedOptimizer, NAdamW, compat


@pytest.mark.parametrize(
    ("cls", "old", "new", "value"),
    [
        (getattr(lopt_optimizers, cls), old, new, value)
        for cls, names in compat.RENAMED.items()
        for (old, new), value in zip(names.items(), (0.8, 0.95, 1e-6, 1e-7))
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_old_argument_names_build_the_same_optimizer_and_stay_readable(cls, old, new, value):
    old_style = cls(**{old: value})
    assert old_style == cls(**{new: value})
    assert getattr(old_style, new) == value
    assert getattr(old_style, old) == value


def test_reference_call_styles():
    adam = Adam(1e-3, beta1=0.8, beta2=0.99, epsilon=1e-7, epsilon_root=0.0)
    assert (adam.b1, adam.b2, adam.eps, adam.eps_root) == (0.8, 0.99, 1e-7, 0.0)
    assert adam.name == "Adam_lr0.001_b10.8_b20.99_eps1e-07_epsroot0.0"
    assert NAdamW(beta1=0.5).b1 == 0.5


def test_both_spellings_at_once_are_refused():
    with pytest.raises(TypeError, match="got both 'beta1' and 'b1'"):
        Adam(beta1=0.8, b1=0.9)


def test_old_spellings_of_bad_values_are_still_validated_under_the_new_name():
    with pytest.raises(ValueError, match=r"Adam: b1 must be a finite number >= 0.0 and < 1.0"):
        Adam(beta1=1.0)


def test_state_reads_model_state():
    params = {"w": jnp.ones(2)}
    state = Adam().init(params, model_state={"bn": jnp.zeros(1)})
    assert state.state is state.model_state
    grafted = GraftedOptimizer(Adam(), SGD()).init(params, model_state=3)
    assert grafted.state == 3 == grafted.model_state
