"""The catalog of lopt-optimizers: the `lopt` entry point names it.

Each optimizer declares itself with `@CATALOG.optimizer(name, description)`
beside its class; registration, `__all__` and the contract tests derive from it.

lopt reads the catalog from its index, `_plugin.lopt-index.json` beside this
module, without importing the package; rewrite it after changing a declaration:
`python -m lopt_core.registry write-index lopt_optimizers._plugin:CATALOG` (the contract
tests check it is current).
"""

import lopt_core

CATALOG = lopt_core.Catalog()
