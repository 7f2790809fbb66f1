"""Quadratic tasks and task families: tiny problems for tests and quick experiments."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lopt_core import SPLITS, ArraySplit, Datasets, Task, TaskFamily
from lopt_core.typing import Batch, Params, PRNGKey, TaskCfg
from lopt_core.validation import check_nonnegative, check_positive_int
from lopt_tasks._plugin import CATALOG


def _rows(batch: Batch) -> jax.Array:
    return batch["x"]


def _first_row(batch: Batch) -> jax.Array:
    return batch["x"][0]


def _noise_datasets(shape: tuple[int, ...], num_examples: int = 1024, seed: int = 0) -> Datasets:
    """Standard-normal noise as keyed in-memory splits; each split has its own draws."""
    rng = np.random.default_rng(seed)
    splits = {}
    for i, name in enumerate(SPLITS):
        data = rng.normal(size=(num_examples, *shape[1:])).astype(np.float32)
        # A batch of shape `shape`: ArraySplit stacks `shape[0]` rows; scalars squeeze.
        splits[name] = ArraySplit(
            {"x": data},
            batch_size=max(shape[0], 1),
            seed=seed * 4 + i,
            # Module-level transforms, so the splits pickle (for Ray workers).
            transform=_first_row if shape[0] == 0 else _rows,
        )
    return Datasets(**splits)


class _VectorTask(Task):
    """A task over one float32 vector of `dim` standard-normal parameters."""

    dim: int

    def init(self, key: PRNGKey) -> Params:
        return jax.random.normal(key, (self.dim,))


@CATALOG.task()
class QuadraticTask(_VectorTask):
    """The loss `sum(params**2)` over a vector of `dim` standard-normal parameters.

    Args:
      dim: number of parameters.
    """

    def __init__(self, dim: int = 10) -> None:
        self.dim = check_positive_int(dim, type(self).__name__, "dim")

    def loss(self, params: Params, key: PRNGKey, data: Batch) -> jax.Array:
        del key, data
        return jnp.sum(jnp.square(params))

    def normalizer(self, loss: Any) -> jax.Array:
        """`lopt_tasks.mixture.log_relative_normalizer` against the expected initial loss `dim`.

        7 at the initial loss, -2 per 10x reduction, clipped to [-3, 10] (NaN: 10).
        """
        from lopt_tasks.mixture import log_relative_normalizer

        return log_relative_normalizer(loss, float(self.dim))


@CATALOG.task()
class BatchQuadraticTask(QuadraticTask):
    """`sum(params**2)` with a dataset of (4, 2) noise batches that the loss ignores.

    Useful for exercising data plumbing on a problem whose optimum is known.
    """

    def __init__(self, dim: int = 10) -> None:
        super().__init__(dim)
        self.datasets = _noise_datasets((4, 2))


@CATALOG.task()
class NoisyMeanQuadraticTask(_VectorTask):
    """`sum((params - mean(batch))**2)`: the target is the mean of a noisy batch.

    Every batch holds `batch_size` samples of `dim`-dimensional N(target, noise_std**2)
    noise around a fixed target, so the gradient is noisy but unbiased.

    Args:
      dim: number of parameters.
      batch_size: samples per batch.
      noise_std: standard deviation of the samples around the target.
      seed: seed of the target and of the data.
    """

    def __init__(
        self, dim: int = 10, batch_size: int = 8, noise_std: float = 1.0, seed: int = 0
    ) -> None:
        owner = type(self).__name__
        self.dim = check_positive_int(dim, owner, "dim")
        batch_size = check_positive_int(batch_size, owner, "batch_size")
        noise_std = check_nonnegative(noise_std, owner, "noise_std")
        seed = check_positive_int(seed, owner, "seed", minimum=0)
        rng = np.random.default_rng(seed)
        self.target = rng.normal(size=(dim,)).astype(np.float32)
        splits = {}
        for i, name in enumerate(SPLITS):
            samples = self.target + noise_std * rng.normal(size=(2048, dim)).astype(np.float32)
            splits[name] = ArraySplit({"x": samples}, batch_size, seed=seed * 4 + i)
        self.datasets = Datasets(**splits)

    def loss(self, params: Params, key: PRNGKey, data: Batch) -> jax.Array:
        del key
        return jnp.sum(jnp.square(params - jnp.mean(data["x"], axis=0)))

    def normalizer(self, loss: Any) -> jax.Array:
        """`log_relative_normalizer` against the expected initial loss `|target|^2 + dim`.

        7 at the initial loss, -2 per 10x reduction, clipped to [-3, 10] (NaN: 10).
        """
        from lopt_tasks.mixture import log_relative_normalizer

        return log_relative_normalizer(loss, float(np.sum(np.square(self.target))) + self.dim)


class _TargetQuadratic(_VectorTask):
    def __init__(self, target: jax.Array, dim: int) -> None:
        self.target = target
        self.dim = dim

    def loss(self, params: Params, key: PRNGKey, data: Batch) -> jax.Array:
        del key, data
        return jnp.sum(jnp.square(self.target - params))

    def normalizer(self, loss: Any) -> jax.Array:
        """`log_relative_normalizer` against the expected initial loss `|target|^2 + dim`.

        The params start standard normal, so that is `E sum((target - p)**2)`: 7
        there, -2 per 10x reduction, clipped to [-3, 10] (NaN: 10).
        """
        from lopt_tasks.mixture import log_relative_normalizer

        return log_relative_normalizer(loss, jnp.sum(jnp.square(self.target)) + self.dim)


@CATALOG.task_family()
class FixedDimQuadraticFamily(TaskFamily):
    """Quadratics `sum((target - params)**2)` with a sampled standard-normal target.

    The cfg is the target, a float32 vector of shape (dim,).

    Args:
      dim: number of parameters.
    """

    def __init__(self, dim: int = 10) -> None:
        self.dim = check_positive_int(dim, type(self).__name__, "dim")

    def sample(self, key: PRNGKey) -> TaskCfg:
        return jax.random.normal(key, (self.dim,))

    def task_fn(self, cfg: TaskCfg) -> Task:
        return _TargetQuadratic(cfg, self.dim)


class _TargetQuadraticData(_TargetQuadratic):
    def __init__(self, target: jax.Array, dim: int, datasets: Datasets) -> None:
        super().__init__(target, dim)
        self.datasets = datasets

    def loss(self, params: Params, key: PRNGKey, data: Batch) -> jax.Array:
        del key
        return jnp.sum(jnp.square(self.target - params)) + data

    def loss_and_aux(self, params: Params, key: PRNGKey, data: Batch) -> tuple[Any, dict]:
        return self.loss(params, key, data), {
            "l2": jnp.mean(params**2),
            "l1": jnp.mean(jnp.abs(params)),
        }

    def normalizer(self, loss: Any) -> jax.Array:
        return jnp.clip(loss, 0.0, 1000.0)


@CATALOG.task_family()
class FixedDimQuadraticFamilyData(FixedDimQuadraticFamily):
    """`FixedDimQuadraticFamily` whose loss adds a scalar standard-normal noise batch.

    Each batch is one float32 scalar; the loss is `sum((target - params)**2) + batch`,
    and the normalizer clips to [0, 1000].

    Args:
      dim: number of parameters.
    """

    def __init__(self, dim: int = 10) -> None:
        super().__init__(dim)
        self.datasets = _noise_datasets((0,))

    def task_fn(self, cfg: TaskCfg) -> Task:
        return _TargetQuadraticData(cfg, self.dim, self.datasets)


class _NoisyQuadratic(_VectorTask):
    def __init__(self, center: jax.Array, scale: jax.Array, dim: int, cov: float) -> None:
        self.center, self.scale = center, scale
        self.dim, self.cov = dim, cov

    def loss(self, params: Params, key: PRNGKey, data: Batch) -> jax.Array:
        del data
        noise = self.cov * jax.random.normal(key, (self.dim,)) * params
        # Zero in value, `noise / params` in gradient: only the gradient is noisy.
        grad_noise = noise - jax.lax.stop_gradient(noise)
        return jnp.sum(jnp.square(self.scale * (self.center - params)) + grad_noise)

    def normalizer(self, loss: Any) -> jax.Array:
        """`log_relative_normalizer` against `sum(scale**2 * (center**2 + 1))`.

        That is the expected loss at the standard-normal init: 7 there, -2 per 10x
        reduction, clipped to [-3, 10] (NaN: 10). Raw losses of this family reach
        thousands (scale up to 25), which swamped mixtures with image families.
        """
        from lopt_tasks.mixture import log_relative_normalizer

        initial = jnp.sum(jnp.square(self.scale) * (jnp.square(self.center) + 1.0))
        return log_relative_normalizer(loss, initial)


@CATALOG.task_family()
class NoisyQuadraticFamily(TaskFamily):
    """Quadratics with a sampled center and per-dimension scale, and noisy gradients.

    A sample is `(center, scale)`: center standard normal, scale uniform in [0, 25).
    The loss `sum((scale * (center - p))**2)` is exact in value; its gradient gets
    added noise `cov * eps` (eps standard normal, from the loss key).

    Args:
      dim: number of parameters.
      cov: standard deviation of the gradient noise.
    """

    scale_constant = 25.0

    def __init__(self, dim: int = 10, cov: float = 0.1) -> None:
        owner = type(self).__name__
        self.dim = check_positive_int(dim, owner, "dim")
        self.cov = float(check_nonnegative(cov, owner, "cov"))

    def sample(self, key: PRNGKey) -> TaskCfg:
        k1, k2 = jax.random.split(key)
        center = jax.random.normal(k1, (self.dim,))
        scale = jax.random.uniform(k2, (self.dim,)) * self.scale_constant
        return (center, scale)

    def task_fn(self, cfg: TaskCfg) -> Task:
        center, scale = cfg
        return _NoisyQuadratic(center, scale, self.dim, self.cov)
