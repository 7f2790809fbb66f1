"""Contract checks that every registered component must pass.

Each check raises `AssertionError` with a message naming the component and the
property that failed. Packages run them over everything they register:

    for name in lopt_core.list_tasks():
        check_task(lopt_core.get_task(name))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import monitoring

from lopt_core.optimizers import LearnedOptimizer, Optimizer
from lopt_core.outer import GradientEstimator, GradientEstimatorOut, OuterState, WorkerWeights
from lopt_core.tasks import Task, TaskFamily
from lopt_core.tree_utils import first_difference

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compiles = {"n": 0, "active": False, "listening": False}


def _on_event(event: str, duration_secs: float, **kwargs: str | int) -> None:
    if event == _COMPILE_EVENT and _compiles["active"]:
        _compiles["n"] += 1


@contextlib.contextmanager
def count_compiles() -> Iterator[dict[str, int]]:
    """Counts XLA backend compilations inside the block: `with count_compiles() as c: ...; c["n"]`.

    The JAX monitoring listener is registered on the first use, so importing
    lopt_core (or this module) leaves JAX's listeners untouched.
    """
    if not _compiles["listening"]:
        monitoring.register_event_duration_secs_listener(_on_event)
        _compiles["listening"] = True
    _compiles["n"] = 0
    _compiles["active"] = True
    result = {"n": 0}
    try:
        yield result
    finally:
        _compiles["active"] = False
        result["n"] = _compiles["n"]


def _fail(who: str, what: str) -> AssertionError:
    return AssertionError(f"{who}: {what}")


def _assert_finite_scalar(who: str, label: str, value: Any) -> None:
    arr = np.asarray(value)
    if arr.shape != ():
        raise _fail(who, f"{label} must be a scalar, got shape {arr.shape}")
    if not np.isfinite(arr):
        raise _fail(who, f"{label} is not finite: {arr}")


def _assert_same_tree(who: str, label: str, expected: Any, got: Any, dtypes: bool = True) -> None:
    diff = first_difference(expected, got)
    if diff is not None:
        raise _fail(who, f"{label}: {diff}")
    if dtypes:
        for (p, a), b in zip(
            jax.tree_util.tree_leaves_with_path(expected), jax.tree_util.tree_leaves(got)
        ):
            if jnp.result_type(a) != jnp.result_type(b):
                raise _fail(
                    who,
                    f"{label}: dtype at {jax.tree_util.keystr(p)} changed from "
                    f"{jnp.result_type(a)} to {jnp.result_type(b)}",
                )


def _assert_equal_trees(who: str, label: str, a: Any, b: Any) -> None:
    _assert_same_tree(who, label, a, b)
    for (p, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
        if not np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True):
            raise _fail(who, f"{label}: values differ at {jax.tree_util.keystr(p)}")


def _assert_no_recompile(who: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Calls a jitted `fn(*args)` a second time and asserts it compiles nothing."""
    args = jax.block_until_ready(args)
    with count_compiles() as c:
        out = jax.block_until_ready(fn(*args))
    if c["n"]:
        raise _fail(who, f"a second call with the same shapes compiled {c['n']} more time(s)")
    return out


def _batch(task: Task, data: Any) -> Any:
    if data is not None:
        return data
    if task.datasets is None:
        return None
    return next(task.datasets.train)


