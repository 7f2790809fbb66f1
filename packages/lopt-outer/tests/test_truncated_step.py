import jax
import jax.numpy as jnp
import numpy as np
import pytest
from outer_helpers import DataQuadraticFamily, LearnableSGD, QuadraticFamily, QuadraticTask

import lopt_core
from lopt_outer import (
    ConstantTruncationSchedule,
    SimpleLOptTruncatedStep,
    VectorizedLOptTruncatedStep,
    truncated_unroll,
)

OUTER = lopt_core.OuterState(jnp.asarray(0, jnp.int32))
KEY = jax.random.PRNGKey(0)


def _unroll(step, n, key=KEY, datas=None):
    theta = step.outer_init(KEY)
    state = step.init_step_state(theta, OUTER, key)
    fn = jax.jit(lambda s, k, d: truncated_unroll(step, theta, s, k, d, OUTER, n))
    return state, fn(state, key, datas)


def test_tasks_reset_after_the_truncation_with_a_mask_and_a_new_sample():
    step = VectorizedLOptTruncatedStep(
        QuadraticFamily(), LearnableSGD(0.1), ConstantTruncationSchedule(3), 2
    )
    state0, (state, ys) = _unroll(step, 8)
    # is_done after the 3rd step; the 4th step is the reset: iteration 0, masked, loss 0.
    np.testing.assert_array_equal(ys.iteration[:, 0], [1, 2, 3, 0, 1, 2, 3, 0])
    np.testing.assert_array_equal(ys.is_done[:, 0], [0, 0, 1, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(ys.mask[:, 0], [1, 1, 1, 0, 1, 1, 1, 0])
    assert float(ys.loss[3, 0]) == 0.0
    # Losses fall within an unroll, and the reset brings a fresh task sample.
    assert bool(jnp.all(ys.loss[1] < ys.loss[0]))
    assert not np.allclose(state.task_param, state0.task_param)


def test_random_initial_offset_desynchronises_tasks():
    step = VectorizedLOptTruncatedStep(
        QuadraticFamily(),
        LearnableSGD(0.1),
        ConstantTruncationSchedule(50),
        16,
        random_initial_iteration_offset=50,
    )
    state = step.init_step_state(step.outer_init(KEY), OUTER, KEY)
    assert len(set(np.asarray(state.inner_step).tolist())) > 8
    assert int(jnp.max(state.inner_step)) < 50


def test_normalizer_is_applied_to_losses():
    fam = DataQuadraticFamily()
    fam.task_fn = lambda cfg: _Scaled(cfg, fam.datasets)
    step = VectorizedLOptTruncatedStep(fam, LearnableSGD(0.01), ConstantTruncationSchedule(10), 3)
    _, (_, ys) = _unroll(step, 2)
    np.testing.assert_allclose(ys.loss, -1.0)


class _Scaled(lopt_core.Task):
    def __init__(self, cfg, datasets):
        self.datasets = datasets

    def init(self, key):
        return {"w": jnp.zeros(3)}

    def loss(self, params, key, data):
        return jnp.mean((data["x"] @ params["w"] - data["y"]) ** 2)

    def normalizer(self, loss):
        return -jnp.ones_like(loss)


def test_keyed_batches_follow_the_key_and_plain_iterators_use_host_batches():
    keyed = VectorizedLOptTruncatedStep(
        DataQuadraticFamily(), LearnableSGD(0.05), ConstantTruncationSchedule(10), 4
    )
    assert keyed.keyed and keyed.get_batch(5) is None
    _, (_, ys1) = _unroll(keyed, 5)
    _, (_, ys2) = _unroll(keyed, 5)
    np.testing.assert_array_equal(ys1.loss, ys2.loss)
    _, (_, ys3) = _unroll(keyed, 5, key=jax.random.PRNGKey(1))
    assert not np.array_equal(ys1.loss, ys3.loss)

    plain = VectorizedLOptTruncatedStep(
        DataQuadraticFamily(keyed=False), LearnableSGD(0.05), ConstantTruncationSchedule(10), 4
    )
    assert not plain.keyed
    datas = plain.get_batch(5)
    assert datas["x"].shape == (5, 4, 16, 3)
    _, (_, ys) = _unroll(plain, 5, datas=datas)
    assert ys.loss.shape == (5, 4) and bool(jnp.all(jnp.isfinite(ys.loss)))


@pytest.mark.parametrize("split", [None, "same_data", "outer_valid"])
def test_meta_loss_split_choices(split):
    step = VectorizedLOptTruncatedStep(
        DataQuadraticFamily(keyed=False),
        LearnableSGD(0.05),
        ConstantTruncationSchedule(10),
        2,
        meta_loss_split=split,
    )
    datas = step.get_batch(3)
    if split == "outer_valid":
        assert isinstance(datas, tuple) and len(datas) == 2
    _, (_, ys) = _unroll(step, 3, datas=datas)
    assert ys.loss.shape == (3, 2)
    losses = step.meta_loss_batch(
        step.outer_init(KEY),
        step.init_step_state(step.outer_init(KEY), OUTER, KEY),
        KEY,
        step.get_outer_batch(),
        OUTER,
    )
    assert losses.shape == (2,)


def test_simple_single_task_step_and_bad_arguments():
    step = SimpleLOptTruncatedStep(QuadraticTask(jnp.ones(3)), LearnableSGD(0.1), unroll_length=2)
    _, (_, ys) = _unroll(step, 4)
    np.testing.assert_array_equal(ys.mask[:, 0], [1, 1, 0, 1])
    with pytest.raises(ValueError, match="meta_loss_split must be None"):
        VectorizedLOptTruncatedStep(
            QuadraticFamily(),
            LearnableSGD(),
            ConstantTruncationSchedule(2),
            2,
            meta_loss_split="valid",
        )
    with pytest.raises(ValueError, match="num_tasks must be a positive integer"):
        VectorizedLOptTruncatedStep(
            QuadraticFamily(), LearnableSGD(), ConstantTruncationSchedule(2), 0
        )
