"""The run layer's older spellings (lopt_outer._compat_run): keyword-style meta_train and
lopt_outer.distributed's names keep working."""

import sys

import numpy as np
import pytest
from outer_helpers import DataQuadraticFamily, LearnableSGD, MetaAdam

import lopt_outer
import lopt_outer.compat
from lopt_outer import (
    ConstantTruncationSchedule,
    RunConfig,
    SingleMachineGradientLearner,
    TruncatedPES,
    VectorizedLOptTruncatedStep,
    distributed,
    meta_train,
    run,
)
from lopt_outer._compat_run import config_from_keywords


@pytest.fixture(scope="module")
def learner():
    step = VectorizedLOptTruncatedStep(
        DataQuadraticFamily(), LearnableSGD(0.02), ConstantTruncationSchedule(12), 2
    )
    return SingleMachineGradientLearner(
        LearnableSGD(0.02), [TruncatedPES(step, 4, std=0.05)], MetaAdam(0.05)
    )


def test_the_keyword_style_runs_the_same_run_as_a_run_config(learner, tmp_path):
    new = meta_train(learner, RunConfig(3, seed=1, checkpoint_every=2, progress=False))
    positional = meta_train(learner, 3, seed=1, checkpoint_every=2, progress=False)
    keyword = meta_train(
        learner,
        num_steps=3,
        seed=1,
        output_dir=tmp_path,
        progress=False,
        metric_writers=[],
        backend="inprocess",
        num_workers=1,  # the old default: allowed with the in-process backend
    )
    for res in (positional, keyword):
        assert res.steps == 3 and res.resumed_from == 0
        np.testing.assert_array_equal(res.theta["log_lr"], new.theta["log_lr"])
        assert [r["meta_loss"] for r in res.history] == [r["meta_loss"] for r in new.history]
    assert (tmp_path / "checkpoint.lopt").exists()


def test_keywords_become_a_run_config_and_backend_options():
    config, options = config_from_keywords(
        7, {"seed": 2, "time_budget_s": 5, "num_workers": 3, "address": None}
    )
    assert config == RunConfig(7, seed=2, time_budget_s=5.0)
    assert options == {"num_workers": 3}  # address=None meant "not set"


def test_keyword_style_mistakes_are_named(learner):
    with pytest.raises(TypeError, match="unexpected keyword argument 'chekpoint_every'"):
        meta_train(learner, 3, chekpoint_every=2)
    with pytest.raises(TypeError, match="got a RunConfig and the keyword arguments seed"):
        meta_train(learner, RunConfig(3), seed=2)
    with pytest.raises(TypeError, match="num_steps given both by position and by keyword"):
        meta_train(learner, 3, num_steps=3)
    with pytest.raises(TypeError, match=r"pass a RunConfig, e.g. meta_train\(learner, RunConfig"):
        meta_train(learner, seed=1)
    with pytest.raises(ValueError, match="RunConfig: checkpoint_every must be a positive integer"):
        meta_train(learner, 3, checkpoint_every=0)
    with pytest.raises(ValueError, match="Unknown backend 'mpi'"):
        meta_train(learner, 1, backend="mpi")
    with pytest.raises(ValueError, match="num_workers apply to backend='ray' only"):
        meta_train(learner, 1, num_workers=2)


def test_a_missing_ray_names_the_extra_in_every_spelling(learner, monkeypatch):
    # A None entry in sys.modules makes `import ray` raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, "ray", None)
    extra = r"pip install 'lopt-outer\[ray\]'"
    with pytest.raises(ImportError, match=extra):
        meta_train(learner, 1, backend="ray", num_workers=2, progress=False)
    with pytest.raises(ImportError, match=extra):
        lopt_outer.RayBackend(num_workers=2)
    with pytest.raises(ImportError, match=extra):
        distributed.meta_train_ray(learner.gradient_learner, learner.gradient_estimators, 1)


def test_moved_names_still_import_from_their_old_modules():
    from lopt_outer.distributed import CHECKPOINT_NAME, RayMetaTrainer, meta_train_ray
    from lopt_outer.meta_train import CHECKPOINT_NAME as INPROCESS_NAME
    from lopt_outer.meta_train import MetaTrainResult, step_key

    assert CHECKPOINT_NAME == run.RAY_CHECKPOINT_NAME == "ray_learner.lopt"
    assert INPROCESS_NAME == run.CHECKPOINT_NAME == "checkpoint.lopt"
    assert step_key is run.step_key and MetaTrainResult is run.MetaTrainResult
    assert RayMetaTrainer is lopt_outer.RayMetaTrainer
    assert meta_train_ray is lopt_outer.meta_train_ray
    assert distributed.RayMetaTrainResult is lopt_outer.ray.RayMetaTrainResult
    # lopt_outer.compat, the package's one place for old spellings, names them too.
    assert lopt_outer.compat.RayMetaTrainer is RayMetaTrainer
    assert lopt_outer.compat.config_from_keywords is config_from_keywords
    assert issubclass(lopt_outer.RayMetaTrainResult, lopt_outer.MetaTrainResult)
    with pytest.raises(AttributeError, match="'lopt_outer.distributed' has no attribute 'nope'"):
        distributed.nope
