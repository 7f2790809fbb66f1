"""The image MLP tasks' muP option: width-independent updates under mu-Adam, unlike SP."""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt_core
from lopt_tasks.digits import digits_datasets
from lopt_tasks.image_mlp import ImageMLPTask

WIDTHS = (32, 128, 512)
SEEDS = (0, 1, 2)


def _task(width: int, mup: bool) -> ImageMLPTask:
    if mup:
        return lopt_core.get_task(f"ImageMLP_Digits8_Relu{width}x{width}_MuP")
    return ImageMLPTask(digits_datasets(batch_size=128), [width, width])


def _rms(x) -> float:
    return float(jnp.sqrt(jnp.mean(jnp.square(x))))


def _logit_scales(width: int, mup: bool) -> tuple[float, float]:
    """(RMS of the initial logits, RMS of their change after one (mu-)Adam(1e-3) step).

    Averaged over three initialisations, on one batch of 128 digits.
    """
    task = _task(width, mup)
    batch = next(digits_datasets(batch_size=128).train)
    net = hk.without_apply_rng(hk.transform(task._network))
    initial, change = [], []
    for seed in SEEDS:
        params = task.init(jax.random.PRNGKey(seed))
        logits = net.apply(params, batch["image"])
        grads = jax.grad(lambda p: task.loss(p, jax.random.PRNGKey(1), batch))(params)
        tx = optax.adam(1e-3)
        updates, _ = tx.update(grads, tx.init(params), params)
        if mup:  # mu-Adam: Adam with muP's per-tensor learning-rate multipliers.
            scales = task.mup_lr_scales(params)
            updates = jax.tree_util.tree_map(lambda u, s: u * s, updates, scales)
        moved = net.apply(optax.apply_updates(params, updates), batch["image"])
        initial.append(_rms(logits))
        change.append(_rms(moved - logits))
    return float(np.mean(initial)), float(np.mean(change))


@pytest.fixture(scope="module")
def scales():
    return {(w, mup): _logit_scales(w, mup) for w in WIDTHS for mup in (True, False)}


def _ratio(values) -> float:
    return float(max(values) / min(values))


def test_mup_first_step_changes_the_logits_by_a_width_independent_amount(scales):
    """One step moves the logits by about as much at any width under muP, not under SP.

    Measured (mean of 3 initialisations): muP 0.0132, 0.0082, 0.0072 at widths 32,
    128, 512; SP 0.0132, 0.033, 0.15. Under muP the change converges with width
    (128 -> 512: 1.14x); the base width is larger by a term that muP makes vanish
    as sqrt(base / width) (the output weights' initial values times the change of
    the last hidden layer), hence the looser bound over all three widths.
    """
    mup = [scales[w, True][1] for w in WIDTHS]
    sp = [scales[w, False][1] for w in WIDTHS]
    assert _ratio(mup) < 2.0, mup
    assert _ratio(mup[1:]) < 1.3, mup
    assert _ratio(sp) > 5.0, sp
    assert sp[-1] / sp[1] > 3.0, sp


def test_mup_initial_logits_shrink_as_muP_prescribes(scales):
    """muP's initial logits scale as sqrt(base / width); SP's stay put; equal at the base."""
    mup = [scales[w, True][0] for w in WIDTHS]
    sp = [scales[w, False][0] for w in WIDTHS]
    assert mup[0] == pytest.approx(sp[0], rel=1e-6)
    normalised = [m * np.sqrt(w / 32) for m, w in zip(mup, WIDTHS)]
    assert _ratio(normalised) < 1.5, normalised
    assert _ratio(sp) < 1.5, sp
    assert mup[-1] < 0.5 * sp[-1]


def test_mup_keeps_parameter_names_and_shapes_and_the_default_is_unchanged():
    mup = _task(128, True).init(jax.random.PRNGKey(0))
    sp = _task(128, False).init(jax.random.PRNGKey(0))
    assert jax.tree_util.tree_structure(mup) == jax.tree_util.tree_structure(sp)
    for a, b in zip(jax.tree_util.tree_leaves(mup), jax.tree_util.tree_leaves(sp)):
        assert a.shape == b.shape
    # Only the output layer's initialisation differs (std 1/sqrt(32), not 1/sqrt(128)).
    np.testing.assert_array_equal(mup["mlp/~/linear_1"]["w"], sp["mlp/~/linear_1"]["w"])
    ratio = float(jnp.std(mup["mlp/~/linear_2"]["w"]) / jnp.std(sp["mlp/~/linear_2"]["w"]))
    assert ratio == pytest.approx(2.0, rel=1e-5)
    assert ImageMLPTask(digits_datasets(batch_size=8), [4]).mup_base_width is None


def test_mup_lr_scales():
    task = _task(128, True)
    scales = task.mup_lr_scales(task.init(jax.random.PRNGKey(0)))
    assert scales == {
        "mlp/~/linear_0": {"w": 1.0, "b": 1.0},
        "mlp/~/linear_1": {"w": 0.25, "b": 1.0},
        "mlp/~/linear_2": {"w": 1.0, "b": 1.0},
    }
    sp = _task(128, False)
    ones = sp.mup_lr_scales(sp.init(jax.random.PRNGKey(0)))
    assert set(jax.tree_util.tree_leaves(ones)) == {1.0}


def test_a_bad_base_width_is_a_clear_error():
    with pytest.raises(ValueError, match="mup_base_width"):
        ImageMLPTask(digits_datasets(batch_size=8), [4], mup_base_width=0)
