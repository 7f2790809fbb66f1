"""A broken plugin never breaks lopt: it is reported by name, skipped, and the rest keeps working.

Plugins come in two ways: objects given to `Registry.add_plugin` (standing in for a
distribution of that name) and real entry points of fake distributions written
to a temp dir on `sys.path`. Every test leaves the global registry as it found it.
"""

import sys
import textwrap
import types
import warnings

import pytest

import lopt_core
from lopt_core import cli
from lopt_core.registry import (
    REGISTRY,
    DuplicateComponentError,
    PluginWarning,
    Registry,
    UnknownComponentError,
)

# -- helpers ---------------------------------------------------------------------


def make_plugin(**hooks):
    """A plugin module whose hooks are `hooks` (hook name -> function taking `register`)."""
    module = types.ModuleType("fake_lopt_plugin")
    for hook_name, function in hooks.items():
        setattr(module, hook_name, lopt_core.hookimpl(function))
    return module


def registering(*items):
    """A hook function that registers each `(name, factory[, description])` in `items`."""

    def hook(register):
        for item in items:
            register(*item)

    return hook


def command(text):
    """A command setup whose command prints `text`."""

    def setup(parser):
        parser.set_defaults(func=lambda args: print(text) or 0)

    return setup


def write_dist(root, dist, modules, entry_points, version="1.0", entry_points_txt=None):
    """Writes an installed distribution `dist` (dist-info and modules) under `root`."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    if entry_points_txt is None:
        lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        entry_points_txt = f"[lopt]\n{lines}\n"
    (info / "entry_points.txt").write_text(entry_points_txt)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


class ToyTask(lopt_core.Task):
    """A toy task."""

    def init(self, key):
        return {"x": 0.0}

    def loss(self, params, key, data):
        return params["x"]


class OtherToyTask(ToyTask):
    """Another toy task."""


class Writer:
    """A metric writer that keeps what it is given."""

    def __init__(self, run_dir=None):
        self.run_dir = run_dir
        self.rows = []

    def write(self, step, metrics):
        self.rows.append((step, metrics))

    def close(self):
        pass


def warning_lines(err, needle):
    """The stderr lines `lopt: warning: ...` that contain `needle`."""
    return [
        line for line in err.splitlines() if line.startswith("lopt: warning:") and needle in line
    ]


def plugins_only():
    """A Registry of only the plugins a test adds: installed distributions are not read.

    The tests that use it count exact names, which must not depend on which lopt
    packages share the environment (lopt-outer's env has them all).
    """
    reg = Registry()
    reg._entry_points = list
    return reg


@pytest.fixture
def global_plugins():
    """`add(plugin, name)` adds a plugin to the global REGISTRY; all are removed afterwards."""
    before = list(REGISTRY._extra_plugins)

    def add(plugin, name, version="0.1"):
        REGISTRY.add_plugin(plugin, name, version)

    yield add
    REGISTRY._extra_plugins[:] = before
    REGISTRY.reload()


GOOD_MODULE = """
import lopt_core


class EpTask(lopt_core.Task):
    '''A task from an entry point.'''

    def init(self, key):
        return {"x": 0.0}

    def loss(self, params, key, data):
        return params["x"]


@lopt_core.hookimpl
def lopt_register_tasks(register):
    register("ep_good_task", EpTask)
"""

FAKE_MODULES = ("ep_good_plugin", "ep_exit_plugin", "ep_raise_plugin", "ep_interrupt_plugin")


@pytest.fixture
def dist_dir(tmp_path, monkeypatch):
    """A folder on sys.path for fake distributions; removed (and the registry reloaded) after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    monkeypatch.undo()
    for module in FAKE_MODULES:
        sys.modules.pop(module, None)
    REGISTRY.reload()


# -- 1. command setup that raises, a command named like a built-in ---------------------


@pytest.mark.parametrize(
    "error", [RuntimeError("no parser for you"), SystemExit("no parser for you")]
)
def test_a_command_whose_setup_raises_is_reported_and_the_other_commands_run(
    global_plugins, capsys, error
):
    def broken_setup(parser):
        parser.add_argument("--half")
        raise error

    global_plugins(
        make_plugin(lopt_register_commands=registering(("explode", broken_setup))),
        "broken-cmd-plugin",
    )
    global_plugins(
        make_plugin(
            lopt_register_commands=registering(("greet", command("hi from greet"))),
            lopt_register_tasks=registering(("greet_task", ToyTask)),
        ),
        "good-cmd-plugin",
    )

    assert cli.main(["greet"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "hi from greet"
    [line] = warning_lines(err, "'broken-cmd-plugin'")
    assert "'explode'" in line and "no parser for you" in line and "skipped" in line

    assert cli.main(["list", "tasks"]) == 0
    out, err = capsys.readouterr()
    assert "greet_task" in out
    assert len(warning_lines(err, "'broken-cmd-plugin'")) == 1

    # The half-built subcommand is gone, not left behind without its function.
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["explode"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'explode'" in capsys.readouterr().err

    with pytest.warns(PluginWarning, match=r"'broken-cmd-plugin'.*'explode'.*no parser for you"):
        cli.build_parser()


@pytest.mark.parametrize("builtin", ["list", "describe"])
def test_a_command_named_like_a_builtin_command_is_reported_and_runs_by_qualified_name(
    global_plugins, capsys, builtin
):
    global_plugins(
        make_plugin(
            lopt_register_commands=registering((builtin, command("the plugin's command"))),
            lopt_register_optimizers=registering(("shadow_opt", lopt_core.Optimizer)),
        ),
        "shadow-plugin",
    )

    assert cli.main(["list", "optimizers"]) == 0
    out, err = capsys.readouterr()
    assert "shadow_opt" in out and "the plugin's command" not in out
    [line] = warning_lines(err, "'shadow-plugin'")
    assert f"'{builtin}'" in line and "built-in" in line and f"shadow-plugin:{builtin}" in line

    assert cli.main(["describe", "shadow_opt"]) == 0
    assert "plugin: shadow-plugin" in capsys.readouterr().out

    assert cli.main([f"shadow-plugin:{builtin}"]) == 0
    assert capsys.readouterr().out.strip() == "the plugin's command"


def test_a_command_that_sets_no_function_is_an_error_naming_the_fix(global_plugins, capsys):
    global_plugins(
        make_plugin(lopt_register_commands=registering(("idle", lambda parser: None))),
        "idle-plugin",
    )
    assert cli.main(["idle"]) == 2
    assert "set_defaults(func=run)" in capsys.readouterr().err


# -- 1./3. entries refused one at a time ----------------------------------------------


@pytest.mark.parametrize(
    ("kind", "hook", "singular"),
    [
        ("metric_writers", "lopt_register_metric_writers", "metric writer"),
        ("tasks", "lopt_register_tasks", "task"),
        ("commands", "lopt_register_commands", "command"),
    ],
)
def test_a_factory_that_is_not_callable_is_refused_and_the_plugins_other_entries_register(
    kind, hook, singular
):
    reg = plugins_only()
    reg.add_plugin(
        make_plugin(**{hook: registering(("not_callable", 42), ("fine", Writer))}),
        "writer-plugin",
    )
    with pytest.warns(
        PluginWarning,
        match=rf"'writer-plugin'.*{singular} 'not_callable'.*not callable \(int\).*"
        "Register a class or function",
    ):
        assert reg.names(kind) == ["fine"]
    [problem] = reg.problems
    assert "writer-plugin" in problem


def test_a_non_callable_metric_writer_is_one_line_on_stderr_and_lopt_list_still_works(
    global_plugins, capsys
):
    global_plugins(
        make_plugin(
            lopt_register_metric_writers=registering(("broken_writer", "not a class")),
            lopt_register_tasks=registering(("writer_plugin_task", ToyTask)),
        ),
        "writer-plugin",
    )
    assert cli.main(["list"]) == 0
    out, err = capsys.readouterr()
    assert "writer_plugin_task" in out and "broken_writer" not in out
    [line] = warning_lines(err, "'writer-plugin'")
    assert "'broken_writer'" in line and "not callable (str)" in line


def test_invalid_names_and_a_repeated_name_are_skipped_one_entry_at_a_time():
    reg = plugins_only()
    reg.add_plugin(
        make_plugin(
            lopt_register_tasks=registering(
                ("", ToyTask),
                (3, ToyTask),
                ("has:colon", ToyTask),
                ("twice", ToyTask),
                ("twice", OtherToyTask),
                ("after", ToyTask),
            )
        ),
        "sloppy-plugin",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert reg.names("tasks") == ["after", "twice"]
    messages = [str(w.message) for w in caught if w.category is PluginWarning]
    assert len(messages) == 4
    assert all("'sloppy-plugin'" in m for m in messages)
    assert "invalid name 'has:colon'" in messages[2]
    assert "'twice' twice; the first registration stands" in messages[3]
    assert reg.entry("tasks", "twice").factory is ToyTask


@pytest.mark.parametrize("error", [ValueError("hook broke"), SystemExit("hook broke")])
def test_a_hook_that_raises_registers_nothing_of_that_hook_and_other_plugins_work(error):
    def hook(register):
        register("half_registered", ToyTask)
        raise error

    reg = plugins_only()
    reg.add_plugin(
        make_plugin(
            lopt_register_tasks=hook,
            lopt_register_optimizers=registering(("still_here", lopt_core.Optimizer)),
        ),
        "raising-plugin",
    )
    reg.add_plugin(make_plugin(lopt_register_tasks=registering(("other", ToyTask))), "other")
    with pytest.warns(
        PluginWarning, match=r"'raising-plugin' raised in lopt_register_tasks.*hook broke"
    ):
        assert reg.names("tasks") == ["other"]
    assert reg.names("optimizers") == ["still_here"]
    assert type(reg.failed_plugins["raising-plugin"]) is type(error)


def test_a_plugin_whose_hook_has_the_wrong_signature_is_reported_and_skipped():
    def wrong(reg):  # the hook argument must be called `register`
        reg("never", ToyTask)

    reg = plugins_only()
    reg.add_plugin(make_plugin(lopt_register_tasks=wrong), "wrong-signature-plugin")
    reg.add_plugin(make_plugin(lopt_register_tasks=registering(("ok", ToyTask))), "fine")
    with pytest.warns(PluginWarning, match=r"'wrong-signature-plugin' could not be registered"):
        assert reg.names("tasks") == ["ok"]


def test_a_metric_writer_whose_constructor_raises_propagates_naming_the_plugin(global_plugins):
    class FailingWriter(Writer):
        def __init__(self, run_dir=None):
            raise OSError("disk full")

    global_plugins(
        make_plugin(lopt_register_metric_writers=registering(("failing", FailingWriter))),
        "failing-writer-plugin",
        "2.5",
    )
    with pytest.raises(OSError, match="disk full") as info:
        lopt_core.get_metric_writer("failing", run_dir="/nowhere")
    [note] = info.value.__notes__
    assert "'failing-writer-plugin:failing'" in note and "failing-writer-plugin 2.5" in note


# -- 1. failing at import: real entry points of fake distributions ---------------------------


EXIT_AT_IMPORT = """
import sys
sys.exit("this plugin refuses to load")
"""

RAISE_AT_IMPORT = """
raise ImportError("needs a library that is not installed\\nsecond line")
"""


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("ep_exit_plugin", EXIT_AT_IMPORT, "SystemExit: this plugin refuses to load"),
        (
            "ep_raise_plugin",
            RAISE_AT_IMPORT,
            "ImportError: needs a library that is not installed second line",
        ),
    ],
)
def test_a_plugin_failing_at_import_is_one_line_on_stderr_and_lopt_list_still_works(
    dist_dir, capsys, module, source, expected
):
    write_dist(dist_dir, "failing-dist", {module: source}, {"failing": module})
    write_dist(dist_dir, "good-dist", {"ep_good_plugin": GOOD_MODULE}, {"good": "ep_good_plugin"})
    REGISTRY.reload()

    with pytest.warns(PluginWarning, match=r"'failing-dist'.*failed to import"):
        assert "ep_good_task" in lopt_core.list_tasks()
    assert "failing-dist:failing" in REGISTRY.failed_plugins
    assert isinstance(lopt_core.get_task("ep_good_task"), lopt_core.Task)

    # The registry was loaded before the CLI ran: the problem is still shown, once.
    assert cli.main(["list"]) == 0
    out, err = capsys.readouterr()
    assert "ep_good_task" in out and "good-dist" in out
    [line] = warning_lines(err, "'failing-dist'")
    assert expected in line and f"`failing = {module}`" in line
    assert cli.main(["describe", "ep_good_task"]) == 0


def test_keyboard_interrupt_at_import_is_not_swallowed(dist_dir):
    write_dist(
        dist_dir,
        "interrupt-dist",
        {"ep_interrupt_plugin": "raise KeyboardInterrupt\n"},
        {"i": "ep_interrupt_plugin"},
    )
    with pytest.raises(KeyboardInterrupt):
        Registry().names("tasks")


def test_a_distribution_with_unreadable_entry_points_is_reported_and_the_others_load(dist_dir):
    write_dist(dist_dir, "garbled-dist", {}, {}, entry_points_txt="[lopt]\nnot an entry point\n")
    write_dist(dist_dir, "good-dist", {"ep_good_plugin": GOOD_MODULE}, {"good": "ep_good_plugin"})
    reg = Registry()
    with pytest.warns(PluginWarning, match=r"garbled_dist-1.0.dist-info.*cannot be read"):
        assert "ep_good_task" in reg.names("tasks")


# -- 2. names shared between plugins -------------------------------------------------------


@pytest.mark.parametrize("builtin_first", [True, False])
def test_a_plugin_reusing_a_builtin_name_keeps_the_builtin_and_both_are_reachable(
    global_plugins, capsys, builtin_first
):
    builtin = make_plugin(
        lopt_register_tasks=registering(("Shared", ToyTask, "The built-in one.")),
        lopt_register_metric_writers=registering(("shared_writer", Writer)),
    )

    class PluginWriter(Writer):
        """The plugin's writer."""

    third = make_plugin(
        lopt_register_tasks=registering(("Shared", OtherToyTask, "The plugin's one.")),
        lopt_register_metric_writers=registering(("shared_writer", PluginWriter)),
    )
    plugins = [(builtin, "lopt-tasks"), (third, "third-plugin")]
    for plugin, name in plugins if builtin_first else plugins[::-1]:
        global_plugins(plugin, name)
    REGISTRY.reload()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert type(lopt_core.get_task("Shared")) is ToyTask
    messages = [str(w.message) for w in caught if w.category is PluginWarning]
    assert len(messages) == 2
    assert all("'third-plugin'" in m and "built-in lopt-tasks" in m for m in messages)
    assert any("'third-plugin:Shared'" in m for m in messages)

    assert type(lopt_core.get_task("third-plugin:Shared")) is OtherToyTask
    assert type(lopt_core.get_task("lopt-tasks:Shared")) is ToyTask
    assert type(lopt_core.get_task("lopt_tasks:Shared")) is ToyTask  # pip spellings match
    assert type(lopt_core.get_metric_writer("shared_writer")) is Writer
    assert type(lopt_core.get_metric_writer("third-plugin:shared_writer")) is PluginWriter
    assert {"Shared", "third-plugin:Shared"} <= set(lopt_core.list_tasks())
    assert "shared_writer" in lopt_core.list_metric_writers()
    assert "third-plugin:shared_writer" in lopt_core.list_metric_writers()

    assert cli.main(["list", "tasks"]) == 0
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[2:]}
    assert rows["Shared"] == ["tasks", "lopt-tasks"]
    assert rows["third-plugin:Shared"] == ["tasks", "third-plugin"]
    assert len(warning_lines(err, "'third-plugin'")) == 2

    assert cli.main(["describe", "Shared", "--kind", "tasks"]) == 0
    out = capsys.readouterr().out
    assert (
        "plugin: lopt-tasks" in out
        and "also registered by other plugins as: third-plugin:Shared" in out
    )
    assert cli.main(["describe", "third-plugin:Shared"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("third-plugin:Shared(") and "plugin: third-plugin 0.1" in out


def test_a_name_two_third_party_plugins_share_is_ambiguous_and_both_qualified_names_work(
    global_plugins, capsys
):
    global_plugins(make_plugin(lopt_register_tasks=registering(("Same", ToyTask))), "a-plugin")
    global_plugins(make_plugin(lopt_register_tasks=registering(("Same", OtherToyTask))), "b-plugin")
    REGISTRY.reload()
    with pytest.warns(PluginWarning, match=r"'Same'.*'a-plugin' and 'b-plugin'.*ambiguous"):
        names = lopt_core.list_tasks()
    assert "Same" not in names
    assert {"a-plugin:Same", "b-plugin:Same"} <= set(names)

    with pytest.raises(DuplicateComponentError, match=r"'a-plugin:Same' or 'b-plugin:Same'"):
        lopt_core.get_task("Same")
    assert type(lopt_core.get_task("a-plugin:Same")) is ToyTask
    assert type(lopt_core.get_task("b-plugin:Same")) is OtherToyTask
    with pytest.raises(UnknownComponentError, match=r"Close matches: a-plugin:Same"):
        lopt_core.get_task("a-plugn:Same")

    assert cli.main(["list", "tasks"]) == 0
    out, err = capsys.readouterr()
    listed = [line.split()[0] for line in out.splitlines()[2:]]
    assert "a-plugin:Same" in listed and "b-plugin:Same" in listed and "Same" not in listed
    [line] = warning_lines(err, "ambiguous")
    assert "'a-plugin:Same' or 'b-plugin:Same'" in line

    assert cli.main(["describe", "Same"]) == 2
    assert "'a-plugin:Same' or 'b-plugin:Same'" in capsys.readouterr().err
    assert cli.main(["describe", "b-plugin:Same"]) == 0
    out = capsys.readouterr().out
    assert "qualified name: b-plugin:Same" in out and "as: a-plugin:Same" in out
