import lopt_core
import lopt_tasks
from lopt_core import Suite
from lopt_tasks.suites import OFFLINE_TASKS, TFDS_TASKS


def test_the_offline_suite_is_registered_with_enough_tasks_and_kinds():
    assert {"offline", "tfds"} <= set(lopt_core.list_suites())
    suite = lopt_core.get_suite("offline")
    assert isinstance(suite, Suite) and suite is not lopt_core.get_suite("offline")
    assert (suite.name, suite.version) == ("offline", "1")
    assert suite.horizons == (200, 1000, 5000) and suite.seeds == 3
    assert len(suite.tasks) == 17 >= 16
    assert suite.kinds == (
        "image_mlp",
        "conv",
        "autoencoder",
        "vae",
        "lm",
        "tabular",
        "synthetic",
        "flax",
    )
    assert suite.task_names == tuple(n for n, _ in OFFLINE_TASKS)
    assert lopt_tasks.OfflineSuite().task_names == suite.task_names


def test_every_suite_task_is_registered_and_the_offline_ones_read_no_tfds(tmp_path, monkeypatch):
    # An empty data dir: an offline task that read TFDS data would fail here.
    monkeypatch.setenv("LOPT_DATA_DIR", str(tmp_path))
    tasks = set(lopt_core.list_tasks())
    for name, _ in OFFLINE_TASKS + TFDS_TASKS:
        assert name in tasks, name
    for name, kind in OFFLINE_TASKS:
        task = lopt_core.get_task(name)
        if task.datasets is None:
            assert kind == "synthetic", name
            continue
        assert "tfds" not in type(task.datasets.train).__module__, name
        batch = next(task.datasets.train)
        assert batch, name
    tfds_suite = lopt_core.get_suite("tfds")
    assert len(tfds_suite.tasks) == 13
    assert set(tfds_suite.kinds) == {"image_mlp", "conv", "autoencoder", "vae", "lm"}
