"""How `lopt meta-train` and `lopt eval` talk to their user.

Start-up without JAX, help with defaults, bad flags refused before anything is
built or compiled (one line, exit 2), the theta file's architecture, progress and
compile messages, the time-budget bar, resume and already-done messages, and
interrupts that print the command that resumes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from outer_helpers import err_lines, refused_cli

import lopt_core
import lopt_learned
from lopt_core.cli import main
from lopt_core.testing import count_compiles
from lopt_outer import cli
from lopt_outer import run as run_layer

FAMILY = "FixedDimQuadraticFamily"


def _meta_args(out, *extra):
    return [
        "meta-train", "--task-family", FAMILY, "--learned-optimizer", "LearnableAdam",
        "--num-tasks", "2", "--trunc-length", "2", "--max-length", "10",
        "--output-dir", str(out), *extra,
    ]  # fmt: skip


def _eval_args(out, *extra):
    return [
        "eval", "--task-family", FAMILY, "--n-tasks", "1", "--steps", "10",
        "--eval-every", "10", "--adam-lrs", "0.1", "--output-dir", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _components_imported():
    # Import the modules of the components named below once, so that a module's own
    # import-time work is not counted as the command compiling something.
    for kind, name in [
        ("task_families", FAMILY),
        ("learned_optimizers", "LearnableAdam"),
        ("learned_optimizers", "LearnableSGD"),
        ("outer_trainers", "TruncatedPES"),
        ("outer_trainers", "ConstantTruncationSchedule"),
    ]:
        lopt_core.REGISTRY.entry(kind, name).factory


@pytest.fixture(scope="module")
def adam_theta(tmp_path_factory):
    """A LearnableAdam theta file with a non-default configuration, as lopt meta-train writes."""
    path = tmp_path_factory.mktemp("theta") / "theta.lopt"
    lopt = lopt_learned.LearnableAdam(initial_learning_rate=0.05)
    lopt_core.save(path, lopt.init(jax.random.PRNGKey(0)), {"outer_steps": 0}, producer=lopt)
    return path


# -- start-up -------------------------------------------------------------------------
def test_building_the_commands_parsers_imports_no_jax():
    code = textwrap.dedent(
        """
        import argparse, sys
        import lopt_outer.cli as cli
        cli.setup_meta_train(argparse.ArgumentParser(prog="lopt meta-train"))
        cli.setup_eval(argparse.ArgumentParser(prog="lopt eval"))
        heavy = ["jax", "flax", "lopt_outer.run", "lopt_outer.backends", "lopt_outer.inprocess",
                 "lopt_outer.ray", "lopt_outer.meta_train", "lopt_outer.evaluate"]
        print(sorted(m for m in heavy if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_backend_names_of_the_parser_are_the_backends():
    from lopt_outer.backends import BACKENDS

    assert tuple(BACKENDS) == cli.BACKEND_NAMES


# -- help -----------------------------------------------------------------------------
@pytest.mark.parametrize("setup", [cli.setup_meta_train, cli.setup_eval])
def test_every_flag_has_help_that_shows_its_default(setup):
    parser = argparse.ArgumentParser(prog="lopt x")
    setup(parser)
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, action.option_strings
        text = formatter._get_help_string(action)
        assert action.required or "default" in text, (action.option_strings, text)
        if action.required:
            assert "required" in text
    parser.format_help()  # every %(default)s renders


def test_list_flags_say_their_format_and_meta_train_says_what_meta_loss_is():
    parser = argparse.ArgumentParser(prog="lopt eval")
    cli.setup_eval(parser)
    lrs = next(a for a in parser._actions if a.dest == "adam_lrs")
    assert "comma-separated" in lrs.help and "1e-4,3e-4" in lrs.help
    parser = argparse.ArgumentParser(prog="lopt meta-train")
    cli.setup_meta_train(parser)
    text = " ".join(parser.format_help().split())
    assert "What meta_loss means" in text
    assert "--meta-loss-split none that loss is the training loss of each inner step" in text
    assert "normalizer" in text and "7.5 is a little worse than chance" in text
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "What `meta_loss` means" in readme and "-1.8" in readme


def test_the_meta_loss_numbers_in_the_help_are_the_normalizers():
    from lopt_tasks.parametric import parametric_classification_normalizer

    def raw(meta_loss, k=10):
        return meta_loss * jnp.log(k) / 10 + jnp.log(k / 5)

    assert float(parametric_classification_normalizer(jnp.log(10.0), 10)) == pytest.approx(
        7.0, abs=0.02
    )
    assert float(parametric_classification_normalizer(0.0, 10)) == pytest.approx(-3.0, abs=0.02)
    for meta_loss, loss in [(7.5, 2.42), (-1.8, 0.28)]:
        assert float(raw(meta_loss)) == pytest.approx(loss, abs=0.005)
        assert float(parametric_classification_normalizer(loss, 10)) == pytest.approx(
            meta_loss, abs=0.05
        )


# -- bad arguments --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (("--num-steps", "-5"), ("--num-steps", "whole number >= 1, got -5", "such as 1000")),
        (("--num-steps", "0"), ("--num-steps", ">= 1, got 0")),
        (("--num-steps", "many"), ("--num-steps", "expected a whole number >= 1")),
        (("--num-tasks", "0"), ("--num-tasks", ">= 1, got 0")),
        (("--trunc-length", "0"), ("--trunc-length", ">= 1")),
        (("--max-length", "-1"), ("--max-length", ">= 1")),
        (("--checkpoint-every", "0"), ("--checkpoint-every", ">= 1")),
        (("--workers", "0"), ("--workers", ">= 1")),
        (("--time-budget", "-1"), ("--time-budget", "> 0 seconds, got -1")),
        (("--std", "0"), ("--std", "> 0, got 0", "such as 0.01")),
        (("--std", "-0.1"), ("--std", "> 0")),
        (("--outer-lr", "0"), ("--outer-lr", "> 0")),
        (("--outer-lr", "nan"), ("--outer-lr", "> 0")),
        (("--min-length", "30"), ("--min-length 30 is above --max-length 10", "--min-length 0")),
        (("--seed", "-1"), ("--seed", "seed must be an integer >= 0")),
        (("--meta-loss-split", "valid"), ("--meta-loss-split", "invalid choice")),
        (("--estimator", "TruncatedPESS"), ("--estimator TruncatedPESS", "Close matches: Trunc")),
        (
            ("--estimator", "ConstantTruncationSchedule"),
            ("--estimator ConstantTruncationSchedule", "not a gradient estimator", "TruncatedPES"),
        ),
        (("--learned-optimizer", "LearnableAdamm"), ("--learned-optimizer", "Close matches")),
    ],
)
def test_meta_train_refuses_a_bad_flag_before_building_anything(
    tmp_path, capsys, monkeypatch, extra, expected
):
    refused_cli(_meta_args(tmp_path / "run", *extra), capsys, monkeypatch, *expected)
    assert not (tmp_path / "run").exists()


