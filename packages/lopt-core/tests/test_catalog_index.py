"""Catalog indexes: `lopt list` and `lopt describe` read a plugin's components without imports."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import lopt_core
from lopt_core import cli, lazy
from lopt_core.registry import (
    REGISTRY,
    CatalogIndex,
    CatalogIndexError,
    Entry,
    close_matches,
    index_path,
    write_index,
)

PLUGIN_SOURCE = '''
"""A plugin whose import leaves a mark, to see when lopt imports it."""
import pathlib

import lopt_core

pathlib.Path(__file__).with_name("IMPORTED").write_text("yes")
CATALOG = lopt_core.Catalog()


@CATALOG.task("indexed_quadratic")
@lopt_core.declare
class IndexedQuadratic(lopt_core.Task):
    """A quadratic `sum(x^2)` in `dim` dimensions.

    Args:
      dim: number of parameters.
    """

    dim: int = 3

    def init(self, key):
        import jax.numpy as jnp
        return {"x": jnp.ones(self.dim)}

    def loss(self, params, key, data):
        import jax.numpy as jnp
        return jnp.sum(params["x"] ** 2)


@CATALOG.command("indexed-hello")
def setup(parser):
    """Says hello from an indexed plugin."""
    parser.set_defaults(func=lambda args: print("hello from the index") or 0)
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A package `idx_plugin` on sys.path, with its index written beside its `__init__`."""
    pkg = tmp_path / "idx_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(PLUGIN_SOURCE)
    info = tmp_path / "idx_plugin-1.2.dist-info"  # installed, as pip would leave it
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: idx-plugin\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[lopt]\nidx = idx_plugin:CATALOG\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_index("idx_plugin:CATALOG")  # imports the plugin once, to write the index
    (pkg / "IMPORTED").unlink()
    for name in [m for m in sys.modules if m == "idx_plugin" or m.startswith("idx_plugin.")]:
        del sys.modules[name]
    REGISTRY.reload()
    yield pkg, path
    REGISTRY._extra_plugins[:] = [p for p in REGISTRY._extra_plugins if p[1] != "idx-plugin"]
    sys.modules.pop("idx_plugin", None)
    monkeypatch.undo()
    REGISTRY.reload()


def test_the_index_lives_beside_the_entry_point_module(tmp_path, plugin_dir):
    pkg, path = plugin_dir
    assert path == pkg / "__init__.lopt-index.json"
    assert index_path("idx_plugin:CATALOG") == path
    assert index_path("idx_plugin.sub.mod:CATALOG") == pkg / "sub" / "mod.lopt-index.json"
    assert index_path("no_such_package_anywhere:CATALOG") is None
    data = json.loads(path.read_text())
    assert data["lopt_catalog_index"] == 1
    entry = data["entries"]["tasks"]["indexed_quadratic"]
    assert entry == {
        "target": "idx_plugin:IndexedQuadratic",
        "description": "A quadratic `sum(x^2)` in `dim` dimensions.",
        "signature": "(dim: int = 3) -> None",
        "doc": "A quadratic `sum(x^2)` in `dim` dimensions.\n\nArgs:\n  dim: number of parameters.",
    }
    assert data["entries"]["commands"]["indexed-hello"]["target"] == "idx_plugin:setup"


