"""lopt_outer.bench and `lopt bench`: suites scored against tuned baselines, with a JSON cache."""

import json
import types

import jax
import numpy as np
import pytest

import lopt_core
from lopt_core import REGISTRY, Suite, SuiteTask
from lopt_core.cli import main
from lopt_optimizers import SGD, Adam
from lopt_outer import bench
from lopt_outer.bench import Baseline, Curves

SUITE = Suite(
    "bench_test",
    "1",
    (SuiteTask("QuadraticTask", "quadratic"), SuiteTask("ImageMLP_Digits8_Relu32", "image_mlp")),
    horizons=(10, 20),
    seeds=2,
    num_evals=2,
    eval_batches=1,
)
BASELINES = (
    Baseline("Adam", "Adam", (("learning_rate", (1e-3, 3e-2)),)),
    Baseline("SGDM", "SGDM", (("learning_rate", (1e-2,)),), (("momentum", 0.9),)),
)


def _curves(train, valid, test, xs=(0, 5, 10)):
    loss = np.stack([np.asarray(train), np.asarray(valid), np.asarray(test)], axis=-1)
    return Curves(xs=np.asarray(xs), loss=loss.astype(np.float64))


# -- the runs --------------------------------------------------------------------------------
def test_run_curves_starts_at_the_initial_loss_and_vmaps_like_single_runs():
    task = lopt_core.get_task("QuadraticTask")

    def make(hp, horizon):
        return SGD(hp["learning_rate"])

    grid = {"learning_rate": np.asarray([0.01, 0.1], np.float32)}
    c = bench.run_curves(task, make, grid, None, [0, 1], horizon=10, num_evals=5, eval_batches=1)
    assert c.loss.shape == (2, 2, 6, 3) and c.xs.tolist() == [0, 2, 4, 6, 8, 10]
    for seed in (0, 1):
        k_init = jax.random.split(jax.random.PRNGKey(seed), 3)[0]
        params, _ = task.init_with_state(k_init)
        initial = float(task.loss(params, None, None))
        np.testing.assert_allclose(c.loss[:, seed, 0, :], initial, rtol=1e-6)
    # A larger SGD step on a quadratic ends lower; the loss goes down along the run.
    assert (c.split("train")[1, :, -1] < c.split("train")[0, :, -1]).all()
    assert (np.diff(c.split("train")[1], axis=-1) < 0).all()
    single = bench.run_curves(
        task, make, {"learning_rate": grid["learning_rate"][1:]}, None, [1], 10, 5, 1
    )
    np.testing.assert_allclose(single.loss[0, 0], c.loss[1, 1], rtol=1e-6)


def test_eval_points_cover_the_horizon():
    assert bench._eval_points(10, 3)[2].tolist() == [0, 3, 6, 10]
    assert bench._eval_points(4, 20)[2].tolist() == [0, 1, 2, 3, 4]


def test_warmup_ramps_linearly_over_the_fraction_of_the_horizon():
    sched = bench._warmup(0.1, 0.1, 100)
    np.testing.assert_allclose([float(sched(c)) for c in (0, 4, 9, 50)], [0.01, 0.05, 0.1, 0.1])
    assert float(bench._warmup(0.1, 0.0, 100)(0)) == pytest.approx(0.1)


def test_iterator_datasets_are_refused_naming_the_fix():
    class Plain:
        keyed = False

    task = types.SimpleNamespace(datasets=Plain())
    with pytest.raises(ValueError, match=r"reads its batches from iterators.*ArraySplit"):
        bench._check_keyed(task, "PlainTask")


# -- tuning and scores ------------------------------------------------------------------------
def test_tune_picks_the_lowest_final_validation_loss_and_never_a_nonfinite_one():
    valid = [[[3, 2, 1.0], [3, 2, 1.2]], [[3, 2, 0.5], [3, 2, np.nan]], [[3, 2, 0.9], [3, 2, 0.9]]]
    test = [[[3, 2, 0.1]] * 2, [[3, 2, 0.0]] * 2, [[3, 2, 5.0]] * 2]
    res = bench.BaselineResult(BASELINES[0], [{}, {}, {}], {10: _curves(valid, valid, test)})
    # config 1 has the lowest valid loss on one seed but NaN on the other; config 2 wins
    # on validation (0.9 < 1.1) even though its test loss is the worst: tuning never sees test.
    assert bench.tune(res, 10) == 2


