"""The `lopt` command: `lopt list [KIND]`, `lopt describe NAME`, and plugin subcommands."""

from __future__ import annotations

import argparse
import difflib
import inspect
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

from lopt_core.registry import (
    KINDS,
    REGISTRY,
    DuplicateComponentError,
    Entry,
    PluginWarning,
    UnknownComponentError,
)

_LISTABLE = [k for k in KINDS if k != "commands"]


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
    try:
        sig = str(inspect.signature(e.factory))
    except (TypeError, ValueError):
        sig = "(...)"
    doc = inspect.getdoc(e.factory) or "(no docstring)"
    return (
        f"{e.name}{sig}\n  kind: {e.kind}\n  plugin: {e.plugin} {e.version}\n"
        f"  factory: {getattr(e.factory, '__module__', '?')}."
        f"{getattr(e.factory, '__qualname__', repr(e.factory))}\n\n{doc}"
    )


def _cmd_describe(args: argparse.Namespace) -> int:
    found = REGISTRY.find(args.name)
    if args.kind:
        found = [REGISTRY.entry(args.kind, args.name)]
    if not found:
        # entry() on the most likely kind raises with close matches across that kind.
        names = {n: k for k in _LISTABLE for n in REGISTRY.entries(k)}
        close = difflib.get_close_matches(args.name, list(names), n=5, cutoff=0.5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        print(
            f"lopt: nothing named {args.name!r} is registered.{hint} It may be misspelled, or "
            "its plugin may not be installed.",
            file=sys.stderr,
        )
        return 2
    print("\n\n".join(_describe(e) for e in found))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with every subcommand that plugins register."""
    parser = argparse.ArgumentParser(prog="lopt", description="Learned optimizers in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list registered components")
    p.add_argument("kind", nargs="?", choices=_LISTABLE, help="only this kind")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("describe", help="signature, docstring and plugin of a component")
    p.add_argument("name")
    p.add_argument("--kind", choices=_LISTABLE, help="disambiguate a name used by several kinds")
    p.set_defaults(func=_cmd_describe)
    for name, e in sorted(REGISTRY.entries("commands").items()):
        p = sub.add_parser(name, help=e.description, description=e.description)
        e.factory(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lopt` console script."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", PluginWarning)
        warnings.showwarning = _show_warning
        parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UnknownComponentError, DuplicateComponentError) as exc:
        print(f"lopt: {exc}", file=sys.stderr)
        return 2


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    print(f"lopt: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
