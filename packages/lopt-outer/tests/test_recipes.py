"""Recipes: one TOML file describes a run; `lopt meta-train --recipe` runs and records it."""

from __future__ import annotations

import dataclasses
import textwrap
from importlib import resources
from pathlib import Path

import jax
import numpy as np
import pytest

import lopt_core
import lopt_learned
import lopt_tasks
from lopt_core.cli import main
from lopt_core.testing import count_compiles
from lopt_outer import cli
from lopt_outer import recipe as recipe_mod
from lopt_outer.recipe import RECIPE_FILE, RecipeError, build_recipe, load_recipe, parse_recipe

MIXTURE = textwrap.dedent(
    """\
    # Two quadratic families, a growing horizon, PES.
    [run]
    num_steps = 4
    seed = 3
    checkpoint_every = 2

    [[families]]
    name = "FixedDimQuadraticFamily"
    weight = 2.0
    kwargs = { dim = 3 }

    [[families]]
    name = "NoisyQuadraticFamily"
    kwargs = { dim = 2 }

    [learned_optimizer]
    name = "LearnableAdam"
    kwargs = { initial_learning_rate = 0.05 }

    [schedule]
    name = "GrowingLogUniformSchedule"
    kwargs = { min_length = 2, start_max_length = 3, end_max_length = 8, growth_steps = 2 }

    [estimator]
    name = "TruncatedPES"
    kwargs = { unroll_length = 2, std = 0.01 }

    [truncated_step]
    num_tasks = 2
    meta_loss_clip = 50.0

    [outer_optimizer]
    name = "Adam"
    kwargs = { learning_rate = 0.01 }

    [mixture]
    resample_every = 1

    [evaluation]
    tasks = ["FixedDimQuadraticFamily"]
    """
)

SINGLE = textwrap.dedent(
    """\
    [run]
    num_steps = 2

    [[families]]
    name = "FixedDimQuadraticFamily"
    kwargs = { dim = 3 }

    [learned_optimizer]
    name = "LearnableSGD"

    [schedule]
    name = "ConstantTruncationSchedule"
    kwargs = { total_length = 4 }

    [estimator]
    name = "TruncatedES"
    kwargs = { unroll_length = 2 }

    [truncated_step]
    num_tasks = 2
    meta_loss_type = "final"
    meta_loss_split = "same_data"
    """
)


def _err_lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.strip() and not x.startswith("lopt: warning")]


def _theta(path):
    return lopt_learned.load_learned_optimizer(path).theta


# -- the API ----------------------------------------------------------------------------
def test_a_recipe_builds_its_learner_and_run_config(tmp_path):
    from lopt_outer import RunConfig
    from lopt_outer.mixture import MixtureEstimator
    from lopt_tasks.augmentation import RelativeLossNormalizerFamily

    path = tmp_path / "r.toml"
    path.write_text(MIXTURE)
    recipe = load_recipe(path)
    assert recipe.text == MIXTURE and recipe.family_names == (
        "FixedDimQuadraticFamily,NoisyQuadraticFamily"
    )
    assert [f.weight for f in recipe.families] == [2.0, 1.0]
    assert recipe.eval_tasks == ("FixedDimQuadraticFamily",)
    built = build_recipe(recipe)
    assert isinstance(built.estimator, MixtureEstimator)
    assert built.estimator.weights == (2.0, 1.0)
    members = built.estimator.estimators
    # [mixture] normalizer = "relative" (the default): each member on one shared scale.
    wrapped = [m.truncated_step.task_family for m in members]
    assert all(isinstance(f, RelativeLossNormalizerFamily) for f in wrapped)
    assert built.families == tuple(wrapped)
    names = [f.family.name for f in wrapped]
    assert names[0].startswith("FixedDim") and names[1].startswith("NoisyQuadratic"), names
    step = members[0].truncated_step
    assert step.num_tasks == 2 and step.meta_loss_clip == 50.0
    assert step.trunc_sched == lopt_core.get_outer_trainer(
        "GrowingLogUniformSchedule",
        min_length=2,
        start_max_length=3,
        end_max_length=8,
        growth_steps=2,
    )
    assert step.random_initial_iteration_offset == 8  # the schedule's longest unroll
    assert (members[0].unroll_length, members[0].std) == (2, 0.01)
    assert built.learner.gradient_learner.theta_opt.learning_rate == 0.01
    config = RunConfig(**built.run_config_kwargs, output_dir=tmp_path / "run")
    assert (config.num_steps, config.seed, config.checkpoint_every) == (4, 3, 2)

    single = build_recipe(parse_recipe(SINGLE))
    step = single.estimator.truncated_step
    assert (step.meta_loss_type, step.meta_loss_split, step.meta_loss_clip) == (
        "final",
        "same_data",
        None,
    )


