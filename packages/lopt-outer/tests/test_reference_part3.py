# ruff: noqa: B007, E741, F401, I001, RUF059  (the notebook cells are kept verbatim)
"""Part 3 of the reference notebooks ("Truncation and TruncatedStep"), imports changed.

Every code cell runs here as written, in the notebook's order; the imports follow
the table in the root README (`outer_trainers.*`, `training` and `eval_training`
resolve to `lopt_outer` modules, `tasks.base` to `lopt_core.tasks`,
`optimizers.base` to `lopt_optimizers`, `learned_optimizers.base` to
`lopt_learned`, the tasks to `lopt_tasks`). `outer_trainers.common`, which the
notebook imports but never uses, has no public lopt_outer module; it is imported as
`lopt_outer._common`. The cells' last expressions and printed values are bound to
names or captured so that the tests can check them. The loops keep the notebook's
lengths (200 steps, 10 steps).

Things added around the cells, not changed in them:
- ImageMLP_FashionMnist8_Relu32 reads Fashion-MNIST from TFDS, which cannot be
  downloaded here, so the truncation cells run on `tfds.testing.mock_data`
  (random images) with `$LOPT_DATA_DIR` at an empty folder, as in Part 2;
- the plotting cells run on matplotlib's Agg backend and the figures are closed;
- the notebook's cells share globals: the truncation loop's functions read the
  first cell's `trunc_sched` (length 10), so those cells run in one test, and
  `SimpleLOptTruncStep`'s methods read the global `task`, so its class is defined
  at module level and the tests that run its cells declare `global task` so their
  `task = ...` binds that name, as in the notebook (`_run_simple_step_cell` holds
  that cell, which the VectorizedTruncatedStep cell builds on);
- the 10-step loops also append each step's `out` to a list (`outs`), and the
  random-offset cell recomputes its offsets (`offsets`), for the asserts.

`lopt_outer.truncated_step.VectorizedTruncatedStep` (the reference's wrapper
vmapping a single-task TruncatedStep over `num_tasks` copies) runs the notebook's
cell that uses it, and one test that is not a notebook cell runs the vectorized
SimpleLOptTruncStep under lopt's TruncatedPES and TruncatedES.

One semantic difference shows in the truncation loop: lopt's
`ConstantTruncationSchedule.next_state` ends an unroll at the length held in its
state, the reference's at its own `total_length`. The notebook's `init_state`
builds its state with a length-50 schedule but advances it with the length-10
one, so under lopt the first unroll lasts 50 steps and every later one 10 (under
the reference every unroll lasts 10).
"""

import numpy as np
import jax.numpy as jnp
import jax
import functools
import matplotlib

matplotlib.use("Agg")
from matplotlib import pylab as plt

from lopt_outer import full_es
from lopt_outer import truncated_pes
from lopt_outer import gradient_learner
from lopt_outer import truncation_schedule
from lopt_outer import _common as common
from lopt_outer import lopt_truncated_step
from lopt_outer import truncated_step as truncated_step_mod

from lopt_tasks import quadratics
from lopt_tasks import image_mlp
from lopt_core import tasks as tasks_base

import lopt_learned as lopt_base
from lopt_learned import mlp_lopt
import lopt_optimizers as opt_base

import lopt_optimizers as optimizers
from lopt_outer import training
from lopt_outer import eval_training

import haiku as hk
import tqdm

import pytest

from lopt_tasks import tfds_data


def test_part3_imports_resolve():
    assert full_es.FullES and truncated_pes.TruncatedPES
    assert gradient_learner.SingleMachineGradientLearner
    assert truncation_schedule.ConstantTruncationSchedule
    assert lopt_truncated_step.VectorizedLOptTruncatedStep
    assert truncated_step_mod.TruncatedStep and truncated_step_mod.TruncatedUnrollOut
    assert training.vec_get_batch and eval_training.single_task_training_curves
    assert quadratics.QuadraticTask and image_mlp.ImageMLP_FashionMnist8_Relu32
    assert tasks_base.Task and lopt_base.LearnableSGDM and mlp_lopt.MLPLOpt
    assert opt_base.Adam is optimizers.Adam


