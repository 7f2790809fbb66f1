"""The hooks a lopt plugin implements.

A plugin is a module named by an entry point in the `lopt` group:

    [project.entry-points.lopt]
    my_plugin = "my_package._plugin"

and implements any of these hooks with `@lopt_core.hookimpl`. Every hook receives
a `register(name, factory, description=None)` callback; the description defaults to
the first line of the factory's docstring.

A name is a non-empty string without `:`; the component is also reachable as
`plugin:name`, plugin being the distribution's name. An entry that is invalid (a
bad or repeated name, a factory that is not callable) is skipped with a
`lopt_core.PluginWarning`, and the hook's other entries still count; a hook that
raises counts none of its entries. Neither affects other plugins.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT = "lopt"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]


@hookspec
def lopt_register_tasks(register: Register) -> None:
    """Registers Task factories: `register("MyTask", MyTask)`."""


@hookspec
def lopt_register_task_families(register: Register) -> None:
    """Registers TaskFamily factories."""


@hookspec
def lopt_register_optimizers(register: Register) -> None:
    """Registers Optimizer factories."""


@hookspec
def lopt_register_learned_optimizers(register: Register) -> None:
    """Registers LearnedOptimizer factories."""


@hookspec
def lopt_register_outer_trainers(register: Register) -> None:
    """Registers gradient estimators, truncation schedules and other outer-training pieces."""


@hookspec
def lopt_register_metric_writers(register: Register) -> None:
    """Registers metric writers: factories `f(run_dir) -> writer` with `write(step, metrics)`
    and `close()`."""


@hookspec
def lopt_register_suites(register: Register) -> None:
    """Registers evaluation suites: factories returning a `lopt_core.Suite`."""


@hookspec
def lopt_register_commands(register: Register) -> None:
    """Registers `lopt` CLI subcommands.

    The factory is `setup(parser: argparse.ArgumentParser) -> None`; it adds its
    arguments and calls `parser.set_defaults(func=run)` where `run(args) -> int | None`.
    """
