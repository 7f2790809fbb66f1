import jax.numpy as jnp

from lopt_core.tree_utils import first_difference, tree_all_finite


def test_first_difference_names_the_first_path():
    a = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
    assert first_difference(a, {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}) is None
    assert first_difference(a, {"w": jnp.zeros((2, 3))}) == "path ['b'] is expected but missing"
    assert first_difference(a, {**a, "c": jnp.zeros(1)}) == "path ['c'] is present but not expected"
    assert (
        first_difference(a, {**a, "w": jnp.zeros(3)})
        == "path ['w'] has shape (3,), expected (2, 3)"
    )
    assert first_difference(a, {**a, "w": jnp.zeros(3)}, check_shapes=False) is None


def test_tree_all_finite():
    assert bool(tree_all_finite({"a": jnp.ones(2), "b": jnp.zeros(())}))
    assert not bool(tree_all_finite({"a": jnp.asarray([1.0, jnp.nan])}))
    assert not bool(tree_all_finite([jnp.asarray(jnp.inf)]))
    assert bool(tree_all_finite({}))