@pytest.fixture
def mock_tfds(tmp_path, monkeypatch):
    """TFDS datasets replaced by random mock data; the data folder is empty."""
    monkeypatch.setenv("LOPT_DATA_DIR", str(tmp_path))
    with tfds_data.mock_tfds_data(num_examples=24):
        yield
    plt.close("all")


def _nan_steps(losses):
    return [i for i, x in enumerate(np.asarray(losses)) if np.isnan(x)]


def test_part3_truncation_schedules_and_sequential_training(mock_tfds, capsys):
    # -- the constant truncation schedule
    trunc_sched = truncation_schedule.ConstantTruncationSchedule(10)
    outer_state = None
    key = jax.random.PRNGKey(0)
    trunc_state = trunc_sched.init(key, outer_state)
    for i in range(12):
        trunc_state, is_done = trunc_sched.next_state(trunc_state, i, key, outer_state)
        print(i, is_done)

    # The notebook's output: False for steps 0-9, True from step 10.
    expected = "".join(f"{i} {i >= 10}\n" for i in range(12))
    assert capsys.readouterr().out == expected
    assert int(trunc_state.length) == 10

    # -- training one model over and over again
    key = jax.random.PRNGKey(0)
    task = image_mlp.ImageMLP_FashionMnist8_Relu32()
    opt = opt_base.Adam(3e-3)
    outer_state = None

    def init_state(key):
        key, key1, key2 = jax.random.split(key, 3)
        p = task.init(key1)
        opt_state = opt.init(p)

        trunc_sched = truncation_schedule.ConstantTruncationSchedule(50)
        trunc_state = trunc_sched.init(key2, outer_state)

        return opt_state, trunc_state, key

    def next_trunc_and_train(train_state_and_batch):
        (opt_state, trunc_state, key), batch = train_state_and_batch
        # progress one step on the truncation state
        trunc_state, is_done = trunc_sched.next_state(
            trunc_state, opt_state.iteration, key, outer_state
        )

        # progress one step by computing a gradient and applying an update.
        p = opt.get_params(opt_state)
        key, key1 = jax.random.split(key)
        l, g = jax.value_and_grad(task.loss)(p, key1, batch)
        opt_state = opt.update(opt_state, g, loss=l)

        return (opt_state, trunc_state, key), is_done, l

    def reset_trunc_and_init(train_state_and_batch):
        (opt_state, trunc_state, key), batch = train_state_and_batch

        # new inner problem
        p = task.init(key)
        opt_state = opt.init(p)

        # new truncation
        key, key1 = jax.random.split(key)
        trunc_state = trunc_sched.init(key1, outer_state)

        return (opt_state, trunc_state, key), False, jnp.nan

    is_done = False
    state = init_state(key)

    losses = []
    for i in range(200):
        batch = next(task.datasets.train)
        state, is_done, loss = jax.lax.cond(
            is_done, reset_trunc_and_init, next_trunc_and_train, (state, batch)
        )
        losses.append(loss)

    # A step that resets reports NaN. The first unroll (its state made by the
    # length-50 schedule) trains steps 0-50 and resets at 51; each later one (made
    # by the length-10 schedule) trains iterations 0-10 and resets on the 12th step.
    seq_losses = np.asarray(losses)
    assert seq_losses.shape == (200,)
    assert _nan_steps(seq_losses) == list(range(51, 200, 12))
    assert int(state[0].iteration) == (199 - 195)
    # Training goes down within every unroll: on random mock labels the loss starts
    # near log(10) and the MLP fits the 24 mock images.
    assert 1.8 < seq_losses[0] < 3.0
    assert seq_losses[50] < seq_losses[0] - 0.3
    for start in range(52, 188, 12):
        assert seq_losses[start + 10] < seq_losses[start]

    out = plt.plot(losses)
    plt.xlabel("all inner-iteration")
    plt.ylabel("loss")
    assert len(out) == 1 and len(out[0].get_ydata()) == 200

    # -- lock-step training of several models
    n_tasks = 8

    @jax.jit
    @jax.vmap
    def update(state, is_done, batch):
        state, is_done, loss = jax.lax.cond(
            is_done, reset_trunc_and_init, next_trunc_and_train, (state, batch)
        )
        return state, is_done, loss

    keys = jax.random.split(key, n_tasks)
    states = jax.vmap(init_state)(keys)

    losses = []
    is_done = jnp.zeros([n_tasks])
    for i in range(200):
        vec_batch = training.vec_get_batch(task, n_tasks, split="train")
        states, is_done, l = update(states, is_done, vec_batch)
        losses.append(l)

    losses = np.asarray(losses)
    for i in range(n_tasks):
        plt.plot(losses[:, i])

    plt.xlabel("all inner-iteration")
    plt.ylabel("loss")

    # Every model resets on the same steps as the single model above.
    assert losses.shape == (200, n_tasks)
    for i in range(n_tasks):
        assert _nan_steps(losses[:, i]) == list(range(51, 200, 12))
    np.testing.assert_array_equal(states[0].iteration, np.full([n_tasks], 4))
    assert losses[50].mean() < losses[0].mean() - 0.3
    # Different initializations (one key per model): the losses differ.
    assert np.unique(losses[0]).size == n_tasks

    # -- breaking the lock step with a random initial iteration
    key = jax.random.PRNGKey(0)
    keys = jax.random.split(key, n_tasks)
    states = jax.vmap(init_state)(keys)
    opt_state, trunc_state, keys = states
    import dataclasses

    opt_state = opt_state.replace(iteration=jax.random.randint(key, [n_tasks], 0, 50))
    states = (opt_state, trunc_state, keys)

    offsets = np.asarray(jax.random.randint(key, [n_tasks], 0, 50))

    losses = []
    is_done = jnp.zeros([n_tasks])
    for i in range(200):
        vec_batch = training.vec_get_batch(task, n_tasks, split="train")
        states, is_done, l = update(states, is_done, vec_batch)
        losses.append(l)

    losses = np.asarray(losses)
    for i in range(n_tasks):
        plt.plot(losses[:, i])

    # Model i starts at iteration offsets[i], so its first unroll ends after
    # 50 - offsets[i] + 1 steps; after that it resets every 12 steps.
    assert losses.shape == (200, n_tasks) and len(set(offsets.tolist())) > 1
    for i in range(n_tasks):
        first = 51 - int(offsets[i])
        assert _nan_steps(losses[:, i]) == list(range(first, 200, 12))
    assert len({tuple(_nan_steps(losses[:, i])) for i in range(n_tasks)}) > 1


