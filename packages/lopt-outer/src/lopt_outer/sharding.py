"""Sharding the task axis over the local devices (`jax.sharding`, no `pmap`).

The truncated steps and `multi_task_training_curves` train `num_tasks` tasks at
once, every per-task array having a leading task axis. With `shard_tasks=True`
that axis is split over a 1-D mesh of all `jax.local_devices()` (axis name
`"tasks"`): each device trains `num_tasks / devices` of the tasks, theta is
replicated, and a reduction over tasks (the meta-gradient, the mean loss) is an
all-reduce that XLA's SPMD partitioner inserts. The placement is declared only:
`jax.lax.with_sharding_constraint` inside the jitted functions, and
`jax.device_put` of host batches before they enter them; the program stays the
one written for one device.

Without `shard_tasks` none of this runs, so a single device sees no extra ops.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "TASK_AXIS",
    "constrain_tasks",
    "constrain_worker_state",
    "put_tasks",
    "replicate",
    "replicated_sharding",
    "task_mesh",
    "task_sharding",
]

TASK_AXIS = "tasks"
"""The name of the mesh axis the tasks are split over."""


def task_mesh(num_tasks: int, owner: str, name: str = "num_tasks") -> Mesh:
    """A 1-D mesh of every local device, axis `"tasks"`, that `num_tasks` tasks split evenly over.

    Args:
      num_tasks: the number of tasks to shard.
      owner: the component or function asking, for the error message.
      name: the argument that sets `num_tasks`, for the error message.

    Returns:
      `Mesh(jax.local_devices(), ("tasks",))`.

    Raises:
      ValueError: `num_tasks` is not a multiple of the number of local devices.
    """
    devices = jax.local_devices()
    n = len(devices)
    if num_tasks % n:
        below, above = max(n, num_tasks - num_tasks % n), num_tasks + n - num_tasks % n
        such_as = " or ".join(str(m) for m in sorted({below, above}))
        raise ValueError(
            f"{owner}: shard_tasks=True splits the tasks over the {n} local devices, but "
            f"{name}={num_tasks} is not divisible by {n}. Pass a {name} that is a multiple "
            f"of {n} (such as {such_as}), or shard_tasks=False."
        )
    return Mesh(np.asarray(devices), (TASK_AXIS,))


def task_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """The sharding that splits dimension `axis` (the task axis) over the mesh, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(*([None] * axis), TASK_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a whole copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def _has_axis(x: Any, axis: int) -> bool:
    return np.ndim(x) > axis


def constrain_tasks(tree: Any, mesh: Mesh | None, axis: int = 0) -> Any:
    """`tree` with every leaf's dimension `axis` constrained to the task sharding (inside jit).

    Leaves with fewer dimensions (scalars) are left as they are. With `mesh`
    None the tree is returned untouched (no op is added).
    """
    if mesh is None:
        return tree
    sharding = task_sharding(mesh, axis)
    return jax.tree_util.tree_map(
        lambda x: jax.lax.with_sharding_constraint(x, sharding) if _has_axis(x, axis) else x, tree
    )


def constrain_worker_state(truncated_step: Any, tree: Any) -> Any:
    """An estimator's worker state with its per-task leaves split over the step's task mesh.

    The estimators call it on the states they return, so that the states stay
    split between estimates (an antithetic estimate's halves would otherwise come
    back replicated). A leaf is per-task when its leading dimension is the
    step's `num_tasks` (the truncated-step states, PES's accumulator). A step
    without a `task_mesh()`, or whose mesh is None (not sharded), gets the tree
    back untouched, so nothing is added to an unsharded program.
    """
    mesh_of = getattr(truncated_step, "task_mesh", None)
    mesh = None if mesh_of is None else mesh_of()
    if mesh is None:
        return tree
    n, sharding = truncated_step.num_tasks, task_sharding(mesh)
    return jax.tree_util.tree_map(
        lambda x: (
            jax.lax.with_sharding_constraint(x, sharding)
            if np.ndim(x) and np.shape(x)[0] == n
            else x
        ),
        tree,
    )


def put_tasks(tree: Any, mesh: Mesh | None, axis: int = 0) -> Any:
    """Host (or device) arrays placed with dimension `axis` split over the mesh (outside jit).

    Used for batches pulled from Python iterators, whose leading axes are
    `(steps, num_tasks)` (`axis=1`) or `(num_tasks,)` (`axis=0`): each device
    receives only its tasks' batches. With `mesh` None (or `tree` None) the
    tree is returned untouched.
    """
    if mesh is None or tree is None:
        return tree
    sharding = task_sharding(mesh, axis)
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(x, sharding) if _has_axis(x, axis) else x, tree
    )


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """`tree` with a whole copy on every device of the mesh (theta); untouched when `mesh` is None."""
    if mesh is None:
        return tree
    return jax.device_put(tree, replicated_sharding(mesh))