def test_meta_train_refuses_an_unknown_task_family(tmp_path, capsys, monkeypatch):
    args = _meta_args(tmp_path / "run")
    args[args.index(FAMILY)] = "FixedDimQuadraticFamilly"
    line = refused_cli(args, capsys, monkeypatch, "--task-family FixedDimQuadraticFamilly")
    assert "Close matches: FixedDimQuadraticFamily" in line


def test_meta_train_refuses_an_output_dir_that_is_a_file_or_below_one(
    tmp_path, capsys, monkeypatch
):
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused_cli(_meta_args(afile), capsys, monkeypatch, "--output-dir", "is a file, not a folder")
    refused_cli(
        _meta_args(afile / "run"), capsys, monkeypatch, "--output-dir", f"{afile} is a file"
    )
    assert afile.read_text() == "x"


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="Ray is installed")
def test_meta_train_refuses_the_ray_backend_without_ray(tmp_path, capsys, monkeypatch):
    refused_cli(
        _meta_args(tmp_path / "run", "--backend", "ray"),
        capsys,
        monkeypatch,
        "--backend ray needs Ray",
        "pip install 'lopt-outer[ray]'",
    )


def test_meta_train_refuses_a_checkpoint_of_another_seed_before_compiling(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    assert main(_meta_args(out, "--num-steps", "1", "--no-progress")) == 0
    capsys.readouterr()
    with count_compiles() as compiles, pytest.raises(SystemExit) as exc:
        main(_meta_args(out, "--num-steps", "2", "--seed", "3", "--no-progress"))
    assert exc.value.code == 2
    err = err_lines(capsys.readouterr().err)
    assert len(err) == 1 and "seed 0, not 3" in err[0] and "--seed" in err[0]
    assert compiles["n"] == 0


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (("--n-tasks", "0"), ("--n-tasks", ">= 1")),
        (("--steps", "0"), ("--steps", ">= 1")),
        (("--eval-every", "-2"), ("--eval-every", ">= 1")),
        (("--eval-every", "3"), ("--steps 10 is not a multiple of --eval-every 3",)),
        (("--baseline-lr", "0"), ("--baseline-lr", "> 0")),
        (("--adam-lrs", "1e-4,x"), ("--adam-lrs", "'x' is not a number", "1e-4,3e-4")),
        (("--adam-lrs", "1e-4,-1"), ("--adam-lrs", "-1 is not > 0")),
        (("--seed", str(2**32)), ("--seed", "below 2**32")),
        (("--learned-optimizer", "Nope"), ("--learned-optimizer Nope", "No learned optimizer")),
        (("--theta", "missing.lopt"), ("--theta missing.lopt does not exist", "lopt meta-train")),
    ],
)
def test_eval_refuses_a_bad_flag_before_building_anything(
    tmp_path, capsys, monkeypatch, extra, expected
):
    refused_cli(_eval_args(tmp_path / "eval", *extra), capsys, monkeypatch, *expected)
    assert not (tmp_path / "eval").exists()