def test_list_and_describe_import_nothing_and_the_first_use_imports_the_factory(plugin_dir, capsys):
    pkg, _ = plugin_dir
    assert cli.main(["list", "tasks"]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if "indexed_quadratic" in r)
    assert row.split()[:3] == ["indexed_quadratic", "tasks", "idx-plugin"]
    assert cli.main(["describe", "indexed_quadratic"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("indexed_quadratic(dim: int = 3) -> None\n")
    assert "factory: idx_plugin.IndexedQuadratic" in out and "dim: number of parameters." in out
    assert "indexed-hello" in REGISTRY.entries("commands")
    entry = REGISTRY.entry("tasks", "indexed_quadratic")
    assert not entry.loaded and not (pkg / "IMPORTED").exists() and "idx_plugin" not in sys.modules
    task = lopt_core.get_task("indexed_quadratic", dim=5)
    assert (pkg / "IMPORTED").read_text() == "yes"
    assert entry.loaded and type(task).__name__ == "IndexedQuadratic" and task.dim == 5
    assert entry.factory is sys.modules["idx_plugin"].IndexedQuadratic


def test_a_command_from_an_index_is_set_up_only_when_it_runs(plugin_dir, capsys):
    pkg, _ = plugin_dir
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "indexed-hello" in capsys.readouterr().out
    assert not (pkg / "IMPORTED").exists()
    assert cli.main(["indexed-hello"]) == 0
    assert capsys.readouterr().out == "hello from the index\n"
    assert (pkg / "IMPORTED").exists()


def test_a_stale_index_entry_fails_on_use_naming_the_plugin_and_the_fix(plugin_dir):
    _, path = plugin_dir
    data = json.loads(path.read_text())
    data["entries"]["tasks"]["indexed_quadratic"]["target"] = "idx_plugin:Renamed"
    path.write_text(json.dumps(data))
    REGISTRY.reload()
    with pytest.raises(ImportError) as info:
        lopt_core.get_task("indexed_quadratic")
    message = str(info.value)
    assert "lopt plugin 'idx-plugin' registers the task 'indexed_quadratic'" in message
    assert "idx_plugin:Renamed" in message and "defines no 'Renamed'" in message
    assert "Reinstall idx-plugin" in message and "write-index" in message


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b"{not json", "not JSON"),
        (b'{"entries": {}}', "does not start with lopt_catalog_index = 1"),
        (b'{"lopt_catalog_index": 2, "entries": {}}', "does not start with lopt_catalog_index"),
        (b'{"lopt_catalog_index": 1, "entries": []}', "'entries' is not an object"),
        (b'{"lopt_catalog_index": 1, "entries": {"widgets": {}}}', "'widgets' is not one of"),
        (
            b'{"lopt_catalog_index": 1, "entries": {"tasks": {"t": {"target": "m:T"}}}}',
            "the tasks entry 't' lacks one of the strings",
        ),
    ],
)
def test_a_malformed_index_is_refused_naming_the_file_and_the_fix(text, why):
    with pytest.raises(CatalogIndexError) as info:
        CatalogIndex.parse(text, "/site/pkg/_plugin.lopt-index.json")
    message = str(info.value)
    assert message.startswith("The catalog index /site/pkg/_plugin.lopt-index.json is malformed")
    assert why in message and "write-index" in message


def test_a_malformed_index_skips_that_plugin_with_a_warning(plugin_dir):
    pkg, path = plugin_dir
    path.write_text("[]")
    REGISTRY.reload()
    with pytest.warns(lopt_core.PluginWarning) as record:
        names = lopt_core.list_tasks()
    assert "indexed_quadratic" not in names and not (pkg / "IMPORTED").exists()
    message = " ".join(str(w.message) for w in record)
    assert (
        "lopt plugin 'idx-plugin' (entry point `idx = idx_plugin:CATALOG`) was skipped" in message
    )
    assert f"The catalog index {path} is malformed" in message
    with pytest.raises(CatalogIndexError, match="is malformed"):
        CatalogIndex.beside("idx_plugin:CATALOG")


def test_an_index_needs_module_level_factories():
    catalog = lopt_core.Catalog()
    catalog.add("tasks", "lambda_task", lambda: None)
    with pytest.raises(ValueError, match="'lambda_task' cannot go into a catalog index"):
        catalog.index()


def test_an_entry_of_an_imported_factory_records_target_signature_and_doc():
    entry = Entry.of("adam_like", "optimizers", lopt_core.Optimizer, "desc", "p", "1")
    assert entry.target == "lopt_core.optimizers:Optimizer"
    assert entry.loaded and entry.factory is lopt_core.Optimizer
    assert entry.doc.startswith("A stateless optimizer: `init` makes a state pytree")


@pytest.mark.parametrize(
    ("name", "known", "expected"),
    [
        ("PES", ["TruncatedPES", "TruncatedES", "FullES"], ["TruncatedPES"]),
        ("adam", ["Adam", "AdamW", "NAdamW", "SGD"], ["Adam", "AdamW", "NAdamW"]),
        ("mlplopt", ["MLPLOpt", "AdafacMLPLOpt", "NNAdam"], ["MLPLOpt", "AdafacMLPLOpt"]),
        ("TruncatedPSE", ["TruncatedPES", "FullES"], ["TruncatedPES"]),
        ("MyAdamVariant", ["Adam", "SGD"], ["Adam"]),
        ("zzz", ["Adam", "SGD"], []),
    ],
)
def test_close_matches_come_from_case_substrings_and_spelling(name, known, expected):
    assert close_matches(name, known) == expected


