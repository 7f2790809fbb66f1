"""Components are declarations: frozen dataclasses whose fields are their configuration.

`@component` turns a class into a frozen dataclass, so equal configurations
compare and hash equal (they can be static `jit` arguments and cache keys),
`repr` shows the configuration compactly (only the fields that differ from their
defaults, see `compact_repr`), and `config_of` reads the configuration back from
the fields, so checkpoint provenance never drops an argument silently.

Example:
  >>> @component
  ... class Scale:
  ...     factor: float = 2.0
  ...     offset: float = 0.0
  >>> Scale(3.0) == Scale(3.0), hash(Scale(3.0)) == hash(Scale(3.0))
  (True, True)
  >>> Scale(), Scale(3.0)
  (Scale(), Scale(factor=3.0))
  >>> config_of(Scale(3.0))
  {'factor': 3.0, 'offset': 0.0}
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import reprlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, dataclass_transform

import numpy as np

T = TypeVar("T")


class ConfigError(TypeError):
    """A component's configuration holds a value that cannot be recorded in a file."""


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def component(cls: type[T] | None = None, /, **kwargs: Any) -> Any:
    """Declares `cls` a component: a frozen dataclass (keyword arguments go to dataclass).

    Validation belongs in `__post_init__`; derived values (an optax transform, say)
    in methods or `functools.cached_property`, never in extra fields.

    Its `repr` is `compact_repr` unless the class writes its own `__repr__` (or
    passes `repr=False`); equality and hashing are the dataclass's, over all fields.
    """

    def wrap(c: type[T]) -> type[T]:
        own_repr = "__repr__" in c.__dict__
        out = dataclasses.dataclass(frozen=True, **kwargs)(c)
        if not own_repr and kwargs.get("repr", True):
            out.__repr__ = _component_repr  # type: ignore[method-assign]
        return out

    return wrap if cls is None else wrap(cls)


#: Sequences and dicts with more items than this show the first three, "..." and the last.
_MAX_ITEMS = 8
#: A repr of a non-component value longer than this is cut, ending in "...".
_MAX_TEXT = 80