def test_score_table():
    adam = _curves([[[4.0, 2.0, 1.0]] * 2], [[[4.0, 2.0, 1.0]] * 2], [[[4.0, 2.0, 1.0]] * 2])
    fast = _curves([[[4.0, 1.0, 0.5]] * 2], [[[4.0, 1.0, 0.5]] * 2], [[[4.0, 1.0, 0.5]] * 2])
    s = bench.score(fast, adam)
    assert s["win"] and s["steps_to_adam"] == 5.0 and s["adam_steps"] == 10.0
    assert s["speedup"] == 2.0 and s["final_test"] == 0.5 and s["diverged"] == 0
    slow = _curves([[[4.0, 3.0, 2.0]] * 2], [[[4.0, 3.0, 2.0]] * 2], [[[4.0, 3.0, 2.0]] * 2])
    s = bench.score(slow, adam)
    assert not s["win"] and s["steps_to_adam"] is None and s["speedup"] is None
    # one seed non-finite, one that ends above its start: both diverged, none averaged in
    bad = _curves(
        [[[4.0, np.nan, 1.0], [4.0, 3.0, 5.0]]], [[[4.0, 1.0, 1.0]] * 2], [[[4.0, 1.0, 0.1]] * 2]
    )
    s = bench.score(bad, adam)
    assert s["diverged"] == 2 and np.isnan(s["final_test"]) and not s["win"]


def test_summary_counts_wins_speedups_and_divergences():
    scores = {
        "a": {10: {"win": True, "speedup": 2.0, "diverged": 0}},
        "b": {10: {"win": False, "speedup": None, "diverged": 1}},
        "c": {10: {"win": True, "speedup": 4.0, "diverged": 0}},
    }
    s = bench.summarize_scores(scores)["10"]
    assert s["tasks"] == 3 and s["win_fraction"] == pytest.approx(2 / 3)
    assert s["reached_adam"] == 2 and s["speedup_median"] == 3.0
    assert s["diverged_runs"] == 1 and s["tasks_with_divergence"] == 1


# -- the cache -------------------------------------------------------------------------------
def test_baselines_are_cached_reused_and_tampered_files_recomputed(tmp_path, monkeypatch):
    small = SUITE.subset(("QuadraticTask",))
    first = bench.run_baselines(small, BASELINES, tmp_path)
    path = tmp_path / "bench_test-1" / "QuadraticTask__Adam.json"
    body = json.loads(path.read_text())
    assert body["version"] == "1" and body["configs"] == [
        {"learning_rate": 1e-3},
        {"learning_rate": 3e-2},
    ]
    assert set(body["versions"]) >= {"jax", "lopt-outer"}
    assert set(body["cost"]) == {"wall_s", "cpu_s"} and body["cost"]["wall_s"] > 0

    def refuse(*args):
        raise AssertionError("recomputed a cached baseline")

    monkeypatch.setattr(bench, "run_baseline", refuse)
    again = bench.run_baselines(small, BASELINES, tmp_path)
    np.testing.assert_array_equal(
        again["QuadraticTask"]["Adam"].curves[20].loss,
        first["QuadraticTask"]["Adam"].curves[20].loss,
    )
    # A file claiming another version, or with the wrong shape, is not trusted.
    for bad in ({**body, "version": "2"}, {**body, "horizons": {"10": {"xs": [0], "loss": []}}}):
        path.write_text(json.dumps(bad))
        with pytest.raises(bench.CacheMismatch, match="expected"):
            bench.load_baseline(small, "QuadraticTask", BASELINES[0], tmp_path)
    path.write_text("import os; os.system('echo hacked')")
    with pytest.raises(bench.CacheMismatch, match="not a readable JSON file"):
        bench.load_baseline(small, "QuadraticTask", BASELINES[0], tmp_path)
    with pytest.raises(FileNotFoundError, match="lopt bench baselines --suite bench_test"):
        bench.load_baseline(small, "ImageMLP_Digits8_Relu32", BASELINES[0], tmp_path)


