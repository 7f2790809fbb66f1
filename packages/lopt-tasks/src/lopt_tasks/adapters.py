"""Adapters that turn a user's model into a lopt `Task`: flax.linen, flax.nnx and haiku.

Each adapter takes the model, a loss function `loss_fn(outputs, batch) -> scalar`
and a `Datasets`. The model's input is `batch[inputs]` (a key) or `inputs(batch)`
(a callable). Parameters are initialized from `datasets.abstract_batch`, so no data
is read to build or initialize the task. Non-trainable collections (batch-norm
statistics, nnx RNG counters) become the task's model state.

Example:
  >>> import flax.linen as nn
  >>> class MLP(nn.Module):
  ...     @nn.compact
  ...     def __call__(self, x):
  ...         return nn.Dense(10)(x.reshape(x.shape[0], -1))
  >>> task = task_from_linen(MLP(), cross_entropy_loss, digits_datasets())
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from lopt_core import Batch, Datasets, ModelState, Params, PRNGKey, Task
from lopt_tasks._common import (
    RebuiltOnUnpickle,
    abstract_batch_of,
    ones_like_abstract,
    softmax_cross_entropy,
)
from lopt_tasks.compat import with_old_spellings

LossFn = Callable[[Any, Batch], jax.Array]
Inputs = str | Callable[[Batch], Any]


def cross_entropy_loss(logits: jax.Array, batch: Batch) -> jax.Array:
    """Softmax cross-entropy of `logits` against `batch["label"]`: a ready-made `loss_fn`."""
    return softmax_cross_entropy(logits, batch["label"])


@dataclasses.dataclass(frozen=True)
class _BatchKey:
    """The model input `batch[key]` (a class, not a closure, so that tasks pickle)."""

    key: str

    def __call__(self, batch: Batch) -> Any:
        if self.key not in batch:
            raise KeyError(
                f"The batch has no key {self.key!r} (keys: {sorted(batch)}); pass inputs= the "
                "key or a function of the batch that returns the model input."
            )
        return batch[self.key]


def _input_fn(inputs: Inputs, owner: str) -> Callable[[Batch], Any]:
    if callable(inputs):
        return inputs
    if not isinstance(inputs, str):
        raise TypeError(
            f"{owner}: inputs must be the batch key holding the model input (such as "
            f"'image') or a function of the batch, got {type(inputs).__name__}."
        )
    return _BatchKey(inputs)


class _AdapterTask(RebuiltOnUnpickle, Task):
    """What every adapter shares: the loss function, the model input and the model state.

    Pickling keeps the configuration and the datasets; jitted functions are built
    again in the copy (see `RebuiltOnUnpickle`). The model and `loss_fn` must pickle
    themselves (module-level functions do; Ray's cloudpickle also takes closures).

    Args:
      model: the model (see each adapter for what it accepts).
      loss_fn: `loss_fn(outputs, batch) -> scalar`.
      datasets: the task's Datasets; parameters initialize from `datasets.abstract_batch`.
      inputs: the batch key holding the model input, or a function of the batch.
      name: the task's name.
    """

    def __init__(
        self,
        model: Any,
        loss_fn: LossFn,
        datasets: Datasets,
        *,
        inputs: Inputs = "image",
        name: str | None = None,
    ) -> None:
        owner = type(self).__name__
        abstract = abstract_batch_of(datasets, owner)
        if not callable(loss_fn):
            raise TypeError(
                f"{owner}: loss_fn must be a function (outputs, batch) -> scalar loss, such as "
                f"lopt_tasks.cross_entropy_loss; got {type(loss_fn).__name__}."
            )
        self.datasets = datasets
        self.loss_fn = loss_fn
        self._inputs = _input_fn(inputs, owner)
        # Shapes only: building the task allocates and reads nothing.
        self._example = jax.eval_shape(self._inputs, abstract)
        self._name = name
        self._bind(model)

    @abc.abstractmethod
    def _bind(self, model: Any) -> None:
        """Checks `model` and keeps what the task needs of it."""

    def _check_stateless(self, model_state: ModelState) -> None:
        if model_state is not None:
            raise ValueError(
                f"{self.name} has no model state but was given one; pass the state that "
                "init_with_state returns (None for this task)."
            )


@with_old_spellings
class HaikuTask(_AdapterTask):
    """A Task from a haiku `hk.transform` or `hk.transform_with_state` of the model.

    The transformed function takes the model input. With state, the state (e.g.
    batch-norm statistics) is the task's model state.

    Args:
      model: `hk.transform(f)` or `hk.transform_with_state(f)`.
      loss_fn, datasets, inputs, name: as for every adapter (see the module docstring).
    """

    def _bind(self, model: Any) -> None:
        import haiku as hk

        self._with_state = isinstance(model, hk.TransformedWithState)
        if not self._with_state and not isinstance(model, hk.Transformed):
            raise TypeError(
                f"{type(self).__name__} needs hk.transform(...) or hk.transform_with_state(...); "
                f"got {type(model).__name__}."
            )
        self._mod = model

    def init_with_state(self, key: PRNGKey) -> tuple[Params, ModelState]:
        example = ones_like_abstract(self._example)
        if self._with_state:
            params, model_state = self._mod.init(key, example)
            return params, (model_state if model_state else None)
        return self._mod.init(key, example), None

    def loss_with_state(
        self, params: Params, model_state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[jax.Array, ModelState]:
        if self._with_state:
            out, new_state = self._mod.apply(params, model_state or {}, key, self._inputs(data))
            return self.loss_fn(out, data), (new_state if new_state else None)
        self._check_stateless(model_state)
        return self.loss_fn(self._mod.apply(params, key, self._inputs(data)), data), None


@with_old_spellings
class LinenTask(_AdapterTask):
    """A Task from a `flax.linen` module.

    The "params" collection is trained; every other collection the module creates
    (e.g. "batch_stats") is model state, updated through `mutable` on each loss.

    Args:
      model: the linen module; called as `model.apply(variables, x, **apply_kwargs)`.
      loss_fn, datasets: as for every adapter (see the module docstring).
      apply_kwargs: keyword arguments for every call (e.g. `{"train": True}`).
      rng_names: RNG streams the module uses (e.g. "dropout"), fed from the loss key.
      **options: `inputs` and `name`, as for every adapter; the name defaults to the
        module's class name.
    """

    _derived = ("_init_jit",)

    def __init__(
        self,
        model: Any,
        loss_fn: LossFn,
        datasets: Datasets,
        *,
        apply_kwargs: dict[str, Any] | None = None,
        rng_names: Sequence[str] = ("dropout",),
        **options: Any,
    ) -> None:
        if apply_kwargs is not None and not isinstance(apply_kwargs, dict):
            raise TypeError(
                f"LinenTask: apply_kwargs must be a dict of keyword arguments such as "
                f"{{'train': True}}, got {type(apply_kwargs).__name__}."
            )
        if isinstance(rng_names, str) or not all(isinstance(n, str) for n in rng_names):
            raise TypeError(
                f"LinenTask: rng_names must be a sequence of RNG stream names such as "
                f"('dropout',), got {rng_names!r}."
            )
        self._kwargs = dict(apply_kwargs or {})
        self._rng_names = tuple(rng_names)
        super().__init__(model, loss_fn, datasets, **options)

    def _bind(self, model: Any) -> None:
        import flax.linen as nn

        if not isinstance(model, nn.Module):
            raise TypeError(f"LinenTask needs a flax.linen.Module; got {type(model).__name__}.")
        self.module = model
        self._name = self._name or type(model).__name__
        self._build()

    def _build(self) -> None:
        self._init_jit = jax.jit(self._init)

    def _rngs(self, key: PRNGKey) -> dict[str, PRNGKey]:
        keys = jax.random.split(key, len(self._rng_names) + 1)
        return dict(zip(("params", *self._rng_names), keys))

    def _init(self, key: PRNGKey) -> tuple[Params, ModelState]:
        example = ones_like_abstract(self._example)
        variables = dict(self.module.init(self._rngs(key), example, **self._kwargs))
        params = variables.pop("params", {})
        return params, (variables if variables else None)

    def init_with_state(self, key: PRNGKey) -> tuple[Params, ModelState]:
        return self._init_jit(key)

    def loss_with_state(
        self, params: Params, model_state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[jax.Array, ModelState]:
        variables = {"params": params, **(model_state or {})}
        rngs = {k: v for k, v in self._rngs(key).items() if k != "params"}
        x = self._inputs(data)
        if model_state:
            out, new_state = self.module.apply(
                variables, x, rngs=rngs, mutable=list(model_state), **self._kwargs
            )
            return self.loss_fn(out, data), dict(new_state)
        out = self.module.apply(variables, x, rngs=rngs, **self._kwargs)
        return self.loss_fn(out, data), None


class NNXTask(_AdapterTask):
    """A Task from a `flax.nnx` model.

    Pass a factory `make(rngs: nnx.Rngs) -> Module` so that `init(key)` builds fresh
    weights from the key; a ready module is accepted too, and then `init` returns
    its current weights whatever the key. `nnx.Param` variables are trained;
    everything else (batch statistics, RNG counters) is model state.

    Args:
      model: an `nnx.Module` or a factory taking `nnx.Rngs`.
      loss_fn, datasets, inputs, name: as for every adapter (see the module docstring).
    """

    def _bind(self, model: Any) -> None:
        from flax import nnx

        if isinstance(model, nnx.Module):
            self._make = None
            self._graphdef, self._params, self._rest = nnx.split(model, nnx.Param, ...)
        elif callable(model):
            self._make = model
            self._graphdef, self._params, self._rest = nnx.split(
                nnx.eval_shape(lambda: model(nnx.Rngs(0))), nnx.Param, ...
            )
        else:
            raise TypeError(
                f"NNXTask needs an nnx.Module or a factory rngs -> Module; got {type(model).__name__}."
            )

    def init_with_state(self, key: PRNGKey) -> tuple[Params, ModelState]:
        from flax import nnx

        if self._make is None:
            params, rest = self._params, self._rest
        else:
            if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
                key = jax.random.wrap_key_data(key)
            _, params, rest = nnx.split(self._make(nnx.Rngs(key)), nnx.Param, ...)
        params = nnx.to_pure_dict(params)
        rest = nnx.to_pure_dict(rest)
        return params, (rest if jax.tree_util.tree_leaves(rest) else None)

    def loss_with_state(
        self, params: Params, model_state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[jax.Array, ModelState]:
        from flax import nnx

        p_state = nnx.State(self._params)
        nnx.replace_by_pure_dict(p_state, params)
        r_state = nnx.State(self._rest)
        if model_state is not None:
            nnx.replace_by_pure_dict(r_state, model_state)
        model = nnx.merge(self._graphdef, p_state, r_state)
        del key  # nnx models carry their own RNG streams as state
        out = model(self._inputs(data))
        _, _, new_rest = nnx.split(model, nnx.Param, ...)
        new_state = nnx.to_pure_dict(new_rest)
        return self.loss_fn(out, data), (new_state if model_state is not None else None)


def task_from_haiku(
    transformed: Any, loss_fn: LossFn, datasets: Datasets, **kwargs: Any
) -> HaikuTask:
    """A Task from `hk.transform(f)` / `hk.transform_with_state(f)`; see `HaikuTask`."""
    return HaikuTask(transformed, loss_fn, datasets, **kwargs)


def task_from_linen(module: Any, loss_fn: LossFn, datasets: Datasets, **kwargs: Any) -> LinenTask:
    """A Task from a flax.linen module; see `LinenTask`."""
    return LinenTask(module, loss_fn, datasets, **kwargs)


def task_from_nnx(model: Any, loss_fn: LossFn, datasets: Datasets, **kwargs: Any) -> NNXTask:
    """A Task from a flax.nnx module or module factory; see `NNXTask`."""
    return NNXTask(model, loss_fn, datasets, **kwargs)