def test_eval_refuses_a_theta_file_that_is_not_one(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.lopt"
    bad.write_bytes(b"not a checkpoint")
    refused_cli(_eval_args(tmp_path / "eval", "--theta", str(bad)), capsys, monkeypatch, "--theta")
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused_cli(_eval_args(afile), capsys, monkeypatch, "--output-dir", "is a file")


def test_eval_refuses_a_theta_of_another_architecture_naming_both(
    tmp_path, capsys, monkeypatch, adam_theta
):
    line = refused_cli(
        _eval_args(
            tmp_path / "eval", "--theta", str(adam_theta), "--learned-optimizer", "LearnableSGD"
        ),
        capsys,
        monkeypatch,
        "holds a LearnableAdam theta, but --learned-optimizer is LearnableSGD",
        "drop --learned-optimizer",
    )
    assert str(adam_theta) in line


def test_eval_without_lopt_learned_asks_for_it(tmp_path, capsys, monkeypatch, adam_theta):
    monkeypatch.setitem(sys.modules, "lopt_learned", None)  # `import lopt_learned` fails
    refused_cli(
        _eval_args(tmp_path / "eval", "--theta", str(adam_theta)),
        capsys,
        monkeypatch,
        "--theta",
        "pip install lopt-learned",
        "--learned-optimizer",
    )


def test_the_console_script_refuses_bad_flags_with_one_line(tmp_path):
    lopt = Path(sys.executable).with_name("lopt")
    afile = tmp_path / "afile"
    afile.write_text("x")
    for args, expected in [
        (_meta_args(tmp_path / "run", "--num-steps", "-5"), "argument --num-steps"),
        (_meta_args(afile), "--output-dir"),
        (["meta-train", "--output-dir", str(tmp_path)], "required: --task-family"),
    ]:
        proc = subprocess.run(
            [str(lopt), *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 2, proc.stderr
        err = err_lines(proc.stderr)
        assert len(err) == 1 and expected in err[0], err
        assert "Traceback" not in proc.stderr


# -- eval: the architecture from the theta file, and what it says ---------------------
class _Stop(Exception):
    pass


def test_eval_takes_the_architecture_and_its_config_from_the_theta_file(
    tmp_path, capsys, monkeypatch, adam_theta
):
    seen = {}

    def compare(**kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr("lopt_outer.evaluate.compare_with_adam", compare)
    with pytest.raises(_Stop):
        main(_eval_args(tmp_path / "a", "--theta", str(adam_theta)))
    assert seen["learned_opt"] == lopt_learned.LearnableAdam(initial_learning_rate=0.05)
    want = lopt_core.load(adam_theta).tree
    assert jax.tree_util.tree_all(
        jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), seen["theta"], want)
    )
    # Naming the same architecture is fine; the file's configuration still wins.
    seen.clear()
    with pytest.raises(_Stop):
        main(
            _eval_args(
                tmp_path / "b", "--theta", str(adam_theta), "--learned-optimizer", "LearnableAdam"
            )
        )
    assert seen["learned_opt"] == lopt_learned.LearnableAdam(initial_learning_rate=0.05)


def test_eval_without_theta_evaluates_mlplopt_at_its_init(tmp_path, monkeypatch):
    seen = {}

    def compare(**kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr("lopt_outer.evaluate.compare_with_adam", compare)
    with pytest.raises(_Stop):
        main(_eval_args(tmp_path / "a"))
    lopt = seen["learned_opt"]
    assert type(lopt).__name__ == "MLPLOpt"
    init = lopt.init(jax.random.PRNGKey(0))
    assert jax.tree_util.tree_all(
        jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), seen["theta"], init)
    )


def test_eval_without_lopt_learned_loads_a_named_architecture(tmp_path, monkeypatch):
    @lopt_core.declare
    class TinyLOpt(lopt_core.LearnedOptimizer):
        scale: float = 1.0

        def init(self, key):
            return {"log_lr": jnp.asarray(-2.0)}

        def opt_fn(self, theta, is_training=False):
            # SGD with lr exp(log_lr): the architecture of LearnableSGD, another class.
            return lopt_learned.LearnableSGD().opt_fn(theta, is_training)

    class Plug:
        @staticmethod
        @lopt_core.hookimpl
        def lopt_register_learned_optimizers(register):
            register("TinyLOptForTests", TinyLOpt)

    path = tmp_path / "tiny.lopt"
    lopt_core.save(path, {"log_lr": jnp.asarray(-1.5)}, producer=TinyLOpt())
    lopt_core.REGISTRY.add_plugin(Plug, "tiny-lopt-plugin")
    seen = {}

    def compare(**kwargs):
        seen.update(kwargs)
        raise _Stop

    try:
        monkeypatch.setitem(sys.modules, "lopt_learned", None)
        monkeypatch.setattr("lopt_outer.evaluate.compare_with_adam", compare)
        with pytest.raises(_Stop):
            main(
                _eval_args(
                    tmp_path / "a", "--theta", str(path), "--learned-optimizer", "TinyLOptForTests"
                )
            )
    finally:
        lopt_core.REGISTRY._extra_plugins.remove((Plug, "tiny-lopt-plugin", "0"))
        lopt_core.REGISTRY.reload()
    assert isinstance(seen["learned_opt"], TinyLOpt)
    assert float(seen["theta"]["log_lr"]) == -1.5


def test_eval_says_what_it_evaluates_and_reports_progress_per_optimizer(
    tmp_path, capsys, monkeypatch, adam_theta
):
    from lopt_outer import evaluate

    real = evaluate.compare_with_adam
    calls = []

    def compare(*, progress, **kwargs):
        def spy(labels, index):
            calls.append(labels[index])
            progress(labels, index)

        return real(progress=spy, **kwargs)

    monkeypatch.setattr(evaluate, "compare_with_adam", compare)
    out = tmp_path / "eval"
    assert main(_eval_args(out, "--theta", str(adam_theta))) == 0
    captured = capsys.readouterr()
    err = captured.err
    assert (
        "evaluating 3 optimizers, 1 held-out tasks x 10 inner steps each: learned (LearnableAdam), "
        "Adam(lr=0.001), Adam(lr=0.1)" in err
    )
    assert "[1/3] learned (LearnableAdam)" in err and "[3/3] Adam(lr=0.1)" in err
    assert err.index("[1/3]") < err.index("[2/3]") < err.index("[3/3]") < err.index("evaluated in")
    assert "learned (LearnableAdam)" in captured.out
    assert calls == ["learned (LearnableAdam)", "Adam(lr=0.001)", "Adam(lr=0.1)"]
    summary = json.loads((out / "eval_summary.json").read_text())
    assert summary["theta"] == str(adam_theta)


# -- meta-train: compiling, the budget bar, why it stopped ----------------------------
def test_meta_train_says_it_compiles_and_how_long_the_first_step_took(tmp_path, capsys):
    assert main(_meta_args(tmp_path / "run", "--num-steps", "2")) == 0
    captured = capsys.readouterr()
    assert "compiling the meta-training step (the first outer step" in captured.err
    assert "compiled; the first outer step took" in captured.err
    assert (
        "meta-trained 2 steps (num_steps): stopped at the step limit (--num-steps 2)"
        in captured.out
    )
    # --no-progress: no chatter on stderr.
    assert main(_meta_args(tmp_path / "quiet", "--num-steps", "1", "--no-progress")) == 0
    assert err_lines(capsys.readouterr().err) == []


def test_a_time_budget_drives_the_progress_bar_and_the_stop_line(tmp_path, capsys):
    assert main(_meta_args(tmp_path / "run", "--num-steps", "1000", "--time-budget", "0.001")) == 0
    captured = capsys.readouterr()
    assert "meta-train (time budget)" in captured.err and "/0 s" in captured.err
    assert (
        "(time_budget): stopped when the time budget was spent (--time-budget 0.001 s)"
        in captured.out
    )


def test_the_run_loop_bar_counts_the_budget_seconds_not_the_steps():
    config = run_layer.RunConfig(num_steps=1000, time_budget_s=30.0, progress=True)
    with run_layer.RunLoop(config, 0, lambda state, step: None) as loop:
        bar = loop._bar
        assert (bar.total, bar.unit) == (30.0, "s")
        time.sleep(0.05)
        loop.advance(None)
        loop.report(None, 1.5, {})
        assert 0 < bar.n < 30
        assert "step=1/1000" in str(bar) and "meta_loss=1.5000" in str(bar)
        loop.finish(None)
    config = run_layer.RunConfig(num_steps=7, progress=True)
    with run_layer.RunLoop(config, 2, lambda state, step: None) as loop:
        assert (loop._bar.total, loop._bar.n, loop._bar.unit) == (7, 2, "step")
        loop.finish(None)


# -- meta-train: resuming, already done -----------------------------------------------
def test_resuming_says_so_and_a_finished_run_says_it_is_done_with_its_last_meta_loss(
    tmp_path, capsys
):
    out = tmp_path / "run"
    assert main(_meta_args(out, "--num-steps", "2", "--checkpoint-every", "1")) == 0
    capsys.readouterr()
    assert main(_meta_args(out, "--num-steps", "3")) == 0
    captured = capsys.readouterr()
    assert f"resuming from step 2 of {out}" in captured.err
    assert (
        "meta-trained 3 steps (num_steps): stopped at the step limit (--num-steps 3); resumed from step 2"
        in captured.out
    )
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    assert last["step"] == 3
    for steps in ("3", "2"):  # asked for as many steps, or fewer
        assert main(_meta_args(out, "--num-steps", steps, "--no-progress")) == 0
        text = capsys.readouterr().out
        assert f"{out} is already done: 3 steps, and --num-steps is {steps}" in text
        assert f"last meta-loss {last['meta_loss']:.4f} (step 3, from metrics.jsonl)" in text
        assert "nan" not in text


# -- interrupts -----------------------------------------------------------------------
def test_ctrl_c_prints_one_line_with_the_command_that_resumes(tmp_path, capsys, monkeypatch):
    import importlib

    mt = importlib.import_module("lopt_outer.meta_train")  # the module, not the function
    real = mt.meta_train

    def interrupted_at_step_2(learner, config, backend, callback=None):
        def stop(step, state, row):
            if callback is not None:
                callback(step, state, row)  # the CLI's: it saves the flags' recipe.toml
            if step == 2:
                raise KeyboardInterrupt

        return real(learner, config, backend, callback=stop)

    monkeypatch.setattr(mt, "meta_train", interrupted_at_step_2)
    out = tmp_path / "my run"
    args = _meta_args(out, "--num-steps", "5", "--std", "0.02", "--overwrite", "--no-progress")
    assert main(args) == 130
    err = err_lines(capsys.readouterr().err)
    assert len(err) == 1, err
    line = err[0]
    assert f"interrupted (SIGINT) after step 2; checkpoint at step 2 in {out}" in line
    command = line.split("; resume with: ")[1]
    words = shlex.split(command)
    assert words[:2] == ["lopt", "meta-train"]
    assert "--overwrite" not in words  # it would delete the checkpoint
    assert words[words.index("--output-dir") + 1] == str(out)
    assert words[words.index("--std") + 1] == "0.02"
    assert "std = 0.02" in (out / "recipe.toml").read_text()  # the flags' recipe, recorded
    monkeypatch.setattr(mt, "meta_train", real)
    assert main(words[1:]) == 0  # the command resumes the run
    assert (
        "meta-trained 5 steps (num_steps): stopped at the step limit (--num-steps 5); resumed from step 2"
        in capsys.readouterr().out
    )


@pytest.mark.parametrize("where", ["before the run loop", "before the first step"])
def test_ctrl_c_before_a_resumed_run_steps_names_the_checkpoint_it_resumes(
    tmp_path, capsys, monkeypatch, where
):
    from lopt_outer.gradient_learner import SingleMachineGradientLearner
    from lopt_outer.inprocess import InProcessBackend

    out = tmp_path / "run"
    assert main(_meta_args(out, "--num-steps", "2", "--no-progress")) == 0
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "before the run loop":  # while building the state, or compiling
        monkeypatch.setattr(InProcessBackend, "run", interrupted)
    else:  # inside the run loop, before this process completed a step
        monkeypatch.setattr(SingleMachineGradientLearner, "update", interrupted)
    assert main(_meta_args(out, "--num-steps", "4", "--no-progress")) == 130
    err = err_lines(capsys.readouterr().err)
    assert len(err) == 1, err
    assert f"after step 2; checkpoint at step 2 in {out}; resume with: lopt meta-train" in err[0]


def test_ctrl_c_while_compiling_prints_one_line_and_exits_130(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "lopt_core.cli", *_meta_args(out, "--num-steps", "100000")]
    # A child inherits an ignored SIGINT (pytest run in the background, say); with the
    # default disposition, Python in the child turns SIGINT into KeyboardInterrupt.
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    before = []
    deadline = time.time() + 240
    while time.time() < deadline:
        line = proc.stderr.readline()
        before.append(line)
        if not line or line.startswith("compiling the meta-training step"):
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=240)
    assert proc.returncode == 130, "".join(before) + rest
    lines = [x for x in rest.splitlines() if x.strip() and not x.startswith("meta-train")]
    if lines and lines[0].startswith("compiled;"):
        lines = lines[1:]  # the signal came after the first step
    assert len(lines) == 1, rest
    assert lines[0].startswith("lopt meta-train: interrupted (SIGINT) after step ")
    assert "with: lopt meta-train --task-family FixedDimQuadraticFamily" in lines[0]
    assert "Traceback" not in rest and "terminate called" not in rest
