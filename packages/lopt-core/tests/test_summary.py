"""lopt_core.summary: values recorded inside jit, scan, vmap and grad, and their aggregation."""

from __future__ import annotations

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from lopt_core import summary as summary_mod
from lopt_core.summary import (
    add_with_summary,
    aggregate_metric,
    aggregate_metric_list,
    collecting,
    summary,
    summary_scope,
    with_summary_output_reduced,
)


def _scan_fn(a):
    # The reference's own test function: 123 at the start, then 124..143 in a scan.
    summary("a", a[0])

    def update(state, _):
        s = state + 1
        summary("loop", s[0])
        return s, s

    a, _ = lax.scan(update, a, jnp.arange(20))
    return a * 2


def test_module_docstring_example_runs():
    assert doctest.testmod(summary_mod, raise_on_error=True).attempted > 0


def test_scan_values_are_averaged_like_the_reference():
    out, metrics = with_summary_output_reduced(_scan_fn)(jnp.zeros(1) + 123)
    np.testing.assert_array_equal(out, [286.0])
    assert set(metrics) == {"mean||a", "mean||loop"}
    assert float(metrics["mean||a"]) == 123.0
    assert float(metrics["mean||loop"]) == 133.5  # mean of 124..143


def test_nothing_is_recorded_without_recording():
    with collecting() as col:
        out = jax.jit(_scan_fn)(jnp.zeros(1))
        jax.block_until_ready(out)
    assert col.values == {}
    # and the plain function returns its value unchanged
    assert summary("x", 3.0) == 3.0


def test_vmap_and_grad_record_every_copy():
    def loss(w, x):
        summary("wx", w * x)
        return (w * x) ** 2

    def f(w, xs):
        return jax.vmap(jax.grad(loss), in_axes=(None, 0))(w, xs)

    out, metrics = with_summary_output_reduced(f)(2.0, jnp.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(out, [4.0, 16.0, 36.0])
    assert float(metrics["mean||wx"]) == pytest.approx(4.0)  # mean of 2, 4, 6


def test_aggregations_table():
    vs = [np.array([1.0, 2.0]), np.array(3.0)]
    assert aggregate_metric("mean||x", vs) == pytest.approx(2.0)  # weighted by size
    np.testing.assert_array_equal(aggregate_metric("collect||x", vs), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(aggregate_metric("tensor||x", [np.ones((2, 2))]), np.ones((2, 2)))
    assert aggregate_metric("none||x", [np.array([5.0])]).shape == ()
    assert float(aggregate_metric("plain_metric", [np.array(1.0), np.array(3.0)])) == 2.0
    s = aggregate_metric("sample||x", vs, key=jax.random.key(0))
    assert float(s) in (1.0, 2.0, 3.0)
    # the same key draws the same element
    assert float(aggregate_metric("sample||x", vs, key=jax.random.key(0))) == float(s)


@pytest.mark.parametrize(
    ("key", "vs", "kwargs", "match"),
    [
        ("sample||x", [np.ones(3)], {}, "pass key=jax.random.key"),
        ("none||x", [np.ones(()), np.ones(())], {}, "exactly one value, but 2"),
        ("none||x", [np.ones(3)], {}, "takes one scalar, got shape"),
        ("tensor||x", [np.ones(2), np.ones(2)], {}, "exactly one value"),
        ("median||x", [np.ones(2)], {}, "unknown aggregation 'median'"),
    ],
)
def test_aggregation_errors(key, vs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        aggregate_metric(key, vs, **kwargs)


def test_summary_argument_errors():
    with pytest.raises(TypeError, match="the name comes first"):
        summary(jnp.ones(()), "loss")
    with pytest.raises(ValueError, match="contains '||'"):
        summary("a||b", 1.0)
    with pytest.raises(ValueError, match="aggregation"):
        summary("a", 1.0, aggregation="median")


def test_scopes_prefix_names_and_static_args():
    def f(name, x):
        with summary_scope("outer"):
            summary(name, x, aggregation="none")
            summary("all", x, aggregation="collect")
        return x * 2

    out, metrics = with_summary_output_reduced(f, static_argnums=(0,))("val", jnp.array(3.0))
    assert float(out) == 6.0
    assert float(metrics["none||outer/val"]) == 3.0
    np.testing.assert_array_equal(metrics["collect||outer/all"], [3.0])


def test_add_with_summary_switch():
    def f(name, x):
        summary(name, x)
        return x * 2

    g = add_with_summary(f, static_argnums=(0,))
    out, metrics = g("test", 1.0, with_summary=False)
    assert (out, metrics) == (2.0, {})
    out, metrics = g("test", 1.0, with_summary=True)
    assert float(out) == 2.0
    assert float(metrics["mean||test"]) == 1.0


def test_sample_aggregation_needs_a_key_through_the_wrapper():
    def f(x):
        summary("s", x, aggregation="sample")
        return x

    wrapped = with_summary_output_reduced(f)
    with pytest.raises(ValueError, match="sample aggregation"):
        wrapped(jnp.arange(4.0))
    _, metrics = wrapped(jnp.arange(4.0), sample_rng_key=jax.random.key(1))
    assert float(metrics["sample||s"]) in (0.0, 1.0, 2.0, 3.0)


def test_wrapper_refuses_to_run_under_a_transformation():
    wrapped = with_summary_output_reduced(lambda x: x)
    with pytest.raises(ValueError, match="wrap from outside"):
        jax.jit(lambda x: wrapped(x)[0])(1.0)


def test_aggregate_metric_list_merges_workers():
    merged = aggregate_metric_list(
        [
            {"mean||loss": np.array(1.0), "collect||v": np.array([1.0])},
            {"mean||loss": np.array(3.0), "collect||v": np.array([2.0])},
        ]
    )
    assert float(merged["mean||loss"]) == 2.0
    np.testing.assert_array_equal(merged["collect||v"], [1.0, 2.0])


def test_tree_helpers_name_every_leaf():
    params = {"w": jnp.array([1.0, -3.0]), "b": jnp.array([2.0])}

    def f(p):
        summary_mod.summarize_inner_params(p)
        summary_mod.tree_step("step", p)
        return p

    _, metrics = with_summary_output_reduced(f)(params)
    assert float(metrics["mean||w/mean"]) == -1.0
    assert float(metrics["mean||w/mean_abs"]) == 2.0
    assert float(metrics["mean||b/mean"]) == 2.0
    # leaves in tree order: b, then w
    assert float(metrics["mean||step/1_avg_step_size"]) == 2.0
