"""Components are declarations: frozen dataclasses whose fields are their configuration.

`@component` turns a class into a frozen dataclass, so equal configurations
compare and hash equal (they can be static `jit` arguments and cache keys),
`repr` shows the configuration, and `config_of` reads the configuration back
from the fields, so checkpoint provenance never drops an argument silently.

Example:
  >>> @component
  ... class Scale:
  ...     factor: float = 2.0
  >>> Scale(3.0) == Scale(3.0), hash(Scale(3.0)) == hash(Scale(3.0))
  (True, True)
  >>> config_of(Scale(3.0))
  {'factor': 3.0}
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


class ConfigError(TypeError):
    """A component's configuration holds a value that cannot be recorded in a file."""


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def component(cls: type[T] | None = None, /, **kwargs: Any) -> Any:
    """Declares `cls` a component: a frozen dataclass (keyword arguments go to dataclass).

    Validation belongs in `__post_init__`; derived values (an optax transform, say)
    in methods or `functools.cached_property`, never in extra fields.
    """

    def wrap(c: type[T]) -> type[T]:
        return dataclasses.dataclass(frozen=True, **kwargs)(c)

    return wrap if cls is None else wrap(cls)


def is_component(obj: Any) -> bool:
    """True for an instance of a dataclass (any `@component`)."""
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type)


def _record(value: Any, path: str, strict: bool = True) -> Any:
    """`value` as JSON, or a ConfigError naming `path` (when not `strict`: see `describe`)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{path} = {value!r} is not finite and cannot be recorded.")
        return value
    if isinstance(value, (list, tuple)):
        return [_record(v, f"{path}[{i}]", strict) for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _record(v, f"{path}[{k!r}]", strict) for k, v in value.items()}
    if is_component(value):
        return describe(value, path, strict=strict)
    shape = getattr(value, "shape", None)
    if shape == () and hasattr(value, "dtype"):
        # A 0-d numpy or JAX array holding a concrete number.
        try:
            return _record(value.item(), path, strict)
        except Exception:  # a tracer: no concrete value
            pass
    if not strict:
        cls = type(value)
        nested = path.count(".") + path.count("[")
        if not callable(value) and shape is None and nested < 32:
            return describe(value, path, strict=False)
        return {"class": f"{cls.__module__}:{cls.__qualname__}", "unrecorded": repr(value)[:200]}
    raise ConfigError(
        f"{path} = {value!r} ({type(value).__name__}) cannot be recorded in a checkpoint: "
        "only None, bools, numbers, strings, lists, dicts and other components can. Pass a "
        "recordable value (for example a float learning rate instead of a schedule function), "
        "or save without a producer."
    )


def config_of(obj: Any, path: str | None = None, *, strict: bool = True) -> dict[str, Any]:
    """The configuration of `obj` as JSON values.

    For a component, its init fields. For other objects (classes written before
    components, as in the reference notebooks): a `config` dict attribute, or each
    `__init__` parameter read from the attribute of the same name (or with a
    leading underscore).

    Args:
      obj: the object.
      path: how messages name it (default: its class name).
      strict: see `describe`.

    Raises:
      ConfigError: a value cannot be recorded (only when `strict`); the message
        names the field.
    """
    owner = path or type(obj).__name__
    if is_component(obj):
        items = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init and f.repr}
    elif isinstance(getattr(obj, "config", None), dict):
        items = dict(obj.config)
    else:
        items = {}
        try:
            params = inspect.signature(type(obj).__init__).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        for name, p in params.items():
            if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            for attr in (name, f"_{name}"):
                if hasattr(obj, attr):
                    items[name] = getattr(obj, attr)
                    break
    return {k: _record(v, f"{owner}.{k}", strict) for k, v in items.items()}


def describe(obj: Any, path: str | None = None, *, strict: bool = True) -> dict[str, Any]:
    """`{"class": "module:QualName", "config": {...}}`: what made a tree, as JSON.

    Args:
      obj: the object.
      path: how messages name it.
      strict: raise `ConfigError` for a value that cannot be recorded (the
        default, for checkpoint provenance, which must rebuild the object). With
        False, for comparing configurations, such a value is described as far as
        it can be: an object by its class and the `__init__` arguments it keeps
        (as for classes written before components), anything else (a function,
        an array) as `{"class", "unrecorded": repr}`.
    """
    cls = type(obj)
    config = config_of(obj, path, strict=strict)
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "config": config}


def renamed_arguments(**old_to_new: str) -> Callable[[type[T]], type[T]]:
    """Lets a component's constructor accept older spellings of its arguments.

    The one place old spellings are kept is each package's `compat` module, which
    applies this decorator; `Adam(beta1=0.8)` then builds `Adam(b1=0.8)`.

    Raises:
      TypeError (at call time): both spellings of one argument were given.
    """

    def wrap(cls: type[T]) -> type[T]:
        init = cls.__init__
        aliases = {**getattr(cls, "__lopt_aliases__", {}), **old_to_new}

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            for old, new in aliases.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(
                            f"{cls.__name__}: got both {old!r} and {new!r}; {old!r} is the "
                            f"older spelling of {new!r}, pass only {new!r}."
                        )
                    kwargs[new] = kwargs.pop(old)
            init(self, *args, **kwargs)

        cls.__init__ = __init__  # type: ignore[method-assign]
        cls.__lopt_aliases__ = aliases  # type: ignore[attr-defined]
        return cls

    return wrap
