"""GradientLearner's reference options: starting from files, `reset_outer_iteration`, `init_seed`.

Modelled on the reference's gradient_learner_test (`test_init_from_params`,
`test_init_from_checkpoint`): a theta saved to a file is restored exactly, a
learner state saved with every leaf shifted by 11 comes back at outer iteration 11
(0 with `reset_outer_iteration`). Files are untrusted: each hostile or mismatched
file below is refused with a `CheckpointError` naming the problem and the fix.
The last tests are the reference's `FakeGradientEstimator` ones: an estimator
without a `truncated_step` works with `gradient_worker_compute` and
`SingleMachineGradientLearner.update`.
"""

import pickle

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core
from lopt_core import CheckpointError, GradientEstimatorOut, OuterState, WorkerWeights
from lopt_learned import LearnableAdam, LearnableSGD, LearnableSGDM, MLPLOpt, save_learned_optimizer
from lopt_optimizers import SGD, Adam
from lopt_outer import (
    AggregatedGradient,
    GradientLearner,
    SingleMachineGradientLearner,
    gradient_worker_compute,
)

KEY = jax.random.PRNGKey(0)


def _shifted_theta(lopt):
    return jax.tree_util.tree_map(lambda x: (x + 1) * 10, lopt.init(KEY))


def _assert_trees_equal(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(x, y)


# -- init_theta_from_path -----------------------------------------------------------
def test_theta_is_restored_exactly_from_a_saved_file(tmp_path):
    lopt = MLPLOpt(hidden_size=4)
    theta = _shifted_theta(lopt)
    path = save_learned_optimizer(tmp_path / "theta.lopt", lopt, theta, {"step": 123})
    learner = GradientLearner(lopt, SGD(3.0), init_theta_from_path=path)
    state = learner.init(jax.random.PRNGKey(7))
    _assert_trees_equal(learner.get_meta_params(state), theta)
    assert int(state.outer_iteration) == 0
    # The state trains from there: SGD(3) moves every value by -3 * gradient.
    ones = jax.tree_util.tree_map(jnp.ones_like, theta)
    state, _ = learner.update(state, [AggregatedGradient(ones, None, jnp.asarray(0.0))])
    for got, want in zip(
        jax.tree_util.tree_leaves(learner.get_meta_params(state)), jax.tree_util.tree_leaves(theta)
    ):
        np.testing.assert_allclose(got, want - 3.0, rtol=1e-6)
    # A plain lopt_core.save(path, theta) file (no producer recorded) works as well.
    plain = lopt_core.save(tmp_path / "plain.lopt", theta)
    state = GradientLearner(lopt, SGD(3.0), init_theta_from_path=str(plain)).init(KEY)
    _assert_trees_equal(state.theta_opt_state.params, theta)


def test_a_reference_parameter_checkpoint_is_read_too(tmp_path):
    # The reference's checkpoints.save_state(path, ParameterCheckpoint(...)) writes
    # flax.serialization.to_bytes of {"params", "gen_id", "step"}.
    lopt = LearnableSGDM()
    theta = _shifted_theta(lopt)
    path = tmp_path / "param.param"
    path.write_bytes(flax.serialization.to_bytes({"params": theta, "gen_id": "test", "step": 123}))
    state = GradientLearner(lopt, SGD(3.0), init_theta_from_path=path).init(KEY)
    np.testing.assert_array_equal(state.theta_opt_state.params["log_lr"], theta["log_lr"])
    np.testing.assert_allclose(float(theta["log_lr"]), (np.log(0.01) + 1) * 10, rtol=1e-6)


# -- init_outer_state_from_path, reset_outer_iteration ----------------------------------
def test_the_outer_state_and_its_iteration_are_restored_or_reset(tmp_path):
    lopt = LearnableSGD(1.0)
    learner = GradientLearner(lopt, SGD(3.0))
    # Modify everything, as the reference's test does, the iterations included.
    saved = jax.tree_util.tree_map(lambda x: x + 11, learner.init(KEY))
    path = lopt_core.save(tmp_path / "learner.lopt", saved)

    restored = GradientLearner(lopt, SGD(3.0), init_outer_state_from_path=path).init(KEY)
    assert int(restored.outer_iteration) == 11 and int(restored.theta_opt_state.iteration) == 11
    assert int(restored.num_dropped) == 11
    np.testing.assert_array_equal(restored.theta_opt_state.params["log_lr"], 11.0)
    weights = GradientLearner(lopt, SGD(3.0)).get_state_for_worker(restored)
    assert int(weights.outer_state.outer_iteration) == 11

    reset = GradientLearner(
        lopt, SGD(3.0), init_outer_state_from_path=path, reset_outer_iteration=True
    ).init(KEY)
    assert int(reset.outer_iteration) == 0 and int(reset.theta_opt_state.iteration) == 0
    assert int(reset.num_dropped) == 11  # the running count of dropped gradients is kept
    np.testing.assert_array_equal(reset.theta_opt_state.params["log_lr"], 11.0)
    # Restored states are strong-typed int32/float32, like a fresh init's.
    assert reset.outer_iteration.dtype == jnp.int32 and not reset.outer_iteration.weak_type

    # Without a path, reset_outer_iteration changes nothing (as in the reference).
    fresh = GradientLearner(lopt, SGD(3.0), reset_outer_iteration=True).init(KEY)
    _assert_trees_equal(fresh, GradientLearner(lopt, SGD(3.0)).init(KEY))

    # The outer state wins over a theta file, as in the reference.
    theta_path = save_learned_optimizer(tmp_path / "theta.lopt", lopt, {"log_lr": jnp.asarray(5.0)})
    both = GradientLearner(
        lopt, SGD(3.0), init_theta_from_path=theta_path, init_outer_state_from_path=path
    ).init(KEY)
    np.testing.assert_array_equal(both.theta_opt_state.params["log_lr"], 11.0)


def test_run_checkpoints_of_both_backends_hold_a_learner_state(tmp_path):
    lopt = LearnableSGDM()
    learner = GradientLearner(lopt, Adam(1e-3))
    saved = learner.init(KEY).replace(outer_iteration=jnp.asarray(42, jnp.int32))
    files = {
        "checkpoint.lopt": {"gradient_learner_state": saved, "gradient_estimator_states": ()},
        "ray_checkpoint.lopt": {"learner": saved, "workers": {}},
    }
    for name, tree in files.items():
        path = lopt_core.save(tmp_path / name, tree, {"step": 42})
        state = GradientLearner(lopt, Adam(1e-3), init_outer_state_from_path=path).init(KEY)
        assert int(state.outer_iteration) == 42
        _assert_trees_equal(state.theta_opt_state, saved.theta_opt_state)


# -- init_seed ----------------------------------------------------------------------------
def test_init_seed_gives_reproducible_and_different_inits():
    lopt = MLPLOpt(hidden_size=4)
    a = GradientLearner(lopt, Adam(1e-3), init_seed=5)
    theta_a0 = a.get_meta_params(a.init(jax.random.PRNGKey(0)))
    theta_a1 = a.get_meta_params(a.init(jax.random.PRNGKey(1)))
    # The seed, not the key, decides: PRNGKey(5)'s init (computed under jit, so
    # equal to an eager init up to rounding).
    _assert_trees_equal(theta_a0, theta_a1)
    eager = lopt.init(jax.random.PRNGKey(5))
    for got, want in zip(jax.tree_util.tree_leaves(theta_a0), jax.tree_util.tree_leaves(eager)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    b = GradientLearner(lopt, Adam(1e-3), init_seed=6)
    theta_b = b.get_meta_params(b.init(jax.random.PRNGKey(0)))
    w_a, w_b = theta_a0["mlp/~/linear_0"]["w"], theta_b["mlp/~/linear_0"]["w"]
    assert w_a.shape == w_b.shape and not np.allclose(w_a, w_b)
    assert GradientLearner(lopt, Adam(1e-3), init_seed=0).init_seed == 0
    for bad in (-1, True, 1.5, "5"):
        with pytest.raises(ValueError, match="init_seed must be an integer >= 0"):
            GradientLearner(lopt, Adam(1e-3), init_seed=bad)
    with pytest.raises(ValueError, match=r"init_seed must be below 2\*\*32, got 4294967296"):
        GradientLearner(lopt, Adam(1e-3), init_seed=2**32)


def test_num_steps_reaches_the_meta_optimizer():
    seen = []

    class Recorded(type(SGD(1.0))):
        def init(self, params, model_state=None, num_steps=None, **kwargs):
            seen.append(num_steps)
            return super().init(params, model_state, num_steps=num_steps, **kwargs)

    GradientLearner(LearnableSGD(), Recorded(1.0), num_steps=500).init(KEY)
    assert seen == [500]
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        GradientLearner(LearnableSGD(), SGD(1.0), num_steps=0)


# -- hostile and mismatched files ----------------------------------------------------------
def _theta_error(path, lopt=None, **kwargs):
    learner = GradientLearner(
        lopt or LearnableSGDM(), SGD(1.0), init_theta_from_path=path, **kwargs
    )
    with pytest.raises(CheckpointError) as info:
        learner.init(KEY)
    return str(info.value)


def test_missing_special_and_oversized_files_are_refused(tmp_path):
    assert "does not exist" in _theta_error(tmp_path / "nope.lopt")
    assert "is a directory, not a regular file" in _theta_error(tmp_path)
    path = save_learned_optimizer(tmp_path / "t.lopt", LearnableSGDM(), LearnableSGDM().init(KEY))
    message = _theta_error(path, max_bytes=64)
    assert "over the limit of max_bytes=64" in message and "max_bytes=" in message


def test_a_theta_of_another_learned_optimizer_is_refused_naming_the_fix(tmp_path):
    path = save_learned_optimizer(
        tmp_path / "sgdm.lopt", LearnableSGDM(), LearnableSGDM().init(KEY)
    )
    message = _theta_error(path, LearnableAdam())
    assert "init_theta_from_path=" in message and "does not match: path" in message
    assert "meta_init=LearnableAdam" in message
    assert "producer as lopt_learned." in message and "LearnableSGDM" in message

    small = save_learned_optimizer(
        tmp_path / "mlp4.lopt", MLPLOpt(hidden_size=4), MLPLOpt(hidden_size=4).init(KEY)
    )
    message = _theta_error(small, MLPLOpt(hidden_size=8))
    assert "path ['mlp/~/linear_0']['b'] has shape (4,), expected (8,)" in message
    assert "'hidden_size': 4" in message


def test_dtypes_nans_and_learner_states_in_a_theta_file_are_refused(tmp_path):
    theta = LearnableSGDM().init(KEY)
    half = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), theta)
    path = lopt_core.save(tmp_path / "half.lopt", half)
    assert "has dtype bfloat16, expected float32" in _theta_error(path)

    nan = {**theta, "log_lr": jnp.asarray(jnp.nan)}
    path = lopt_core.save(tmp_path / "nan.lopt", nan)
    assert "theta['log_lr'] holds 1 NaN or infinite value(s)" in _theta_error(path)

    state = GradientLearner(LearnableSGDM(), SGD(1.0)).init(KEY)
    path = lopt_core.save(tmp_path / "state.lopt", state)
    assert "pass it as init_outer_state_from_path" in _theta_error(path)
    run = lopt_core.save(tmp_path / "checkpoint.lopt", {"gradient_learner_state": state})
    assert "(a learner or run checkpoint), not a theta" in _theta_error(run)