def check_task(task: Task, key: jax.Array | None = None, data: Any = None) -> None:
    """Asserts the Task contract.

    Checks: init is deterministic in its key; the loss is a finite scalar; grads
    have the params' tree, shapes and dtypes; the model state keeps its structure
    and dtypes through `loss_with_state` under `jit`; a second jitted call does not
    recompile; the same key gives the same loss; batches match `abstract_batch`.

    Args:
      task: the task.
      key: the key to use (PRNGKey(0) by default).
      data: a batch; drawn from `task.datasets.train` by default.
    """
    who = f"Task {task.name!r}"
    key = jax.random.PRNGKey(0) if key is None else key
    k_init, k_loss = jax.random.split(key)
    params, state = task.init_with_state(k_init)
    params2, state2 = task.init_with_state(k_init)
    _assert_equal_trees(
        who, "init_with_state with the same key", (params, state), (params2, state2)
    )
    if not jax.tree_util.tree_leaves(params):
        raise _fail(who, "init returned no parameters")
    batch = _batch(task, data)
    ds = task.datasets
    if ds is not None and ds.abstract_batch is not None and data is None:
        _assert_same_tree(who, "batch vs datasets.abstract_batch", ds.abstract_batch, batch)

    def loss_fn(p: Any, s: Any, k: jax.Array, b: Any) -> tuple[Any, Any]:
        loss, new_s = task.loss_with_state(p, s, k, b)
        return loss, new_s

    # The shape from a trace (no compile), the value with the gradients (one compile).
    shape = jax.eval_shape(loss_fn, params, state, k_loss, batch)[0].shape
    if shape != ():
        raise _fail(who, f"loss must be a scalar, got shape {shape}")
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (loss, new_state), grads = grad_fn(params, state, k_loss, batch)
    _assert_finite_scalar(who, "loss", loss)
    _assert_same_tree(who, "grads vs params", params, grads)
    _assert_same_tree(who, "model state after loss_with_state", state, new_state)
    if not all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads)):
        raise _fail(who, "gradients are not finite")
    (loss2, _), _ = _assert_no_recompile(who, grad_fn, params, state, k_loss, batch)
    if not np.array_equal(np.asarray(loss), np.asarray(loss2)):
        raise _fail(who, f"the same key gave different losses: {loss} vs {loss2}")
    normed = task.normalizer(loss)
    _assert_finite_scalar(who, "normalizer(loss)", normed)
    if state is None:
        _assert_finite_scalar(who, "loss()", task.loss(params, k_loss, batch))


def check_task_family(family: TaskFamily, key: jax.Array | None = None, data: Any = None) -> None:
    """Asserts the TaskFamily contract.

    Checks: `sample` is deterministic in its key and can be vmapped; the task of a
    sample passes `check_task`; tasks from vmapped samples have the same parameter
    structure as unbatched ones.
    """
    who = f"TaskFamily {family.name!r}"
    key = jax.random.PRNGKey(0) if key is None else key
    cfg = family.sample(key)
    _assert_equal_trees(who, "sample with the same key", cfg, family.sample(key))
    keys = jax.random.split(key, 3)
    cfgs = jax.vmap(family.sample)(keys)
    for leaf, one in zip(jax.tree_util.tree_leaves(cfgs), jax.tree_util.tree_leaves(cfg)):
        if np.shape(leaf) != (3, *np.shape(one)):
            raise _fail(who, f"vmapped sample has leaf shape {np.shape(leaf)}")
    task = family.task_fn(cfg)
    if data is None and task.datasets is None and family.datasets is not None:
        data = next(family.datasets.train)
    check_task(task, key, data)
    eval_task = family.eval_task_fn(cfg)
    if not isinstance(eval_task, Task):
        raise _fail(who, f"eval_task_fn returned {type(eval_task).__name__}, not a Task")

    def init_one(c: Any, k: jax.Array) -> Any:
        return family.task_fn(c).init(k)

    batched = jax.vmap(init_one)(cfgs, keys)
    single = family.task_fn(cfg).init(key)
    _assert_same_tree(
        who,
        "vmapped task init vs single init",
        jax.tree_util.tree_map(lambda x: x[None].repeat(3, 0), single),
        batched,
    )


def _default_params() -> dict[str, jax.Array]:
    k1, k2 = jax.random.split(jax.random.PRNGKey(42))
    return {
        "w": jax.random.normal(k1, (3, 2)),
        "b": jax.random.normal(k2, (2,)),
        "s": jnp.asarray(0.5, jnp.float32),
    }


def _quadratic_grads(params: Any) -> tuple[Any, jax.Array]:
    def loss(p: Any) -> Any:
        return sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree_util.tree_leaves(p))

    value, grads = jax.value_and_grad(loss)(params)
    return grads, value


