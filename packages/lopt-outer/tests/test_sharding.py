"""Sharding the task axis over several devices (`shard_tasks=True`, lopt_outer.sharding).

JAX in this process is already initialised with one CPU device, so the
multi-device checks run in a subprocess whose environment alone asks XLA for
four host devices (`--xla_force_host_platform_device_count=4`).
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from outer_helpers import DataQuadraticFamily, LearnableSGD

import lopt_core
from lopt_outer import ConstantTruncationSchedule, VectorizedLOptTruncatedStep, eval_training

OUTER = lopt_core.OuterState(jnp.asarray(0, jnp.int32))

# Runs with 4 CPU devices. Every check compares a sharded run against the unsharded
# one from the same keys, and asserts where the sharded arrays live.
_FOUR_DEVICES = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from outer_helpers import DataQuadraticFamily

    import lopt_core
    import lopt_learned
    from lopt_outer import (
        ConstantTruncationSchedule,
        TruncatedGrad,
        TruncatedPES,
        VectorizedLOptTruncatedStep,
        eval_training,
    )
    from lopt_outer.sharding import task_mesh, task_sharding
    from lopt_tasks.quadratics import FixedDimQuadraticFamily

    assert jax.local_device_count() == 4, jax.local_devices()
    OUTER = lopt_core.OuterState(jnp.asarray(0, jnp.int32))
    N = 8
    TASKS = task_sharding(task_mesh(N, "test"))
    leaves = jax.tree_util.tree_leaves


    def make_step(family, shard):
        # Resets every 6 steps from random offsets: the reset branch runs too.
        return VectorizedLOptTruncatedStep(
            family,
            lopt_learned.LearnableAdam(),
            ConstantTruncationSchedule(6),
            N,
            random_initial_iteration_offset=6,
            shard_tasks=shard,
        )


    def estimates(est, n=3):
        theta = est.truncated_step.outer_init(jax.random.PRNGKey(0))
        weights = lopt_core.WorkerWeights(theta, None, OUTER)
        state = est.init_worker_state(weights, jax.random.PRNGKey(1))
        outs = []
        for i in range(n):
            out, _ = est.compute_gradient_estimate(weights, jax.random.PRNGKey(10 + i), state)
            state = out.unroll_state
            outs.append(out)
        return outs


    def assert_task_sharded(tree):
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
            name = jax.tree_util.keystr(path)
            assert len(x.sharding.device_set) == 4, name
            assert x.sharding.is_equivalent_to(TASKS, x.ndim), (name, x.sharding)
            assert x.addressable_shards[0].data.shape[0] == N // 4, name


    def compare(make_est, make_family):
        plain = estimates(make_est(make_step(make_family(), False)))
        sharded = estimates(make_est(make_step(make_family(), True)))
        for a, b in zip(plain, sharded):
            np.testing.assert_allclose(b.mean_loss, a.mean_loss, rtol=1e-5)
            np.testing.assert_allclose(b.unroll_info.loss, a.unroll_info.loss, rtol=1e-5)
            for x, y in zip(leaves(a.unroll_state), leaves(b.unroll_state)):
                np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)
            for x, y in zip(leaves(a.grad), leaves(b.grad)):
                # theta's gradient: reduced over the tasks, a whole copy on every device.
                assert y.sharding.is_fully_replicated and len(y.sharding.device_set) == 4
                np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-9)
            assert_task_sharded(b.unroll_state)
            assert all(len(x.sharding.device_set) == 1 for x in leaves(a.unroll_state))
        return plain, sharded


    # PES on a lopt_tasks family: the antithetic states and the accumulator stay split.
    pes = lambda step: TruncatedPES(step, unroll_length=3, std=0.01)
    plain, sharded = compare(pes, lambda: FixedDimQuadraticFamily(4))
    assert type(sharded[0].unroll_state).__name__ == "PESWorkerState"
    assert len(leaves(sharded[0].unroll_state)) == 20

    # Host batches from Python iterators go to their tasks' devices (task axis 1).
    step = make_step(DataQuadraticFamily(keyed=False), True)
    for x in leaves(step.get_batch(3)):
        assert x.shape[:2] == (3, N) and len(x.sharding.device_set) == 4
        assert x.sharding.is_equivalent_to(task_sharding(task_mesh(N, "test"), 1), x.ndim)
    # The gradient through backprop (TruncatedGrad) on host batches. (ES estimates
    # on host batches agree to the states and losses, but XLA may sum a batch's
    # loss in another order when the batch arrives split, and ES divides that
    # ulp-sized loss difference by std: beyond a 1e-5 tolerance on the gradient.)
    grad = lambda step: TruncatedGrad(step, unroll_length=3)
    compare(grad, lambda: DataQuadraticFamily(keyed=False))

    # Training curves from host batches (split over the devices like the step's).
    lopt = lopt_learned.LearnableAdam()
    theta = lopt.init(jax.random.PRNGKey(0))
    kw = dict(n_tasks=4, steps=10, eval_every=5, steps_per_jit=5, n_eval_batches_vec=2)
    plain, sharded = (
        eval_training.multi_task_training_curves(
            DataQuadraticFamily(keyed=False), lopt, theta, key=jax.random.PRNGKey(1),
            shard_tasks=shard, **kw
        )
        for shard in (False, True)
    )
    assert sorted(plain) == sorted(sharded)
    assert plain["train/loss"].shape == (4, 10) and plain["eval/train/loss"].shape == (4, 3)
    for k in plain:
        np.testing.assert_allclose(sharded[k], plain[k], rtol=1e-5, err_msg=k)

    # A task count that does not split over the 4 devices.
    family = FixedDimQuadraticFamily(4)
    try:
        VectorizedLOptTruncatedStep(
            family, lopt, ConstantTruncationSchedule(6), 6, shard_tasks=True
        )
    except ValueError as e:
        assert str(e) == (
            "VectorizedLOptTruncatedStep: shard_tasks=True splits the tasks over the 4 local "
            "devices, but num_tasks=6 is not divisible by 4. Pass a num_tasks that is a "
            "multiple of 4 (such as 4 or 8), or shard_tasks=False."
        ), str(e)
    else:
        raise AssertionError("num_tasks=6 over 4 devices was accepted")
    try:
        eval_training.multi_task_training_curves(
            family, lopt, theta, 2, steps=5, steps_per_jit=5, shard_tasks=True
        )
    except ValueError as e:
        assert "n_tasks=2 is not divisible by 4" in str(e) and "such as 4)" in str(e), str(e)
    else:
        raise AssertionError("n_tasks=2 over 4 devices was accepted")
    print("SHARDING-OK")
    """
)