def test_pickles_and_garbage_are_never_run_or_trusted(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "theta.pkl"
    path.write_bytes(pickle.dumps({"params": Payload()}))
    assert "looks like a Python pickle" in _theta_error(path)
    assert not marker.exists()

    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01not msgpack at all" * 10)
    assert "not a valid msgpack document" in _theta_error(junk)

    good = save_learned_optimizer(tmp_path / "t.lopt", LearnableSGDM(), LearnableSGDM().init(KEY))
    data = bytearray(good.read_bytes())
    data[-1] ^= 0xFF
    good.write_bytes(bytes(data))
    assert "checksum mismatch" in _theta_error(good)


def _state_error(path, theta_opt=None, lopt=None):
    learner = GradientLearner(
        lopt or LearnableSGD(), theta_opt or SGD(1.0), init_outer_state_from_path=path
    )
    with pytest.raises(CheckpointError) as info:
        learner.init(KEY)
    return str(info.value)


def test_mismatched_and_hostile_learner_states_are_refused(tmp_path):
    lopt = LearnableSGD()
    adam_state = GradientLearner(lopt, Adam(1e-3)).init(KEY)
    path = lopt_core.save(tmp_path / "adam.lopt", adam_state)
    message = _state_error(path, SGD(1.0))
    assert "init_outer_state_from_path=" in message and "does not match: path" in message
    assert "theta_opt=SGD" in message

    theta_file = save_learned_optimizer(tmp_path / "theta.lopt", lopt, lopt.init(KEY))
    message = _state_error(theta_file)
    assert "holds no GradientLearnerState (its top level is ['log_lr'])" in message

    sgd_state = GradientLearner(lopt, SGD(1.0)).init(KEY)
    negative = sgd_state.replace(outer_iteration=jnp.asarray(-3, jnp.int32))
    path = lopt_core.save(tmp_path / "negative.lopt", negative)
    assert "outer_iteration is -3, below 0" in _state_error(path)

    nan = sgd_state.replace(
        theta_opt_state=sgd_state.theta_opt_state.replace(params={"log_lr": jnp.asarray(jnp.inf)})
    )
    path = lopt_core.save(tmp_path / "inf.lopt", nan)
    assert "theta_opt_state.params['log_lr'] holds 1 NaN or infinite" in _state_error(path)

    ints = jax.tree_util.tree_map(lambda x: x.astype(jnp.int32), sgd_state)
    path = lopt_core.save(tmp_path / "ints.lopt", ints)
    assert "has dtype int32, expected float32" in _state_error(path)


def test_bad_arguments_are_refused_naming_the_fix(tmp_path):
    lopt = LearnableSGD()
    # The reference's third positional argument is init_theta_from_path.
    with pytest.raises(TypeError, match=r"pass init_theta_from_path='theta.lopt'"):
        GradientLearner(lopt, SGD(1.0), "theta.lopt")
    with pytest.raises(ValueError, match="got both init_theta and init_theta_from_path"):
        GradientLearner(lopt, SGD(1.0), lopt.init(KEY), init_theta_from_path=tmp_path / "t")
    with pytest.raises(TypeError, match="init_outer_state_from_path must be the path"):
        GradientLearner(lopt, SGD(1.0), init_outer_state_from_path=3)
    with pytest.raises(TypeError, match="init_theta_from_path must be the path"):
        GradientLearner(lopt, SGD(1.0), init_theta_from_path="")
    with pytest.raises(TypeError, match="reset_outer_iteration must be a bool"):
        GradientLearner(lopt, SGD(1.0), reset_outer_iteration="yes")


# -- estimators without a truncated_step (the reference's FakeGradientEstimator) -------------
class FakeGradientEstimator(lopt_core.GradientEstimator):
    """The reference test's fake: a gradient of `grad_val` everywhere, no truncated_step."""

    def __init__(self, grad_val):
        self.grad_val = grad_val

    def init_worker_state(self, worker_weights, key):
        return 0

    def compute_gradient_estimate(self, worker_weights, key, state, with_summary):
        out = GradientEstimatorOut(
            1.0,
            grad=jax.tree_util.tree_map(lambda x: x * 0 + self.grad_val, worker_weights.theta),
            unroll_state=state + 1,
            unroll_info=None,
        )
        return out, {"metric": 1}


class DuckEstimator:
    """Not a lopt_core.GradientEstimator at all: no truncated_step, no task_name/cfg_name."""

    def init_worker_state(self, worker_weights, key):
        return 0

    def compute_gradient_estimate(self, worker_weights, key, state, with_summary=False):
        grad = jax.tree_util.tree_map(jnp.ones_like, worker_weights.theta)
        return GradientEstimatorOut(jnp.asarray(3.0), grad, state + 1), {"metric": 2}


def test_gradient_worker_compute_with_estimators_without_a_truncated_step():
    estimators = [FakeGradientEstimator(0), FakeGradientEstimator(1)]
    assert estimators[0].task_name() == estimators[0].cfg_name() == "FakeGradientEstimator"
    theta = {"theta": jnp.asarray(12.0)}
    weights = WorkerWeights(theta, None, OuterState(jnp.asarray(1)))
    states = [est.init_worker_state(weights, KEY) for est in estimators]
    out = gradient_worker_compute(weights, estimators, states, KEY, with_metrics=True)
    assert float(out.to_put.theta_grads["theta"]) == 0.5 and list(out.unroll_states) == [1, 1]
    assert float(out.to_put.mean_loss) == 1.0
    assert out.metrics == {"FakeGradientEstimator/metric": 1}
    out = gradient_worker_compute(weights, estimators, out.unroll_states, KEY, with_metrics=True)
    assert float(out.to_put.theta_grads["theta"]) == 0.5 and list(out.unroll_states) == [2, 2]

    out = gradient_worker_compute(weights, [DuckEstimator()], [0], KEY)
    assert float(out.to_put.theta_grads["theta"]) == 1.0 and out.metrics == {
        "DuckEstimator/metric": 2
    }


def test_single_machine_learner_with_estimators_without_a_truncated_step():
    estimators = [FakeGradientEstimator(0), FakeGradientEstimator(1)]
    learner = SingleMachineGradientLearner(LearnableSGD(1.0), estimators, SGD(3.0))
    state = learner.init(KEY)
    state2, loss, metrics = learner.update(state, KEY)
    # The average gradient is 0.5; SGD's update is 0 - 3 * 0.5.
    assert float(learner.get_meta_params(state)["log_lr"]) == 0.0
    assert float(learner.get_meta_params(state2)["log_lr"]) == -1.5
    assert float(loss) == 1.0 and metrics["FakeGradientEstimator/metric"] == 1
    assert tuple(state2.gradient_estimator_states) == (1, 1)

    duck = SingleMachineGradientLearner(LearnableSGD(1.0), [DuckEstimator()], SGD(3.0))
    state2, loss, metrics = duck.update(duck.init(KEY), KEY)
    assert float(duck.get_meta_params(state2)["log_lr"]) == -3.0 and float(loss) == 3.0
    assert metrics["DuckEstimator/metric"] == 2


def test_a_single_machine_learner_starts_from_a_theta_file(tmp_path):
    lopt = LearnableSGD(1.0)
    path = save_learned_optimizer(tmp_path / "theta.lopt", lopt, {"log_lr": jnp.asarray(2.0)})
    learner = SingleMachineGradientLearner.from_gradient_learner(
        GradientLearner(lopt, SGD(3.0), init_theta_from_path=path, num_steps=10),
        [FakeGradientEstimator(1)],
    )
    state = learner.init(KEY)
    assert float(learner.get_meta_params(state)["log_lr"]) == 2.0
    state, loss, _ = learner.update(state, KEY)
    assert float(learner.get_meta_params(state)["log_lr"]) == -1.0 and float(loss) == 1.0


def test_the_run_fingerprint_records_the_start_options_a_learner_sets(tmp_path):
    from lopt_outer.rundir import fingerprint

    lopt = LearnableSGD(1.0)
    path = save_learned_optimizer(tmp_path / "theta.lopt", lopt, {"log_lr": jnp.asarray(2.0)})
    plain = fingerprint(SingleMachineGradientLearner(lopt, [FakeGradientEstimator(1)], SGD(3.0)))
    # A learner that sets none of them keeps the fingerprint older runs recorded.
    assert set(plain) == {"learned_optimizer", "theta_opt", "estimators", "init_theta"}
    started = fingerprint(
        SingleMachineGradientLearner.from_gradient_learner(
            GradientLearner(lopt, SGD(3.0), init_theta_from_path=path, init_seed=3),
            [FakeGradientEstimator(1)],
        )
    )
    assert started["init_theta_from_path"] == str(path) and started["init_seed"] == 3
    assert {k: v for k, v in started.items() if k in plain} == plain
