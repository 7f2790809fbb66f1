"""The base of lopt's abstract interfaces: a missing method fails at instantiation.

`Interface` is an `abc.ABC` whose instantiation error names every method a
subclass still has to write. It also checks "either of" pairs (a Task overrides
`init` or `init_with_state`). Subclasses need not call `super().__init__()`, so
classes written as in the reference notebooks keep working.
"""

from __future__ import annotations

import abc
from typing import Any


def overrides(cls: type, name: str, base: type) -> bool:
    """True when `cls` defines `name` itself or through a base other than `base`."""
    return getattr(cls, name, None) is not getattr(base, name, None)


class Interface(abc.ABC):  # noqa: B024 (the subclasses declare the abstract methods)
    """An abstract lopt interface (Task, Optimizer, GradientEstimator, ...)."""

    #: pairs of methods of which a concrete subclass must override at least one.
    _either_of: tuple[tuple[str, ...], ...] = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        missing = [f"{name}()" for name in sorted(getattr(cls, "__abstractmethods__", ()))]
        owner = _declaring_base(cls)
        for group in cls._either_of:
            if not any(overrides(cls, name, owner) for name in group):
                missing.append(" or ".join(f"{name}()" for name in group))
        if missing:
            raise TypeError(
                f"{cls.__name__} cannot be instantiated: it must override "
                + "; it must override ".join(missing)
                + "."
            )
        return super().__new__(cls)


def _declaring_base(cls: type) -> type:
    """The Interface subclass in `cls`'s MRO that declared `_either_of`."""
    for base in cls.__mro__:
        if "_either_of" in vars(base):
            return base
    return Interface
