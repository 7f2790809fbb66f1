"""The positions of stateful data splits reachable from an object, for checkpoints.

A split drawn from keys (`ArraySplit`) needs no position: the step's key fixes
its batch. A streamed split does: it is a plain iterator, and resuming a run
exactly means continuing it at the batch that followed the checkpoint. A split
that exposes `get_state() -> dict` (JSON-able values) and `set_state(state)`
(`lopt_tasks.streaming.GrainSplit`, say) has its position saved with a
checkpoint by `iterator_states(learner)` and restored on resume by
`restore_iterator_states(learner, states)`.

The splits are found by walking the object's attributes (and the items of its
lists, tuples and dicts) down to every `Datasets`: a learner's estimators, their
truncated steps, the task families and their datasets. Each split is named by
the attribute path of its first appearance, e.g.
`gradient_estimators[0].truncated_step.task_family.datasets.train`, and a split
shared by several families is saved once.

Example:
  >>> states = iterator_states(learner)              # {path: split.get_state()}
  >>> restore_iterator_states(learner, states)       # on resume
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lopt_core.datasets import SPLITS, Datasets, reachable

__all__ = ["iterator_states", "restore_iterator_states", "stateful_splits"]


def _has_state(obj: Any) -> bool:
    return callable(getattr(obj, "get_state", None)) and callable(getattr(obj, "set_state", None))


def stateful_splits(obj: Any) -> dict[str, Any]:
    """Every split with `get_state`/`set_state` of every `Datasets` reachable from `obj`.

    The walk is `lopt_core.datasets.reachable` over attributes and containers
    (not code): a split is named by its attribute path.

    Args:
      obj: a learner, an estimator, a truncated step, a task family or a `Datasets`.

    Returns:
      `{path: split}` in the order the walk meets them; a split reachable along
      several paths appears once, under the first.
    """
    found: dict[str, Any] = {}
    for path, datasets in reachable(obj, lambda o: isinstance(o, Datasets), code=False):
        for name in SPLITS:
            split = datasets.split(name)
            if _has_state(split) and all(split is not s for s in found.values()):
                found[f"{path}.{name}" if path else name] = split
    return found


def iterator_states(obj: Any) -> dict[str, Any]:
    """The positions of the stateful splits reachable from `obj` (see `stateful_splits`).

    Returns:
      `{path: split.get_state()}`, JSON-able; empty when every split is keyed or
      stateless.

    Raises:
      TypeError: a split's `get_state()` is not JSON-able; the message names it.
    """
    states = {}
    for path, split in stateful_splits(obj).items():
        state = split.get_state()
        try:
            json.dumps(state, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"iterator_states: {path} ({type(split).__name__}).get_state() must return "
                f"JSON values (dicts, lists, strings, numbers, None): {exc}."
            ) from None
        states[path] = state
    return states


def restore_iterator_states(obj: Any, states: Any) -> list[str]:
    """Puts every stateful split reachable from `obj` back at the position in `states`.

    `states` is read as untrusted data (it comes from a checkpoint file): it must
    be a dict naming exactly the stateful splits `obj` has, and each split's own
    `set_state` checks its entry.

    Args:
      obj: what `iterator_states` was called on (rebuilt with the same configuration).
      states: an `iterator_states(obj)` result.

    Returns:
      The paths of the splits restored.

    Raises:
      ValueError: `states` is not such a dict, or names other splits than `obj`
        has (another task family or dataset); the message names the paths.
    """
    splits = stateful_splits(obj)
    if not isinstance(states, Mapping) or not all(isinstance(k, str) for k in states):
        raise ValueError(
            "restore_iterator_states: the saved data positions must be a dict of split path "
            f"to state, got {type(states).__name__}; the checkpoint was edited or written by "
            "something else."
        )
    missing = sorted(set(splits) - set(states))
    extra = sorted(set(states) - set(splits))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no saved position for {', '.join(missing)}")
        if extra:
            parts.append(f"saved positions of splits this configuration lacks: {', '.join(extra)}")
        raise ValueError(
            f"restore_iterator_states: {'; '.join(parts)}. Resume with the same task families "
            "and datasets as the run that wrote the checkpoint."
        )
    for path, split in splits.items():
        split.set_state(states[path])
    return list(splits)
