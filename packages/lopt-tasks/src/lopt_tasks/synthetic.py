"""Synthetic test functions without data: the Rosenbrock function."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lopt_core import Task
from lopt_core.typing import Batch, Params, PRNGKey
from lopt_core.validation import check_positive_int
from lopt_tasks._plugin import CATALOG

# E[100 (y - x^2)^2 + (1 - x)^2] for x, y independent and uniform in [-2, 2]:
# 100 (E y^2 + E x^4) + 1 + E x^2 = 100 (4/3 + 16/5) + 1 + 4/3 = 1367/3.
_EXPECTED_TERM_AT_INIT = 1367.0 / 3.0


class RosenbrockTask(Task):
    """The Rosenbrock function `sum_i 100 (x[i+1] - x[i]**2)**2 + (1 - x[i])**2`, no data.

    The sum runs over i = 0 .. dim - 2; the minimum, 0, is at the ones vector.
    The parameters are one float32 vector of `dim` entries, each drawn uniform in
    [-2, 2] from the init key: a box that holds the classic start (-1.2, 1, ...)
    and the minimum.
    `datasets` is None and the loss ignores its key and batch.

    Args:
      dim: number of parameters, at least 2 (the terms couple neighbouring entries).
      name: the task's name (the class name by default).
    """

    def __init__(self, dim: int = 10, name: str | None = None) -> None:
        self.dim = check_positive_int(dim, type(self).__name__, "dim", minimum=2)
        self._name = name

    def init(self, key: PRNGKey) -> Params:
        return jax.random.uniform(key, (self.dim,), jnp.float32, minval=-2.0, maxval=2.0)

    def loss(self, params: Params, key: PRNGKey, data: Batch) -> jax.Array:
        del key, data
        x = jnp.asarray(params, jnp.float32)
        head, tail = x[:-1], x[1:]
        return jnp.sum(100.0 * jnp.square(tail - jnp.square(head)) + jnp.square(1.0 - head))

    def normalizer(self, loss: Any) -> jax.Array:
        """`lopt_tasks.mixture.log_relative_normalizer` against the expected initial loss.

        That is `(dim - 1) * 1367 / 3` (4101 for dim 10) for the uniform [-2, 2]
        init: 7 there, -2 per 10x reduction, clipped to [-3, 10] (NaN: 10).
        """
        from lopt_tasks.mixture import log_relative_normalizer

        return log_relative_normalizer(loss, (self.dim - 1) * _EXPECTED_TERM_AT_INIT)


@CATALOG.task()
def Rosenbrock_10D() -> RosenbrockTask:
    """The 10-dimensional Rosenbrock function, started uniform in [-2, 2] (no data)."""
    return RosenbrockTask(10, name="Rosenbrock_10D")
