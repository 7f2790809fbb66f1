"""Small tabular tasks on datasets bundled with scikit-learn: real data, no network.

Three datasets ship inside scikit-learn's wheel and are read with its loaders:

| name | loader | examples | features | target |
| --- | --- | --- | --- | --- |
| "breast_cancer" | `load_breast_cancer` | 569 | 30 | 2 classes |
| "wine" | `load_wine` | 178 | 13 | 3 classes |
| "diabetes" | `load_diabetes` | 442 | 10 | a real number |

Splits (fixed and deterministic, the same on every machine):

* A permutation of the examples is drawn with `numpy.random.default_rng(0)`
  (PCG64, whose stream numpy guarantees to be stable).
* Of the permuted examples, `train` is the first 60%, then the 20% validation
  part is halved into `inner_valid` and `outer_valid`, and `test` is the last 20%
  (`round(0.2 * n)` examples each for validation and test).

Features are standardised with the mean and standard deviation of the train split
only (a feature constant on train gets standard deviation 1, so it is only
centred); the regression target is standardised the same way, so predicting the
train mean scores a squared error of about 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from lopt_core import Datasets
from lopt_core.typing import Batch
from lopt_core.validation import check_choice, check_positive_int
from lopt_tasks._common import (
    activation,
    capped_normalizer,
    check_sizes,
    clipped_log_classes_normalizer,
    extra_info_of,
    softmax_cross_entropy,
)
from lopt_tasks._lazy import lazy_datasets
from lopt_tasks._network import NetworkTask
from lopt_tasks._plugin import CATALOG

# name -> (scikit-learn loader, number of classes; 0 for regression)
TABULAR_DATASETS: dict[str, tuple[str, int]] = {
    "breast_cancer": ("load_breast_cancer", 2),
    "wine": ("load_wine", 3),
    "diabetes": ("load_diabetes", 0),
}
_NUM_FEATURES = {"breast_cancer": 30, "wine": 13, "diabetes": 10}
_PERMUTATION_SEED = 0
_VALID_FRACTION = 0.2
_TEST_FRACTION = 0.2
# The regression normalizer clips at 1.5x the loss of predicting the train mean (about 1).
_REGRESSION_CAP = 1.5


def _check_name(name: Any, owner: str) -> str:
    return check_choice(name, owner, "name", tuple(TABULAR_DATASETS))


@functools.cache
def _raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, TABULAR_DATASETS[name][0])()
    return np.asarray(bunch.data, np.float64), np.asarray(bunch.target)


def tabular_split_indices(name: str) -> dict[str, np.ndarray]:
    """Indices into scikit-learn's arrays of dataset `name` for each of the four splits.

    Args:
      name: one of "breast_cancer", "wine", "diabetes".

    Example:
      >>> {k: len(v) for k, v in tabular_split_indices("wine").items()}
      {'train': 106, 'inner_valid': 18, 'outer_valid': 18, 'test': 36}
    """
    name = _check_name(name, "tabular_split_indices")
    n = len(_raw(name)[1])
    perm = np.random.default_rng(_PERMUTATION_SEED).permutation(n)
    num_test = round(n * _TEST_FRACTION)
    num_valid = round(n * _VALID_FRACTION)
    a = n - num_test - num_valid
    b = a + num_valid // 2
    return {
        "train": perm[:a],
        "inner_valid": perm[a:b],
        "outer_valid": perm[b : n - num_test],
        "test": perm[n - num_test :],
    }


def _mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    return mean, np.where(std > 0.0, std, 1.0)


@functools.cache
def tabular_standardization(name: str) -> dict[str, np.ndarray]:
    """The train split's statistics that standardise dataset `name` (float64).

    Returns:
      `{"x_mean": (F,), "x_std": (F,)}`, plus `"y_mean"` and `"y_std"` (scalars) for
      the regression dataset. A standard deviation of 0 is replaced by 1.
    """
    name = _check_name(name, "tabular_standardization")
    features, target = _raw(name)
    train = tabular_split_indices(name)["train"]
    x_mean, x_std = _mean_std(features[train])
    stats = {"x_mean": x_mean, "x_std": x_std}
    if TABULAR_DATASETS[name][1] == 0:
        y_mean, y_std = _mean_std(target[train].astype(np.float64))
        stats |= {"y_mean": y_mean, "y_std": y_std}
    return stats


@functools.cache
def _load_split(split: str, name: str) -> dict[str, np.ndarray]:
    features, target = _raw(name)
    idx = tabular_split_indices(name)[split]
    stats = tabular_standardization(name)
    x = ((features[idx] - stats["x_mean"]) / stats["x_std"]).astype(np.float32)
    if TABULAR_DATASETS[name][1] == 0:
        y = ((target[idx] - stats["y_mean"]) / stats["y_std"]).astype(np.float32)
    else:
        y = target[idx].astype(np.int32)
    return {"x": x, "y": y}


def tabular_datasets(name: str, batch_size: int = 32, *, seed: int = 0) -> Datasets:
    """A scikit-learn tabular dataset as `Datasets` of four in-memory, key-sampled splits.

    Nothing is read until the first batch is drawn.

    Args:
      name: "breast_cancer", "wine" or "diabetes".
      batch_size: examples per batch (drawn with replacement).
      seed: seed of the `next()` key sequences.

    Returns:
      Datasets with batches `{"x": float32 (B, F), "y": int32 (B,)}` for the
      classification datasets (`extra_info["num_classes"]`) and
      `{"x": float32 (B, F), "y": float32 (B,)}` for "diabetes"; `extra_info` also
      holds `"name"` and `"num_features"`.

    Example:
      >>> ds = tabular_datasets("wine", batch_size=4)
      >>> next(ds.train)["x"].shape
      (4, 13)
    """
    owner = "tabular_datasets"
    name = _check_name(name, owner)
    batch_size = check_positive_int(batch_size, owner, "batch_size")
    num_classes = TABULAR_DATASETS[name][1]
    num_features = _NUM_FEATURES[name]
    abstract = {
        "x": jax.ShapeDtypeStruct((batch_size, num_features), jnp.float32),
        "y": jax.ShapeDtypeStruct((batch_size,), jnp.int32 if num_classes else jnp.float32),
    }
    info: dict[str, Any] = {"name": name, "num_features": num_features}
    if num_classes:
        info["num_classes"] = num_classes
    return lazy_datasets(
        # A partial of a module-level function, so the datasets pickle (for Ray workers).
        functools.partial(_load_split, name=name),
        batch_size,
        abstract,
        info,
        seed=seed,
    )


def _label_cross_entropy(logits: jax.Array, batch: Batch) -> jax.Array:
    return softmax_cross_entropy(logits, batch["y"])


def _squared_error(outputs: jax.Array, batch: Batch) -> jax.Array:
    return jnp.mean(jnp.square(outputs[:, 0] - batch["y"].astype(jnp.float32)))


class _TabularMLP(NetworkTask):
    """haiku's `hk.nets.MLP` (module "mlp") on `batch["x"]`, as in `ImageMLPTask`."""

    def __init__(
        self,
        datasets: Datasets,
        hidden_sizes: Sequence[int],
        act_fn: Callable[[jax.Array], jax.Array] | str,
        name: str | None,
        num_outputs: int,
        loss_fn: Callable[[jax.Array, Batch], jax.Array],
    ) -> None:
        owner = type(self).__name__
        self.hidden_sizes = check_sizes(hidden_sizes, owner, "hidden_sizes")
        self.act_fn = activation(act_fn, owner)
        self.num_outputs = num_outputs
        super().__init__(datasets, loss_fn, inputs="x", name=name)

    def _network(self, x: jax.Array) -> jax.Array:
        return hk.nets.MLP([*self.hidden_sizes, self.num_outputs], activation=self.act_fn)(x)


