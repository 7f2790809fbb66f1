"""lopt-outer's components are declarations: configuration in fields, equal configs equal.

The contract part iterates lopt_outer._plugin.CATALOG: every truncation schedule
and truncated step it declares is built from an example configuration and
checked (the estimators' contract is in test_estimators.py).
"""

import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from outer_helpers import (
    DataQuadraticFamily,
    FixedQuadraticFamily,
    LearnableSGD,
    QuadraticFamily,
    QuadraticTask,
)

import lopt_core
import lopt_outer
from lopt_core.testing import count_compiles
from lopt_outer import (
    ConstantTruncationSchedule,
    FullES,
    LogUniformLengthSchedule,
    NeverEndingTruncationSchedule,
    ScheduledTruncationSchedule,
    SimpleLOptTruncatedStep,
    SimpleVecLOptTruncatedStep,
    TruncatedES,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
)
from lopt_outer._plugin import CATALOG

OUTER = lopt_core.OuterState(jnp.asarray(0, jnp.int32))
KEY = jax.random.PRNGKey(0)
_CURRICULUM = lambda it: 2 + it // 10  # noqa: E731 (one function object for equal schedules)
_FAMILY = QuadraticFamily()
_TASK = QuadraticTask(jnp.ones(3))


def _is_default(value, field):
    if field.default is not dataclasses.MISSING:
        return value is field.default or value == field.default
    if field.default_factory is not dataclasses.MISSING:
        return value == field.default_factory()
    return False


def _top_level_names(text):
    """The argument names of the outermost call in a repr: `A(x=B(y=1), z=2)` -> [x, z]."""
    names, depth, start = [], 0, text.index("(") + 1
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if depth == 1 and ch in "(,":
            start = i + 1
        if depth == 1 and ch == "=":
            names.append(text[start:i].strip())
    return names


def _example(name):
    """An example configuration of every outer trainer the catalog declares."""
    sched = ConstantTruncationSchedule(4)
    step = VectorizedLOptTruncatedStep(_FAMILY, LearnableSGD(0.1), sched, 2)
    return {
        "TruncatedPES": lambda: TruncatedPES(step, 2),
        "TruncatedES": lambda: TruncatedES(step, 2),
        "FullES": lambda: FullES(step, sched),
        "TruncatedGrad": lambda: lopt_outer.TruncatedGrad(step, 2),
        "FullGrad": lambda: lopt_outer.FullGrad(step, sched),
        "ConstantTruncationSchedule": lambda: ConstantTruncationSchedule(4),
        "LogUniformLengthSchedule": lambda: LogUniformLengthSchedule(2, 8),
        "NeverEndingTruncationSchedule": NeverEndingTruncationSchedule,
        "ScheduledTruncationSchedule": lambda: ScheduledTruncationSchedule(_CURRICULUM, 50),
        "VectorizedLOptTruncatedStep": lambda: VectorizedLOptTruncatedStep(
            _FAMILY, LearnableSGD(0.1), sched, 3, random_initial_iteration_offset=4
        ),
        "SimpleVecLOptTruncatedStep": lambda: SimpleVecLOptTruncatedStep(
            _TASK, LearnableSGD(0.1), 3, unroll_length=2
        ),
        "SimpleLOptTruncatedStep": lambda: SimpleLOptTruncatedStep(_TASK, LearnableSGD(0.1), 2),
        "GrowingLogUniformSchedule": lambda: lopt_outer.GrowingLogUniformSchedule(2, 4, 8, 10),
        "MixtureEstimator": lambda: lopt_outer.MixtureEstimator(
            (TruncatedPES(step, 2), TruncatedES(step, 2)), weights=(1.0, 2.0)
        ),
    }[name]()


def test_every_outer_trainer_is_a_declared_component_with_an_example():
    names = CATALOG.names("outer_trainers")
    assert len(names) == 14
    for name in names:
        a, b = _example(name), _example(name)
        assert type(a) is CATALOG.factories("outer_trainers")[name]
        assert dataclasses.is_dataclass(a), name
        # Equal configurations are equal and hash equal; repr shows the configuration
        # changed from the defaults, in declaration order.
        assert a == b and hash(a) == hash(b), name
        text = repr(a)
        assert text.startswith(f"{name}("), text
        changed = [
            f.name
            for f in dataclasses.fields(a)
            if f.repr and f.init and not _is_default(getattr(a, f.name), f)
        ]
        assert _top_level_names(text) == changed, (name, text)
        with pytest.raises(dataclasses.FrozenInstanceError):
            a.num_tasks = 5


@pytest.mark.parametrize(
    "name", [n for n in CATALOG.names("outer_trainers") if n.endswith("Schedule")]
)
def test_every_schedule_passes_the_schedule_contract(name):
    sched = _example(name)
    state = sched.init(KEY, OUTER)
    assert state.length.dtype == jnp.int32 and state.length.shape == ()
    step = jax.jit(lambda s, k: sched.next_state(s, 3, k, OUTER))
    new_state, done = step(state, KEY)
    assert done.dtype == jnp.bool_ and new_state.length.dtype == jnp.int32
    assert sched.max_length is None or sched.max_length >= int(state.length)