def check_optimizer(opt: Optimizer, params: Any = None, key: jax.Array | None = None) -> None:
    """Asserts the Optimizer contract.

    Checks: `init` is deterministic; `get_params` returns the params; `update`
    under `jit` keeps the state's structure and dtypes and gives finite params with
    the params' tree; a second call does not recompile; the same key and inputs
    give the same result; `get_params_state` and `set_params` work.
    """
    who = f"Optimizer {opt.name!r}"
    params = _default_params() if params is None else params
    key = jax.random.PRNGKey(0) if key is None else key
    state = opt.init(params, num_steps=100, key=key)
    _assert_equal_trees(
        who, "init with the same inputs", state, opt.init(params, num_steps=100, key=key)
    )
    _assert_equal_trees(who, "get_params after init", params, opt.get_params(state))
    got_params, _ = opt.get_params_state(state)
    _assert_same_tree(who, "get_params_state", params, got_params)

    @jax.jit
    def step(s: Any, k: jax.Array) -> Any:
        p = opt.get_params(s)
        g, loss = _quadratic_grads(p)
        return opt.update(s, g, loss=loss, key=k)

    state1 = step(state, key)
    _assert_same_tree(who, "state after a jitted update", state, state1)
    new_params = opt.get_params(state1)
    _assert_same_tree(who, "params after update", params, new_params)
    for leaf in jax.tree_util.tree_leaves(new_params):
        if not bool(jnp.all(jnp.isfinite(leaf))):
            raise _fail(who, "update produced non-finite params")
    state2 = _assert_no_recompile(who, step, state1, key)
    _assert_equal_trees(who, "update with the same inputs", step(state1, key), state2)
    moved = opt.set_params(state2, params)
    _assert_equal_trees(who, "set_params", params, opt.get_params(moved))


def check_learned_optimizer(lopt: LearnedOptimizer, key: jax.Array | None = None) -> None:
    """Asserts the LearnedOptimizer contract.

    Checks: `init` is deterministic and finite; `opt_fn(theta)` and
    `opt_fn(theta, is_training=True)` pass `check_optimizer`; an inner update is
    differentiable with respect to theta under `jit`, with finite meta-gradients
    shaped like theta, and does not recompile on a second call.
    """
    who = f"LearnedOptimizer {lopt.name!r}"
    key = jax.random.PRNGKey(0) if key is None else key
    theta = lopt.init(key)
    _assert_equal_trees(who, "init with the same key", theta, lopt.init(key))
    if not jax.tree_util.tree_leaves(theta):
        raise _fail(who, "theta has no leaves")
    for leaf in jax.tree_util.tree_leaves(theta):
        if not bool(jnp.all(jnp.isfinite(leaf))):
            raise _fail(who, "theta from init is not finite")
    check_optimizer(lopt.opt_fn(theta), key=key)
    check_optimizer(lopt.opt_fn(theta, is_training=True), key=key)
    params = _default_params()

    @jax.jit
    def meta_value_and_grad(th: Any, k: jax.Array) -> tuple[Any, Any]:
        def meta_loss(t: Any) -> Any:
            opt = lopt.opt_fn(t, is_training=True)
            s = opt.init(params, num_steps=10, key=k)
            for _ in range(2):
                g, loss = _quadratic_grads(opt.get_params(s))
                s = opt.update(s, g, loss=loss, key=k)
            _, final = _quadratic_grads(opt.get_params(s))
            return final

        return jax.value_and_grad(meta_loss)(th)

    value, meta_grad = meta_value_and_grad(theta, key)
    _assert_finite_scalar(who, "meta-loss", value)
    _assert_same_tree(who, "meta-gradient vs theta", theta, meta_grad)
    for leaf in jax.tree_util.tree_leaves(meta_grad):
        if not bool(jnp.all(jnp.isfinite(leaf))):
            raise _fail(who, "meta-gradient is not finite")
    _assert_no_recompile(who, meta_value_and_grad, theta, key)