def test_task_family_a_comma_b_flag_builds_a_mixture():
    from lopt_outer.mixture import MixtureEstimator

    parser = lopt_core.cli.build_parser()
    args = parser.parse_args(
        ["meta-train", "--task-family", "FixedDimQuadraticFamily,NoisyQuadraticFamily",
         "--learned-optimizer", "LearnableSGD", "--num-tasks", "2", "--output-dir", "x"]
    )  # fmt: skip
    families, _, learner = cli.build_learner(args)
    (est,) = learner.gradient_estimators
    assert isinstance(est, MixtureEstimator) and len(families) == 2


# -- bad recipes: one line naming the key, exit 2, nothing built -------------------------
BAD = [
    ("unknown top key", SINGLE + "\nepochs = 3\n", "epochs: unknown key"),
    ("unknown run key", SINGLE.replace("num_steps", "num_stepz"), "run.num_stepz: unknown key"),
    (
        "wrong type",
        SINGLE.replace("num_tasks = 2", 'num_tasks = "2"'),
        "truncated_step.num_tasks: must be a whole number >= 1",
    ),
    (
        "unknown family",
        SINGLE.replace('name = "FixedDimQuadraticFamily"', 'name = "FixedDimQuadraticFamilly"'),
        "families[0].name: No task family named 'FixedDimQuadraticFamilly'",
    ),
    (
        "unknown option",
        SINGLE.replace("unroll_length = 2", "unroll_lenght = 2"),
        "estimator.kwargs.unroll_lenght: TruncatedES takes no option",
    ),
    (
        "bad choice",
        SINGLE.replace('"final"', '"last"'),
        "truncated_step.meta_loss_type: must be one of mean, final",
    ),
    (
        "unknown augmentation",
        SINGLE.replace(
            "kwargs = { dim = 3 }", 'kwargs = { dim = 3 }\naugment = [{ name = "Nope" }]'
        ),
        "families[0].augment[0].name: No task family named 'Nope'",
    ),
    ("no families", "[run]\nnum_steps = 2\n", "families: missing"),
    ("bad toml", "[run\n", "not valid TOML"),
]


@pytest.mark.parametrize(("label", "text", "expected"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_recipe_is_refused_with_one_line_before_building(
    tmp_path, capsys, monkeypatch, label, text, expected
):
    path = tmp_path / "bad.toml"
    path.write_text(text)

    def built(*a, **k):
        raise AssertionError("the learner was built")

    monkeypatch.setattr(recipe_mod, "build_recipe", built)
    monkeypatch.setattr(lopt_core, "get_task_family", built)
    capsys.readouterr()
    argv = ["meta-train", "--recipe", str(path), "--output-dir", str(tmp_path / "run")]
    with count_compiles() as compiles, pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = _err_lines(capsys.readouterr().err)
    assert len(err) == 1, err
    assert err[0].startswith(f"lopt meta-train: --recipe {path}: "), err[0]
    assert expected in err[0], (expected, err[0])
    assert compiles["n"] == 0
    assert not (tmp_path / "run").exists()


def test_parse_recipe_raises_recipe_error():
    with pytest.raises(RecipeError, match=r"<string>: run.seed: must be a whole number >= 0"):
        parse_recipe(SINGLE.replace("num_steps = 2", "seed = -1"))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--std", "0.01"], "--std conflicts with --recipe"),  # even at its default value
        (
            ["--task-family", "NoisyQuadraticFamily", "--num-tasks", "4"],
            "--task-family, --num-tasks",
        ),
        ([], "required: --output-dir (or output_dir in the [run] table"),
    ],
)
def test_learner_flags_conflict_with_a_recipe(tmp_path, capsys, extra, expected):
    path = tmp_path / "r.toml"
    path.write_text(SINGLE)
    out = [] if not extra else ["--output-dir", str(tmp_path / "run")]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["meta-train", "--recipe", str(path), *out, *extra])
    assert exc.value.code == 2
    err = _err_lines(capsys.readouterr().err)
    assert len(err) == 1 and expected in err[0], err


def test_meta_train_without_family_or_recipe_names_both(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["meta-train", "--output-dir", str(tmp_path / "run")])
    assert exc.value.code == 2
    (line,) = _err_lines(capsys.readouterr().err)
    assert "required: --task-family (or --recipe FILE" in line


# -- runs -------------------------------------------------------------------------------
class _Killed(Exception):
    pass


