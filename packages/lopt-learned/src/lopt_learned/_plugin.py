"""The catalog of this package's learned optimizers, named by the `lopt` entry point.

Each architecture declares itself beside its class with
`@CATALOG.learned_optimizer(name, description)`; registration with lopt, the
package's `__all__` and the contract tests all read this one catalog.
"""

from __future__ import annotations

import lopt_core

CATALOG = lopt_core.Catalog()