def test_an_unknown_family_is_named_in_the_singular_with_substring_suggestions():
    catalog = lopt_core.Catalog()
    # A name no lopt package registers, so the test holds with every package installed.
    catalog.add("task_families", "ZebraStripeFamily_Test8", lopt_core.TaskFamily)
    REGISTRY.add_plugin(catalog, "family-plugin")
    try:
        with pytest.raises(lopt_core.UnknownComponentError) as info:
            lopt_core.get_task_family("zebrastripe")
    finally:
        REGISTRY._extra_plugins[:] = [p for p in REGISTRY._extra_plugins if p[0] is not catalog]
        REGISTRY.reload()
    assert str(info.value).startswith(
        "No task family named 'zebrastripe' is registered. Close matches: ZebraStripeFamily_Test8."
    )


def test_version_lists_lopt_core_with_its_version(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["lopt-core", metadata.version("lopt-core")]


def test_the_command_line_and_the_registry_import_no_jax():
    code = textwrap.dedent(
        """
        import sys
        import lopt_core
        from lopt_core import cli
        for argv in (["--help"], ["list"], ["--version"]):
            try:
                cli.main(argv)
            except SystemExit:
                pass
        lopt_core.list_tasks()
        print("JAX", "jax" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "JAX False"


def _lazy_package(tmp_path, monkeypatch):
    pkg = tmp_path / "lazy_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from lopt_core.lazy import attach\n"
        "__getattr__, __dir__, __all__ = attach(\n"
        "    __name__, {'A': 'mod_a', 'B': 'mod_b:Bee', 'CATALOG': '_cat'}, ('sub', '_private'),"
        " catalog='CATALOG')\n"
    )
    (pkg / "_cat.py").write_text("CATALOG = []\n")
    (pkg / "mod_a.py").write_text("from lazy_pkg._cat import CATALOG\nA = 1\nCATALOG.append('a')\n")
    (pkg / "mod_b.py").write_text(
        "from lazy_pkg._cat import CATALOG\nBee = 2\nCATALOG.append('b')\n"
    )
    (pkg / "sub.py").write_text("X = 3\n")
    (pkg / "_private.py").write_text("from lazy_pkg._cat import CATALOG\nCATALOG.append('p')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("lazy_pkg")]:
        del sys.modules[name]


def test_lazy_attach_imports_a_name_on_first_use(tmp_path, monkeypatch):
    _lazy_package(tmp_path, monkeypatch)
    import lazy_pkg

    assert lazy_pkg.__all__ == ["A", "B", "CATALOG", "sub"]
    assert "lazy_pkg.mod_a" not in sys.modules
    assert (
        lazy_pkg.A == 1 and "lazy_pkg.mod_a" in sys.modules and "lazy_pkg.mod_b" not in sys.modules
    )
    assert lazy_pkg.B == 2 and lazy_pkg.sub.X == 3
    with pytest.raises(AttributeError, match="module 'lazy_pkg' has no attribute 'C'"):
        lazy_pkg.C


def test_lazy_attach_catalog_imports_every_declaring_module_first(tmp_path, monkeypatch):
    _lazy_package(tmp_path, monkeypatch)
    import lazy_pkg

    assert sorted(lazy_pkg.CATALOG) == ["a", "b", "p"]


def test_lazy_attach_refuses_an_export_without_a_module():
    with pytest.raises(ValueError, match="the export 'X' must name its submodule"):
        lazy.attach("pkg", {"X": ":X"})


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["nope"], "lopt: error: argument COMMAND: invalid choice: 'nope'"),
        (["list", "widgets"], "lopt list: error: argument kind: invalid choice: 'widgets'"),
        (["describe"], "lopt describe: error: the following arguments are required: name"),
        (["list", "--bogus"], "lopt: error: unrecognized arguments: --bogus"),
    ],
)
def test_a_bad_command_line_is_one_line_on_stderr_and_exit_status_2(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), captured.err
    assert lines[0].endswith("--help)") and captured.out == ""
