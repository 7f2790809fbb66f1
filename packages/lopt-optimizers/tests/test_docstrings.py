"""The Examples in the docstrings run and print what they show."""

from __future__ import annotations

import doctest

import pytest

import lopt_optimizers
from lopt_optimizers import optax_optimizer, optimizers, schedules, to_optax, tuning_free, wrappers


@pytest.mark.parametrize(
    "module",
    [lopt_optimizers, optimizers, wrappers, optax_optimizer, to_optax, schedules, tuning_free],
    ids=lambda m: m.__name__,
)
def test_docstring_examples(module):
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True
    )
    assert result.attempted > 0
    assert result.failed == 0