# -- whole suites ----------------------------------------------------------------------------
def test_run_suite_scores_a_candidate_against_tuned_adam(tmp_path):
    report = bench.run_suite(SUITE, Adam(3e-2), baselines=BASELINES, cache_dir=tmp_path)
    assert report["candidate"] == Adam(3e-2).name and report["horizons"] == [10, 20]
    assert set(report["tasks"]) == set(SUITE.task_names)
    for task in SUITE.task_names:
        for h in ("10", "20"):
            s = report["tasks"][task][h]
            # Adam(3e-2) is one of the tuned grid's configurations: the tuned Adam is at
            # least as good on validation, and the candidate never diverges here.
            assert s["diverged"] == 0 and np.isfinite(s["final_test"])
            picked = report["baselines"][task][h]["Adam"]
            assert picked["config"]["learning_rate"] in (1e-3, 3e-2)
            if picked["config"]["learning_rate"] == pytest.approx(3e-2):
                assert s["final_test"] == pytest.approx(s["adam_final_test"], rel=1e-5)
    assert set(report["summary"]) == {"10", "20"}
    with pytest.raises(ValueError, match="either optimizer= .* or learned_optimizer="):
        bench.run_suite(SUITE, baselines=BASELINES, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="lopt bench baselines"):
        bench.run_suite(
            SUITE,
            Adam(1e-3),
            baselines=BASELINES,
            cache_dir=tmp_path / "none",
            compute_missing=False,
        )


@pytest.fixture
def registered_suite():
    module = types.ModuleType("bench_suite_plugin")
    module.lopt_register_suites = lopt_core.hookimpl(
        lambda register: register("bench_test", lambda: SUITE.subset(("QuadraticTask",)))
    )
    before = list(REGISTRY._extra_plugins)
    REGISTRY.add_plugin(module, "bench-suite-plugin", "0.1")
    yield
    REGISTRY._extra_plugins[:] = before
    REGISTRY.reload()


def test_the_cli_builds_baselines_and_scores_an_optimizer(
    tmp_path, capsys, registered_suite, monkeypatch
):
    monkeypatch.setattr(bench, "DEFAULT_BASELINES", BASELINES)  # the CLI reads it per call
    cache = tmp_path / "cache"
    assert main(["bench", "baselines", "--suite", "bench_test", "--cache-dir", str(cache)]) == 0
    assert "2 baseline results for 1 tasks of bench_test 1" in capsys.readouterr().out
    out_dir = tmp_path / "out"
    code = main(
        [
            "bench",
            "run",
            "--suite",
            "bench_test",
            "--optimizer",
            "Adam",
            "--cache-dir",
            str(cache),
            "--no-compute",
            "--output-dir",
            str(out_dir),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "QuadraticTask" in text and "beats tuned Adam on" in text
    report = json.loads((out_dir / "bench_report.json").read_text())
    assert (out_dir / "bench_curves.png").stat().st_size > 0
    assert (out_dir / "bench_speedups.png").stat().st_size > 0
    assert report["optimizer_argument"] == "Adam" and set(report["tasks"]) == {"QuadraticTask"}
    with pytest.raises(SystemExit):
        main(
            [
                "bench",
                "run",
                "--suite",
                "bench_test",
                "--optimizer",
                "NoSuchThing",
                "--cache-dir",
                str(cache),
                "--output-dir",
                str(out_dir),
            ]
        )
    assert "not a file, a registered optimizer or a registered learned optimizer" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main(
            [
                "bench",
                "run",
                "--suite",
                "bench_test",
                "--tasks",
                "Nope",
                "--optimizer",
                "Adam",
                "--cache-dir",
                str(cache),
                "--output-dir",
                str(out_dir),
            ]
        )
    assert "has no tasks ['Nope']" in capsys.readouterr().err


def test_the_tfds_suite_runs_on_mock_data(tmp_path, monkeypatch):
    from lopt_tasks.tfds_data import mock_tfds_data

    monkeypatch.setenv("LOPT_DATA_DIR", str(tmp_path / "data"))
    suite = lopt_core.get_suite("tfds")
    small = suite.subset(
        ("ImageMLP_FashionMnist8_Relu32", "RNNLM_lm1bbytes_Patch32_LSTM128_Embed64"), (6,), 1
    )
    assert (small.name, small.version) == ("tfds", suite.version)
    with mock_tfds_data(num_examples=24):
        report = bench.run_suite(small, SGD(0.05), baselines=BASELINES[:1], cache_dir=tmp_path)
    assert list(report["tasks"]) == list(small.task_names)
    for task, per in report["tasks"].items():
        s = per["6"]
        assert np.isfinite(s["final_test"]) and np.isfinite(s["adam_final_test"]), task
        assert s["seeds"] == 1
    assert sorted(p.name for p in (tmp_path / "tfds-1").iterdir()) == [
        "ImageMLP_FashionMnist8_Relu32__Adam.json",
        "RNNLM_lm1bbytes_Patch32_LSTM128_Embed64__Adam.json",
    ]
