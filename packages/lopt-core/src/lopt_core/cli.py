"""The `lopt` command: `lopt list [KIND]`, `lopt describe NAME`, and plugin subcommands.

A plugin command that cannot be set up, or that takes the name of a built-in
command, is reported on stderr as one `lopt: warning: ...` line; every other
command still works.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from lopt_core.registry import (
    BUILTIN_PLUGINS,
    KINDS,
    REGISTRY,
    DuplicateComponentError,
    Entry,
    PluginWarning,
    UnknownComponentError,
    close_matches,
)

_LISTABLE = [k for k in KINDS if k != "commands"]

#: The commands of lopt itself; a plugin command of the same name runs as `lopt PLUGIN:NAME`.
BUILTIN_COMMANDS = ("list", "describe")


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cmd_list(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else _LISTABLE
    rows: list[tuple[str, ...]] = [("name", "kind", "plugin", "description")]
    for kind in kinds:
        for name, e in sorted(REGISTRY.entries(kind).items()):
            rows.append((name, kind, e.plugin, e.description))
    if len(rows) == 1:
        print(f"No {' or '.join(kinds)} registered.")
        return 0
    print(_table(rows))
    return 0


def _describe(e: Entry) -> str:
    """What `lopt describe` prints; from the entry alone, so no plugin code is imported."""
    doc = e.doc or "(no docstring)"
    others = [o.qualified_name for o in REGISTRY.registrations(e.kind, e.name) if o is not e]
    name = next((n for n, o in REGISTRY.entries(e.kind).items() if o is e), e.qualified_name)
    also = f"  also registered by other plugins as: {', '.join(others)}\n" if others else ""
    return (
        f"{name}{e.signature}\n  kind: {e.kind}\n  plugin: {e.plugin} {e.version}\n"
        f"  qualified name: {e.qualified_name}\n{also}"
        f"  factory: {e.target.replace(':', '.')}\n\n{doc}"
    )


def _cmd_describe(args: argparse.Namespace) -> int:
    found = [REGISTRY.entry(args.kind, args.name)] if args.kind else REGISTRY.find(args.name)
    if not found:
        names = {n for k in _LISTABLE for n in REGISTRY.entries(k)}
        close = close_matches(args.name, names)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        print(
            f"lopt: nothing named {args.name!r} is registered.{hint} It may be misspelled, or "
            "its plugin may not be installed.",
            file=sys.stderr,
        )
        return 2
    print("\n\n".join(_describe(e) for e in found))
    return 0


def _drop_subparser(sub: Any, name: str) -> None:
    """Removes the half-built subcommand `name` again (argparse has no public way)."""
    sub._name_parser_map.pop(name, None)
    sub._choices_actions[:] = [a for a in sub._choices_actions if a.dest != name]


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr, then exit status 2.

    `lopt` and every subcommand's parser (plugins' included) are of this class:
    `lopt meta-train: error: argument --num-steps: ... (see lopt meta-train --help)`
    instead of argparse's usage block and a second line.
    """

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def _build(
    prog: str = "lopt", only: str | None = None
) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser and the problems met adding the plugins' subcommands, one line each.

    With `only`, a command whose module is not imported yet (one read from a
    catalog index) is set up only if it is `only`, the command being run; the
    others are listed with their descriptions, so `lopt --help` imports no command.
    """
    parser = Parser(
        prog=prog,
        description="Learned optimizers in JAX: list and describe what the installed lopt "
        "packages and plugins register, and run their commands.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action=_Versions,
        help="print each installed lopt package and plugin with its version, and exit",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("list", help="list registered components", formatter_class=fmt)
    p.add_argument(
        "kind", nargs="?", choices=_LISTABLE, help="only this kind (default: every kind)"
    )
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser(
        "describe", help="signature, docstring and plugin of a component", formatter_class=fmt
    )
    p.add_argument("name", help="a bare name, or plugin:name")
    p.add_argument(
        "--kind",
        choices=_LISTABLE,
        help="disambiguate a name used by several kinds (default: every kind that has it)",
    )
    p.set_defaults(func=_cmd_describe)
    problems: list[str] = []
    for name, e in sorted(REGISTRY.entries("commands").items()):
        where = f"lopt plugin {e.plugin!r}"
        if name in BUILTIN_COMMANDS:
            name = e.qualified_name
            problems.append(
                f"{where} registers the command {e.name!r}, which is a built-in lopt command; "
                f"`{prog} {e.name}` keeps meaning the built-in one and the plugin's runs as "
                f"`{prog} {name}`. Ask {e.plugin}'s author to rename it."
            )
        added = False
        try:
            p = sub.add_parser(
                name,
                help=e.description,
                description=e.description,
                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
            )
            added = True
            if only is None or e.loaded or name == only:
                e.factory(p)
        except (Exception, SystemExit) as exc:
            if added:
                _drop_subparser(sub, name)
            text = " ".join(str(exc).split())
            problems.append(
                f"{where} failed to set up the command {name!r} and it was skipped: "
                f"{type(exc).__name__}{': ' + text if text else ''}. Fix it or uninstall "
                f"{e.plugin}; the other commands still work."
            )
    return parser, problems


class _Versions(argparse.Action):
    """`lopt --version`: every installed lopt package and plugin, read from its metadata."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        rows = [("lopt-core", _version("lopt-core"), "")]
        for dist, version in REGISTRY.plugins():
            if dist != "lopt-core":
                rows.append((dist, version, "" if dist in BUILTIN_PLUGINS else "plugin"))
        width = max(len(r[0]) for r in rows)
        for dist, version, note in rows:
            print(f"{dist.ljust(width)}  {version}{'  (' + note + ')' if note else ''}".rstrip())
        parser.exit()


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "(not installed as a distribution)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with every subcommand that plugins register.

    A plugin command that cannot be added is skipped with a `PluginWarning`.
    """
    parser, problems = _build()
    for problem in problems:
        warnings.warn(problem, PluginWarning, stacklevel=2)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lopt` console script.

    Every plugin problem (see `Registry.problems`) is printed as one line on
    stderr before the command runs.
    """
    with warnings.catch_warnings():
        # Plugin problems are printed below, once each, even if the registry was
        # loaded before; other warnings raised while loading plugins, one line each.
        warnings.simplefilter("ignore", PluginWarning)
        warnings.showwarning = _show_warning
        parser, problems = _build(only=_command_in(sys.argv[1:] if argv is None else argv))
        problems = REGISTRY.problems + problems
    for problem in problems:
        print(f"lopt: warning: {problem}", file=sys.stderr)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        print(
            f"lopt: the command {args.command!r} sets no function to run; its setup must call "
            "parser.set_defaults(func=run).",
            file=sys.stderr,
        )
        return 2
    try:
        return int(func(args) or 0)
    except (UnknownComponentError, DuplicateComponentError) as exc:
        print(f"lopt: {exc}", file=sys.stderr)
        return 2


def _command_in(argv: Sequence[str]) -> str:
    """The subcommand `argv` runs: its first word that is not an option ('' if none)."""
    return next((a for a in argv if not a.startswith("-")), "")


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    text = " ".join(str(message).split())
    print(f"lopt: warning: {category.__name__}: {text}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