@pytest.mark.parametrize(
    "name", [n for n in CATALOG.names("outer_trainers") if n.endswith("TruncatedStep")]
)
def test_every_truncated_step_passes_the_step_contract(name):
    step = _example(name)
    theta = step.outer_init(KEY)
    state = step.init_step_state(theta, OUTER, KEY)
    assert state.inner_step.shape == (step.num_tasks,)
    assert step.datasets is None and not step.keyed and step.get_batch(4) is None
    fn = jax.jit(lambda s, k: step.unroll_step(theta, s, k, None, OUTER))
    new_state, out = fn(state, KEY)
    assert out.loss.shape == (step.num_tasks,) and bool(jnp.all(jnp.isfinite(out.loss)))
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    assert step.meta_loss_batch(theta, state, KEY, None, OUTER).shape == (step.num_tasks,)


def test_equal_configurations_hash_equal_and_do_not_recompile_a_jit():
    a, b = ConstantTruncationSchedule(5), ConstantTruncationSchedule(5)
    assert a is not b and a == b and hash(a) == hash(b)
    assert a != ConstantTruncationSchedule(6)
    init = jax.jit(lambda sched, key: sched.init(key, None).length + 1, static_argnums=0)
    assert int(init(a, KEY)) == 6
    with count_compiles() as c:
        assert int(init(b, KEY)) == 6
    assert c["n"] == 0

    step = VectorizedLOptTruncatedStep(
        FixedQuadraticFamily(), LearnableSGD(0.1), ConstantTruncationSchedule(10), 2
    )
    e1, e2 = TruncatedPES(step, 5, std=0.02), TruncatedPES(step, 5, std=0.02)
    assert e1 is not e2 and e1 == e2 and hash(e1) == hash(e2)
    assert e1 != TruncatedPES(step, 5, std=0.03) and e1 != TruncatedES(step, 5, std=0.02)
    scale = jax.jit(lambda est, x: x * est.std * est.unroll_length, static_argnums=0)
    np.testing.assert_allclose(float(scale(e1, 1.0)), 0.1, rtol=1e-6)
    with count_compiles() as c:
        np.testing.assert_allclose(float(scale(e2, 1.0)), 0.1, rtol=1e-6)
    assert c["n"] == 0


def _estimate_twice(make):
    """Estimates with two equal estimators; returns the compiles of the second and both grads."""
    grads = []
    for _ in range(2):
        est = make()
        theta = est.truncated_step.outer_init(KEY)
        weights = lopt_core.WorkerWeights(theta, None, OUTER)
        with count_compiles() as c:
            state = est.init_worker_state(weights, KEY)
            out, _ = est.compute_gradient_estimate(weights, KEY, state)
            jax.block_until_ready(out)
        grads.append(float(out.grad["log_lr"]))
    return c["n"], grads


def test_equal_estimators_share_their_compiled_estimate():
    step = VectorizedLOptTruncatedStep(
        DataQuadraticFamily(), LearnableSGD(0.05), ConstantTruncationSchedule(8), 2
    )
    n, grads = _estimate_twice(lambda: TruncatedPES(step, 4, std=0.01))
    assert n == 0 and grads[0] == grads[1]


@dataclasses.dataclass
class _UnhashableFamily(lopt_core.TaskFamily):
    """A plain (non-frozen) dataclass family: unhashable, as users may write them."""

    dim: int = 3

    def sample(self, key):
        return jnp.ones(self.dim)

    def task_fn(self, cfg):
        return QuadraticTask(cfg)


def test_an_estimator_of_an_unhashable_family_still_compiles_once():
    family = _UnhashableFamily()
    step = VectorizedLOptTruncatedStep(family, LearnableSGD(0.1), ConstantTruncationSchedule(8), 2)
    est = TruncatedES(step, 4)
    with pytest.raises(TypeError):
        hash(est)
    theta = step.outer_init(KEY)
    weights = lopt_core.WorkerWeights(theta, None, OUTER)
    state = est.init_worker_state(weights, KEY)
    out, _ = est.compute_gradient_estimate(weights, KEY, state)
    jax.block_until_ready(out)
    with count_compiles() as c:
        again, _ = est.compute_gradient_estimate(weights, KEY, out.unroll_state)
        jax.block_until_ready(again)
    assert c["n"] == 0 and np.isfinite(float(again.mean_loss))


def test_configuration_is_recorded_and_a_function_is_refused_naming_the_field():
    assert lopt_core.config_of(ConstantTruncationSchedule(5.0)) == {"total_length": 5}
    assert lopt_core.config_of(LogUniformLengthSchedule(2, 8)) == {
        "min_length": 2,
        "max_length": 8,
    }
    with pytest.raises(lopt_core.ConfigError, match=r"ScheduledTruncationSchedule\.schedule_fn"):
        lopt_core.config_of(ScheduledTruncationSchedule(_CURRICULUM, 50))


