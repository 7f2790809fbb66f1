"""`lopt meta-train`'s flags make a Recipe: one way to build a learner, recorded like a recipe.

`--task-family A:2,B` (weights), `--augment NAME[:key=value,...]` and
`--member-normalizer` go through `recipe_from_flags` into the same `Recipe` a TOML
file gives, whose `text` (`recipe_to_toml`) parses back to it.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from importlib import resources

import pytest
from outer_helpers import refused_cli

import lopt_core
from lopt_core.cli import main
from lopt_outer import cli
from lopt_outer.recipe import (
    RECIPE_FILE,
    Component,
    FamilySpec,
    Recipe,
    RecipeError,
    build_recipe,
    load_recipe,
    make_recipe,
    parse_recipe,
    recipe_to_toml,
)

QUAD = "FixedDimQuadraticFamily"
NOISY = "NoisyQuadraticFamily"


def _args(*flags: str):
    return lopt_core.cli.build_parser().parse_args(["meta-train", *flags, "--output-dir", "x"])


def _fields(recipe: Recipe) -> Recipe:
    """`recipe` less what says where it came from (its text and source)."""
    return dataclasses.replace(recipe, text="", source="")


# -- flags -> Recipe, equal to the TOML recipe that says the same ----------------------
_COMMON = """\
[learned_optimizer]
name = "{lopt}"

[schedule]
{schedule}

[estimator]
{estimator}

[truncated_step]
num_tasks = {num_tasks}
meta_loss_split = "{split}"
random_initial_iteration_offset = {offset}

