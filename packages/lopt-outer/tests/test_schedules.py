import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core
from lopt_outer import truncation_schedule as ts

KEY = jax.random.PRNGKey(0)


def _run(sched, steps, outer=None):
    state = sched.init(KEY, outer)
    lengths, dones = [], []
    step = 0
    for i in range(steps):
        step += 1
        state, done = sched.next_state(state, step, jax.random.fold_in(KEY, i), outer)
        lengths.append(int(state.length))
        dones.append(bool(done))
        if done:
            step = 0
    return lengths, dones


def test_constant_schedule_finishes_every_total_length_steps():
    lengths, dones = _run(ts.ConstantTruncationSchedule(3), 9)
    assert dones == [False, False, True] * 3
    assert set(lengths) == {3}
    assert ts.ConstantTruncationSchedule(3).init(KEY, None).length.dtype == jnp.int32


def test_log_uniform_lengths_are_in_range_and_redrawn_on_done():
    sched = ts.LogUniformLengthSchedule(2, 50)
    lengths = [int(sched.init(k, None).length) for k in jax.random.split(KEY, 200)]
    assert min(lengths) >= 2 and max(lengths) < 50
    # Log-uniform: more than half the draws fall below the arithmetic midpoint.
    assert np.mean(np.asarray(lengths) < 26) > 0.6
    seen, dones = _run(sched, 300)
    assert sum(dones) > 5
    assert len(set(seen)) > 3


def test_never_ending_schedule_is_never_done():
    _, dones = _run(ts.NeverEndingTruncationSchedule(), 50)
    assert not any(dones)


def test_scheduled_truncation_follows_the_outer_iteration():
    sched = ts.ScheduledTruncationSchedule(lambda it: 2 + it // 10, max_length=100)
    assert int(sched.init(KEY, lopt_core.OuterState(jnp.asarray(0))).length) == 2
    assert int(sched.init(KEY, lopt_core.OuterState(jnp.asarray(35))).length) == 5
    _, dones = _run(sched, 10, lopt_core.OuterState(jnp.asarray(20)))
    assert dones == [False, False, False, True] * 2 + [False, False]
    assert ts.static_length(sched) == 100


def test_schedules_jit_and_bad_arguments():
    sched = ts.LogUniformLengthSchedule(5, 10)
    f = jax.jit(lambda s, k: sched.next_state(s, 7, k, None))
    _state, done = f(sched.init(KEY, None), KEY)
    assert done.dtype == jnp.bool_
    with pytest.raises(ValueError, match="total_length must be a positive integer"):
        ts.ConstantTruncationSchedule(0)
    with pytest.raises(ValueError, match="max_length .* must be at least min_length"):
        ts.LogUniformLengthSchedule(10, 5)
    with pytest.raises(ValueError, match="no static maximum length"):
        ts.static_length(ts.NeverEndingTruncationSchedule())
