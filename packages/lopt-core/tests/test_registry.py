"""The registry finds plugins through real entry points (a dist-info written to a temp dir)."""

import sys
import textwrap
import warnings

import pytest

import lopt_core
from lopt_core.registry import (
    DuplicateComponentError,
    PluginWarning,
    Registry,
    UnknownComponentError,
)


def _make_dist(root, dist, version, modules, entry_points):
    """Writes an installed distribution (dist-info + modules) under `root`."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[lopt]\n{eps}\n")
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


GOOD = """
import lopt_core

class ToyTask(lopt_core.Task):
    '''A toy task for registry tests.'''
    def __init__(self, dim=2):
        self.dim = dim
    def init(self, key):
        import jax.numpy as jnp
        return {"x": jnp.ones(self.dim)}
    def loss(self, params, key, data):
        return (params["x"] ** 2).sum()

@lopt_core.hookimpl
def lopt_register_tasks(register):
    register("toy_task", ToyTask)
    register("toy_task_2", ToyTask, "Explicit description.")
"""

BROKEN_IMPORT = """
raise RuntimeError("boom at import")
"""

BROKEN_HOOK = """
import lopt_core

@lopt_core.hookimpl
def lopt_register_optimizers(register):
    raise ValueError("boom in hook")
"""

CLASH = """
import lopt_core

class Other(lopt_core.Task):
    '''Another toy task.'''

@lopt_core.hookimpl
def lopt_register_tasks(register):
    register("toy_task", Other)
"""


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in ("good_plugin", "broken_import", "broken_hook", "clash_plugin"):
        sys.modules.pop(mod, None)


def test_entry_point_plugin_is_found_with_description_and_distribution(plugin_dir):
    _make_dist(plugin_dir, "toy-plugin", "1.2.3", {"good_plugin": GOOD}, {"good": "good_plugin"})
    reg = Registry()
    entry = reg.entry("tasks", "toy_task")
    assert entry.plugin == "toy-plugin"
    assert entry.version == "1.2.3"
    assert entry.description == "A toy task for registry tests."
    assert reg.entry("tasks", "toy_task_2").description == "Explicit description."
    task = reg.build("tasks", "toy_task", dim=3)
    assert task.dim == 3
    assert {"toy_task", "toy_task_2"} <= set(reg.names("tasks"))


def test_plugins_load_lazily_on_first_lookup(plugin_dir):
    _make_dist(plugin_dir, "toy-plugin", "1.0", {"good_plugin": GOOD}, {"good": "good_plugin"})
    reg = Registry()
    assert "good_plugin" not in sys.modules
    reg.names("tasks")
    assert "good_plugin" in sys.modules


def test_unknown_name_lists_close_matches(plugin_dir):
    _make_dist(plugin_dir, "toy-plugin", "1.0", {"good_plugin": GOOD}, {"good": "good_plugin"})
    reg = Registry()
    with pytest.raises(
        UnknownComponentError, match=r"Close matches: toy_task.*misspelled.*may not be installed"
    ):
        reg.entry("tasks", "toy_tsk")
    with pytest.raises(UnknownComponentError, match="No task named 'zzz'"):
        reg.entry("tasks", "zzz")


def test_plugin_that_fails_to_import_warns_and_others_still_register(plugin_dir):
    _make_dist(plugin_dir, "toy-plugin", "1.0", {"good_plugin": GOOD}, {"good": "good_plugin"})
    _make_dist(
        plugin_dir, "bad-plugin", "0.1", {"broken_import": BROKEN_IMPORT}, {"bad": "broken_import"}
    )
    reg = Registry()
    with pytest.warns(
        PluginWarning,
        match=r"'bad-plugin' \(entry point `bad = broken_import`\) failed to import.*boom at import",
    ):
        names = reg.names("tasks")
    assert "toy_task" in names
    assert "bad-plugin:bad" in reg.failed_plugins


def test_plugin_that_raises_in_its_hook_warns_and_others_still_register(plugin_dir):
    _make_dist(plugin_dir, "toy-plugin", "1.0", {"good_plugin": GOOD}, {"good": "good_plugin"})
    _make_dist(plugin_dir, "hook-plugin", "0.1", {"broken_hook": BROKEN_HOOK}, {"h": "broken_hook"})
    reg = Registry()
    with pytest.warns(PluginWarning, match=r"hook-plugin.*lopt_register_optimizers.*boom in hook"):
        assert "toy_task" in reg.names("tasks")


def test_one_name_from_two_plugins_names_both(plugin_dir):
    _make_dist(plugin_dir, "toy-plugin", "1.0", {"good_plugin": GOOD}, {"good": "good_plugin"})
    _make_dist(plugin_dir, "clash-plugin", "1.0", {"clash_plugin": CLASH}, {"c": "clash_plugin"})
    reg = Registry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        with pytest.raises(
            DuplicateComponentError,
            match=r"'toy-plugin' and 'clash-plugin'|'clash-plugin' and 'toy-plugin'",
        ):
            reg.entry("tasks", "toy_task")
        # The other names of the same plugins still work.
        assert reg.entry("tasks", "toy_task_2").plugin == "toy-plugin"


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="Unknown kind 'widgets'"):
        Registry().entries("widgets")


def test_add_plugin_registers_an_object_directly():
    class Plug:
        @staticmethod
        @lopt_core.hookimpl
        def lopt_register_learned_optimizers(register):
            register("direct_lopt", lopt_core.LearnedOptimizer, "Direct.")

    reg = Registry()
    reg.add_plugin(Plug, "direct-plugin", "9.9")
    entry = reg.entry("learned_optimizers", "direct_lopt")
    assert (entry.plugin, entry.version, entry.description) == ("direct-plugin", "9.9", "Direct.")


def test_module_level_lookups_exist_for_every_kind():
    for kind in (
        "task",
        "task_family",
        "optimizer",
        "learned_optimizer",
        "outer_trainer",
        "metric_writer",
    ):
        assert callable(getattr(lopt_core, f"get_{kind}"))
        plural = "task_families" if kind == "task_family" else f"{kind}s"
        assert isinstance(getattr(lopt_core, f"list_{plural}")(), list)


TWICE = """
import lopt_core

