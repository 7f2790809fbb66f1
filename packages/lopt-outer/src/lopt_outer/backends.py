"""The backends by name, as `lopt meta-train --backend` and `meta_train(backend=...)` take them."""

from __future__ import annotations

import dataclasses
from typing import Any

from lopt_outer.inprocess import InProcessBackend
from lopt_outer.ray import RayBackend
from lopt_outer.run import Backend

__all__ = ["BACKENDS", "backend_named"]

BACKENDS: dict[str, type[Backend]] = {"inprocess": InProcessBackend, "ray": RayBackend}
"""Backends by the name `lopt meta-train --backend` and `meta_train(backend=...)` take."""


def backend_named(name: str, **options: Any) -> Backend:
    """The backend registered as `name` in `BACKENDS`, built with `options`.

    Raises:
      ValueError: an unknown name, or options another backend takes (both named).
    """
    if name not in BACKENDS:
        raise ValueError(
            f"Unknown backend {name!r}; expected {' or '.join(repr(n) for n in BACKENDS)}."
        )
    cls = BACKENDS[name]
    stray = sorted(set(options) - {f.name for f in dataclasses.fields(cls)})
    if stray:
        owners = [
            n for n, c in BACKENDS.items() if set(stray) <= {f.name for f in dataclasses.fields(c)}
        ]
        where = f"backend={owners[0]!r}" if owners else "no backend"
        raise ValueError(
            f"{', '.join(stray)} apply to {where} only, not to backend={name!r}"
            + (f"; pass backend={owners[0]!r} to use them." if owners else ".")
        )
    return cls(**options)
