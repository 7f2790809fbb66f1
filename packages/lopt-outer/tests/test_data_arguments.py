"""lopt-outer's jitted steps take the data as arguments, and pass XLA:CPU options on CPU only."""

import jax
import numpy as np
from outer_helpers import DataQuadraticFamily, LearnableSGD, MetaAdam

import lopt_core
from lopt_core.testing import count_compiles
from lopt_outer import (
    ConstantTruncationSchedule,
    FullES,
    SingleMachineGradientLearner,
    TruncatedGrad,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
    _common,
)


def test_an_outer_step_reads_the_splits_current_arrays_without_recompiling():
    family = DataQuadraticFamily()
    sched = ConstantTruncationSchedule(20)
    step = VectorizedLOptTruncatedStep(
        family, LearnableSGD(0.05), sched, 4, random_initial_iteration_offset=20
    )
    splits = [family.datasets.split(s) for s in lopt_core.SPLITS]
    old = [s.arrays for s in splits]
    for est in (TruncatedPES(step, 5), FullES(step, sched), TruncatedGrad(step, 5)):
        learner = SingleMachineGradientLearner(LearnableSGD(0.05), [est], MetaAdam(1e-2))
        state = learner.init(jax.random.PRNGKey(0))
        _, loss_a, _ = learner.update(state, jax.random.PRNGKey(1))
        # Same shapes, other values: a program that baked the data in would not see them.
        for s, a in zip(splits, old):
            s.arrays = {"x": a["x"], "y": 3.0 * a["y"]}
        try:
            with count_compiles() as c:
                _, loss_b, _ = learner.update(state, jax.random.PRNGKey(1))
                jax.block_until_ready(loss_b)
        finally:
            for s, a in zip(splits, old):
                s.arrays = a
        _, loss_c, _ = learner.update(state, jax.random.PRNGKey(1))
        name = type(est).__name__
        assert c["n"] == 0, name
        assert float(loss_b) != float(loss_a), name
        assert float(loss_c) == float(loss_a), name


def test_compiler_options_apply_on_cpu_only():
    assert _common.compiler_options(_common.COMPILER_OPTIONS, "cpu") == {
        "xla_backend_optimization_level": 1
    }
    for backend in ("gpu", "cuda", "rocm", "tpu"):
        assert _common.compiler_options(_common.COMPILER_OPTIONS, backend) is None


def test_off_cpu_the_top_level_jit_is_the_plain_one(monkeypatch):
    cpu = _common.jit(lambda x: x + 1)
    assert cpu._fast is not cpu._plain and float(cpu(1.0)) == 2.0
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    gpu = _common.jit(lambda x: x + 1)
    assert gpu._fast is gpu._plain
    np.testing.assert_array_equal(gpu(np.ones(2)), np.full(2, 2.0))
