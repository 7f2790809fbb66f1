import lopt_core
import lopt_tasks
from lopt_core.testing import check_task
from lopt_tasks import CATALOG

PLUGIN = "lopt-tasks"


def _ours(kind):
    return CATALOG.names(kind)


def test_the_entry_point_registers_exactly_the_catalog():
    for kind in ("tasks", "task_families", "commands", "suites"):
        registered = sorted(
            n for n, e in lopt_core.REGISTRY.entries(kind).items() if e.plugin == PLUGIN
        )
        assert registered == sorted(CATALOG.names(kind)), kind
    assert CATALOG.names("commands") == ["data"]
    entry = lopt_core.REGISTRY.entry("tasks", "ImageMLP_Digits8_Relu32")
    assert entry.factory is lopt_tasks.image_mlp.ImageMLP_Digits8_Relu32
    assert entry.description == (
        "A 1 hidden layer, 32 unit ReLU MLP on the embedded 8x8 digits (no network needed)."
    )


def test_all_derives_from_the_catalog():
    declared = CATALOG.exported_names()
    assert len(declared) == sum(len(CATALOG.names(k)) for k in ("tasks", "task_families", "suites"))
    assert set(declared) <= set(lopt_tasks.__all__)
    assert "Conv_Digits8_16x32" in declared and "LMRNNFamily_EmbeddedText" in declared
    for name in lopt_tasks.__all__:
        assert getattr(lopt_tasks, name) is not None, name
    assert lopt_tasks.Conv_Digits8_16x32 is lopt_tasks.conv.Conv_Digits8_16x32


def test_registry_lists_every_component():
    tasks, families = _ours("tasks"), _ours("task_families")
    for name in [
        "QuadraticTask",
        "BatchQuadraticTask",
        "NoisyMeanQuadraticTask",
        "ImageMLP_Digits8_Relu32",
        "ImageMLP_FashionMnist8_Relu32",
        "ImageMLP_FashionMnist16_Relu32",
        "ImageMLP_Mnist_128x128x128_Relu",
        "ImageMLP_Cifar10_8_Relu32",
        "ImageMLP_Cifar10BW8_Relu32",
        "ImageMLP_Cifar10_128x128x128_Relu",
        "Conv_Cifar10_8_16x32",
        "Conv_Cifar10_32x64x64",
        "Conv_Cifar100_32x64x64",
    ]:
        assert name in tasks, name
    for name in [
        "FixedDimQuadraticFamily",
        "FixedDimQuadraticFamilyData",
        "NoisyQuadraticFamily",
        "ImageMLPFamily_Digits8",
    ]:
        assert name in families, name


def test_every_registered_task_passes_check_task(mock_tfds):
    names = _ours("tasks")
    assert len(names) >= 20
    for name in names:
        check_task(lopt_core.get_task(name))


def test_registering_and_constructing_read_no_data(tmp_path, monkeypatch):
    # An empty data_dir: any read of TFDS data would raise DatasetNotPreparedError.
    monkeypatch.setenv("LOPT_DATA_DIR", str(tmp_path))
    lopt_core.REGISTRY.reload()
    entries = lopt_core.REGISTRY.entries("tasks")
    assert all(callable(e.factory) for e in entries.values())
    for kind, get in (("tasks", lopt_core.get_task), ("task_families", lopt_core.get_task_family)):
        for name in _ours(kind):
            ds = get(name).datasets
            if ds is None:
                continue
            assert ds.abstract_batch is not None, name
            for split in lopt_core.SPLITS:
                assert not getattr(ds.split(split), "loaded", False), (name, split)
