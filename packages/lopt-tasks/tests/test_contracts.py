import lopt_core
from lopt_core.testing import check_task, check_task_family

PLUGIN = "lopt-tasks"


def _ours(kind):
    return sorted(n for n, e in lopt_core.REGISTRY.entries(kind).items() if e.plugin == PLUGIN)


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


def test_every_registered_family_passes_check_task_family(mock_tfds):
    names = _ours("task_families")
    assert len(names) >= 7
    for name in names:
        check_task_family(lopt_core.get_task_family(name))


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