class SimpleLOptTruncStep(truncated_step_mod.TruncatedStep):
    def __init__(self, lopt, task, unroll_length=5):
        self.lopt = lopt
        self.task = task
        self.unroll_length = unroll_length

    def outer_init(self, key):
        return self.lopt.init(key)

    def init_step_state(self, theta, outer_state, key):
        params = self.task.init(key)
        return self.lopt.opt_fn(theta).init(params)

    @functools.partial(jax.jit, static_argnums=(0,))
    def unroll_step(self, theta, unroll_state, key, data, outer_state):
        opt = self.lopt.opt_fn(theta)

        def train(unroll_state):
            params = opt.get_params(unroll_state)
            loss, grad = jax.value_and_grad(task.loss)(params, key, data)
            unroll_state = opt.update(unroll_state, grad, loss=loss)
            out = truncated_step_mod.TruncatedUnrollOut(
                loss=loss,
                is_done=False,
                task_param=None,
                iteration=unroll_state.iteration,
                mask=True,
            )
            return unroll_state, out

        def reset(unroll_state):
            params = self.task.init(key)  # Modify this
            unroll_state = self.lopt.opt_fn(theta).init(params)
            out = truncated_step_mod.TruncatedUnrollOut(
                loss=0.0,
                is_done=True,
                task_param=None,
                iteration=unroll_state.iteration,
                mask=False,
            )
            return unroll_state, out

        return jax.lax.cond(unroll_state.iteration < self.unroll_length, train, reset, unroll_state)

    def meta_loss_batch(self, theta, unroll_state, key, data, outer_state):
        params = self.lopt.opt_fn(theta).get_params(unroll_state)
        return task.loss(params, key, data)

    def get_batch(self, steps=None):
        if steps is None:
            return next(task.train)
        else:
            return training.vec_get_batch(task, steps, split="train")

    def get_outer_batch(self, steps=None):
        if steps is None:
            return next(task.train)
        else:
            return training.vec_get_batch(task, steps, split="train")


