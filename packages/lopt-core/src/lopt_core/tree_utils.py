"""Pytree helpers used across the lopt packages."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def path_str(path: tuple[Any, ...]) -> str:
    """Formats a `jax.tree_util` key path as a readable string, e.g. `['mlp']['w']`."""
    return jax.tree_util.keystr(path) or "<root>"


def first_difference(a: Any, b: Any, *, check_shapes: bool = True) -> str | None:
    """Describes the first place where two pytrees differ in structure or leaf shape.

    Args:
      a: the expected pytree.
      b: the pytree to compare with it.
      check_shapes: also compare leaf shapes and dtypes.

    Returns:
      None when they match, else a one-line description naming the first path that
      differs.
    """
    a_leaves = dict(jax.tree_util.tree_leaves_with_path(a))
    b_leaves = dict(jax.tree_util.tree_leaves_with_path(b))
    a_paths = {path_str(p): v for p, v in a_leaves.items()}
    b_paths = {path_str(p): v for p, v in b_leaves.items()}
    for p in a_paths:
        if p not in b_paths:
            return f"path {p} is expected but missing"
    for p in b_paths:
        if p not in a_paths:
            return f"path {p} is present but not expected"
    if check_shapes:
        for p, va in a_paths.items():
            vb = b_paths[p]
            sa, sb = np.shape(va), np.shape(vb)
            if sa != sb:
                return f"path {p} has shape {sb}, expected {sa}"
    # jaxlib ships PyTreeDef without stubs; as `object` its `!=` type-checks.
    a_def: object = jax.tree_util.tree_structure(a)
    b_def: object = jax.tree_util.tree_structure(b)
    if a_def != b_def:
        return f"tree structures differ: expected {a_def}, got {b_def}"
    return None


def tree_all_finite(tree: Any) -> jax.Array:
    """A boolean scalar: every element of every leaf is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.asarray(leaves)) if leaves else jnp.asarray(True)
