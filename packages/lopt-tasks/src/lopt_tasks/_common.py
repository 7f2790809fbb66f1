"""Losses, normalizers, activations and the datasets checks shared by the tasks."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from lopt_core import Datasets, Task
from lopt_core.typing import Batch, ModelState, Params, PRNGKey
from lopt_core.validation import check_choice, check_positive_int


class AuxFirstTask(Task):
    """A Task whose one loss method is `loss_with_state_and_aux`; the others derive from it.

    The loss and the aux come from one method, so the two never drift apart; under
    `jit` the aux a caller drops is dead code and costs nothing. Subclasses
    implement `loss_with_state_and_aux` (and `init_with_state`).
    """

    @abc.abstractmethod
    def loss_with_state_and_aux(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[Any, ModelState, dict[str, Any]]:
        """`(loss, next_state, aux)` of `params` on `data`."""

    def loss_with_state(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[Any, ModelState]:
        loss, state, _ = self.loss_with_state_and_aux(params, state, key, data)
        return loss, state

    def loss_and_aux(self, params: Params, key: PRNGKey, data: Batch) -> tuple[Any, dict[str, Any]]:
        loss, _, aux = self.loss_with_state_and_aux(params, None, key, data)
        return loss, aux

    def loss(self, params: Params, key: PRNGKey, data: Batch) -> Any:
        loss, _, _ = self.loss_with_state_and_aux(params, None, key, data)
        return loss


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of `logits` (B, K) against int `labels` (B,)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(log_probs, labels.astype(jnp.int32)[:, None], axis=-1)
    return -jnp.mean(picked)


def capped_normalizer(loss: Any, maxval: float) -> jax.Array:
    """`loss` clipped to [0, maxval], with NaN and +-inf mapped to `maxval` first."""
    return jnp.clip(jnp.nan_to_num(loss, nan=maxval, posinf=maxval, neginf=maxval), 0.0, maxval)


def clipped_log_classes_normalizer(loss: Any, num_classes: int) -> jax.Array:
    """Clips a classification loss to [0, 1.5 log K]; NaN and +-inf map to that maximum."""
    maxval = 1.5 * float(np.log(num_classes))
    loss = jnp.clip(loss, 0.0, maxval)
    return jnp.nan_to_num(loss, nan=maxval, posinf=maxval, neginf=maxval)


def ones_like_abstract(abstract: Any) -> Any:
    """A batch of ones shaped like an abstract batch (for shape-only initialization)."""
    return jax.tree_util.tree_map(lambda s: jnp.ones(s.shape, s.dtype), abstract)


ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "sigmoid": jax.nn.sigmoid,
    "elu": jax.nn.elu,
}


@dataclasses.dataclass(frozen=True)
class _ActivationName:
    """An entry of `ACTIVATIONS` in a pickle, by its name."""

    name: str


def _by_name(value: Any) -> Any:
    for name, fn in ACTIVATIONS.items():
        if value is fn:
            return _ActivationName(name)
    return value


def _from_name(value: Any) -> Any:
    return ACTIVATIONS[value.name] if isinstance(value, _ActivationName) else value


class RebuiltOnUnpickle:
    """Pickles an object's configuration; what `_build()` derives from it is made again.

    The attributes named in `_derived` (jitted functions, haiku transforms of the
    object's methods) are left out of the pickle: they close over the object and
    JAX's caches, and the copy builds its own with `_build()`, so a task or family
    crosses to another process (a Ray worker) as its configuration and datasets.
    Activations of `ACTIVATIONS` travel by name: plain `pickle` cannot find jax's
    wrapped functions (`jax.nn.relu`, `jnp.tanh`) under their qualified names.
    """

    _derived: ClassVar[tuple[str, ...]] = ()

    def _build(self) -> None:
        """Makes the `_derived` attributes from the configuration."""

    def __getstate__(self) -> dict[str, Any]:
        return {k: _by_name(v) for k, v in self.__dict__.items() if k not in self._derived}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({k: _from_name(v) for k, v in state.items()})
        self._build()


def activation(name_or_fn: Any, owner: str, argument: str = "act_fn") -> Any:
    """An activation function from its name (a key of `ACTIVATIONS`) or a callable.

    Raises:
      ValueError: `name_or_fn` is neither a callable nor a known name.
    """
    if callable(name_or_fn):
        return name_or_fn
    return ACTIVATIONS[check_choice(name_or_fn, owner, argument, tuple(ACTIVATIONS))]


def check_sizes(values: Any, owner: str, argument: str) -> tuple[int, ...]:
    """Layer widths as a tuple of positive ints (it may be empty: no hidden layer).

    Raises:
      TypeError: `values` is not a sequence.
      ValueError: an entry is not a positive integer; the message names its index.
    """
    if isinstance(values, str) or not isinstance(values, Sequence | np.ndarray):
        raise TypeError(
            f"{owner}: {argument} must be a sequence of positive integers such as (32, 32), "
            f"got {values!r}."
        )
    return tuple(check_positive_int(v, owner, f"{argument}[{i}]") for i, v in enumerate(values))


def jit_transformed(mod: Any) -> Any:
    """A haiku Transformed / TransformedWithState whose init and apply are jitted.

    Eager calls (e.g. `task.init(key)` outside `jit`) then compile once instead of
    dispatching op by op; inside an outer `jit` or `vmap` the inner jit is inlined.
    """
    return type(mod)(jax.jit(mod.init), jax.jit(mod.apply))


def _check_datasets(datasets: Any, owner: str) -> Datasets:
    if not isinstance(datasets, Datasets):
        raise TypeError(
            f"{owner}: datasets must be a lopt_core.Datasets (for example "
            f"lopt_tasks.digits_datasets()), got {type(datasets).__name__}."
        )
    return datasets


def abstract_batch_of(datasets: Any, owner: str) -> Any:
    """`datasets.abstract_batch`, which tasks initialize from without reading data.

    Raises:
      TypeError: `datasets` is not a `lopt_core.Datasets`.
      ValueError: it has no abstract batch.
    """
    if _check_datasets(datasets, owner).abstract_batch is None:
        raise ValueError(
            f"{owner}: datasets.abstract_batch is None, but the task initializes its "
            "parameters from it without reading data. Pass abstract_batch= to Datasets or "
            "use splits that provide one."
        )
    return datasets.abstract_batch


def extra_info_of(datasets: Any, key: str, owner: str) -> int:
    """`datasets.extra_info[key]` as a positive int (`num_classes`, `vocab_size`).

    Raises:
      TypeError: `datasets` is not a `lopt_core.Datasets`.
      ValueError: the key is missing or its value is not a positive integer.
    """
    info = _check_datasets(datasets, owner).extra_info
    if key not in info:
        raise ValueError(
            f"{owner}: datasets.extra_info has no {key!r} (its keys are {sorted(info)}); "
            f"pass extra_info={{{key!r}: ...}} to Datasets."
        )
    return check_positive_int(info[key], owner, f"datasets.extra_info[{key!r}]")