class T(lopt_core.Task):
    '''A task.'''

@lopt_core.hookimpl
def lopt_register_tasks(register):
    register("twice", T)
    register("twice", T)
"""


def test_one_plugin_registering_a_name_twice_is_reported(plugin_dir):
    _make_dist(plugin_dir, "twice-plugin", "1.0", {"twice_plugin": TWICE}, {"t": "twice_plugin"})
    reg = Registry()
    with pytest.warns(PluginWarning, match="registers the tasks name 'twice' twice"):
        names = reg.names("tasks")
    # The first registration stands; nothing is silently replaced.
    assert "twice" in names
    assert reg.entry("tasks", "twice").plugin == "twice-plugin"
    sys.modules.pop("twice_plugin", None)


CATALOG_PLUGIN = """
import jax.numpy as jnp
import lopt_core

CATALOG = lopt_core.Catalog()


@CATALOG.task("catalog_task")
@lopt_core.declare
class CatalogTask(lopt_core.Task):
    '''A task declared through a catalog.'''

    dim: int = 2

    def init(self, key):
        return {"x": jnp.ones(self.dim)}

    def loss(self, params, key, data):
        return (params["x"] ** 2).sum()


@CATALOG.task()
def catalog_task_fn(dim=3):
    '''A named task declared as one decorated function.'''
    return CatalogTask(dim)
"""


def test_a_catalog_is_the_entry_point_and_declares_each_component_once(plugin_dir):
    _make_dist(
        plugin_dir,
        "cat-plugin",
        "2.0",
        {"catalog_plugin": CATALOG_PLUGIN},
        {"cat": "catalog_plugin:CATALOG"},
    )
    reg = Registry()
    assert reg.entry("tasks", "catalog_task").description == "A task declared through a catalog."
    assert reg.entry("tasks", "catalog_task_fn").plugin == "cat-plugin"
    assert reg.build("tasks", "catalog_task_fn").dim == 3
    cat = sys.modules["catalog_plugin"].CATALOG
    assert cat.names("tasks") == ["catalog_task", "catalog_task_fn"]
    assert cat.exported_names() == ["CatalogTask", "catalog_task_fn"]
    sys.modules.pop("catalog_plugin", None)


def test_a_catalog_refuses_a_name_twice_and_a_factory_that_is_not_callable():
    cat = lopt_core.Catalog()
    cat.add("tasks", "a", dict)
    with pytest.raises(ValueError, match="'a' is declared twice"):
        cat.add("tasks", "a", dict)
    with pytest.raises(TypeError, match="must be callable"):
        cat.add("tasks", "b", 3)
    with pytest.raises(ValueError, match="Unknown kind 'task'"):
        cat.add("task", "c", dict)


def test_typed_getters_check_what_the_factory_built():
    reg_plugin = type("P", (), {})()

    @lopt_core.hookimpl
    def lopt_register_tasks(register):
        register("not_a_task", dict)

    reg_plugin.lopt_register_tasks = lopt_register_tasks
    lopt_core.REGISTRY.add_plugin(reg_plugin, "odd-plugin")
    try:
        with pytest.raises(TypeError, match=r"'not_a_task' registered by odd-plugin built a dict"):
            lopt_core.get_task("not_a_task")
    finally:
        lopt_core.REGISTRY._extra_plugins.clear()
        lopt_core.REGISTRY.reload()
    assert lopt_core.get_task.__self__ is lopt_core.registry.TASKS
    assert lopt_core.registry.resolve_target(lopt_core.registry.TASKS.base) is lopt_core.Task


def test_task_family_message_is_spelled_right():
    with pytest.raises(UnknownComponentError, match="No task family named 'nope'"):
        lopt_core.REGISTRY.entry("task_families", "nope")
