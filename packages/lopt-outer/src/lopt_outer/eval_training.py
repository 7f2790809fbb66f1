"""Training curves of an optimizer on one task, or of a learned optimizer on many sampled tasks.

Inner training runs as `lax.scan` chunks inside `jit` (vmapped over tasks for
`multi_task_training_curves`); batches come from keys inside `jit` when the
datasets are keyed, otherwise a chunk's batches are pulled from the iterators
at once. The output keys are those of the reference library.

References:
  learned_optimization, `eval_training.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lopt_core import (
    LearnedOptimizer,
    MetaParams,
    Optimizer,
    PRNGKey,
    Task,
    TaskFamily,
    evaluation_point,
)
from lopt_core.validation import check_positive_int
from lopt_outer import sharding
from lopt_outer._common import host_batches, jit, strong

__all__ = ["multi_task_training_curves", "single_task_training_curves"]


def _keyed(datasets: Any) -> bool:
    return datasets is not None and datasets.keyed


def _train_step(task: Task, opt: Optimizer, opt_state: Any, key: PRNGKey, data: Any):
    k_loss, k_update = jax.random.split(key)
    p, s = opt.get_params_state(opt_state)
    (loss, s), grad = jax.value_and_grad(task.loss_with_state, has_aux=True)(p, s, k_loss, data)
    return opt.update(opt_state, grad, loss=loss, model_state=s, key=k_update), loss


def _train_steps(
    task: Task, opt: Optimizer, keyed_ds: Any, opt_state: Any, key: PRNGKey, datas: Any, n: int
):
    """`n` training steps in one `lax.scan`: batches come from `keyed_ds.sample` when it is
    given (keyed datasets), else from `datas` (stacked batches, one per step)."""

    def body(s, xs):
        k, d = xs
        if keyed_ds is not None:
            k, k_data = jax.random.split(k)
            d = keyed_ds.sample("train", k_data)
        return _train_step(task, opt, s, k, d)

    return lax.scan(body, opt_state, (jax.random.split(key, n), datas))


def _eval_one(task: Task, opt: Optimizer, opt_state: Any, key: PRNGKey, data: Any):
    # The evaluation point, which schedule-free optimizers keep apart from the training one.
    p, s = evaluation_point(opt, opt_state)
    loss, _, aux = task.loss_with_state_and_aux(p, s, key, data)
    return loss, task.normalizer(loss), aux


def single_task_training_curves(
    task: Task,
    opt: Optimizer,
    num_steps: int,
    key: PRNGKey,
    eval_every: int = 10,
    eval_batches: int = 5,
    last_eval_batches: int = 20,
    eval_task: Task | None = None,
) -> dict[str, np.ndarray]:
    """Trains `task` with `opt` for `num_steps` steps, evaluating every `eval_every` steps.

    Args:
      task: the task.
      opt: the optimizer.
      num_steps: inner training steps.
      key: random key (inits, losses, keyed batches).
      eval_every: steps between evaluations (also at step 0 and at the end).
      eval_batches: batches per evaluation and split.
      last_eval_batches: batches for the final evaluation.
      eval_task: task used for evaluation; `task` by default.

    As in the reference, the loop runs `num_steps + 1` training steps: steps 0 ...
    num_steps, each after the evaluation due at it (every `eval_every`, and at
    `num_steps` with `last_eval_batches`). So the evaluations see the params after
    0, `eval_every`, ..., `num_steps` updates, and `train/loss` holds the loss of
    every step, the one after the last evaluation included.

    Returns:
      `train/xs` (0 ... num_steps), `train/loss` (num_steps + 1,), `eval/xs`, and per split in train,
      outer_valid, test: `eval/<split>/loss`, `eval/<split>/loss_normalized` and
      `eval/<split>/<aux>`; plus `eval/eval_batches` and `eval/last_eval_batches`.
    """
    owner = "single_task_training_curves"
    num_steps = check_positive_int(num_steps, owner, "num_steps", minimum=0)
    eval_every = check_positive_int(eval_every, owner, "eval_every")
    eval_task = task if eval_task is None else eval_task
    ds = task.datasets
    keyed = _keyed(ds)
    splits = ("train", "outer_valid", "test")

    @functools.partial(jit, static_argnums=(3,))
    def train_chunk(opt_state, key, datas, n):
        return _train_steps(task, opt, ds if keyed else None, opt_state, key, datas, n)

    @functools.partial(jit, static_argnums=(3, 4))
    def evaluate(opt_state, key, datas, split, n):
        def one(xs):
            k, d = xs
            if keyed:
                k, k_data = jax.random.split(k)
                d = ds.sample(split, k_data)
            return _eval_one(eval_task, opt, opt_state, k, d)

        losses, norms, aux = lax.map(one, (jax.random.split(key, n), datas))
        return jnp.mean(losses), jnp.mean(norms), jax.tree_util.tree_map(jnp.mean, aux)

    key, k_init = jax.random.split(key)
    params, model_state = task.init_with_state(k_init)
    # A key of its own: an optimizer drawing noise at init with the params' key
    # would draw the very numbers the params were drawn from.
    k_opt = jax.random.fold_in(k_init, 1)
    opt_state = strong(opt.init(params, model_state, num_steps=num_steps, key=k_opt))
    train_losses, eval_rows, eval_xs = [], [], []

    def run_eval(step: int, n: int, key: PRNGKey) -> None:
        row = {}
        for s, k in zip(splits, jax.random.split(key, len(splits))):
            datas = None if keyed or ds is None else host_batches(ds, s, (n,))
            loss, norm, aux = evaluate(opt_state, k, datas, s, n)
            row[f"eval/{s}/loss"] = float(loss)
            row[f"eval/{s}/loss_normalized"] = float(norm)
            for a, v in aux.items():
                row[f"eval/{s}/{a}"] = float(v)
        eval_rows.append(row)
        eval_xs.append(step)

    step = 0
    while True:
        key, k_eval, k_train = jax.random.split(key, 3)
        last = step == num_steps
        run_eval(step, last_eval_batches if last else eval_batches, k_eval)
        # As the reference: a training step follows every evaluation, the last one too.
        n = 1 if last else min(eval_every, num_steps - step)
        datas = None if keyed or ds is None else host_batches(ds, "train", (n,))
        opt_state, losses = train_chunk(opt_state, k_train, datas, n)
        train_losses.append(np.asarray(losses))
        if last:
            break
        step += n

    out: dict[str, np.ndarray] = {
        "train/xs": np.arange(num_steps + 1),
        "train/loss": np.concatenate(train_losses),
        "eval/xs": np.asarray(eval_xs),
        "eval/last_eval_batches": np.asarray(last_eval_batches),
        "eval/eval_batches": np.asarray(eval_batches),
    }
    for k in eval_rows[0]:
        out[k] = np.asarray([r[k] for r in eval_rows])
    return out


def multi_task_training_curves(
    task_family: TaskFamily,
    learned_opt: LearnedOptimizer,
    theta: MetaParams,
    n_tasks: int,
    seed: int | None = None,
    key: PRNGKey | None = None,
    n_eval_batches_vec: int = 1,
    n_eval_batches: int = 1,
    last_eval_batches: int = 1,
    eval_every: int = 10,
    steps_per_jit: int = 10,
    eval_just_at_end: bool = False,
    steps: int = 10000,
    splits: Sequence[str] = ("train",),
    with_aux_values: Sequence[str] = (),
    *,
    shard_tasks: bool = False,
) -> dict[str, np.ndarray]:
    """Trains `n_tasks` samples of `task_family` in parallel with `learned_opt.opt_fn(theta)`.

    Args:
      task_family: the family to sample tasks from.
      learned_opt: the learned optimizer (wrap a hand-designed optimizer with
        `lopt_outer.evaluate.FixedOptimizer` to evaluate it the same way).
      theta: its meta-parameters.
      n_tasks: tasks trained in parallel (vmapped).
      seed: seed of the task samples and inits (used when `key` is None; 0 when
        both are None, so results are reproducible).
      key: random key; overrides `seed`.
      n_eval_batches_vec: batches evaluated per vectorised call.
      n_eval_batches: calls per evaluation.
      last_eval_batches: calls for the final evaluation.
      eval_every: steps between evaluations; a multiple of `steps_per_jit`.
      steps_per_jit: inner steps per jitted call.
      eval_just_at_end: evaluate only after training.
      steps: inner steps; a multiple of `steps_per_jit`.
      splits: data splits to evaluate on.
      with_aux_values: aux values of the task's loss to report as well.
      shard_tasks: split the tasks over every `jax.local_devices()` (as
        `VectorizedLOptTruncatedStep(shard_tasks=True)`, see
        `lopt_outer.sharding`); theta is replicated. The curves are the same as
        unsharded, to float rounding.

    Returns:
      Arrays with a leading `n_tasks` axis: `train/xs`, `train/loss`,
      `train/norm_loss` (tasks, steps), `eval/xs`, and per split
      `eval/<split>/loss`, `eval/<split>/norm_loss`, `eval/<split>/aux/<name>`
      (tasks, evaluations); plus `eval/last_eval_batches` and `eval/eval_batches`.

    Raises:
      ValueError: `steps` or `eval_every` is not a multiple of `steps_per_jit`,
        or `shard_tasks=True` with an `n_tasks` that is not a multiple of the
        number of local devices.
    """
    owner = "multi_task_training_curves"
    n_tasks = check_positive_int(n_tasks, owner, "n_tasks")
    steps_per_jit = check_positive_int(steps_per_jit, owner, "steps_per_jit")
    steps = check_positive_int(steps, owner, "steps", minimum=0)
    eval_every = check_positive_int(eval_every, owner, "eval_every")
    if steps % steps_per_jit or eval_every % steps_per_jit:
        raise ValueError(
            f"steps ({steps}) and eval_every ({eval_every}) must be multiples of "
            f"steps_per_jit ({steps_per_jit})."
        )
    if not isinstance(shard_tasks, bool):
        raise TypeError(f"{owner}: shard_tasks must be True or False, got {shard_tasks!r}.")
    mesh = sharding.task_mesh(n_tasks, owner, "n_tasks") if shard_tasks else None
    if key is None:
        key = jax.random.PRNGKey(0 if seed is None else seed)
    ds = task_family.datasets
    keyed = _keyed(ds)
    with_aux = tuple(with_aux_values)
    fns = _train_fns(task_family, learned_opt, steps_per_jit, keyed, with_aux, mesh)
    # Per-task keys and host batches go to their tasks' devices; theta to every device.
    theta = sharding.replicate(theta, mesh)

    def split_tasks(k: PRNGKey) -> PRNGKey:
        return sharding.put_tasks(jax.random.split(k, n_tasks), mesh)

    def batches(split: str, shape: tuple[int, ...]) -> Any:
        return sharding.put_tasks(host_batches(ds, split, shape), mesh)

    key, k_init = jax.random.split(key)
    opt_states, cfgs = fns["init"](theta, split_tasks(k_init), steps)
    opt_states = strong(opt_states)

    def eval_loop(key: PRNGKey, calls: int) -> dict[str, np.ndarray]:
        out = {}
        for s in splits:
            ls, ns, auxs = [], [], []
            for k in jax.random.split(key, calls):
                datas = None if keyed or ds is None else batches(s, (n_tasks, n_eval_batches_vec))
                keys = split_tasks(k)
                loss, norm, aux = fns["eval"](
                    theta, opt_states, cfgs, keys, datas, s, n_eval_batches_vec
                )
                ls.append(np.asarray(loss))
                ns.append(np.asarray(norm))
                auxs.append({a: np.asarray(v) for a, v in aux.items()})
            out[f"eval/{s}/loss"] = np.mean(ls, axis=0)
            out[f"eval/{s}/norm_loss"] = np.mean(ns, axis=0)
            for a in auxs[0]:
                out[f"eval/{s}/aux/{a}"] = np.mean([x[a] for x in auxs], axis=0)
        return out

    evals, eval_xs, train_losses, train_norms = [], [], [], []
    for i in range(steps // steps_per_jit):
        key, k_eval, k_train = jax.random.split(key, 3)
        if (
            not eval_just_at_end
            and (i * steps_per_jit) % eval_every == 0
            and n_eval_batches_vec > 0
        ):
            evals.append(eval_loop(k_eval, n_eval_batches))
            eval_xs.append(i * steps_per_jit)
        datas = None if keyed or ds is None else batches("train", (n_tasks, steps_per_jit))
        opt_states, losses, norms = fns["unroll"](
            theta, opt_states, cfgs, split_tasks(k_train), datas
        )
        train_losses.append(np.asarray(losses))
        train_norms.append(np.asarray(norms))
    key, k_eval = jax.random.split(key)
    if n_eval_batches_vec > 0:
        evals.append(eval_loop(k_eval, last_eval_batches))
        eval_xs.append(steps)

    out: dict[str, np.ndarray] = {
        "train/xs": np.tile(np.arange(steps)[None], (n_tasks, 1)),
        "train/loss": np.concatenate(train_losses, axis=1)
        if train_losses
        else np.zeros((n_tasks, 0)),
        "train/norm_loss": np.concatenate(train_norms, axis=1)
        if train_norms
        else np.zeros((n_tasks, 0)),
        "eval/xs": np.tile(np.asarray(eval_xs)[None], (n_tasks, 1)),
        "eval/last_eval_batches": np.asarray(last_eval_batches),
        "eval/eval_batches": np.asarray(n_eval_batches * n_eval_batches_vec),
    }
    for k in evals[0] if evals else []:
        out[k] = np.stack([e[k] for e in evals], axis=1)
    return out


@functools.lru_cache(maxsize=32)
def _train_fns(
    task_family: TaskFamily,
    learned_opt: LearnedOptimizer,
    steps_per_jit: int,
    keyed: bool,
    with_aux: tuple[str, ...],
    mesh: Any = None,
) -> dict[str, Any]:
    """Jitted init / unroll / eval functions, cached so repeated evaluations compile once.

    With a task `mesh` (`shard_tasks`), their per-task outputs are constrained to
    be split over it; None adds no op.
    """
    ds = task_family.datasets

    def shard(tree: Any) -> Any:
        return sharding.constrain_tasks(tree, mesh)

    @functools.partial(jit, static_argnums=(2,))
    def init(theta, keys, num_steps):
        opt = learned_opt.opt_fn(theta)

        def one(k):
            k_cfg, k_params, k_opt = jax.random.split(k, 3)
            cfg = task_family.sample(k_cfg)
            p, s = task_family.task_fn(cfg).init_with_state(k_params)
            return opt.init(p, s, num_steps=num_steps, key=k_opt), cfg

        return shard(jax.vmap(one)(keys))

    @jit
    def unroll(theta, opt_states, cfgs, keys, datas):
        opt = learned_opt.opt_fn(theta)

        def one(opt_state, cfg, key, data):
            task = task_family.task_fn(cfg)
            s, losses = _train_steps(
                task, opt, ds if keyed else None, opt_state, key, data, steps_per_jit
            )
            return s, losses, jax.vmap(task.normalizer)(losses)

        return shard(jax.vmap(one)(*shard((opt_states, cfgs, keys, datas))))

    @functools.partial(jit, static_argnums=(5, 6))
    def evaluate(theta, opt_states, cfgs, keys, datas, split, n):
        opt = learned_opt.opt_fn(theta)

        def one(opt_state, cfg, key, data):
            task = task_family.task_fn(cfg)

            def batch(k, d):
                if keyed:
                    k, k_data = jax.random.split(k)
                    d = ds.sample(split, k_data)
                loss, norm, aux = _eval_one(task, opt, opt_state, k, d)
                return loss, norm, {a: v for a, v in aux.items() if a in with_aux}

            ls, ns, aux = jax.vmap(batch)(jax.random.split(key, n), data)
            return jnp.mean(ls), jnp.mean(ns), jax.tree_util.tree_map(jnp.mean, aux)

        return shard(jax.vmap(one)(*shard((opt_states, cfgs, keys, datas))))

    return {"init": init, "unroll": unroll, "eval": evaluate}
