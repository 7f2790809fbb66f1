import json

import jax
import numpy as np
import pytest
from outer_helpers import LearnableSGD

import lopt_core
from lopt_core.cli import main


def test_lopt_meta_train_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        _meta_train_args(
            out,
            *("--num-tasks", "4", "--trunc-length", "5", "--max-length", "20"),
            *("--num-steps", "6", "--outer-lr", "0.05", "--checkpoint-every", "3"),
        )
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "meta-trained 6 steps" in text
    theta = lopt_core.load(out / "theta.lopt", like=LearnableSGD().init(jax.random.PRNGKey(0)))
    assert theta.metadata["outer_steps"] == 6 and theta.metadata["estimator"] == "TruncatedPES"
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 6

    rc = main(
        [
            "eval",
            "--task-family",
            "FixedDimQuadraticFamily",
            "--learned-optimizer",
            "LearnableSGD",
            "--theta",
            str(out / "theta.lopt"),
            "--n-tasks",
            "2",
            "--steps",
            "20",
            "--eval-every",
            "10",
            "--adam-lrs",
            "0.1",
            "--output-dir",
            str(tmp_path / "eval"),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert (
        "learned (LearnableSGD)" in text and "Adam(lr=0.001) *" in text and "Adam(lr=0.1)" in text
    )
    summary = json.loads((tmp_path / "eval" / "eval_summary.json").read_text())
    assert set(summary["summary"]) == {"learned (LearnableSGD)", "Adam(lr=0.001)", "Adam(lr=0.1)"}
    assert np.isfinite(summary["summary"]["Adam(lr=0.1)"]["final_test_loss"])
    assert (tmp_path / "eval" / "eval_curves.png").stat().st_size > 1000


def test_unknown_estimator_name_is_a_clean_error(tmp_path, capsys):
    # Checked with the other flags, before anything is built: one line naming the flag.
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "meta-train",
                "--task-family",
                "FixedDimQuadraticFamily",
                "--learned-optimizer",
                "LearnableSGD",
                "--estimator",
                "TruncatedPESS",
                "--output-dir",
                str(tmp_path),
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--estimator TruncatedPESS" in err and "Close matches: TruncatedPES" in err


def _meta_train_args(out, *extra):
    return [
        "meta-train",
        "--task-family",
        "FixedDimQuadraticFamily",
        "--learned-optimizer",
        "LearnableSGD",
        "--output-dir",
        str(out),
        "--no-progress",
        *extra,
    ]


def test_resume_needs_a_checkpoint_of_the_chosen_backend(tmp_path, capsys):
    # theta.lopt is a run's output, and ray_learner.lopt is not read by the in-process
    # backend: neither lets --resume continue a run, so both must be refused.
    (tmp_path / "theta.lopt").write_bytes(b"x")
    (tmp_path / "ray_learner.lopt").write_bytes(b"x")
    with pytest.raises(SystemExit) as exc:
        main(_meta_train_args(tmp_path, "--resume"))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no checkpoint.lopt to resume from" in err[0]


def test_resume_and_no_resume_contradict(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(_meta_train_args(tmp_path, "--resume", "--no-resume"))
    assert exc.value.code == 2
    assert "contradict each other" in capsys.readouterr().err