def test_constructors_name_the_bad_argument():
    step = VectorizedLOptTruncatedStep(_FAMILY, LearnableSGD(0.1), ConstantTruncationSchedule(4), 2)
    with pytest.raises(ValueError, match="TruncatedPES: std must be a finite number > 0"):
        TruncatedPES(step, 4, std=0.0)
    with pytest.raises(ValueError, match="TruncatedES: unroll_length must be a positive integer"):
        TruncatedES(step, 0)
    with pytest.raises(TypeError, match="TruncatedPES: truncated_step must be a lopt_core"):
        TruncatedPES(_FAMILY, 4)
    with pytest.raises(TypeError, match="FullES: antithetic must be True or False"):
        FullES(step, antithetic="yes")
    with pytest.raises(ValueError, match="no static maximum length"):
        FullES(step, NeverEndingTruncationSchedule())
    with pytest.raises(ValueError, match="FullES: clip_loss_diff must be a finite number > 0"):
        FullES(step, clip_loss_diff=-1.0)
    with pytest.raises(TypeError, match="task_family must be a lopt_core.TaskFamily, got Quad"):
        VectorizedLOptTruncatedStep(_TASK, LearnableSGD(0.1), ConstantTruncationSchedule(4), 2)
    with pytest.raises(ValueError, match="random_initial_iteration_offset must be an integer >= 0"):
        VectorizedLOptTruncatedStep(
            _FAMILY,
            LearnableSGD(0.1),
            ConstantTruncationSchedule(4),
            2,
            random_initial_iteration_offset=-1,
        )
    with pytest.raises(ValueError, match="SimpleLOptTruncatedStep: unroll_length must be a pos"):
        SimpleLOptTruncatedStep(_TASK, LearnableSGD(0.1), 0)


def test_antithetic_pairs_are_declared_not_guessed_from_shapes():
    step = VectorizedLOptTruncatedStep(_FAMILY, LearnableSGD(0.1), ConstantTruncationSchedule(4), 2)
    theta = step.outer_init(KEY)
    state = step.init_step_state(theta, OUTER, KEY)
    with pytest.raises(ValueError, match=r"holds 2 tasks.*num_tasks=2 \(antithetic pairs"):
        step.unroll_step(theta, state, KEY, None, OUTER, antithetic=True)
    pairs = jax.tree_util.tree_map(lambda x: jnp.concatenate([x, x]), state)
    with pytest.raises(ValueError, match="holds 4 tasks, but this step trains num_tasks=2"):
        step.unroll_step(theta, pairs, KEY, None, OUTER)
    # Declared pairs share keys: both halves of identical states stay identical.
    _, out = step.unroll_step(theta, pairs, KEY, None, OUTER, antithetic=True)
    np.testing.assert_array_equal(out.loss[:2], out.loss[2:])


def test_importing_lopt_outer_loads_no_plugin():
    code = "import sys, lopt_outer; print('lopt_outer._plugin' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_catalog_is_registered_and_exported():
    entries = lopt_core.REGISTRY.entries("outer_trainers")
    assert {n for n, e in entries.items() if e.plugin == "lopt-outer"} == set(
        CATALOG.names("outer_trainers")
    )
    assert entries["TruncatedPES"].description.startswith("PES: ES over truncations")
    assert {"jsonl"} <= set(CATALOG.names("metric_writers"))
    assert CATALOG.names("commands") == ["meta-train", "eval", "bench"]
    # Every component class is a public name of the package (the commands' setup
    # functions are not).
    for kind in ("outer_trainers", "metric_writers"):
        for factory in CATALOG.factories(kind).values():
            assert factory.__name__ in lopt_outer.__all__, factory
            assert getattr(lopt_outer, factory.__name__) is factory


def test_an_estimator_missing_a_stage_fails_at_instantiation_naming_it():
    from lopt_outer._es import ESEstimator
    from lopt_outer._estimator import UnrollEstimator

    @lopt_core.declare
    class NoStages(UnrollEstimator):
        def _init_state(self, theta, outer_state, key):
            return None

    @lopt_core.declare
    class NoEnd(ESEstimator):
        std: float = 0.1

        def _init_state(self, theta, outer_state, key):
            return None

    with pytest.raises(
        TypeError,
        match=r"NoStages cannot be instantiated: it must override _whole\(\) or _begin\(\)",
    ):
        NoStages(truncated_step=None)
    with pytest.raises(
        TypeError,
        match=r"NoEnd cannot be instantiated: it must override _whole\(\) or _end\(\); "
        r"it must override _begin\(\) or _start_states\(\)",
    ):
        NoEnd(truncated_step=None)