task = None  # the notebook's global `task`, which SimpleLOptTruncStep's methods read


def _sgdm_losses(lr, mom, params, steps):
    """sum(p**2) under SGD with momentum: the losses before each of `steps` updates."""
    p, v, out = np.asarray(params, np.float64), np.zeros(np.shape(params)), []
    for _ in range(steps):
        out.append(np.sum(p**2))
        v = mom * v + 2 * p
        p = p - lr * v
    return np.asarray(out)


def _run_simple_step_cell(capsys):
    """The notebook's SimpleLOptTruncStep cell; returns its objects and parsed output."""
    global task
    lopt = lopt_base.LearnableSGDM()
    task = quadratics.QuadraticTask()
    truncated_step = SimpleLOptTruncStep(lopt, task, unroll_length=5)

    key = jax.random.PRNGKey(0)
    theta = truncated_step.outer_init(key)

    unroll_state = truncated_step.init_step_state(theta, None, key)
    print("Iteration=", unroll_state.iteration)

    outs = []
    for i in range(10):
        batch = jax.tree_util.tree_map(lambda x: x[0], truncated_step.get_batch(1))
        unroll_state, out = truncated_step.unroll_step(theta, unroll_state, key, batch, None)
        print("Iteration=", unroll_state.iteration, "Loss=", out.loss, "Mask=", out.mask)
        outs.append(out)
    printed = capsys.readouterr().out.splitlines()
    return truncated_step, theta, key, unroll_state, outs, printed


def test_part3_simple_lopt_truncated_step(capsys):
    truncated_step, theta, key, unroll_state, outs, printed = _run_simple_step_cell(capsys)

    # Five training steps, a reset (loss 0.0, mask False), five more, a reset... The
    # reset is checked before the update, so iteration 5 trains no sixth step.
    iterations = [int(o.iteration) for o in outs]
    assert iterations == [1, 2, 3, 4, 5, 0, 1, 2, 3, 4]
    assert [bool(o.mask) for o in outs] == [True] * 5 + [False] + [True] * 4
    assert [bool(o.is_done) for o in outs] == [False] * 5 + [True] + [False] * 4
    assert printed[0] == "Iteration= 0"
    assert len(printed) == 11 and printed[6].startswith("Iteration= 0 Loss= 0.0 Mask= False")
    assert all(line.endswith("Mask= True") for line in printed[1:6] + printed[7:])
    # The quadratic has no data: vec_get_batch gives None, and so does the tree_map.
    assert truncated_step.get_batch(1) is None
    # The losses are those of SGD with momentum (theta's lr 0.01, momentum 0.9) on
    # sum(p**2), restarting from the same init (the same key) after the reset.
    params0 = task.init(key)
    losses = np.asarray([float(o.loss) for o in outs])
    want = _sgdm_losses(0.01, 0.9, params0, 5)
    np.testing.assert_allclose(losses[:5], want, rtol=1e-5)
    np.testing.assert_allclose(losses[6:], want[:4], rtol=1e-5)
    assert np.all(np.diff(losses[:5]) < 0)
    # meta_loss_batch is the task's loss at the current parameters.
    np.testing.assert_allclose(
        truncated_step.meta_loss_batch(theta, unroll_state, key, None, None),
        _sgdm_losses(0.01, 0.9, params0, 5)[4],
        rtol=1e-5,
    )


