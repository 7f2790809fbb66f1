"""Batches for several tasks at once, drawn from a task's (or family's) data iterators.

`vec_get_batch(task, n, split)` takes `n` batches from the iterator of one split and
stacks them along a new leading axis, the shape a `jax.vmap` over `n` tasks
expects; `get_batches` does the same for a leading shape of any rank (for example
`(steps, num_tasks)`, the inputs of a `lax.scan` over an unroll). Anything with a
`datasets` attribute works: a `Task`, a `TaskFamily` or a truncated step. Batches
come from the Python iterators (`next`), also for keyed datasets; inside `jit`,
keyed datasets are sampled from keys instead (`Datasets.sample`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from lopt_core.validation import check_positive_int
from lopt_outer._common import host_batches

__all__ = ["get_batches", "vec_get_batch"]


def get_batches(
    task_family: Any, batch_shape: Sequence[int], split: str, numpy: bool = False
) -> Any:
    """`prod(batch_shape)` batches of `split`, stacked to the leading shape `batch_shape`.

    Args:
      task_family: a task, task family or anything else with a `datasets` attribute.
      batch_shape: the leading shape, for example `(num_tasks,)` or
        `(steps, num_tasks)`; every entry a positive int.
      split: one of "train", "inner_valid", "outer_valid", "test".
      numpy: return NumPy arrays on the host instead of jax arrays.

    Returns:
      The stacked batches, every leaf with leading shape `batch_shape`; None when
      `task_family.datasets` is None (a task without data, such as a quadratic).

    Example:
      >>> import types
      >>> import numpy as np
      >>> from lopt_core import ArraySplit, Datasets
      >>> split = ArraySplit({"x": np.zeros((10, 2))}, batch_size=4)
      >>> task = types.SimpleNamespace(datasets=Datasets(split, split, split, split))
      >>> get_batches(task, (5, 3), "train")["x"].shape
      (5, 3, 4, 2)
    """
    shape = tuple(
        check_positive_int(n, "get_batches", f"batch_shape[{i}]") for i, n in enumerate(batch_shape)
    )
    datasets = task_family.datasets
    if datasets is None:
        return None
    batches = host_batches(datasets, split, shape)
    return batches if numpy else jax.tree_util.tree_map(jnp.asarray, batches)


def vec_get_batch(task_family: Any, n_tasks: int, split: str, numpy: bool = False) -> Any:
    """`n_tasks` batches of `split` stacked along a new leading axis: one per task.

    `get_batches(task_family, (n_tasks,), split, numpy)`.

    Example:
      >>> import types
      >>> import numpy as np
      >>> from lopt_core import ArraySplit, Datasets
      >>> split = ArraySplit({"x": np.zeros((10, 2))}, batch_size=4)
      >>> data = Datasets(split, split, split, split)
      >>> vec_get_batch(types.SimpleNamespace(datasets=data), 8, split="train")["x"].shape
      (8, 4, 2)
    """
    return get_batches(task_family, (n_tasks,), split, numpy=numpy)