def _field_default(f: dataclasses.Field[Any]) -> Any:
    """The field's default (calling its factory), or MISSING when it has none or it fails."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        try:
            return f.default_factory()
        except Exception:
            return dataclasses.MISSING
    return dataclasses.MISSING


def _is_array(value: Any) -> bool:
    """True for numpy and JAX arrays, tracers and shape structs (numpy scalars are numbers)."""
    return (
        hasattr(value, "shape")
        and hasattr(value, "dtype")
        and not isinstance(value, (type, np.generic))
    )


def _same_as_default(value: Any, default: Any) -> bool:
    """True when `value` surely equals `default` (an array never does: `==` is ambiguous)."""
    if value is default:
        return True
    if default is dataclasses.MISSING or _is_array(value) or _is_array(default):
        return False
    if isinstance(value, bool) != isinstance(default, bool):
        return False  # True == 1, but a flag is not a count
    if isinstance(value, float) and isinstance(default, float) and math.isnan(value):
        return math.isnan(default)
    try:
        return bool(value == default)
    except Exception:
        return False


def _dtype_text(dtype: Any) -> str:
    """`f32`, `bf16`, `i32`, `u8`, `c64`, `bool`; other dtypes by their name."""
    name = getattr(dtype, "name", None) or str(dtype)
    for long, short in (("bfloat", "bf"), ("float", "f"), ("uint", "u"), ("int", "i")):
        if name.startswith(long) and name[len(long) :].isdigit():
            return short + name[len(long) :]
    if name.startswith("complex") and name[len("complex") :].isdigit():
        return "c" + name[len("complex") :]
    return name


def _callable_text(fn: Any) -> str:
    """A function by its public path (`optax.adam`), a closure by its maker (`optax.chain(...)`)."""
    if isinstance(fn, functools.partial):
        return f"partial({_callable_text(fn.func)}, ...)"
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not isinstance(qualname, str):
        return f"<{type(fn).__name__}>"
    if qualname.endswith("<lambda>"):
        return "<lambda>"
    module = getattr(fn, "__module__", None)
    path: list[str] = []
    for part in module.split(".") if isinstance(module, str) else ():
        if part.startswith("_"):
            break  # optax._src.alias.adam is optax.adam; __main__.f is f
        path.append(part)
    maker, closure, _ = qualname.partition(".<locals>.")
    return ".".join([*path, maker]) + ("(...)" if closure else "")


def _items_text(items: list[Any], fmt: Callable[[Any], str], open_: str, close: str) -> str:
    """`(a, b)`; more than `_MAX_ITEMS` items as `(a, b, c, ..., z)`; a 1-tuple as `(a,)`."""
    if len(items) > _MAX_ITEMS:
        texts = [*(fmt(i) for i in items[:3]), "...", fmt(items[-1])]
    else:
        texts = [fmt(i) for i in items]
    comma = "," if open_ == "(" and len(items) == 1 else ""
    return f"{open_}{', '.join(texts)}{comma}{close}"


def _has_generated_repr(obj: Any) -> bool:
    """True for a dataclass whose `repr` is the one `dataclasses` writes (every field)."""
    wrapped = getattr(type(obj).__repr__, "__wrapped__", None)
    return "__create_fn__" in getattr(wrapped, "__qualname__", "")


def _value_text(value: Any) -> str:
    """A field's value for `compact_repr`: short, and never the values of an array."""
    cls_repr: Any = type(value).__repr__
    if cls_repr is _component_repr:
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr(value)
    if _is_array(value):
        return f"{_dtype_text(value.dtype)}[{','.join(str(d) for d in value.shape)}]"
    if is_component(value) and _has_generated_repr(value):
        return compact_repr(value)
    if (
        isinstance(value, tuple)
        and hasattr(value, "_fields")
        and getattr(type(value).__repr__, "__module__", None) == "collections"
    ):  # a NamedTuple with the repr namedtuple writes
        if len(value) and all(callable(v) for v in value):
            # An optax GradientTransformation (init, update): named by what made it,
            # read off the first of its functions that is a closure.
            texts = [_callable_text(v) for v in value]
            return next((t for t in texts if t.endswith("(...)")), texts[0])
        pairs = list(zip(value._fields, value))
        text = _items_text(pairs, lambda kv: f"{kv[0]}={_value_text(kv[1])}", "[", "]")
        return f"{type(value).__name__}({text[1:-1]})"
    if isinstance(value, tuple):
        return _items_text(list(value), _value_text, "(", ")")
    if isinstance(value, list):
        return _items_text(value, _value_text, "[", "]")
    if isinstance(value, dict):
        pairs = list(value.items())
        return _items_text(pairs, lambda kv: f"{kv[0]!r}: {_value_text(kv[1])}", "{", "}")
    if callable(value) and not is_component(value):
        return _callable_text(value)
    if cls_repr is object.__repr__:
        return f"<{type(value).__name__}>"  # without the address
    text = repr(value)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def compact_repr(obj: Any) -> str:
    """`Class(field=value, ...)` with only the fields that differ from their defaults.

    In the style of scikit-learn's `print_changed_only`: fields without a default
    always show, in declaration order; values show by `repr`, nested components
    compactly too, arrays as their dtype and shape (`f32[3,4]`), functions by
    name (closures by their maker, `optax.chain(...)`), long sequences and dicts
    by their first items and "...".

    Example:
      >>> @component
      ... class Clip:
      ...     inner: Any
      ...     limit: float = 1.0
      >>> compact_repr(Clip(Clip(0.5), limit=2.0))
      'Clip(inner=Clip(inner=0.5), limit=2.0)'
    """
    parts = []
    for f in dataclasses.fields(obj):
        if not (f.init and f.repr):
            continue
        value = getattr(obj, f.name)
        if _same_as_default(value, _field_default(f)):
            continue
        parts.append(f"{f.name}={_value_text(value)}")
    return f"{type(obj).__name__}({', '.join(parts)})"


@reprlib.recursive_repr()
def _component_repr(self: Any) -> str:
    return compact_repr(self)


_component_repr.__name__ = _component_repr.__qualname__ = "__repr__"


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


def old_spellings(
    table: Mapping[str, Mapping[str, str]], *, readers: bool = False
) -> Callable[[type[T]], type[T]]:
    """A class decorator applying `table[cls.__name__]`'s older spellings where `cls` is defined.

    A package's `compat` module holds the table (class name -> {old: new}) and
    exports the decorator; each class that has old spellings is decorated in its
    own module, so the spellings hold however the class is imported. With
    `readers`, each old name is also readable as an attribute (`opt.beta1`).

    Raises:
      KeyError: `cls` has no entry in `table` (nothing to alias).
    """

    def wrap(cls: type[T]) -> type[T]:
        names = dict(table[cls.__name__])
        renamed_arguments(**names)(cls)
        if readers:
            for old, new in names.items():
                setattr(cls, old, _reader(new))
        return cls

    return wrap


def _reader(new: str) -> property:
    return property(lambda self: getattr(self, new), doc=f"The older spelling of `{new}`.")