def test_part3_vectorized_truncated_step(capsys):
    truncated_step, theta, key, unroll_state, outs, printed = _run_simple_step_cell(capsys)

    truncated_step = truncated_step_mod.VectorizedTruncatedStep(truncated_step, 3)

    key = jax.random.PRNGKey(0)
    theta = truncated_step.outer_init(key)

    unroll_state = truncated_step.init_step_state(theta, None, key)
    print("Iteration=", unroll_state.iteration)

    outs = []
    for i in range(10):
        batch = jax.tree_util.tree_map(lambda x: x[0], truncated_step.get_batch(1))
        unroll_state, out = truncated_step.unroll_step(theta, unroll_state, key, batch, None)
        print("Iteration=", unroll_state.iteration, "Loss=", out.loss, "Mask=", out.mask)
        outs.append(out)
    printed = capsys.readouterr().out.splitlines()

    # Three copies of the simple step, each on its own init key and all in lock step.
    assert printed[0] == "Iteration= [0 0 0]"
    iterations = np.asarray([o.iteration for o in outs])
    np.testing.assert_array_equal(
        iterations, np.tile([[1], [2], [3], [4], [5], [0], [1], [2], [3], [4]], 3)
    )
    masks = np.asarray([o.mask for o in outs])
    np.testing.assert_array_equal(masks[5], [False] * 3)
    assert masks[[0, 1, 2, 3, 4, 6, 7, 8, 9]].all()
    losses = np.asarray([o.loss for o in outs])
    assert losses.shape == (10, 3) and np.unique(losses[0]).size == 3
    np.testing.assert_array_equal(losses[5], 0.0)
    assert np.all(np.diff(losses[:5], axis=0) < 0)
    keys = jax.random.split(key, 3)
    for j in range(3):
        want = _sgdm_losses(0.01, 0.9, task.init(keys[j]), 5)
        np.testing.assert_allclose(losses[:5, j], want, rtol=1e-5)
    # meta_loss_batch gives one loss per copy.
    assert truncated_step.meta_loss_batch(theta, unroll_state, key, None, None).shape == (3,)
    assert truncated_step.get_batch(1) is None and truncated_step.num_tasks == 3


def test_part3_simple_step_with_lopt_estimators():
    """Not a notebook cell: the vectorized SimpleLOptTruncStep under TruncatedES/PES."""
    global task
    from lopt_core import OuterState, WorkerWeights
    from lopt_outer import truncated_es

    task = quadratics.QuadraticTask()
    simple = SimpleLOptTruncStep(lopt_base.LearnableSGDM(), task, unroll_length=5)
    truncated_step = truncated_step_mod.VectorizedTruncatedStep(simple, 3)
    theta = truncated_step.outer_init(jax.random.PRNGKey(0))
    weights = WorkerWeights(theta, None, OuterState(outer_iteration=jnp.asarray(0)))
    grads = []
    for estimator_cls in (truncated_pes.TruncatedPES, truncated_es.TruncatedES):
        estimator = estimator_cls(truncated_step, unroll_length=5, std=0.01)
        state = estimator.init_worker_state(weights, jax.random.PRNGKey(1))
        out, _ = estimator.compute_gradient_estimate(weights, jax.random.PRNGKey(2), state)
        assert np.isfinite(out.mean_loss) and out.mean_loss > 0
        grads.append(out.grad)
    # A larger learning rate trains the quadratic faster within 5 steps: the
    # meta-gradient of log_lr is negative. PES's first estimate (nothing accumulated
    # yet) is ES's.
    assert grads[0]["log_lr"] < 0
    for name in ("log_lr", "one_minus_momentum"):
        np.testing.assert_allclose(grads[0][name], grads[1][name], rtol=1e-5)
    # A state that is not num_tasks (or twice that, antithetic) tasks is refused.
    state3 = truncated_step.init_step_state(theta, None, jax.random.PRNGKey(3))
    with pytest.raises(ValueError, match="antithetic=True but the state holds 3 tasks"):
        truncated_step.unroll_step(
            theta, state3, jax.random.PRNGKey(4), None, None, antithetic=True
        )
    with pytest.raises(ValueError, match="the state holds 3 tasks, expected num_tasks=2"):
        truncated_step_mod.VectorizedTruncatedStep(simple, 2).meta_loss_batch(
            theta, state3, jax.random.PRNGKey(4), None, None
        )


