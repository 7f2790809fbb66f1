"""Using a learned optimizer outside lopt: optax export, and theta checkpoints."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import optax

import lopt_core
import lopt_optimizers
from lopt_core import CheckpointError, LearnedOptimizer
from lopt_core.typing import MetaParams
from lopt_learned._driver import theta_schema, theta_size


def as_optax(
    lopt: LearnedOptimizer, theta: MetaParams, is_training: bool = False
) -> optax.GradientTransformationExtraArgs:
    """A learned optimizer with fixed theta as an optax transform for any training loop.

    `lopt_optimizers.as_optax(lopt.opt_fn(theta, is_training))`: `tx.init(params)`
    builds the learned optimizer's state; `tx.update(grads, state, params,
    loss=loss)` returns `new_params - params`. Architectures that need the loss
    (`RNNMLPLOpt`, `HParamControllerLOPT`) raise a ValueError when `loss=` is
    missing.

    Args:
      lopt: the learned optimizer (its architecture and configuration).
      theta: its meta-parameters, e.g. from `lopt.init(key)` or `load_learned_optimizer`.
      is_training: passed to `opt_fn`.

    Returns:
      An `optax.GradientTransformationExtraArgs`.

    Raises:
      TypeError: `lopt` is not a LearnedOptimizer instance.

    Example:
      >>> lopt = LearnableAdam(1e-2)
      >>> tx = as_optax(lopt, lopt.init(jax.random.PRNGKey(0)))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state, params, loss=loss)
      >>> params = optax.apply_updates(params, updates)
    """
    if not isinstance(lopt, LearnedOptimizer):
        hint = " Instantiate it first, e.g. MLPLOpt()." if isinstance(lopt, type) else ""
        raise TypeError(
            f"as_optax(lopt, theta): lopt must be a LearnedOptimizer instance, got "
            f"{lopt!r}.{hint} For a plain lopt Optimizer use lopt_optimizers.as_optax(opt)."
        )
    return lopt_optimizers.as_optax(lopt.opt_fn(theta, is_training=is_training))


class LoadedLearnedOptimizer(NamedTuple):
    """What `load_learned_optimizer` returns.

    Attributes:
      lopt: the learned optimizer, rebuilt from the class and config in the file.
      theta: the meta-parameters, with the structure `lopt.init` gives.
      metadata: the metadata saved with them (`producer`, `lopt_version`, and
        whatever was passed to `save_learned_optimizer`).
    """

    lopt: LearnedOptimizer
    theta: MetaParams
    metadata: dict[str, Any]

    def __repr__(self) -> str:
        keys = ", ".join(sorted(self.metadata))
        return (
            f"LoadedLearnedOptimizer(lopt={self.lopt!r}, theta: {theta_size(self.theta)} "
            f"floats, metadata: {{{keys}}})"
        )


def save_learned_optimizer(
    path: str | os.PathLike,
    lopt: LearnedOptimizer,
    theta: MetaParams,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Saves theta with the learned optimizer's class and configuration (atomically).

    Args:
      path: the file to write.
      lopt: the learned optimizer theta belongs to; its class and configuration
        (`lopt_core.config_of`: its fields) are recorded so that
        `load_learned_optimizer` can rebuild it.
      theta: the meta-parameters.
      metadata: extra JSON-serialisable values (e.g. the meta-training step).

    Returns:
      The path written.

    Raises:
      TypeError: `lopt` is not a LearnedOptimizer instance.
      lopt_core.ConfigError: a field of `lopt` cannot be recorded (the message
        names it); nothing is written.
    """
    if not isinstance(lopt, LearnedOptimizer):
        raise TypeError(
            f"save_learned_optimizer: lopt must be a LearnedOptimizer instance, got {lopt!r}."
        )
    return lopt_core.save(path, theta, metadata, producer=lopt)


def _import_class(spec: str, path: Path) -> type:
    module_name, _, qualname = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(
            f"{str(path)!r} was saved by {spec!r}, which cannot be imported here ({exc}); "
            "install the package that provides it."
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, LearnedOptimizer)):
        raise CheckpointError(
            f"{str(path)!r} was saved by {spec!r}, which is not a LearnedOptimizer; "
            "it is not a learned optimizer checkpoint."
        )
    return obj


def load_learned_optimizer(
    path: str | os.PathLike, expected: type | LearnedOptimizer | None = None
) -> LoadedLearnedOptimizer:
    """Rebuilds a learned optimizer and its theta from a file `save_learned_optimizer` wrote.

    Args:
      path: the file.
      expected: optionally the architecture the caller expects, a LearnedOptimizer
        class or instance; a file from another architecture (or, for an instance,
        another configuration) is refused.

    Returns:
      `LoadedLearnedOptimizer(lopt, theta, metadata)`.

    Raises:
      CheckpointError: the file is missing, corrupted or truncated; it holds no
        learned optimizer; it comes from another architecture (or, for an
        instance, another configuration) than `expected`; its recorded config
        does not build the architecture (the message names the field); or its
        theta does not have the structure its architecture gives.
    """
    path = Path(path)
    meta = lopt_core.load_metadata(path)
    producer = meta.get("producer")
    if not isinstance(producer, dict) or "class" not in producer:
        raise CheckpointError(
            f"{str(path)!r} records no learned optimizer (no producer in its metadata); "
            "write it with save_learned_optimizer(path, lopt, theta)."
        )
    cls = _import_class(producer["class"], path)
    config = producer.get("config", {})
    if expected is not None:
        want = expected if isinstance(expected, type) else type(expected)
        if cls is not want:
            raise CheckpointError(
                f"{str(path)!r} holds a {cls.__name__} theta, not a {want.__name__} one; "
                f"load it as {cls.__name__} or pick the file of a {want.__name__}."
            )
    try:
        lopt = cls(**config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{str(path)!r}: its recorded config {config} does not build a {cls.__name__}: {exc}"
        ) from exc
    if expected is not None and not isinstance(expected, type):
        # Both read through config_of, so tuples and lists compare alike.
        got, want_config = lopt_core.config_of(lopt), lopt_core.config_of(expected)
        if got != want_config:
            raise CheckpointError(
                f"{str(path)!r} holds a {cls.__name__} with config {got}, but the "
                f"expected one has {want_config}."
            )
    like = jax.tree_util.tree_map(lambda s: jax.numpy.zeros(s.shape, s.dtype), theta_schema(lopt))
    tree, meta = lopt_core.load(path, like=like)
    return LoadedLearnedOptimizer(lopt, tree, meta)
