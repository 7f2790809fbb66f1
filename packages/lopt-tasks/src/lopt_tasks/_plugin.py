"""The catalog of this package's components; the `lopt` entry point names it.

Each component is declared beside its definition, with `@CATALOG.task()` or
`@CATALOG.task_family()`, and the `lopt data` command with `@CATALOG.command`.
Loading the entry point `lopt_tasks._plugin:CATALOG` imports the `lopt_tasks`
package first, whose modules make those declarations. A declaration holds the
factory only: registering builds nothing and reads no data, and a task reads its
data on its first batch.
"""

from __future__ import annotations

import lopt_core

CATALOG = lopt_core.Catalog()
