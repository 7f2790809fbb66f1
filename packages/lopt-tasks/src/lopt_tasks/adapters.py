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

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from lopt_core import Batch, Datasets, ModelState, Params, PRNGKey, Task
from lopt_tasks._common import ones_like_abstract, softmax_cross_entropy

LossFn = Callable[[Any, Batch], jax.Array]
Inputs = str | Callable[[Batch], Any]


def cross_entropy_loss(logits: jax.Array, batch: Batch) -> jax.Array:
    """Softmax cross-entropy of `logits` against `batch["label"]`: a ready-made `loss_fn`."""
    return softmax_cross_entropy(logits, batch["label"])


def _input_fn(inputs: Inputs) -> Callable[[Batch], Any]:
    if callable(inputs):
        return inputs

    def pick(batch: Batch) -> Any:
        if inputs not in batch:
            raise KeyError(
                f"The batch has no key {inputs!r} (keys: {sorted(batch)}); pass inputs= the key "
                "or a function of the batch that returns the model input."
            )
        return batch[inputs]

    return pick


class _AdapterTask(Task):
    def __init__(self, datasets: Datasets, loss_fn: LossFn, inputs: Inputs, name: str | None):
        if datasets.abstract_batch is None:
            raise ValueError(
                "Model adapters initialize from datasets.abstract_batch; the given Datasets has "
                "none. Pass abstract_batch= to Datasets or use splits that provide one."
            )
        self.datasets = datasets
        self.loss_fn = loss_fn
        self._inputs = _input_fn(inputs)
        self._example = self._inputs(ones_like_abstract(datasets.abstract_batch))
        self._name = name

    def _check_stateless(self, state: ModelState) -> None:
        if state is not None:
            raise ValueError(
                f"{self.name} has no model state but was given one; pass the state that "
                "init_with_state returns (None for this task)."
            )


class HaikuTask(_AdapterTask):
    """A Task from a haiku `hk.transform` or `hk.transform_with_state` of the model.

    The transformed function takes the model input. With state, the state (e.g.
    batch-norm statistics) is the task's model state.

    Args:
      transformed: `hk.transform(f)` or `hk.transform_with_state(f)`.
      loss_fn: `loss_fn(outputs, batch) -> scalar`.
      datasets: the task's Datasets.
      inputs: the batch key holding the model input, or a function of the batch.
      name: the task's name.
    """

    def __init__(
        self,
        transformed: Any,
        loss_fn: LossFn,
        datasets: Datasets,
        *,
        inputs: Inputs = "image",
        name: str | None = None,
    ) -> None:
        import haiku as hk

        super().__init__(datasets, loss_fn, inputs, name)
        self._with_state = isinstance(transformed, hk.TransformedWithState)
        if not self._with_state and not isinstance(transformed, hk.Transformed):
            raise TypeError(
                f"HaikuTask needs hk.transform(...) or hk.transform_with_state(...); got "
                f"{type(transformed).__name__}."
            )
        self._mod = transformed

    def init_with_state(self, key: PRNGKey) -> tuple[Params, ModelState]:
        if self._with_state:
            params, state = self._mod.init(key, self._example)
            return params, (state if state else None)
        return self._mod.init(key, self._example), None

    def loss_with_state(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[jax.Array, ModelState]:
        if self._with_state:
            out, new_state = self._mod.apply(params, state or {}, key, self._inputs(data))
            return self.loss_fn(out, data), (new_state if new_state else None)
        self._check_stateless(state)
        return self.loss_fn(self._mod.apply(params, key, self._inputs(data)), data), None


class LinenTask(_AdapterTask):
    """A Task from a `flax.linen` module.

    The "params" collection is trained; every other collection the module creates
    (e.g. "batch_stats") is model state, updated through `mutable` on each loss.

    Args:
      module: the linen module; called as `module.apply(variables, x, **apply_kwargs)`.
      loss_fn: `loss_fn(outputs, batch) -> scalar`.
      datasets: the task's Datasets.
      inputs: the batch key holding the model input, or a function of the batch.
      apply_kwargs: keyword arguments for every call (e.g. `{"train": True}`).
      rng_names: RNG streams the module uses (e.g. "dropout"), fed from the loss key.
      name: the task's name.
    """

    def __init__(
        self,
        module: Any,
        loss_fn: LossFn,
        datasets: Datasets,
        *,
        inputs: Inputs = "image",
        apply_kwargs: dict[str, Any] | None = None,
        rng_names: Sequence[str] = ("dropout",),
        name: str | None = None,
    ) -> None:
        import flax.linen as nn

        if not isinstance(module, nn.Module):
            raise TypeError(f"LinenTask needs a flax.linen.Module; got {type(module).__name__}.")
        super().__init__(datasets, loss_fn, inputs, name or type(module).__name__)
        self.module = module
        self._kwargs = dict(apply_kwargs or {})
        self._rng_names = tuple(rng_names)
        self._init_jit = jax.jit(self._init)

    def _rngs(self, key: PRNGKey) -> dict[str, PRNGKey]:
        keys = jax.random.split(key, len(self._rng_names) + 1)
        return dict(zip(("params", *self._rng_names), keys))

    def _init(self, key: PRNGKey) -> tuple[Params, ModelState]:
        variables = dict(self.module.init(self._rngs(key), self._example, **self._kwargs))
        params = variables.pop("params", {})
        return params, (variables if variables else None)

    def init_with_state(self, key: PRNGKey) -> tuple[Params, ModelState]:
        return self._init_jit(key)

    def loss_with_state(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[jax.Array, ModelState]:
        variables = {"params": params, **(state or {})}
        rngs = {k: v for k, v in self._rngs(key).items() if k != "params"}
        x = self._inputs(data)
        if state:
            out, new_state = self.module.apply(
                variables, x, rngs=rngs, mutable=list(state), **self._kwargs
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
      loss_fn: `loss_fn(outputs, batch) -> scalar`.
      datasets: the task's Datasets.
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
        from flax import nnx

        super().__init__(datasets, loss_fn, inputs, name)
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
        self._name = name or "NNXTask"

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
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[jax.Array, ModelState]:
        from flax import nnx

        p_state = nnx.State(self._params)
        nnx.replace_by_pure_dict(p_state, params)
        r_state = nnx.State(self._rest)
        if state is not None:
            nnx.replace_by_pure_dict(r_state, state)
        model = nnx.merge(self._graphdef, p_state, r_state)
        del key  # nnx models carry their own RNG streams as state
        out = model(self._inputs(data))
        _, _, new_rest = nnx.split(model, nnx.Param, ...)
        new_state = nnx.to_pure_dict(new_rest)
        return self.loss_fn(out, data), (new_state if state is not None else None)


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
