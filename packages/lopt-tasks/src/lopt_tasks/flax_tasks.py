"""Tasks whose models are written in Flax, built through the model adapters.

They show the path a user's own Flax model takes into lopt (`LinenTask`), and they
put a model that is not Haiku into the evaluation suites: lopt's own image MLPs are
Haiku modules, so a difference between the adapters' parameter trees, model state or
RNG handling would show here first.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from lopt_tasks._plugin import CATALOG
from lopt_tasks.adapters import LinenTask, cross_entropy_loss
from lopt_tasks.digits import digits_datasets


class LinenMLP(nn.Module):
    """An MLP classifier: flatten, then Dense, LayerNorm and GELU per hidden layer.

    Attributes:
      hidden_sizes: widths of the hidden layers.
      num_classes: width of the output layer.
    """

    hidden_sizes: Sequence[int]
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden_sizes:
            x = nn.gelu(nn.LayerNorm()(nn.Dense(width)(x)))
        return nn.Dense(self.num_classes)(x)


@CATALOG.task()
def FlaxLinenMLP_Digits8_32x32() -> LinenTask:
    """A flax.linen MLP (2 x 32 units, LayerNorm, GELU) on the embedded 8x8 digits."""
    return LinenTask(
        LinenMLP((32, 32), 10),
        cross_entropy_loss,
        digits_datasets(batch_size=128),
        inputs="image",
        name="FlaxLinenMLP_Digits8_32x32",
    )
