"""Lazy package namespaces: a name's module is imported when the name is first used.

Every lopt package builds its top-level namespace with `attach`, so that
`import lopt_tasks` (and the `lopt` command, which imports a package to reach
its catalog) costs milliseconds, and JAX is imported only when a name that needs
it is used. `from lopt_tasks import ImageMLPTask` works as with an eager package.

Example:
  >>> # in my_package/__init__.py
  >>> __getattr__, __dir__, __all__ = attach(__name__, {"Thing": "things"})  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["attach", "indexed_exports"]


def attach(
    package: str,
    exports: Mapping[str, str],
    submodules: Iterable[str] = (),
    *,
    catalog: str | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """The `__getattr__`, `__dir__` and `__all__` of a lazily loaded package.

    Args:
      package: the package's `__name__`.
      exports: public name -> the submodule that defines it (relative to
        `package`), or `"submodule:attribute"` when the attribute has another name.
      submodules: submodules reachable as attributes (`package.submodule`); those
        whose name starts with `_` are left out of `__all__`.
      catalog: the public name of the package's `lopt_core.Catalog` (usually
        "CATALOG"), or None. Using that name first imports every module named in
        `exports` or `submodules`, so the catalog holds every component the package
        declares.

    Returns:
      (`__getattr__`, `__dir__`, `__all__`) for the package's module globals. A
      name is imported on first use and then cached in the package's globals.
    """
    table = {name: _split(package, name, where) for name, where in exports.items()}
    modules = frozenset(submodules)
    public = sorted(name for name in {*table, *modules} if not name.startswith("_"))

    def __getattr__(name: str) -> Any:
        if name in table:
            module_name, attribute = table[name]
            if name == catalog:
                every = {m for m, _ in table.values()} | {f"{package}.{m}" for m in modules}
                for other in sorted(every):
                    importlib.import_module(other)
            value = getattr(importlib.import_module(module_name), attribute)
        elif name in modules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return list(public)

    return __getattr__, __dir__, list(public)


def indexed_exports(package: str, entry_point: str) -> dict[str, str]:
    """`attach` exports for every public class and function the package's catalog index names.

    Each factory the index of `entry_point` names inside `package` is exported under
    its Python name, so declaring a component in the catalog is all it takes to
    publish it. Empty when the package ships no index.
    """
    from lopt_core.registry import CatalogIndex

    index = CatalogIndex.beside(entry_point)
    out: dict[str, str] = {}
    for table in index.entries.values() if index else ():
        for item in table.values():
            module, _, qualname = item.target.partition(":")
            inside = module.startswith(f"{package}.")
            if inside and "." not in qualname and not qualname.startswith("_"):
                out[qualname] = f"{module[len(package) + 1 :]}:{qualname}"
    return out


def _split(package: str, name: str, where: str) -> tuple[str, str]:
    module, _, attribute = where.partition(":")
    if not module:
        raise ValueError(f"{package}: the export {name!r} must name its submodule, got {where!r}.")
    return f"{package}.{module}", attribute or name