def check_gradient_estimator(
    estimator: GradientEstimator, theta: Any = None, key: jax.Array | None = None
) -> None:
    """Asserts the GradientEstimator contract.

    Checks: `compute_gradient_estimate` returns a `GradientEstimatorOut` with a
    finite scalar mean loss and a finite grad shaped like theta; the worker state
    keeps its structure and dtypes; the same key and state give the same estimate;
    a second call compiles nothing.
    """
    who = f"GradientEstimator {type(estimator).__name__}"
    key = jax.random.PRNGKey(0) if key is None else key
    k_theta, k_init, k_est = jax.random.split(key, 3)
    if theta is None:
        if estimator.truncated_step is None:
            raise _fail(who, "has no truncated_step to initialise theta from; pass theta")
        theta = estimator.truncated_step.outer_init(k_theta)
    weights = WorkerWeights(theta, None, OuterState(jnp.asarray(0, jnp.int32)))
    state = estimator.init_worker_state(weights, k_init)
    out, metrics = estimator.compute_gradient_estimate(weights, k_est, state, with_summary=False)
    if not isinstance(out, GradientEstimatorOut):
        raise _fail(who, f"returned {type(out).__name__}, not GradientEstimatorOut")
    if not isinstance(metrics, dict):
        raise _fail(who, f"metrics must be a dict, got {type(metrics).__name__}")
    _assert_finite_scalar(who, "mean_loss", out.mean_loss)
    _assert_same_tree(who, "grad vs theta", theta, out.grad)
    for leaf in jax.tree_util.tree_leaves(out.grad):
        if not bool(jnp.all(jnp.isfinite(leaf))):
            raise _fail(who, "grad is not finite")
    _assert_same_tree(who, "worker state after an estimate", state, out.unroll_state)
    again, _ = estimator.compute_gradient_estimate(weights, k_est, state, with_summary=False)
    _assert_equal_trees(who, "estimate with the same key and state", out.grad, again.grad)
    jax.block_until_ready(out.unroll_state)
    with count_compiles() as c:
        out2, _ = estimator.compute_gradient_estimate(
            weights, k_est, out.unroll_state, with_summary=False
        )
        jax.block_until_ready(out2.grad)
    if c["n"]:
        raise _fail(who, f"a second estimate compiled {c['n']} more time(s)")


def check_catalog_index(entry_point: str) -> None:
    """Checks a plugin's catalog index: current, and enough for `lopt` to start without JAX.

    1. The index file beside the entry point's module is exactly what its catalog
       writes now (every submodule of the package imported), so no component is
       missing, renamed or described from an old docstring.
    2. In a fresh interpreter, `lopt --help`, `lopt list` and `lopt describe` of
       each registered name import neither JAX nor any of the package's modules
       other than the package itself and the modules of its commands.

    Args:
      entry_point: the value of the package's `lopt` entry point, `module:ATTR`.

    Raises:
      AssertionError: naming what differs and the command that rewrites the index.
    """
    import json
    import subprocess
    import sys

    from lopt_core.registry import CatalogIndex, index_path, index_text

    path = index_path(entry_point)
    fix = f"rewrite it: python -m lopt_core.registry write-index {entry_point}"
    if path is None or not path.is_file():
        raise AssertionError(f"{entry_point} ships no catalog index (expected {path}); {fix}")
    expected = index_text(entry_point)
    if path.read_text() != expected:
        old = CatalogIndex.parse(path.read_bytes(), str(path)).entries
        new = CatalogIndex.parse(expected.encode(), "the catalog").entries
        changed = sorted(
            f"{kind}:{name}"
            for kind in set(old) | set(new)
            for name in set(old.get(kind, {})) | set(new.get(kind, {}))
            if old.get(kind, {}).get(name) != new.get(kind, {}).get(name)
        )
        raise AssertionError(
            f"The catalog index {path} is stale ({', '.join(changed) or 'formatting'}); {fix}"
        )
    names = [n for table in json.loads(expected)["entries"].values() for n in table]
    top = entry_point.partition(":")[0].split(".")[0]
    script = (
        "import sys\n"
        "from lopt_core import cli\n"
        "for argv in [['--help'], ['list'], *[['describe', n] for n in NAMES]]:\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "bad = sorted(m for m in sys.modules if m == 'jax' or m.startswith('jax.')"
        " or (m.startswith(TOP + '.') and not m.endswith(('._plugin', '._cli', '.cli'))))\n"
        "print('IMPORTED', bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", f"NAMES = {names!r}\nTOP = {top!r}\n{script}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("IMPORTED")), None)
    if line != "IMPORTED []":
        raise AssertionError(
            f"`lopt --help`, `lopt list` and `lopt describe` with {top} installed imported "
            f"{line or out.stderr[-2000:]}; they must read the catalog index only. Keep the "
            "package's __init__ lazy (lopt_core.lazy.attach) and its command modules free of "
            "JAX at import."
        )
