"""The catalog of this package's learned optimizers, named by the `lopt` entry point.

Each architecture declares itself beside its class with
`@CATALOG.learned_optimizer(name, description)`; registration with lopt, the
package's `__all__` and the contract tests all read this one catalog.

lopt reads the catalog from its index, `_plugin.lopt-index.json` beside this
module, without importing the package; rewrite it after changing a declaration:
`python -m lopt_core.registry write-index lopt_learned._plugin:CATALOG` (the contract
tests check it is current).
"""

from __future__ import annotations

import lopt_core

CATALOG = lopt_core.Catalog()
