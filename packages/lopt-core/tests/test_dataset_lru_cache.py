"""`dataset_lru_cache`: one shared `Datasets` per arguments, and clearing every cache."""

import doctest

import numpy as np

from lopt_core import datasets
from lopt_core.datasets import Datasets, dataset_lru_cache, dataset_lru_cache_clear


def _counting_datasets():
    calls = []

    @dataset_lru_cache
    def get_datasets(batch_size, fill=0.0):
        """Builds four counting iterators."""
        calls.append((batch_size, fill))

        def it():
            i = 0
            while True:
                yield {"x": np.full([batch_size], fill + i)}
                i += 1

        return Datasets(train=it(), inner_valid=it(), outer_valid=it(), test=it())

    return get_datasets, calls


def test_same_arguments_share_one_datasets_and_its_iterators():
    get_datasets, calls = _counting_datasets()
    a = get_datasets(3)
    b = get_datasets(3)
    assert a is b and calls == [(3, 0.0)]
    # The iterators are shared: a batch drawn through one handle advances the other.
    np.testing.assert_array_equal(next(a.train)["x"], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(next(b.train)["x"], [1.0, 1.0, 1.0])
    # The splits are separate iterators.
    np.testing.assert_array_equal(next(a.test)["x"], [0.0, 0.0, 0.0])
    # Other arguments build another Datasets.
    c = get_datasets(2, fill=5.0)
    assert c is not a and calls == [(3, 0.0), (2, 5.0)]
    np.testing.assert_array_equal(next(c.train)["x"], [5.0, 5.0])
    assert get_datasets.cache_info().hits == 1 and get_datasets.cache_info().misses == 2
    # The wrapper keeps the function's name and docstring.
    assert get_datasets.__name__ == "get_datasets"
    assert get_datasets.__doc__ == "Builds four counting iterators."


def test_cache_clear_and_clear_all_rebuild():
    get_a, calls_a = _counting_datasets()
    get_b, calls_b = _counting_datasets()
    a1, b1 = get_a(1), get_b(1)
    get_a.cache_clear()
    assert get_a(1) is not a1 and get_b(1) is b1
    assert len(calls_a) == 2 and len(calls_b) == 1
    a2 = get_a(1)
    dataset_lru_cache_clear()
    assert get_a(1) is not a2 and get_b(1) is not b1
    assert len(calls_a) == 3 and len(calls_b) == 2
    # The new iterators start over.
    np.testing.assert_array_equal(next(get_b(1).train)["x"], [0.0])


def test_docstring_example():
    finder = doctest.DocTestFinder()
    (test,) = finder.find(datasets.dataset_lru_cache, "dataset_lru_cache", globs=vars(datasets))
    result = doctest.DocTestRunner().run(test)
    assert result.attempted == 2 and result.failed == 0
