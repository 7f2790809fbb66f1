"""The older spellings of lopt-outer's arguments, kept working: the one place they live.

The reference library (learned_optimization) and its notebooks write
`TruncatedPES(truncated_step=..., trunc_length=20, std=0.01)`; every estimator
now calls the unroll length `unroll_length`. `RENAMED` lists each class's old
spellings, and `with_old_spellings` applies them with
`lopt_core.renamed_arguments` where the class is defined, so the aliases hold
however the class is imported and `import lopt_outer` stays cheap.

Example:
  >>> TruncatedPES(step, trunc_length=20).unroll_length
  20
"""

from __future__ import annotations

from typing import TypeVar

import lopt_core

__all__ = ["RENAMED", "with_old_spellings"]

T = TypeVar("T")

#: class name -> {old argument name: new argument name}.
RENAMED: dict[str, dict[str, str]] = {
    "TruncatedPES": {"trunc_length": "unroll_length"},
}


def with_old_spellings(cls: type[T]) -> type[T]:
    """Class decorator: `cls`'s constructor also accepts its spellings in `RENAMED`.

    Raises:
      KeyError: `cls` has no entry in `RENAMED` (nothing to alias).
    """
    return lopt_core.renamed_arguments(**RENAMED[cls.__name__])(cls)


# -- The run layer's older spellings ----------------------------------------------------
# (Added by the run-layer change.) The keyword style `meta_train(learner, num_steps,
# seed=..., backend="ray", num_workers=...)` and the names of `lopt_outer.distributed`
# (`RayMetaTrainer`, `meta_train_ray`, ...) live in `lopt_outer._compat_run`; they are
# re-exported here lazily, so importing this module does not load the run layer.
_RUN_LAYER_NAMES = ("MOVED", "RayMetaTrainer", "config_from_keywords", "meta_train_ray", "moved")


def __getattr__(name: str) -> object:
    if name in _RUN_LAYER_NAMES:
        import importlib

        return getattr(importlib.import_module("lopt_outer._compat_run"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