class TabularMLPClassifier(_TabularMLP):
    """An MLP on feature vectors `batch["x"]`, softmax cross-entropy against `batch["y"]`.

    Parameters are named `mlp/~/linear_0`, ... as in `ImageMLPTask`; the normalizer
    clips the loss at 1.5 log K (NaN and inf map there).

    Args:
      datasets: Datasets of `{"x": (B, F), "y": int (B,)}` batches with
        `extra_info["num_classes"]` and `abstract_batch` (`tabular_datasets`).
      hidden_sizes: widths of the hidden layers.
      act_fn: activation (a callable or a name such as "relu", "tanh").
      name: the task's name.
    """

    def __init__(
        self,
        datasets: Datasets,
        hidden_sizes: Sequence[int] = (32,),
        act_fn: Callable[[jax.Array], jax.Array] | str = jax.nn.relu,
        name: str | None = None,
    ) -> None:
        self.num_classes = extra_info_of(datasets, "num_classes", type(self).__name__)
        super().__init__(
            datasets, hidden_sizes, act_fn, name, self.num_classes, _label_cross_entropy
        )

    def normalizer(self, loss: Any) -> jax.Array:
        return clipped_log_classes_normalizer(loss, self.num_classes)


class TabularMLPRegressor(_TabularMLP):
    """An MLP with one output on `batch["x"]`, mean squared error against `batch["y"]`.

    The normalizer clips the loss to [0, 1.5] (NaN and inf map to 1.5): 1.5 times the
    error of predicting the mean of a standardised target.

    Args:
      datasets: Datasets of `{"x": (B, F), "y": float (B,)}` batches with
        `abstract_batch` (`tabular_datasets("diabetes")`).
      hidden_sizes, act_fn, name: as for `TabularMLPClassifier`.
    """

    def __init__(
        self,
        datasets: Datasets,
        hidden_sizes: Sequence[int] = (32,),
        act_fn: Callable[[jax.Array], jax.Array] | str = jax.nn.relu,
        name: str | None = None,
    ) -> None:
        super().__init__(datasets, hidden_sizes, act_fn, name, 1, _squared_error)

    def normalizer(self, loss: Any) -> jax.Array:
        return capped_normalizer(loss, _REGRESSION_CAP)


# -- named tasks ------------------------------------------------------------------------


@CATALOG.task()
def MLP_BreastCancer_32() -> TabularMLPClassifier:
    """A 1 hidden layer, 32 unit ReLU MLP on scikit-learn's breast-cancer data (2 classes)."""
    return TabularMLPClassifier(
        tabular_datasets("breast_cancer", batch_size=32), [32], name="MLP_BreastCancer_32"
    )


@CATALOG.task()
def MLP_Wine_32() -> TabularMLPClassifier:
    """A 1 hidden layer, 32 unit ReLU MLP on scikit-learn's wine data (3 classes)."""
    return TabularMLPClassifier(tabular_datasets("wine", batch_size=32), [32], name="MLP_Wine_32")


@CATALOG.task()
def MLP_Diabetes_32() -> TabularMLPRegressor:
    """A 1 hidden layer, 32 unit ReLU MLP regressing scikit-learn's diabetes data (MSE)."""
    return TabularMLPRegressor(
        tabular_datasets("diabetes", batch_size=32), [32], name="MLP_Diabetes_32"
    )
