import sys

from lopt_core import cli


def test_lopt_list_tasks_shows_everything(capsys):
    assert cli.main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    for name in [
        "ImageMLP_Digits8_Relu32",
        "ImageMLP_FashionMnist8_Relu32",
        "QuadraticTask",
        "Conv_Cifar10_32x64x64",
        "LSTMLM_EmbeddedText_Embed32_LSTM64",
    ]:
        assert name in out
    assert cli.main(["list", "task_families"]) == 0
    out = capsys.readouterr().out
    assert "ImageMLPFamily_Digits8" in out and "NoisyQuadraticFamily" in out


def test_lopt_data_prepare_without_tensorflow_says_how_to_install(capsys, tmp_path, monkeypatch):
    # A None entry in sys.modules makes `import tensorflow` raise ImportError.
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    assert cli.main(["data", "prepare", "mnist", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "lopt-tasks[prepare]" in err and "'mnist'" in err


def test_lopt_data_status_reports_missing_data(capsys, tmp_path):
    assert cli.main(["data", "status", "cifar10", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "'cifar10'" in out and str(tmp_path) in out
    assert f"lopt data prepare cifar10 --data-dir {tmp_path}" in out
