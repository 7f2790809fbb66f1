"""The older spellings of lopt-outer's arguments (lopt_outer.compat) keep working."""

import dataclasses

import pytest
from outer_helpers import FixedQuadraticFamily, LearnableSGD

from lopt_outer import ConstantTruncationSchedule, TruncatedPES, VectorizedLOptTruncatedStep
from lopt_outer._plugin import CATALOG
from lopt_outer.compat import RENAMED


def _step():
    return VectorizedLOptTruncatedStep(
        FixedQuadraticFamily(), LearnableSGD(0.1), ConstantTruncationSchedule(20), 2
    )


def test_truncated_pes_accepts_the_reference_spelling_trunc_length():
    step = _step()
    # The README's and the reference notebooks' spelling.
    old = TruncatedPES(truncated_step=step, trunc_length=20, std=0.01)
    assert old.unroll_length == 20
    assert old == TruncatedPES(step, unroll_length=20, std=0.01)
    assert hash(old) == hash(TruncatedPES(step, 20, 0.01))


def test_both_spellings_at_once_are_refused_naming_the_new_one():
    with pytest.raises(TypeError, match="got both 'trunc_length' and 'unroll_length'"):
        TruncatedPES(_step(), trunc_length=5, unroll_length=5)


def test_every_old_spelling_maps_to_a_field_of_a_registered_component():
    factories = CATALOG.factories("outer_trainers")
    for name, renames in RENAMED.items():
        fields = {f.name for f in dataclasses.fields(factories[name])}
        for old, new in renames.items():
            assert new in fields and old not in fields, (name, old, new)
