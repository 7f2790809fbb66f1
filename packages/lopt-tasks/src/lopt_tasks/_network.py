"""Tasks whose haiku network is a method of the task: the image, generative and LM tasks."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import haiku as hk
import jax

from lopt_core import Datasets
from lopt_core.typing import Batch, Params, PRNGKey
from lopt_tasks._common import clipped_log_classes_normalizer, extra_info_of, jit_transformed
from lopt_tasks.adapters import HaikuTask, Inputs, LossFn, cross_entropy_loss


class NetworkTask(HaikuTask):
    """A `HaikuTask` whose network is the task's own `_network(inputs)`, jitted once.

    Subclasses keep their configuration as attributes, call `super().__init__`, and
    write `_network`. With `stateful=True` (batch norm) the haiku state is model
    state: use `init_with_state` and `loss_with_state`, which returns the updated
    statistics; `loss()` then says so.

    Args:
      datasets: the task's Datasets (with `abstract_batch`).
      loss_fn: `loss_fn(outputs, batch) -> scalar`.
      inputs: the batch key holding the network input.
      name: the task's name.
      stateful: whether the network keeps state (batch-norm statistics).
    """

    _derived = ("_mod",)

    def __init__(
        self,
        datasets: Datasets,
        loss_fn: LossFn,
        *,
        inputs: Inputs,
        name: str | None,
        stateful: bool = False,
    ) -> None:
        self._stateful = stateful
        super().__init__(self._transformed(), loss_fn, datasets, inputs=inputs, name=name)

    def _transformed(self) -> Any:
        transform = hk.transform_with_state if self._stateful else hk.transform
        return jit_transformed(transform(self._network))

    def _build(self) -> None:
        # A pickled copy makes its own jitted network from its configuration.
        self._mod = self._transformed()

    @abc.abstractmethod
    def _network(self, inputs: jax.Array) -> Any:
        """The network's outputs for `inputs`, inside hk.transform."""

    def loss(self, params: Params, key: PRNGKey, data: Batch) -> jax.Array:
        if self._stateful:
            raise ValueError(
                f"{self.name} keeps batch-norm statistics as model state; call "
                "loss_with_state(params, model_state, key, data) instead of loss()."
            )
        return super().loss(params, key, data)


class ImageClassifier(NetworkTask):
    """A network of `batch["image"]` (B, H, W, C) giving logits, with softmax cross-entropy.

    The normalizer clips the loss at 1.5 log K (NaN and inf map there).

    Args:
      datasets: image Datasets with `extra_info["num_classes"]` and `abstract_batch`.
      name: the task's name.
      stateful: whether the network keeps state (batch-norm statistics).
    """

    # `loss_fn(logits, batch)`; a subclass with another classification loss sets this.
    classification_loss: ClassVar[LossFn] = staticmethod(cross_entropy_loss)

    def __init__(self, datasets: Datasets, name: str | None, *, stateful: bool = False) -> None:
        self.num_classes = extra_info_of(datasets, "num_classes", type(self).__name__)
        super().__init__(
            datasets, self.classification_loss, inputs="image", name=name, stateful=stateful
        )

    def normalizer(self, loss: Any) -> jax.Array:
        return clipped_log_classes_normalizer(loss, self.num_classes)
