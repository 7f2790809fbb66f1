"""Small task families shared by the lopt-outer tests, plus the real optimizers they use.

The families are defined here, on the lopt_core interfaces alone, so that the
estimator maths is tested against exactly known problems and both data paths
(keyed ArraySplit and plain Python iterators) are exercised.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core
import lopt_learned
import lopt_optimizers
from lopt_core.cli import main
from lopt_core.testing import count_compiles
from lopt_outer import cli


class QuadraticFamily(lopt_core.TaskFamily):
    """f(x) = 0.5 * sum(scale * x^2), scale sampled log-uniformly per task; no data."""

    def __init__(self, dim: int = 4) -> None:
        self.dim = dim

    def sample(self, key):
        return jnp.exp(jax.random.uniform(key, (self.dim,), minval=-1.0, maxval=1.0))

    def task_fn(self, cfg):
        return QuadraticTask(cfg)


class QuadraticTask(lopt_core.Task):
    def __init__(self, scale) -> None:
        self.scale = scale

    def init(self, key):
        return {"x": jax.random.normal(key, self.scale.shape)}

    def loss(self, params, key, data):
        return 0.5 * jnp.sum(self.scale * params["x"] ** 2)


class DataQuadraticFamily(lopt_core.TaskFamily):
    """Least squares on in-memory data, batches drawn from keys (a keyed dataset)."""

    def __init__(self, keyed: bool = True) -> None:
        rng = np.random.RandomState(0)
        x = rng.randn(256, 3).astype(np.float32)
        y = (x @ np.array([1.0, -2.0, 0.5], np.float32)).astype(np.float32)

        def split(seed):
            if keyed:
                return lopt_core.ArraySplit({"x": x, "y": y}, batch_size=16, seed=seed)
            return _PlainIterator(x, y, seed)

        self.datasets = lopt_core.Datasets(split(0), split(1), split(2), split(3))

    def sample(self, key):
        return jax.random.uniform(key, (), minval=0.5, maxval=1.5)

    def task_fn(self, cfg):
        return LeastSquaresTask(cfg, self.datasets)


class _PlainIterator:
    """A plain Python iterator (no sample(key)): exercises the host-batch path."""

    def __init__(self, x, y, seed):
        self.x, self.y = x, y
        self.rng = np.random.RandomState(seed)

    def __iter__(self):
        return self

    def __next__(self):
        idx = self.rng.randint(0, len(self.x), 16)
        return {"x": self.x[idx], "y": self.y[idx]}


class LeastSquaresTask(lopt_core.Task):
    def __init__(self, scale, datasets) -> None:
        self.scale = scale
        self.datasets = datasets

    def init(self, key):
        return {"w": 0.1 * jax.random.normal(key, (3,))}

    def loss(self, params, key, data):
        pred = data["x"] @ params["w"]
        return self.scale * jnp.mean((pred - data["y"]) ** 2)

    def normalizer(self, loss):
        return jnp.clip(loss, 0.0, 100.0)


# The real components, registered by lopt-learned and lopt-optimizers.
LearnableSGD = lopt_learned.LearnableSGD


def MetaAdam(learning_rate: float = 1e-2) -> lopt_core.Optimizer:
    """The meta-optimizer of these tests: lopt_optimizers.Adam."""
    return lopt_optimizers.Adam(learning_rate)


def LrSGD(log_lr: float) -> lopt_core.Optimizer:
    """SGD at learning rate exp(log_lr): lopt_optimizers.SGD."""
    return lopt_optimizers.SGD(float(np.exp(log_lr)))


class FixedQuadraticFamily(lopt_core.TaskFamily):
    """Every sample is f(x) = 0.5 * sum(scale * x^2) from x0 = 1: the unroll is known exactly."""

    scale = (0.5, 1.0, 1.5, 2.0)

    def sample(self, key):
        return jnp.zeros([], jnp.int32)

    def task_fn(self, cfg):
        return FixedQuadraticTask()


class FixedQuadraticTask(lopt_core.Task):
    def init(self, key):
        return {"x": jnp.ones(4)}

    def loss(self, params, key, data):
        return 0.5 * jnp.sum(jnp.asarray(FixedQuadraticFamily.scale) * params["x"] ** 2)


def sgd_quadratic_losses(log_lr: float, steps: np.ndarray) -> np.ndarray:
    """Exact losses of SGD on FixedQuadraticTask after `steps` updates, in float64."""
    s = np.asarray(FixedQuadraticFamily.scale, np.float64)[:, None]
    lr = np.exp(log_lr)
    return 0.5 * np.sum(s * (1 - lr * s) ** (2 * steps[None, :]), axis=0)


def sgd_quadratic_grad(log_lr: float, steps: np.ndarray) -> float:
    """d/d(log_lr) of the mean over `steps` of `sgd_quadratic_losses` (analytic, float64)."""
    s = np.asarray(FixedQuadraticFamily.scale, np.float64)[:, None]
    lr = np.exp(log_lr)
    t = steps[None, :].astype(np.float64)
    d_dlr = 0.5 * np.sum(s * 2 * t * (1 - lr * s) ** (2 * t - 1) * (-s), axis=0)
    return float(np.mean(d_dlr) * lr)


def err_lines(text: str) -> list[str]:
    """The stderr lines of a `lopt` run, without the environment's `lopt: warning:` lines."""
    # Plugin problems of the environment are reported as `lopt: warning:` lines first.
    return [x for x in text.splitlines() if x.strip() and not x.startswith("lopt: warning")]


def refused_cli(argv, capsys, monkeypatch, *expected):
    """Runs `lopt argv`; asserts exit 2, one stderr line holding `expected`, nothing compiled."""

    def built(*a, **k):
        raise AssertionError("the learner was built")

    monkeypatch.setattr(cli, "build_learner", built)
    monkeypatch.setattr(lopt_core, "get_task_family", built)
    capsys.readouterr()
    with count_compiles() as compiles, pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = err_lines(capsys.readouterr().err)
    assert len(err) == 1, err
    for text in expected:
        assert text in err[0], (text, err[0])
    assert compiles["n"] == 0
    return err[0]
