"""Using a learned optimizer outside lopt: optax export, and theta checkpoints.

`load_learned_optimizer` treats the file as untrusted input: nothing it names is
imported or run, its class is looked up among the registered learned optimizers
(or the classes the caller allows), its config is checked field by field and
built by the class's own validation, and the shapes that config implies are
computed without allocating and compared with what the file holds before the
theta is returned. See "What loading a file trusts" in the package README.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import math
import os
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

import lopt_core
import lopt_optimizers
from lopt_core import CheckpointError, LearnedOptimizer
from lopt_core.checkpoint import DEFAULT_MAX_BYTES, metadata_value
from lopt_core.tree_utils import first_difference, path_str
from lopt_core.typing import MetaParams, Params
from lopt_learned._driver import theta_schema, theta_size

MAX_THETA_LEAVES = 10_000
"""The most arrays a theta file may hold; `load_learned_optimizer` refuses more.

The architectures of this package have at most a few dozen; the limit bounds the
time spent checking a file's recorded config against its theta.
"""

_KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)
_MAX_INT = 2**63
_MAX_LIST = 10_000


def as_optax(
    lopt: LearnedOptimizer,
    theta: MetaParams,
    is_training: bool = False,
    num_steps: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """A learned optimizer with fixed theta as an optax transform for any training loop.

    `lopt_optimizers.as_optax(lopt.opt_fn(theta, is_training))`: `tx.init(params)`
    builds the learned optimizer's state; `tx.update(grads, state, params,
    loss=loss)` returns `new_params - params`. Architectures that need the loss
    (`RNNMLPLOpt`, `HParamControllerLOPT`) raise a ValueError when `loss=` is
    missing. Horizon-aware architectures (`Celo`, and those whose time features
    read the fraction of training) get the horizon from `num_steps`.

    Args:
      lopt: the learned optimizer (its architecture and configuration).
      theta: its meta-parameters, e.g. from `lopt.init(key)` or `load_learned_optimizer`.
      is_training: passed to `opt_fn`.
      num_steps: the training horizon, passed to the optimizer's
        `init(params, num_steps=...)` by `tx.init`; None (the default) passes none,
        as `tx.init` always did.

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
    opt = lopt.opt_fn(theta, is_training=is_training)
    tx = lopt_optimizers.as_optax(opt)
    if num_steps is None:
        return tx

    def init_fn(params: Params) -> Any:
        return opt.init(params, num_steps=num_steps)

    return optax.GradientTransformationExtraArgs(init_fn, tx.update)


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
        """One line: `LoadedLearnedOptimizer(MLPLOpt(), theta=1,762 params, metadata={...})`.

        The learned optimizer prints compactly, theta as its number of floats, the
        source file (`source_file` in the metadata) as `from=`, and the other
        metadata keys (not their values) unless they are many; `producer` and
        `lopt_version`, which every saved file has, are left out.
        """
        parts = [repr(self.lopt), f"theta={theta_size(self.theta):,} params"]
        meta = self.metadata if isinstance(self.metadata, dict) else {}
        source = meta.get("source_file")
        if isinstance(source, str):
            parts.append(f"from={source!r}")
        keys = [str(k) for k in meta if k not in _UNSHOWN_METADATA]
        if keys:
            text = ", ".join(keys)
            if len(keys) > _MAX_SHOWN_KEYS or len(text) > _MAX_KEYS_TEXT:
                text = ", ".join(keys[: _MAX_SHOWN_KEYS - 1]) + f", ... ({len(keys)} keys)"
            parts.append(f"metadata={{{text}}}")
        return f"LoadedLearnedOptimizer({', '.join(parts)})"


#: Metadata every saved file has (or that `LoadedLearnedOptimizer`'s repr shows otherwise).
_UNSHOWN_METADATA = frozenset({"producer", "lopt_version", "source_file"})
_MAX_SHOWN_KEYS = 5
_MAX_KEYS_TEXT = 60


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


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _spec(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _allowed_classes(allow: Iterable[type], expected: Any) -> list[type]:
    """The classes the caller trusts besides the registry: `allow` and `expected`'s class."""
    if isinstance(allow, (str, type)) or not isinstance(allow, Iterable):
        allow = (allow,)  # type: ignore[assignment]
    out: list[type] = []
    for cls in allow:
        if not (isinstance(cls, type) and issubclass(cls, LearnedOptimizer)):
            raise TypeError(
                f"load_learned_optimizer: allow= takes LearnedOptimizer classes, got "
                f"{_short(cls)}; pass the classes themselves, e.g. allow=(MyLOpt,), not "
                "their names or instances."
            )
        out.append(cls)
    if expected is not None:
        want = expected if isinstance(expected, type) else type(expected)
        if not issubclass(want, LearnedOptimizer):
            raise TypeError(
                "load_learned_optimizer: expected must be a LearnedOptimizer class or "
                f"instance, got {_short(expected)}."
            )
        out.append(want)
    return out


def _resolve_class(spec: Any, allowed: list[type], path: Path) -> type:
    """The class `spec` names, from `allowed` or the registry; nothing is imported."""
    where = repr(str(path))
    if not isinstance(spec, str) or not spec:
        raise CheckpointError(
            f"{where}: its producer class must be a 'module:QualName' string, got "
            f"{_short(spec)}; the file was not written by save_learned_optimizer, or was "
            "edited."
        )
    for cls in allowed:
        if _spec(cls) == spec:
            return cls
    by_spec: dict[str, type] = {}
    by_name: dict[str, type] = {}
    for name, entry in lopt_core.REGISTRY.entries("learned_optimizers").items():
        factory = entry.factory
        if isinstance(factory, type) and issubclass(factory, LearnedOptimizer):
            by_spec.setdefault(_spec(factory), factory)
            by_name[name] = factory
    if spec in by_spec:
        return by_spec[spec]
    if spec in by_name:
        return by_name[spec]
    close = difflib.get_close_matches(spec, [*by_spec, *by_name], n=3, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise CheckpointError(
        f"{where} was saved by {_short(spec)}, which is not a registered learned optimizer "
        "(a file's class is only looked up, never imported). Install the lopt plugin "
        "that registers it (`lopt list learned_optimizers` shows what is registered), or, "
        "if you trust that class, pass it: load_learned_optimizer(path, "
        f"allow=(TheClass,)).{hint}"
    )


def _declared_fields(cls: type) -> tuple[set[str] | None, dict[str, Any]]:
    """The config keys `cls` declares (None: any) and their type hints, old spellings included."""
    if dataclasses.is_dataclass(cls):
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        owner: Any = cls
    else:
        try:
            params = inspect.signature(cls).parameters
        except (TypeError, ValueError):
            return None, {}
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return None, {}
        names = {n for n, p in params.items() if p.kind is not p.VAR_POSITIONAL}
        owner = cls.__init__  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(owner)
    except Exception:  # an annotation that does not resolve: check JSON kinds only
        hints = {}
    hints = {k: v for k, v in hints.items() if k in names}
    for old, new in getattr(cls, "__lopt_aliases__", {}).items():
        names.add(old)
        if new in hints:
            hints[old] = hints[new]
    return names, hints


def _json_problem(value: Any, depth: int = 0) -> str | None:
    """Why `value` is not a config value (a JSON scalar or a list of them), or None."""
    if value is None or isinstance(value, (bool, str)):
        return None
    if isinstance(value, int):
        return None if abs(value) < _MAX_INT else "an integer out of range"
    if isinstance(value, float):
        return None if math.isfinite(value) else "not a finite number"
    if isinstance(value, list):
        if depth >= 2 or len(value) > _MAX_LIST:
            return "a list nested too deeply or too long"
        for item in value:
            problem = _json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    return f"a JSON {type(value).__name__}, not a number, string, bool, None or list"


def _matches(value: Any, hint: Any) -> bool:
    """Whether the JSON `value` can stand for a value of the annotation `hint`."""
    if hint is Any or hint is object:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_matches(value, arm) for arm in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (tuple, list, collections.abc.Sequence):
        if not isinstance(value, list):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(args) == len(value) and all(map(_matches, value, args))
        return not args or all(_matches(v, args[0]) for v in value)
    return True  # another annotation: the class's own validation decides


def _checked_config(cls: type, config: Any, path: Path) -> dict[str, Any]:
    """The recorded config, its keys declared by `cls` and its values of the right kinds."""
    where, name = repr(str(path)), cls.__name__
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{where}: its producer config must be a JSON object, got {_short(config)}."
        )
    declared, hints = _declared_fields(cls)
    for key, value in config.items():
        refuse = f"{where}: its recorded config does not build a {name}: "
        if declared is not None and key not in declared:
            raise CheckpointError(
                f"{refuse}{name} has no field {_short(key)} (its fields: "
                f"{', '.join(sorted(declared))}); the file was written by another version "
                f"of {name}, or was edited."
            )
        problem = _json_problem(value)
        if problem is None and key in hints and not _matches(value, hints[key]):
            hint = hints[key]
            problem = f"not of its type, {hint.__name__ if isinstance(hint, type) else hint}"
        if problem is not None:
            raise CheckpointError(f"{refuse}{name}.{key} = {_short(value)} is {problem}.")
    return config


def _build(cls: type, config: dict[str, Any], path: Path) -> Any:
    try:
        return cls(**config)
    except Exception as exc:  # the class's validation: ValueError, TypeError, ...
        message = str(exc) if len(str(exc)) <= 500 else str(exc)[:497] + "..."
        raise CheckpointError(
            f"{str(path)!r}: its recorded config {_short(config, 300)} does not build a "
            f"{cls.__name__}: {message}"
        ) from exc


def _clamped(value: Any, cap: int) -> Any:
    if isinstance(value, list):
        return [_clamped(v, cap) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return min(value, cap)
    return value


def _largest_int(value: Any) -> int:
    if isinstance(value, list):
        return max((_largest_int(v) for v in value), default=0)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return 0


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(int(d) for d in shape)


def _check_growth(cls: type, config: dict[str, Any], theta: Any, path: Path) -> None:
    """Refuses a config whose theta is clearly larger than the file's, before tracing it.

    Tracing `init` costs time in proportion to what it builds (`hidden_layers:
    200000` loops for minutes). So the config is first traced with every integer
    capped at 4, 16, 64, ... below its recorded values: each of these smaller
    architectures (theta sizes grow with their integers) must not have more arrays
    or values than the file holds, so the work done stays in proportion to the file.
    Capped configs that the class refuses are skipped.
    """
    leaves = jax.tree_util.tree_leaves(theta)
    held_arrays, held_values = len(leaves), sum(int(np.size(x)) for x in leaves)
    top = max((_largest_int(v) for v in config.values()), default=0)
    cap = 4
    while cap < top:
        try:
            small = cls(**{k: _clamped(v, cap) for k, v in config.items()})
            shapes = jax.tree_util.tree_leaves(jax.eval_shape(small.init, _KEY))
        except Exception:  # a capped config the class refuses proves nothing
            cap *= 4
            continue
        arrays, values = len(shapes), sum(_size(s.shape) for s in shapes)
        if arrays > held_arrays or values > held_values:
            raise CheckpointError(
                f"{str(path)!r}: its theta does not match the expected tree: the file holds "
                f"{held_arrays} arrays of {held_values} values in all, but its recorded "
                f"config {_short(config, 300)} asks for more (with its integers capped at "
                f"{cap}, a {cls.__name__} already has {arrays} arrays of {values} values). "
                "The file was not written by save_learned_optimizer, or was edited."
            )
        cap *= 4


def _check_theta(lopt: LearnedOptimizer, theta: Any, path: Path) -> Any:
    """theta restored to the structure of `lopt.init`, after comparing shapes and dtypes."""
    where, name = repr(str(path)), type(lopt).__name__
    try:
        schema = theta_schema(lopt)
    except Exception as exc:
        raise CheckpointError(
            f"{where}: {lopt!r}.init cannot be traced to read its theta's shapes: {exc}"
        ) from exc
    expected = serialization.to_state_dict(schema)
    want = jax.tree_util.tree_leaves(expected)
    want_bytes = sum(_size(s.shape) * np.dtype(s.dtype).itemsize for s in want)
    held = jax.tree_util.tree_leaves(theta)
    held_bytes = sum(int(x.nbytes) for x in held)
    mismatch = f"{where}: its theta does not match the expected tree of {lopt!r}"
    if isinstance(expected, dict) and not isinstance(theta, dict):
        raise CheckpointError(
            f"{mismatch}: the file's tree is a {type(theta).__name__}, not the dict that "
            f"{name}.init returns."
        )
    diff = first_difference(expected, theta)
    if diff is None:
        for (p, w), h in zip(jax.tree_util.tree_leaves_with_path(expected), held, strict=True):
            if np.dtype(w.dtype) != h.dtype:
                diff = f"path {path_str(p)} has dtype {h.dtype}, expected {np.dtype(w.dtype)}"
                break
    if diff is None and want_bytes > held_bytes:  # implied by equal shapes and dtypes
        diff = f"that theta has {want_bytes} bytes, the file holds {held_bytes}"
    if diff is not None:
        raise CheckpointError(f"{mismatch}: {diff}.")
    return serialization.from_state_dict(schema, theta)


def load_learned_optimizer(
    path: str | os.PathLike,
    expected: type | LearnedOptimizer | None = None,
    *,
    allow: Iterable[type] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadedLearnedOptimizer:
    """Rebuilds a learned optimizer and its theta from a file `save_learned_optimizer` wrote.

    The file is untrusted input (see "What loading a file trusts" in the README):
    nothing named in it is imported or run. Its recorded class must be a
    registered learned optimizer (`lopt_core.list_learned_optimizers()`), matched
    by `"module:QualName"` or registered name, or one of the classes in `allow`
    (or `expected`'s). Its config may only hold fields the class declares, with
    JSON values of their annotated kinds, and is built by the class's own
    validation. The theta shapes the config implies are computed with
    `jax.eval_shape` (nothing allocated, and only after configs with smaller
    integers were checked not to outgrow the file) and compared, with the dtypes,
    against the arrays the file holds.

    Args:
      path: the file.
      expected: optionally the architecture the caller expects, a LearnedOptimizer
        class or instance; a file from another architecture (or, for an instance,
        another configuration) is refused. Its class counts as allowed.
      allow: LearnedOptimizer classes of your own, not registered by any plugin,
        that the file may name: a class or an iterable of classes (not names).
      max_bytes: refuse files larger than this (256 MiB by default); raise it for a
        larger file you trust.

    Returns:
      `LoadedLearnedOptimizer(lopt, theta, metadata)`.

    Raises:
      CheckpointError: the file is missing, not a regular file, too large,
        corrupted, truncated or malformed; it holds no learned optimizer; its class
        is neither registered nor allowed; it comes from another architecture (or,
        for an instance, another configuration) than `expected`; its recorded config
        has a field the class does not declare, a value of the wrong kind, or one the
        class's validation refuses (the message names the field); or its theta does
        not have the structure, shapes and dtypes its architecture gives.
      TypeError: `allow` holds something other than LearnedOptimizer classes, or
        `expected` is not a LearnedOptimizer class or instance.

    Example:
      >>> loaded = load_learned_optimizer("theta.lopt", expected=MLPLOpt)
      >>> mine = load_learned_optimizer("mine.lopt", allow=(MyLOpt,))
    """
    path = Path(path)
    allowed = _allowed_classes(allow, expected)
    tree, meta = lopt_core.load(path, max_bytes=max_bytes)
    if "producer" not in meta:
        raise CheckpointError(
            f"{str(path)!r} records no learned optimizer (no producer in its metadata); "
            "write it with save_learned_optimizer(path, lopt, theta)."
        )
    producer = metadata_value(meta, "producer", dict, path)
    cls = _resolve_class(producer.get("class"), allowed, path)
    config = producer.get("config", {})
    if expected is not None:
        want = expected if isinstance(expected, type) else type(expected)
        if cls is not want:
            raise CheckpointError(
                f"{str(path)!r} holds a {cls.__name__} theta, not a {want.__name__} one; "
                f"load it as {cls.__name__} or pick the file of a {want.__name__}."
            )
    config = _checked_config(cls, config, path)
    lopt = _build(cls, config, path)
    if expected is not None and not isinstance(expected, type):
        # Both read through config_of, so tuples and lists compare alike.
        got, want_config = lopt_core.config_of(lopt), lopt_core.config_of(expected)
        if got != want_config:
            raise CheckpointError(
                f"{str(path)!r} holds a {cls.__name__} with config {got}, but the "
                f"expected one has {want_config}."
            )
    n_leaves = len(jax.tree_util.tree_leaves(tree))
    if n_leaves > MAX_THETA_LEAVES:
        raise CheckpointError(
            f"{str(path)!r} holds {n_leaves} arrays, more than a theta may have "
            f"(lopt_learned.export.MAX_THETA_LEAVES = {MAX_THETA_LEAVES}); it is not a "
            "theta file of save_learned_optimizer."
        )
    _check_growth(cls, config, tree, path)
    theta = _check_theta(lopt, tree, path)
    return LoadedLearnedOptimizer(lopt, theta, meta)