def test_part3_vectorized_lopt_truncated_step(capsys):
    task_family = quadratics.FixedDimQuadraticFamilyData(10)
    lopt = lopt_base.LearnableSGDM()
    trunc_sched = truncation_schedule.ConstantTruncationSchedule(5)
    truncated_step = lopt_truncated_step.VectorizedLOptTruncatedStep(
        task_family, lopt, trunc_sched, num_tasks=3, random_initial_iteration_offset=5
    )

    key = jax.random.PRNGKey(1)
    theta = truncated_step.outer_init(key)

    unroll_state = truncated_step.init_step_state(theta, None, key)
    print("Iteration=", unroll_state.inner_step)

    outs = []
    for i in range(10):
        batch = jax.tree_util.tree_map(lambda x: x[0], truncated_step.get_batch(1))
        unroll_state, out = truncated_step.unroll_step(theta, unroll_state, key, batch, None)
        print("Iteration=", unroll_state.inner_step, "Loss=", out.loss, "Mask=", out.mask)
        outs.append(out)
    printed = capsys.readouterr().out.splitlines()

    assert len(printed) == 11 and printed[0].startswith("Iteration= [")
    inner = np.asarray([o.iteration for o in outs])
    masks = np.asarray([o.mask for o in outs])
    done = np.asarray([o.is_done for o in outs])
    losses = np.asarray([o.loss for o in outs])
    assert inner.shape == masks.shape == done.shape == losses.shape == (10, 3)
    # Each task starts at a random inner step below 5 (random_initial_iteration_offset)
    # and its unroll ends at step 5 (is_done); the next step resets it (mask False,
    # loss 0.0) and it restarts at 0. Different offsets: the tasks are out of step.
    offsets = inner[0] - 1
    assert printed[0] == f"Iteration= {offsets}"
    assert np.all((offsets >= 0) & (offsets < 5)) and len(set(offsets.tolist())) > 1
    np.testing.assert_array_equal(inner[1:], (inner[:-1] + 1) % 6)
    np.testing.assert_array_equal(done, inner == 5)
    np.testing.assert_array_equal(masks, inner != 0)
    np.testing.assert_array_equal(masks[1:], ~done[:-1])
    np.testing.assert_array_equal(losses[~masks], 0.0)
    # Within an unroll the loss goes down (SGD with momentum on a quadratic).
    for j in range(3):
        for k in range(9):
            if masks[k, j] and masks[k + 1, j]:
                assert losses[k + 1, j] < losses[k, j]
    # The notebook passes the same key to every step, so a reset samples the same
    # task and init again: task 0's second unroll repeats its first.
    resets = np.flatnonzero(~masks[:, 0])
    assert len(resets) == 2 and resets[1] == resets[0] + 6
    after = losses[resets[1] + 1 :, 0]
    np.testing.assert_array_equal(after, losses[resets[0] + 1 : resets[0] + 1 + len(after), 0])
