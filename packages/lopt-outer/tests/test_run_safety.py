"""No silent loss: run-directory ownership, resume checks, interrupts, NaN visibility."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from outer_helpers import MetaAdam, QuadraticFamily, QuadraticTask

import lopt_core
import lopt_learned
from lopt_core.cli import main
from lopt_outer import (
    FullES,
    FullGrad,
    InProcessBackend,
    RunConfig,
    SingleMachineGradientLearner,
    TruncatedES,
    TruncatedGrad,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
    meta_train,
)
from lopt_outer import run as run_layer
from lopt_outer.rundir import LOCK_NAME, RunDirectoryError, claim, differences
from lopt_outer.truncated_grad import masked_task_gradient
from lopt_outer.truncation_schedule import ConstantTruncationSchedule


def _learner(std=0.01, lr=1e-2, family=None, init_theta=None):
    lopt = lopt_learned.LearnableAdam(initial_learning_rate=1e-2)
    sched = ConstantTruncationSchedule(20)
    step = VectorizedLOptTruncatedStep(family or QuadraticFamily(), lopt, sched, num_tasks=4)
    est = TruncatedPES(step, unroll_length=5, std=std)
    return SingleMachineGradientLearner(lopt, [est], MetaAdam(lr), init_theta=init_theta)


def _config(out, n=2, **kw):
    return RunConfig(num_steps=n, seed=0, output_dir=out, checkpoint_every=1, progress=False, **kw)


# -- the run directory ------------------------------------------------------------------
def test_a_second_run_into_a_folder_in_use_fails_at_once_naming_the_owner(tmp_path):
    learner = _learner()
    config = _config(tmp_path / "run")
    with claim(config, InProcessBackend(), learner):
        t0 = time.perf_counter()
        with pytest.raises(RunDirectoryError, match=rf"in use by another run \(pid {os.getpid()}"):
            meta_train(learner, config)
        assert time.perf_counter() - t0 < 5.0  # refused before anything compiled
    # Released: the folder can be used again.
    assert meta_train(learner, config).steps == 2


def test_the_lock_of_a_killed_run_is_released(tmp_path):
    out = tmp_path / "run"
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from outer_helpers import QuadraticFamily
        from lopt_outer import RunConfig, InProcessBackend
        from lopt_outer.rundir import claim
        import test_run_safety as t
        with claim(RunConfig(2, output_dir={str(out)!r}), InProcessBackend(), t._learner()):
            print("locked", flush=True)
            time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        owner = json.loads((out / LOCK_NAME).read_text())
        assert owner["pid"] == proc.pid
        with pytest.raises(RunDirectoryError, match=f"pid {proc.pid}"):
            meta_train(_learner(), _config(out))
    finally:
        proc.kill()
        proc.wait()
    # SIGKILL leaves the file, not the lock: the kernel dropped it with the process.
    assert meta_train(_learner(), _config(out)).steps == 2


@pytest.mark.parametrize(
    ("changed", "path", "old", "new"),
    [
        ({"std": 0.1}, "estimators.0.std", 0.01, 0.1),
        ({"lr": 0.5}, "theta_opt.learning_rate", 0.01, 0.5),
    ],
)
def test_resuming_with_another_configuration_is_refused_naming_the_field(
    tmp_path, changed, path, old, new
):
    out = tmp_path / "run"
    meta_train(_learner(), _config(out))
    with pytest.raises(RunDirectoryError) as exc:
        meta_train(_learner(**changed), _config(out, n=4))
    text = str(exc.value)
    assert f"{path}: {old!r} there, {new!r} here" in text
    assert f"--override {path}" in text and "--overwrite" in text
    # Nothing was touched: the checkpoint is still step 2.
    assert lopt_core.load_metadata(out / "checkpoint.lopt")["step"] == 2
    # Listing the field continues the run with the new value.
    result = meta_train(_learner(**changed), _config(out, n=4, override=[path]))
    assert (result.resumed_from, result.steps) == (2, 4)
    # The new value is now the run's: resuming with it needs no override.
    assert meta_train(_learner(**changed), _config(out, n=5)).resumed_from == 4


def test_differences_table():
    a = {
        "estimators": [
            {"class": "E", "config": {"std": 0.01, "step": {"class": "S", "config": {"n": 4}}}}
        ]
    }
    b = {
        "estimators": [
            {
                "class": "E",
                "config": {"std": 0.02, "step": {"class": "T", "config": {"n": 4, "m": 1}}},
            }
        ]
    }
    assert differences(a, b) == [
        ("estimators.0.std", 0.01, 0.02),
        ("estimators.0.step", "S", "T"),
        ("estimators.0.step.m", None, 1),
    ]
    assert differences(a, b, override=["estimators.0.step"]) == [("estimators.0.std", 0.01, 0.02)]
    assert differences(a, b, override=["estimators.0"]) == []
    assert differences(a, a) == []


def test_no_resume_into_a_folder_with_a_run_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    meta_train(_learner(), _config(out, n=3))
    rows = (out / "metrics.jsonl").read_text()
    with pytest.raises(RunDirectoryError, match=r"holds another run \(checkpoint.lopt at step 3\)"):
        meta_train(_learner(), _config(out, resume=False))
    assert (out / "metrics.jsonl").read_text() == rows  # nothing deleted
    result = meta_train(_learner(std=0.2), _config(out, resume=False, overwrite=True))
    assert result.resumed_from == 0 and result.steps == 2
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_a_checkpoint_this_backend_cannot_resume_is_refused_not_restarted(tmp_path):
    # A real Ray-backend checkpoint (written through the run layer), then the in-process
    # backend pointed at the same folder: it used to start afresh over the Ray run.
    out = tmp_path / "run"
    learner = _learner()
    state = learner.init(jax.random.PRNGKey(0))
    run_layer.save_checkpoint(
        _config(out),
        run_layer.RAY_CHECKPOINT_NAME,
        state.gradient_learner_state,
        {"0": state.gradient_estimator_states},
        run_layer.RunCounters(7, 7),
        producer=None,
    )
    (out / "metrics.jsonl").write_text('{"step": 7, "meta_loss": 1.0}\n')
    with pytest.raises(RunDirectoryError) as exc:
        meta_train(learner, _config(out))
    assert "ray_learner.lopt at step 7" in str(exc.value)
    assert "the InProcessBackend cannot resume from (it resumes from checkpoint.lopt)" in str(
        exc.value
    )
    assert (out / "metrics.jsonl").read_text() == '{"step": 7, "meta_loss": 1.0}\n'


def test_output_dir_that_is_a_file_is_refused_before_anything_compiles(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunDirectoryError, match="is a file, not a folder"):
        meta_train(_learner(), _config(tmp_path / "afile"))


def test_temp_files_of_interrupted_writes_are_removed_at_the_next_start(tmp_path):
    out = tmp_path / "run"
    meta_train(_learner(), _config(out))
    stale = [out / ".checkpoint.lopt.abc123.tmp", out / ".run.json.999.tmp"]
    for p in stale:
        p.write_bytes(b"partial")
    keep = out / "notes.txt"
    keep.write_text("mine")
    meta_train(_learner(), _config(out, n=3))
    assert not any(p.exists() for p in stale)
    assert keep.read_text() == "mine"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"step": "abc"}, "metadata field 'step' must be an int, got 'abc'"),
        ({"step": None}, "metadata field 'step' must be an int, got None"),
        ({"step": -3}, "metadata field 'step' must be >= 0, got -3"),
        ({"step": 2.0}, "metadata field 'step' must be an int, got 2.0"),
    ],
)
def test_a_checkpoint_with_edited_metadata_gives_checkpoint_error_on_resume(
    tmp_path, edit, message
):
    out = tmp_path / "run"
    meta_train(_learner(), _config(out))
    ck = lopt_core.load(out / "checkpoint.lopt")
    meta = {k: v for k, v in ck.metadata.items() if k not in ("lopt_version", "producer")}
    meta.update(edit)
    lopt_core.save(out / "checkpoint.lopt", ck.tree, meta)  # correctly checksummed
    with pytest.raises(lopt_core.CheckpointError, match=message):
        meta_train(_learner(), _config(out, n=4))
    del meta["step"]
    lopt_core.save(out / "checkpoint.lopt", ck.tree, meta)
    message = "metadata has no field 'step'"
    with pytest.raises(lopt_core.CheckpointError, match=message):
        meta_train(_learner(), _config(out, n=4))


# -- interrupts -------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_sigterm_and_ctrl_c_write_a_final_checkpoint(tmp_path, how):
    out = tmp_path / "run"

    def stop(step, state, row):
        if step == 3:
            if how == "SIGTERM":
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1.0)  # the handler runs before this returns
            else:
                raise KeyboardInterrupt

    config = RunConfig(num_steps=50, seed=0, output_dir=out, checkpoint_every=100, progress=False)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(run_layer.RunInterrupted) as exc:
        meta_train(_learner(), config, callback=stop)
    assert (exc.value.step, exc.value.signal_name) == (3, how)
    assert exc.value.checkpoint == out / "checkpoint.lopt"
    assert lopt_core.load_metadata(out / "checkpoint.lopt")["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is previous  # handler restored
    result = meta_train(_learner(), RunConfig(5, output_dir=out, progress=False))
    assert result.resumed_from == 3


def test_cli_sigterm_prints_one_line_and_exits_143(tmp_path):
    out = tmp_path / "run"
    args = [
        sys.executable, "-m", "lopt_core.cli", "meta-train",
        "--task-family", "FixedDimQuadraticFamily", "--learned-optimizer", "LearnableAdam",
        "--num-tasks", "2", "--trunc-length", "2", "--max-length", "10",
        "--num-steps", "100000", "--checkpoint-every", "1000000",
        "--output-dir", str(out), "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (
        metrics.exists() and metrics.read_text().count("\n") >= 3
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    lines = [x for x in err.strip().splitlines() if not x.startswith("lopt: warning")]
    assert len(lines) == 1 and "interrupted (SIGTERM) after step" in lines[0]
    step = int(lines[0].split("after step ")[1].split(";")[0])
    assert lopt_core.load_metadata(out / "checkpoint.lopt")["step"] == step >= 3


# -- NaN and divergence -----------------------------------------------------------------
class HalfNaNFamily(lopt_core.TaskFamily):
    """Quadratics whose odd-numbered tasks (by a sampled flag) have a NaN loss."""

    def sample(self, key):
        k1, k2 = jax.random.split(key)
        scale = jnp.exp(jax.random.uniform(k1, (4,), minval=-1.0, maxval=1.0))
        return {"scale": scale, "bad": jax.random.bernoulli(k2, 0.5)}

    def task_fn(self, cfg):
        return _MaybeNaNTask(cfg)


class _MaybeNaNTask(QuadraticTask):
    def __init__(self, cfg):
        super().__init__(cfg["scale"])
        self.bad = cfg["bad"]

    def loss(self, params, key, data):
        return jnp.where(self.bad, jnp.nan, super().loss(params, key, data))


def test_masked_task_gradient_averages_the_finite_tasks_only():
    def per_task(thetas):
        w = thetas["w"]  # (3, 2)
        losses = jnp.stack([jnp.sum(w[0] ** 2), jnp.sum(w[1]) * jnp.inf, 3.0 * jnp.sum(w[2])])
        return losses, None

    theta = {"w": jnp.asarray([1.0, 2.0])}
    loss, grad, bad, _ = masked_task_gradient(per_task, theta, 3)
    # Task 0: 5 and grad (2, 4); task 2: 9 and grad (3, 3); task 1 dropped.
    np.testing.assert_allclose(float(loss), 7.0)
    np.testing.assert_allclose(grad["w"], [2.5, 3.5])
    assert int(bad) == 1
    loss, grad, bad, _ = masked_task_gradient(
        lambda t: (jnp.sum(t["w"], 1) * jnp.nan, None), theta, 3
    )
    assert np.isnan(float(loss)) and int(bad) == 3
    np.testing.assert_array_equal(grad["w"], [0.0, 0.0])


@pytest.mark.parametrize("make", [TruncatedPES, TruncatedES, TruncatedGrad, FullES, FullGrad])
def test_one_diverged_task_is_masked_out_not_the_whole_estimate(make):
    lopt = lopt_learned.LearnableAdam(initial_learning_rate=1e-2)
    step = VectorizedLOptTruncatedStep(
        HalfNaNFamily(), lopt, ConstantTruncationSchedule(6), num_tasks=8
    )
    kwargs = {"unroll_length": 6} if make in (TruncatedPES, TruncatedES, TruncatedGrad) else {}
    est = make(step, **kwargs)
    theta = lopt.init(jax.random.PRNGKey(0))
    weights = lopt_core.WorkerWeights(theta, None, lopt_core.OuterState(jnp.asarray(0)))
    state = est.init_worker_state(weights, jax.random.PRNGKey(1))
    out, metrics = est.compute_gradient_estimate(weights, jax.random.PRNGKey(2), state)
    n_bad = int(metrics["nonfinite_tasks"])
    assert 0 < n_bad < 8
    assert np.isfinite(float(out.mean_loss))
    leaves = jax.tree_util.tree_leaves(out.grad)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)
    assert any(np.any(np.asarray(x) != 0) for x in leaves)


def test_meta_training_counts_masked_tasks_and_dropped_steps(tmp_path):
    result = meta_train(_learner(family=HalfNaNFamily()), RunConfig(3, progress=False))
    assert result.dropped_steps == 0 and result.theta_changed is True
    assert result.masked_tasks > 0 and result.masked_tasks % 3 == 0  # same tasks each step


class AllNaNFamily(HalfNaNFamily):
    def sample(self, key):
        return {**super().sample(key), "bad": jnp.asarray(True)}


def test_a_run_whose_every_step_was_dropped_says_so():
    with pytest.warns(RuntimeWarning, match="theta did not move in 3 outer steps"):
        result = meta_train(_learner(family=AllNaNFamily()), RunConfig(3, progress=False))
    assert result.dropped_steps == 3 and result.masked_tasks == 12
    assert result.theta_changed is False


def test_meta_training_from_a_non_finite_init_theta_is_refused():
    theta = lopt_learned.LearnableAdam(initial_learning_rate=1e-2).init(jax.random.PRNGKey(0))
    theta = jax.tree_util.tree_map(lambda x: x, theta)
    first = jax.tree_util.tree_leaves_with_path(theta)[0][0]
    bad = jax.tree_util.tree_map_with_path(lambda p, x: x * jnp.nan if p == first else x, theta)
    with pytest.raises(ValueError, match=r"init_theta.* holds 1 NaN or infinite value"):
        _learner(init_theta=bad)


# -- the CLI ----------------------------------------------------------------------------
def _cli(tmp_path, *extra):
    return [
        "meta-train", "--task-family", "FixedDimQuadraticFamily",
        "--learned-optimizer", "LearnableAdam", "--num-tasks", "2", "--trunc-length", "2",
        "--max-length", "10", "--num-steps", "2", "--output-dir", str(tmp_path / "run"),
        "--no-progress", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--workers", "4"), "--workers only apply to the Ray backend; add --backend ray"),
        (("--address", "auto"), "--address only apply to the Ray backend"),
        (("--max-staleness", "2", "--workers", "2"), "--workers, --max-staleness only apply"),
        (("--seed", str(2**32)), "seed must be below 2**32"),
        (("--seed", "-1"), "seed must be an integer >= 0"),
        (("--overwrite", "--resume"), "--overwrite deletes the run that --resume would continue"),
    ],
)
def test_cli_refuses_bad_flags_with_one_line_and_status_2(tmp_path, capsys, extra, message):
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as exc:
        main(_cli(tmp_path, *extra))
    assert exc.value.code == 2
    err = [x for x in capsys.readouterr().err.strip().splitlines() if "warning" not in x]
    assert len(err) == 1 and message in err[0], err
    assert time.perf_counter() - t0 < 5.0  # nothing compiled
    assert not (tmp_path / "run").exists()


def test_cli_refuses_another_configuration_and_overrides_it(tmp_path, capsys):
    assert main(_cli(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "dropped steps: 0 of 2" in out
    with pytest.raises(SystemExit) as exc:
        main(_cli(tmp_path, "--std", "0.5", "--num-steps", "3"))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "estimators.0.std: 0.01 there, 0.5 here" in err and "--override estimators.0.std" in err
    assert (
        main(_cli(tmp_path, "--std", "0.5", "--num-steps", "3", "--override", "estimators.0.std"))
        == 0
    )
    assert lopt_core.load_metadata(tmp_path / "run" / "checkpoint.lopt")["step"] == 3


# -- writers ----------------------------------------------------------------------------
def test_tensorboard_after_a_resume_has_no_duplicate_steps(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    out = tmp_path / "run"

    def kill(step, state, row):
        if step == 5:
            raise RuntimeError("killed")

    cfg = dict(seed=0, output_dir=out, checkpoint_every=3, progress=False)
    cfg["metric_writers"] = ["tensorboard"]
    with pytest.raises(RuntimeError, match="killed"):
        meta_train(_learner(), RunConfig(8, **cfg), callback=kill)
    meta_train(_learner(), RunConfig(8, **cfg))
    acc = event_accumulator.EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("meta_loss")]
    assert steps == list(range(1, 9))


class _BrokenWriter:
    def __init__(self, run_dir):
        raise OSError("disk quota exceeded")


def test_a_metric_writer_whose_constructor_raises_is_skipped_with_a_warning(tmp_path):
    class Plug:
        @staticmethod
        @lopt_core.hookimpl
        def lopt_register_metric_writers(register):
            register("broken_writer", _BrokenWriter)

    lopt_core.REGISTRY.add_plugin(Plug, "broken-writer-plugin")
    try:
        with pytest.warns(
            RuntimeWarning,
            match=r"'broken_writer' \(from broken-writer-plugin\) skipped.*disk quota",
        ):
            result = meta_train(
                _learner(), _config(tmp_path / "run", metric_writers=["broken_writer"])
            )
        assert result.steps == 2
    finally:
        lopt_core.REGISTRY._extra_plugins.remove((Plug, "broken-writer-plugin", "0"))
        lopt_core.REGISTRY.reload()


# -- imports ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "first",
    [
        "import lopt_outer.meta_train",
        "from lopt_outer.meta_train import meta_train as _f",
        "import lopt_outer.cli",
        "import lopt_outer.backends",
        "import lopt_outer._compat_run",
    ],
)
def test_from_lopt_outer_import_meta_train_is_always_the_function(first):
    code = f"{first}\nfrom lopt_outer import meta_train\nimport types\nprint(type(meta_train).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "function"


# -- no hangs ---------------------------------------------------------------------------
def test_the_precompile_compiles_ahead_and_runs_nothing():
    from lopt_core.testing import count_compiles

    learner = _learner(family=QuadraticFamily(dim=5))  # shapes no other test compiled
    state = learner.init(jax.random.PRNGKey(0))
    with count_compiles() as c:
        state, loss, _ = learner.update(state, jax.random.PRNGKey(1))
        jax.block_until_ready(loss)
    assert c["n"] == 0  # the estimate and the update were compiled during init


def test_meta_training_starts_and_stops_many_times_with_precompile_on():
    # Each start runs the background precompile beside the main thread's inits.
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import jax
        from outer_helpers import QuadraticFamily
        import test_run_safety as t
        from lopt_outer import RunConfig, meta_train
        for i in range(12):
            learner = t._learner(family=QuadraticFamily(dim=2 + i % 4))
            assert learner.precompile
            assert meta_train(learner, RunConfig(2, seed=i, progress=False)).steps == 2
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True
    )
    assert out.stdout.strip().endswith("ok")


def test_a_precompile_that_cannot_finish_falls_back_to_the_main_thread():
    import threading

    release = threading.Event()

    class StuckPES(TruncatedPES):
        def warm_up(self, worker_weights, key):
            release.wait(60)  # stands in for a warm-up that never finishes
            return False

    learner = _learner()
    est = learner.gradient_estimators[0]
    stuck = StuckPES(est.truncated_step, unroll_length=5, std=0.01)
    learner = SingleMachineGradientLearner(
        learner.gradient_learner.meta_init,
        [stuck],
        learner.gradient_learner.theta_opt,
        precompile_timeout_s=0.5,
    )
    t0 = time.perf_counter()
    try:
        with pytest.warns(RuntimeWarning, match="did not finish within 0.5 s; compiling on"):
            state = learner.init(jax.random.PRNGKey(0))
        assert time.perf_counter() - t0 < 30
        state, loss, _ = learner.update(state, jax.random.PRNGKey(1))
        assert np.isfinite(float(loss))
    finally:
        release.set()


def test_cli_exits_1_when_every_step_was_dropped(tmp_path, capsys):
    class Plug:
        @staticmethod
        @lopt_core.hookimpl
        def lopt_register_task_families(register):
            register("AllNaNFamilyForTests", AllNaNFamily)

    lopt_core.REGISTRY.add_plugin(Plug, "nan-family-plugin")
    try:
        args = _cli(tmp_path)
        args[args.index("FixedDimQuadraticFamily")] = "AllNaNFamilyForTests"
        with pytest.warns(RuntimeWarning, match="theta did not move"):
            assert main(args) == 1
        captured = capsys.readouterr()
        assert "dropped steps: 2 of 2" in captured.out
        assert "every one of the 2 outer steps was dropped" in captured.err
    finally:
        lopt_core.REGISTRY._extra_plugins.remove((Plug, "nan-family-plugin", "0"))
        lopt_core.REGISTRY.reload()
