"""Public type aliases shared by every lopt package: `from lopt_core.typing import Params`."""

from __future__ import annotations

from typing import Any

import jax

Params = Any
"""A pytree of arrays: the parameters being optimized."""
ModelState = Any
"""A pytree of non-gradient state of a model, such as batch-norm statistics."""
OptState = Any
"""A pytree holding an optimizer's state, parameters included."""
MetaParams = Any
"""A pytree of arrays: the weights of a learned optimizer, `theta` by convention."""
Batch = Any
"""A pytree of arrays: one batch of data."""
TaskCfg = Any
"""A pytree describing one sample of a task family."""
PRNGKey = jax.Array
"""A JAX random key."""