[outer_optimizer]
name = "Adam"
kwargs = {{ learning_rate = {lr} }}
"""

FLAGS_TO_TOML = [
    (
        "defaults",
        ["--task-family", QUAD],
        f'[[families]]\nname = "{QUAD}"\n',
        dict(
            lopt="MLPLOpt",
            schedule='name = "ConstantTruncationSchedule"\nkwargs = { total_length = 200 }',
            estimator='name = "TruncatedPES"\nkwargs = { unroll_length = 20, std = 0.01 }',
            num_tasks=8,
            split="none",
            offset=200,
            lr="1e-3",
        ),
    ),
    (
        "weights, augmentations, log-uniform lengths, ES",
        [
            "--task-family",
            f"{QUAD}:2,{NOISY}:0.5",
            "--augment",
            "ScaleLoss:min_scale=0.5",
            "--augment",
            "ReparamWeights:level=tensor,min_scale=0.01",
            "--learned-optimizer",
            "LearnableAdam",
            "--estimator",
            "TruncatedES",
            "--min-length",
            "3",
            "--max-length",
            "9",
            "--trunc-length",
            "3",
            "--std",
            "0.1",
            "--num-tasks",
            "2",
            "--meta-loss-split",
            "train",
            "--outer-lr",
            "0.02",
            "--member-normalizer",
            "task",
            "--num-steps",
            "7",
            "--seed",
            "4",
            "--time-budget",
            "60",
            "--checkpoint-every",
            "3",
        ],
        textwrap.dedent(
            f"""\
            [[families]]
            name = "{QUAD}"
            weight = 2.0
            [[families.augment]]
            name = "ScaleLoss"
            kwargs = {{ min_scale = 0.5 }}
            [[families.augment]]
            name = "ReparamWeights"
            kwargs = {{ level = "tensor", min_scale = 0.01 }}

            [[families]]
            name = "{NOISY}"
            weight = 0.5
            augment = [
              {{ name = "ScaleLoss", kwargs = {{ min_scale = 0.5 }} }},
              {{ name = "ReparamWeights", kwargs = {{ level = "tensor", min_scale = 0.01 }} }},
            ]

            [mixture]
            normalizer = "task"

            [run]
            num_steps = 7
            seed = 4
            time_budget_s = 60
            checkpoint_every = 3
            """
        ),
        dict(
            lopt="LearnableAdam",
            schedule='name = "LogUniformLengthSchedule"\n'
            "kwargs = { min_length = 3, max_length = 9 }",
            estimator='name = "TruncatedES"\nkwargs = { unroll_length = 3, std = 0.1 }',
            num_tasks=2,
            split="train",
            offset=9,
            lr="0.02",
        ),
    ),
    (
        "FullES takes the schedule, not --trunc-length",
        ["--task-family", QUAD, "--estimator", "FullES", "--max-length", "6"],
        f'[[families]]\nname = "{QUAD}"\n',
        dict(
            lopt="MLPLOpt",
            schedule='name = "ConstantTruncationSchedule"\nkwargs = { total_length = 6 }',
            estimator='name = "FullES"\nkwargs = { std = 0.01 }',
            num_tasks=8,
            split="none",
            offset=6,
            lr="0.001",
        ),
    ),
    (
        "TruncatedGrad takes no --std",
        ["--task-family", f" {QUAD} , {NOISY}:3 ", "--estimator", "TruncatedGrad"],
        f'[[families]]\nname = "{QUAD}"\n[[families]]\nname = "{NOISY}"\nweight = 3\n',
        dict(
            lopt="MLPLOpt",
            schedule='name = "ConstantTruncationSchedule"\nkwargs = { total_length = 200 }',
            estimator='name = "TruncatedGrad"\nkwargs = { unroll_length = 20 }',
            num_tasks=8,
            split="none",
            offset=200,
            lr="0.001",
        ),
    ),
]


@pytest.mark.parametrize(
    ("label", "flags", "families", "common"), FLAGS_TO_TOML, ids=[c[0] for c in FLAGS_TO_TOML]
)
def test_the_flags_make_the_recipe_that_says_the_same(label, flags, families, common):
    recipe = cli.recipe_from_flags(_args(*flags))
    toml = parse_recipe(families + "\n" + _COMMON.format(**common))
    assert _fields(recipe) == _fields(toml)
    assert recipe.source == "<flags>"
    assert parse_recipe(recipe.text, recipe.source) == recipe  # its text says all of it


def test_the_flags_recipe_builds_what_the_flags_always_built():
    from lopt_outer.mixture import MixtureEstimator

    args = _args("--task-family", f"{QUAD}:2,{NOISY}", "--member-normalizer", "task",
                 "--learned-optimizer", "LearnableSGD", "--num-tasks", "2", "--max-length", "5",
                 "--trunc-length", "2", "--std", "0.03", "--outer-lr", "0.02")  # fmt: skip
    families, lopt, learner = cli.build_learner(args)
    (est,) = learner.gradient_estimators
    assert isinstance(est, MixtureEstimator) and est.weights == (2.0, 1.0)
    assert [f.name for f in families] == [QUAD, NOISY]  # "task": not wrapped
    for member, family in zip(est.estimators, families, strict=True):
        step = member.truncated_step
        assert step.task_family is family and step.learned_opt is lopt
        assert (step.num_tasks, step.random_initial_iteration_offset) == (2, 5)
        assert step.trunc_sched == lopt_core.get_outer_trainer(
            "ConstantTruncationSchedule", total_length=5
        )
        assert (member.unroll_length, member.std) == (2, 0.03)
    assert learner.gradient_learner.theta_opt.learning_rate == 0.02
    # Equal weights sample uniformly: None, as `--task-family A,B` always built it.
    _, _, learner = cli.build_learner(_args("--task-family", f"{QUAD}:2,{NOISY}:2"))
    assert learner.gradient_estimators[0].weights is None


# -- the text: recipe_to_toml round-trips -----------------------------------------------
def _shipped():
    pretrained = resources.files("lopt_learned") / "pretrained"
    with resources.as_file(pretrained / "mlp_lopt_digits8.recipe.toml") as path:
        return load_recipe(path)


ROUND_TRIP = [
    ("one family", lambda: make_recipe([FamilySpec(QUAD)])),
    ("the shipped recipe", _shipped),
    (
        "every field",
        lambda: make_recipe(
            [
                FamilySpec(QUAD, {"dim": 3}, 2.5, (Component("ScaleLoss", {"max_scale": 1e5}),)),
                FamilySpec(NOISY, {}, 1e-3, (Component("LabelNoise"),)),
            ],
            learned_optimizer=Component("LearnableAdam", {"initial_learning_rate": 1e-05}),
            schedule=Component(
                "GrowingLogUniformSchedule",
                {"min_length": 2, "start_max_length": 3, "end_max_length": 8, "growth_steps": 2},
            ),
            estimator=Component("FullES", {"std": 0.01, "clip_loss_diff": math.inf}),
            outer_optimizer=Component("Adam", {"learning_rate": 3e-3}),
            num_tasks=3,
            meta_loss_split="outer_valid",
            meta_loss_type="final",
            meta_loss_clip=-1.5,
            random_initial_iteration_offset=0,
            resample_every=4,
            normalize=True,
            normalizer="task",
            num_steps=9,
            seed=2**32 - 1,
            time_budget_s=0.25,
            checkpoint_every=5,
            log_every=2,
            output_dir='runs/a "quoted"\tname\\ü\x7f',
            eval_tasks=(QUAD, NOISY),
        ),
    ),
]


@pytest.mark.parametrize(("label", "make"), ROUND_TRIP, ids=[c[0] for c in ROUND_TRIP])
def test_the_text_of_a_recipe_parses_back_to_it(label, make):
    recipe = make()
    text = recipe_to_toml(recipe)
    again = parse_recipe(text, recipe.source)
    assert _fields(again) == _fields(recipe)
    assert recipe_to_toml(again) == text  # and writes the same text again


def test_recipe_to_toml_writes_values_as_toml():
    recipe = make_recipe(
        [FamilySpec(QUAD, {"dim": 3})],
        outer_optimizer=Component("Adam", {"learning_rate": 1e-05}),
        comment="two\nlines",
    )
    text = recipe.text
    assert text.startswith("# two\n# lines\n\n[run]\n")
    assert 'name = "FixedDimQuadraticFamily"\nweight = 1.0\nkwargs = { dim = 3 }\n' in text
    assert "kwargs = { learning_rate = 1e-05 }" in text
    assert '[mixture]\nresample_every = 1\nnormalize = false\nnormalizer = "relative"\n' in text
    assert "[evaluation]" not in text and "meta_loss_clip" not in text
    with pytest.raises(RecipeError, match=r"^<flags>: NoneType None has no TOML form"):
        make_recipe([FamilySpec(QUAD, {"dim": None})])
    with pytest.raises(RecipeError, match=r"^<flags>: families\[0\].name: No task family"):
        make_recipe([FamilySpec("NoSuchFamily")])


# -- --augment ---------------------------------------------------------------------------
AUGMENT = [
    ("ScaleLoss", ("ScaleLoss", {})),
    ("ScaleLossFamily", ("ScaleLossFamily", {})),
    (
        "ReparamWeights:level=tensor,min_scale=0.01",
        ("ReparamWeights", {"level": "tensor", "min_scale": 0.01}),
    ),
    ("LabelNoise:max_fraction=0.3", ("LabelNoise", {"max_fraction": 0.3})),
    (
        "LabelNoise: num_classes = 10 , label_key='y'",
        ("LabelNoise", {"num_classes": 10, "label_key": "y"}),
    ),
    ('ConvertFloatDType:dtype="float16"', ("ConvertFloatDType", {"dtype": "float16"})),
    ("X:a=true,b=1e3,c=-2,d=inf", ("X", {"a": True, "b": 1000.0, "c": -2, "d": math.inf})),
]


@pytest.mark.parametrize(("text", "expected"), AUGMENT, ids=[c[0] for c in AUGMENT])
def test_augment_parses_a_name_and_toml_scalar_options(text, expected):
    name, kwargs = cli._augment_spec(text)
    assert (name, kwargs) == expected
    assert [type(v) for v in kwargs.values()] == [type(v) for v in expected[1].values()]


FIX = "write NAME[:key=value,...] such as ReparamWeights:level=tensor,min_scale=0.01."
BAD_AUGMENT = [
    (
        "Reparam",
        "--augment Reparam: no augmentation named 'Reparam'; close matches: ReparamWeights; "
        "pick one of ",
    ),
    (
        "ScaleLos:min_scale=1",
        "--augment ScaleLos:min_scale=1: no augmentation named 'ScaleLos'; close matches: "
        "ScaleLoss; pick one of",
    ),
    (
        "ReparamWeights:levl=tensor",
        "--augment ReparamWeights:levl=tensor: ReparamWeightsFamily takes no option 'levl'; "
        "use one of level, min_scale, max_scale.",
    ),
    (
        "ReparamWeights:level",
        f"--augment ReparamWeights:level: option 'level' is not key=value; {FIX}",
    ),
    ("ScaleLoss:", f"--augment ScaleLoss:: an empty option is not key=value; {FIX}"),
    (
        "ScaleLoss:min_scale=1,",
        f"--augment ScaleLoss:min_scale=1,: an empty option is not key=value; {FIX}",
    ),
    (":min_scale=1", f"--augment :min_scale=1: no augmentation name before ':'; {FIX}"),
    (
        "ScaleLoss:min_scale=1,min_scale=2",
        "--augment ScaleLoss:min_scale=1,min_scale=2: option 'min_scale' is given twice",
    ),
    (
        "ScaleLoss:min_scale=[1",
        "--augment ScaleLoss:min_scale=[1: the value of min_scale, [1, is not a valid TOML value",
    ),
    ("ScaleLoss:min_scale=nan", "--augment ScaleLoss:min_scale=nan: min_scale=nan is not a number"),
    (
        "ScaleLoss:min_scale=1979-05-27",
        "--augment ScaleLoss:min_scale=1979-05-27: the value of min_scale, 1979-05-27, is a date",
    ),
    (
        f"{QUAD}",
        f"--augment {QUAD}: task family {QUAD} does not wrap another family (it takes no `base`)",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_AUGMENT, ids=[c[0] for c in BAD_AUGMENT])
def test_a_bad_augment_is_one_line_naming_the_flag_the_part_and_the_fix(
    tmp_path, capsys, monkeypatch, text, expected
):
    out = tmp_path / "run"
    line = refused_cli(
        ["meta-train", "--task-family", QUAD, "--augment", text, "--output-dir", str(out)],
        capsys,
        monkeypatch,
    )
    assert line.startswith(f"lopt meta-train: {expected}"), line
    assert not out.exists()


def test_augment_applies_each_augmentation_to_every_family_in_order():
    import lopt_tasks

    args = _args("--task-family", f"{QUAD},{NOISY}", "--member-normalizer", "task",
                 "--augment", "ScaleLoss:min_scale=0.5,max_scale=2", "--augment",
                 "ReparamWeights:level=tensor")  # fmt: skip
    families, _, _ = cli.build_learner(args)
    for family, name in zip(families, (QUAD, NOISY), strict=True):
        assert isinstance(family, lopt_tasks.ReparamWeightsFamily) and family.level == "tensor"
        inner = family.family
        assert isinstance(inner, lopt_tasks.ScaleLossFamily)
        assert (inner.min_scale, inner.max_scale, inner.family.name) == (0.5, 2, name)


# -- --task-family weights --------------------------------------------------------------
WEIGHTS = [
    (QUAD, [(QUAD, 1.0)]),
    (f"{QUAD}:2,{NOISY}:1", [(QUAD, 2.0), (NOISY, 1.0)]),
    (f"{QUAD}:0.25, {NOISY}", [(QUAD, 0.25), (NOISY, 1.0)]),
    (f"{QUAD} : 3e2,", [(QUAD, 300.0)]),
]


@pytest.mark.parametrize(("text", "expected"), WEIGHTS, ids=[c[0] for c in WEIGHTS])
def test_task_family_weights_follow_a_colon(text, expected):
    assert cli._family_specs(text) == expected
    recipe = cli.recipe_from_flags(_args("--task-family", text))
    assert [(f.name, f.weight) for f in recipe.families] == expected


WFIX = (
    "write NAME or NAME:WEIGHT, comma-separated, such as "
    "FixedDimQuadraticFamily:2,NoisyQuadraticFamily:1."
)
BAD_WEIGHTS = [
    (f"{QUAD}:x", f"--task-family {QUAD}:x: the weight 'x' of {QUAD} is not a number > 0; {WFIX}"),
    (f"{QUAD}:0,{NOISY}", f"--task-family {QUAD}:0,{NOISY}: the weight '0' of {QUAD} is not a"),
    (f"{QUAD}:-1", f"--task-family {QUAD}:-1: the weight '-1' of {QUAD} is not a number > 0"),
    (f"{QUAD}:inf", f"--task-family {QUAD}:inf: the weight 'inf' of {QUAD} is not a number > 0"),
    (f"{QUAD}:", f"--task-family {QUAD}:: the weight '' of {QUAD} is not a number > 0"),
    (":2", f"--task-family :2: ':2' has no family name before ':'; {WFIX}"),
    (f"{QUAD}:2:3", f"--task-family {QUAD}:2:3: the weight '2:3' of {QUAD} is not a number > 0"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_WEIGHTS, ids=[c[0] for c in BAD_WEIGHTS])
def test_a_bad_weight_is_one_line_naming_the_flag_and_the_fix(
    tmp_path, capsys, monkeypatch, text, expected
):
    line = refused_cli(
        ["meta-train", "--task-family", text, "--output-dir", str(tmp_path / "run")],
        capsys,
        monkeypatch,
    )
    assert line.startswith(f"lopt meta-train: {expected}"), line


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--augment", "ScaleLoss"], "--augment conflicts with --recipe"),
        (["--member-normalizer", "task"], "--member-normalizer conflicts with --recipe"),
        (["--member-normalizer", "relative"], "--member-normalizer conflicts"),  # its default
    ],
)
def test_the_new_learner_flags_conflict_with_a_recipe(
    tmp_path, capsys, monkeypatch, extra, expected
):
    path = tmp_path / "r.toml"
    path.write_text(f'[[families]]\nname = "{QUAD}"\n')
    line = refused_cli(
        ["meta-train", "--recipe", str(path), "--output-dir", str(tmp_path / "o"), *extra],
        capsys,
        monkeypatch,
    )
    assert expected in line, line


# -- [mixture] normalizer ---------------------------------------------------------------
def _two(normalizer: str | None) -> str:
    line = "" if normalizer is None else f'\n[mixture]\nnormalizer = "{normalizer}"\n'
    return f'[[families]]\nname = "{QUAD}"\n[[families]]\nname = "{NOISY}"\n{line}'


@pytest.mark.parametrize(
    ("text", "wrapped"),
    [
        (_two(None), True),  # the default
        (_two("relative"), True),
        (_two("task"), False),
        (f'[[families]]\nname = "{QUAD}"\n[mixture]\nnormalizer = "relative"\n', False),
    ],
    ids=["mixture default", "relative", "task", "one family"],
)
def test_the_normalizer_wraps_each_member_of_a_mixture_only(text, wrapped):
    from lopt_tasks.augmentation import RelativeLossNormalizerFamily

    built = build_recipe(parse_recipe(text))
    for family in built.families:
        assert isinstance(family, RelativeLossNormalizerFamily) is wrapped
        base = family.family if wrapped else family
        assert not isinstance(base, RelativeLossNormalizerFamily)


def test_a_bad_normalizer_isrefused_cli():
    with pytest.raises(
        RecipeError, match=r"^<string>: mixture.normalizer: must be one of relative, task, got "
    ):
        parse_recipe(_two("global"))
    assert cli.recipe_from_flags(_args("--task-family", QUAD)).normalizer == "relative"
    args = _args("--task-family", QUAD, "--member-normalizer", "task")
    assert cli.recipe_from_flags(args).normalizer == "task"


def test_the_shipped_single_family_recipe_builds_as_before():
    recipe = _shipped()
    assert recipe.normalizer == "relative" and len(recipe.families) == 1
    built = build_recipe(recipe)
    (family,) = built.families
    assert built.estimator.truncated_step.task_family is family
    plain = lopt_core.get_task_family("ImageMLPFamily_Digits8")
    assert type(family) is type(plain) and family.name == plain.name  # nothing wrapped


# -- a run from flags records its recipe -----------------------------------------------
def test_a_flag_run_with_weights_and_an_augmentation_records_its_recipe(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--task-family", f"{QUAD}:2,{NOISY}:1", "--augment",
             "ScaleLoss:min_scale=0.5,max_scale=2.0", "--learned-optimizer", "LearnableAdam",
             "--num-tasks", "2", "--trunc-length", "2", "--max-length", "4",
             "--output-dir", str(out), "--no-progress"]  # fmt: skip
    assert main(["meta-train", *flags, "--num-steps", "2"]) == 0
    saved = load_recipe(out / RECIPE_FILE)
    assert [(f.name, f.weight) for f in saved.families] == [(QUAD, 2.0), (NOISY, 1.0)]
    for fam in saved.families:
        assert fam.augment == (Component("ScaleLoss", {"min_scale": 0.5, "max_scale": 2.0}),)
    assert saved.normalizer == "relative" and saved.num_steps == 2
    text = (out / RECIPE_FILE).read_text()
    assert text.count('[[families.augment]]\nname = "ScaleLoss"\n') == 2
    assert "weight = 2.0" in text
    meta = lopt_core.load_metadata(out / "theta.lopt")
    assert meta["recipe"] == text and "recipe_overrides" not in meta
    assert (meta["task_family"], meta["outer_steps"]) == (f"{QUAD},{NOISY}", 2)
    assert _fields(saved) == _fields(cli.recipe_from_flags(_args(*flags[:-3], "--num-steps", "2")))

    # The saved recipe resumes the flag run (the same learner, the same fingerprint).
    capsys.readouterr()
    argv = ["meta-train", "--recipe", str(out / RECIPE_FILE), "--num-steps", "3",
            "--output-dir", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "resumed from step 2" in capsys.readouterr().out