def test_sharded_tasks_match_one_device_on_four_cpu_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).parent), env.get("PYTHONPATH")) if p
    )
    proc = subprocess.run(
        [sys.executable, "-c", _FOUR_DEVICES],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    assert proc.stdout.strip().endswith("SHARDING-OK")


def _step(shard_tasks, keyed=True):
    return VectorizedLOptTruncatedStep(
        DataQuadraticFamily(keyed=keyed),
        LearnableSGD(0.05),
        ConstantTruncationSchedule(4),
        2,
        shard_tasks=shard_tasks,
    )


def test_unsharded_step_adds_no_sharding_ops_and_sharded_one_constrains():
    def program(step):
        theta = step.outer_init(jax.random.PRNGKey(0))
        state = step.init_step_state(theta, OUTER, jax.random.PRNGKey(1))
        return jax.make_jaxpr(
            lambda th, s, k: (
                step.unroll_step(th, s, k, None, OUTER),
                step.meta_loss_batch(th, s, k, None, OUTER),
            )
        )(theta, state, jax.random.PRNGKey(2))

    # The printed program, nested jaxprs (scan, cond) included.
    assert "sharding_constraint" not in str(program(_step(False)))
    assert "sharding_constraint" in str(program(_step(True)))
    # Host batches stay NumPy arrays unless sharded.
    batch = _step(False, keyed=False).get_batch(3)
    assert type(batch["x"]).__module__ == "numpy" and batch["x"].shape == (3, 2, 16, 3)


def test_shard_tasks_on_one_device_and_bad_values():
    # One device divides every task count: sharding over it changes nothing.
    step = _step(True)
    assert step.task_mesh().shape == {"tasks": 1} and _step(False).task_mesh() is None
    with pytest.raises(TypeError, match="shard_tasks must be True or False, got 'yes'"):
        _step("yes")
    lopt = LearnableSGD(0.05)
    with pytest.raises(TypeError, match="shard_tasks must be True or False, got 1"):
        eval_training.multi_task_training_curves(
            DataQuadraticFamily(), lopt, lopt.init(jax.random.PRNGKey(0)), 2, shard_tasks=1
        )
