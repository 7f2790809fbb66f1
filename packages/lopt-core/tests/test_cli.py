import pytest

import lopt_core
from lopt_core import cli
from lopt_core.registry import REGISTRY


class _Plug:
    @staticmethod
    @lopt_core.hookimpl
    def lopt_register_optimizers(register):
        register("cli_test_opt", lopt_core.Optimizer, "An optimizer for the CLI test.")

    @staticmethod
    @lopt_core.hookimpl
    def lopt_register_commands(register):
        def setup(parser):
            parser.add_argument("--times", type=int, default=1)
            parser.set_defaults(func=lambda args: print("hello " * args.times) or 0)

        register("hello", setup, "Says hello.")


@pytest.fixture(autouse=True)
def _plugin():
    """Each test sees the plugin, whatever other test files did to the registry before."""
    REGISTRY.add_plugin(_Plug, "cli-test-plugin", "0.0.1")
    yield
    REGISTRY._extra_plugins[:] = [p for p in REGISTRY._extra_plugins if p[0] is not _Plug]
    REGISTRY.reload()


def test_list_shows_name_kind_plugin_and_description(capsys):
    assert cli.main(["list", "optimizers"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("cli_test_opt"))
    assert line.split()[:3] == ["cli_test_opt", "optimizers", "cli-test-plugin"]
    assert line.endswith("An optimizer for the CLI test.")


def test_describe_prints_signature_plugin_and_version(capsys):
    assert cli.main(["describe", "cli_test_opt"]) == 0
    out = capsys.readouterr().out
    assert "plugin: cli-test-plugin 0.0.1" in out
    assert "kind: optimizers" in out


def test_describe_unknown_name_suggests(capsys):
    assert cli.main(["describe", "cli_test_op"]) == 2
    err = capsys.readouterr().err
    assert "cli_test_opt" in err and "misspelled" in err


def test_plugin_subcommand_runs(capsys):
    assert cli.main(["hello", "--times", "2"]) == 0
    assert capsys.readouterr().out.strip() == "hello hello"
