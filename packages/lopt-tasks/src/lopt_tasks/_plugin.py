"""The catalog of this package's components; the `lopt` entry point names it.

Each component is declared beside its definition, with `@CATALOG.task()` or
`@CATALOG.task_family()`, and the `lopt data` command with `@CATALOG.command`.
lopt reads the catalog from its index, `_plugin.lopt-index.json` beside this
module (`lopt_core.registry.CatalogIndex`), without importing the package; a
factory's module is imported when the component is first built. A declaration
holds the factory only: registering builds nothing and reads no data, and a task
reads its data on its first batch. After changing a declaration, rewrite the
index: `python -m lopt_core.registry write-index lopt_tasks._plugin:CATALOG`
(the contract tests check it is current).
"""

from __future__ import annotations

import lopt_core

CATALOG = lopt_core.Catalog()
