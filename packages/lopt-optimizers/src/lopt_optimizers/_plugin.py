"""The catalog of lopt-optimizers: the `lopt` entry point names it.

Each optimizer declares itself with `@CATALOG.optimizer(name, description)`
beside its class; registration, `__all__` and the contract tests derive from it.
"""

import lopt_core

CATALOG = lopt_core.Catalog()