def test_a_mixture_recipe_with_a_growing_horizon_runs_records_and_resumes_bit_identically(
    tmp_path, monkeypatch, capsys
):
    path = tmp_path / "mixture.toml"
    path.write_text(MIXTURE)
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    # 4 steps straight, the output dir from the flag.
    assert main(["meta-train", "--recipe", str(path), "--output-dir", str(straight),
                 "--no-progress"]) == 0  # fmt: skip
    assert (straight / RECIPE_FILE).read_text() == MIXTURE
    meta = lopt_core.load_metadata(straight / "theta.lopt")
    assert meta["recipe"] == MIXTURE and load_recipe(straight / RECIPE_FILE).num_steps == 4
    assert meta["task_family"] == "FixedDimQuadraticFamily,NoisyQuadraticFamily"
    assert (meta["estimator"], meta["outer_steps"], meta["seed"]) == ("TruncatedPES", 4, 3)
    assert "recipe_overrides" not in meta
    assert meta["producer"]["config"]["initial_learning_rate"] == 0.05

    # Killed after step 3 (checkpoint at 2, step 3's work lost), then resumed to 4.
    writer = cli._recipe_writer

    def killing_writer(out, text):
        write = writer(out, text)

        def callback(step, state, row):
            write(step, state, row)
            if step == 3:
                raise _Killed

        return callback

    monkeypatch.setattr(cli, "_recipe_writer", killing_writer)
    argv = ["meta-train", "--recipe", str(path), "--output-dir", str(killed), "--no-progress"]
    with pytest.raises(_Killed):
        main(argv)
    assert lopt_core.load_metadata(killed / "checkpoint.lopt")["step"] == 2
    assert (killed / RECIPE_FILE).read_text() == MIXTURE
    monkeypatch.setattr(cli, "_recipe_writer", writer)
    capsys.readouterr()
    assert main(argv) == 0
    assert "resumed from step 2" in capsys.readouterr().out
    a, b = _theta(straight / "theta.lopt"), _theta(killed / "theta.lopt")
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not jax.tree_util.tree_all(
        jax.tree_util.tree_map(
            np.array_equal, a, lopt_learned.LearnableAdam(0.05).init(jax.random.PRNGKey(0))
        )
    )


def test_a_single_family_recipe_runs_with_run_flags_overriding(tmp_path, capsys):
    path = tmp_path / "single.toml"
    path.write_text(SINGLE.replace("[run]\n", f'[run]\noutput_dir = "{tmp_path / "run"}"\n'))
    assert main(["meta-train", "--recipe", str(path), "--num-steps", "1", "--seed", "5",
                 "--no-progress"]) == 0  # fmt: skip
    meta = lopt_core.load_metadata(tmp_path / "run" / "theta.lopt")
    assert meta["recipe"] == path.read_text()
    assert (meta["outer_steps"], meta["seed"]) == (1, 5)
    assert meta["recipe_overrides"] == {"num_steps": "1", "seed": "5"}
    assert (tmp_path / "run" / RECIPE_FILE).read_text() == path.read_text()


# -- the shipped recipe -----------------------------------------------------------------
def test_the_shipped_recipe_says_how_the_shipped_theta_was_made():
    pretrained = resources.files("lopt_learned") / "pretrained"
    with resources.as_file(pretrained / "mlp_lopt_digits8.recipe.toml") as path:
        recipe = load_recipe(path)
    with resources.as_file(pretrained / "mlp_lopt_digits8.lopt") as path:
        meta = lopt_core.load_metadata(path)
    assert recipe.family_names == meta["task_family"] == "ImageMLPFamily_Digits8"
    assert recipe.estimator.name == meta["estimator"] == "TruncatedPES"
    assert recipe.num_steps == meta["outer_steps"] == 5727
    assert meta["producer"]["class"] == "lopt_learned.mlp_lopt:MLPLOpt"
    assert recipe.learned_optimizer.name == "MLPLOpt"
    lopt = lopt_core.get_learned_optimizer("MLPLOpt", **recipe.learned_optimizer.kwargs)
    config = lopt_core.config_of(lopt)
    # Every recorded field agrees; fields added to MLPLOpt since are at their defaults.
    assert {k: config[k] for k in meta["producer"]["config"]} == meta["producer"]["config"]
    assert config == lopt_core.config_of(lopt_core.get_learned_optimizer("MLPLOpt"))
    # examples/demo.py's defaults, which made it; all but the outer steps: the demo now runs
    # a fixed --outer-steps (3000), and this theta's 5727 are what its old 210 s budget reached.
    assert dict(recipe.estimator.kwargs) == {"unroll_length": 20, "std": 0.01}
    assert recipe.schedule.name == "ConstantTruncationSchedule"
    assert dict(recipe.schedule.kwargs) == {"total_length": 200}
    assert (recipe.num_tasks, recipe.meta_loss_split, recipe.seed) == (8, "outer_valid", 0)
    assert (recipe.outer_optimizer.name, dict(recipe.outer_optimizer.kwargs)) == (
        "Adam",
        {"learning_rate": 3e-3},
    )
    assert (recipe.meta_loss_type, recipe.meta_loss_clip) == ("mean", None)
    # The theta is the output of `lopt meta-train --recipe` of this recipe: its metadata
    # holds a recipe with the same fields (only the comment and the source differ).
    made_with = parse_recipe(meta["recipe"], "metadata")
    keep = {"text": "", "source": ""}
    assert dataclasses.replace(made_with, **keep) == dataclasses.replace(recipe, **keep)
    assert "recipe_overrides" not in meta


def test_the_readme_recipe_example_is_a_valid_recipe():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Recipes", 1)[1]
    text = section.split("```toml\n", 1)[1].split("```", 1)[0]
    recipe = parse_recipe(text, "README.md")
    assert [f.name for f in recipe.families] == [
        "FixedDimQuadraticFamily",
        "ImageMLPFamily_Digits8",
    ]
    assert recipe.schedule.name == "GrowingLogUniformSchedule"
    assert (recipe.meta_loss_clip, recipe.normalize, recipe.time_budget_s) == (10.0, False, 600.0)
    assert [a.name for a in recipe.families[1].augment] == ["ScaleLoss"]


FLAGS_EQUIVALENT = textwrap.dedent(
    """\
    [run]
    num_steps = 2

    [[families]]
    name = "FixedDimQuadraticFamily"

    [learned_optimizer]
    name = "LearnableAdam"

    [schedule]
    name = "ConstantTruncationSchedule"
    kwargs = { total_length = 10 }

    [estimator]
    name = "TruncatedPES"
    kwargs = { unroll_length = 2, std = 0.01 }

    [truncated_step]
    num_tasks = 2

    [outer_optimizer]
    name = "Adam"
    kwargs = { learning_rate = 1e-3 }
    """
)


def test_a_run_started_with_flags_resumes_with_the_equivalent_recipe(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["meta-train", "--task-family", "FixedDimQuadraticFamily",
                 "--learned-optimizer", "LearnableAdam", "--num-tasks", "2",
                 "--trunc-length", "2", "--max-length", "10", "--num-steps", "1",
                 "--output-dir", str(out), "--no-progress"]) == 0  # fmt: skip
    path = tmp_path / "r.toml"
    path.write_text(FLAGS_EQUIVALENT)
    capsys.readouterr()
    assert main(["meta-train", "--recipe", str(path), "--output-dir", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "resumed from step 1" in captured.out, captured
    assert lopt_core.load_metadata(out / "theta.lopt")["outer_steps"] == 2


def test_the_resume_command_of_a_recipe_run_repeats_only_the_flags_given(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(SINGLE)
    parser = lopt_core.cli.build_parser()
    args = parser.parse_args(
        ["meta-train", "--recipe", str(path), "--output-dir", str(tmp_path / "o"),
         "--num-steps", "3"]
    )  # fmt: skip
    cli._apply_recipe(args)
    assert (args.num_steps, args.task_family, args.estimator) == (
        3,
        "FixedDimQuadraticFamily",
        "TruncatedES",
    )
    command = cli._resume_command(args)
    assert f"--recipe {path}" in command and "--num-steps 3" in command
    assert "--task-family" not in command and "--estimator" not in command


def test_an_augmented_family_is_built_and_meta_trained(tmp_path):
    # "mean": with "final", no task of a one-step run may finish its unroll.
    text = SINGLE.replace('meta_loss_type = "final"', 'meta_loss_type = "mean"').replace(
        "kwargs = { dim = 3 }\n",
        'kwargs = { dim = 3 }\n\n[[families.augment]]\nname = "ScaleLoss"\n'
        "kwargs = { min_scale = 0.5, max_scale = 2.0 }\n",
    )
    family = build_recipe(parse_recipe(text)).estimator.truncated_step.task_family
    assert isinstance(family, lopt_tasks.ScaleLossFamily)
    assert (family.min_scale, family.max_scale) == (0.5, 2.0)
    assert family.family.name == "FixedDimQuadraticFamily"
    with pytest.raises(RecipeError, match=r"families\[0\].augment\[0\].kwargs.min_scal: "):
        parse_recipe(text.replace("min_scale", "min_scal"))
    path = tmp_path / "aug.toml"
    path.write_text(text)
    out = tmp_path / "run"
    assert main(["meta-train", "--recipe", str(path), "--output-dir", str(out), "--num-steps",
                 "1", "--no-progress"]) == 0  # fmt: skip
    assert lopt_core.load_metadata(out / "theta.lopt")["recipe"] == text
