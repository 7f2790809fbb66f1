"""Task augmentations: wrappers that change a Task (or every task of a TaskFamily).

Meta-training on augmented tasks makes a learned optimizer robust to what the
augmentation varies: the scale of the parameters, the batch size, the dtype, the
loss scale, label noise, and the gradient the optimizer sees (normalised,
subsampled, delayed). `RelativeLossNormalizer` changes no loss, only the
normalizer, putting any task's meta-loss on one scale relative to its initial loss. Each augmentation is a declared Task wrapper and a declared
TaskFamily wrapper. The family wrapper samples the augmentation's parameters per
task into its cfg, `{"base": base_cfg, "aug": {name: array}}`, a pytree of arrays,
so `jax.vmap(family.sample)` works and `family.task_fn(cfg)` accepts a traced cfg.

Every wrapper forwards `datasets` and `normalizer` to the wrapped task (ScaleLoss
divides its factor back out first; RelativeLossNormalizer replaces it), and returns
the wrapped task's aux from `loss_with_state_and_aux` and `loss_and_aux`, computed
on what the wrapped task sees (each wrapper's docstring says which params and batch).

Example:
  >>> import jax, lopt_tasks
  >>> task = ReparamWeights(lopt_tasks.QuadraticTask(4), scale=10.0)
  >>> theta = task.init(jax.random.PRNGKey(0))  # the base init divided by 10
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

import lopt_core
from lopt_core import Task, TaskFamily
from lopt_core.typing import Batch, ModelState, Params, PRNGKey, TaskCfg
from lopt_core.validation import (
    check_choice,
    check_number,
    check_positive,
    check_positive_int,
    is_traced,
)
from lopt_tasks._common import AuxFirstTask
from lopt_tasks._plugin import CATALOG
from lopt_tasks.mixture import log_relative_normalizer

# -- shared pieces --------------------------------------------------------------------------


def _log_uniform(key: PRNGKey, shape: tuple[int, ...], low: float, high: float) -> jax.Array:
    """exp(uniform(log low, log high)): float32 of `shape`."""
    u = jax.random.uniform(key, shape, minval=math.log(low), maxval=math.log(high))
    return jnp.exp(u)


def _is_concrete(value: Any) -> bool:
    return not any(is_traced(x) for x in jax.tree_util.tree_leaves(value))


def _check_task(task: Any, owner: str) -> None:
    if not isinstance(task, Task):
        raise TypeError(
            f"{owner}: task must be a lopt Task instance, got {type(task).__name__}. "
            "Pass a built task, e.g. lopt_tasks.QuadraticTask()."
        )


def _check_family(family: Any, owner: str) -> None:
    if not isinstance(family, TaskFamily):
        raise TypeError(
            f"{owner}: family must be a lopt TaskFamily instance, got {type(family).__name__}. "
            "Pass a built family, e.g. lopt_tasks.ImageMLPFamily_Digits8()."
        )


def _check_range(owner: str, low_name: str, low: Any, high_name: str, high: Any) -> None:
    check_positive(low, owner, low_name)
    check_positive(high, owner, high_name)
    if float(low) > float(high):
        raise ValueError(
            f"{owner}: {low_name} must be <= {high_name}, got {low_name}={low!r} and "
            f"{high_name}={high!r}."
        )


def _tree_norm(tree: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))


def _abstract_params(family: TaskFamily) -> Any:
    """The parameter shapes of the family's tasks (assumed the same for every sample)."""

    def init(key: PRNGKey) -> Params:
        return family.task_fn(family.sample(key)).init_with_state(key)[0]

    return jax.eval_shape(init, jax.random.PRNGKey(0))


class _TaskWrapper(AuxFirstTask):
    """A Task that wraps `self.task`: datasets, normalizer and init forward to it."""

    task: Task

    @property
    def datasets(self) -> Any:  # type: ignore[override]
        return self.task.datasets

    def init_with_state(self, key: PRNGKey) -> tuple[Params, ModelState]:
        return self.task.init_with_state(key)

    def normalizer(self, loss: Any) -> Any:
        return self.task.normalizer(loss)

    def loss_with_state_and_aux(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[Any, ModelState, dict[str, Any]]:
        """`(loss, next_state, aux)`: the augmented loss and the base task's aux.

        The wrapped task's, unchanged, unless a wrapper overrides it.
        """
        return self.task.loss_with_state_and_aux(params, state, key, data)

    @property
    def name(self) -> str:
        return f"{type(self).__name__}_{self.task.name}"


class _FamilyWrapper(TaskFamily):
    """A TaskFamily wrapping `self.family`; cfg `{"base": base_cfg, "aug": {...}}`."""

    family: TaskFamily

    @property
    def datasets(self) -> Any:  # type: ignore[override]
        return self.family.datasets

    def _sample_aug(self, key: PRNGKey) -> dict[str, Any]:
        del key
        return {}

    @abc.abstractmethod
    def _wrap(self, task: Task, aug: dict[str, Any]) -> Task:
        """The augmented task of `task` with the sampled augmentation parameters `aug`."""

    def sample(self, key: PRNGKey) -> TaskCfg:
        k_base, k_aug = jax.random.split(key)
        return {"base": self.family.sample(k_base), "aug": self._sample_aug(k_aug)}

    def task_fn(self, cfg: TaskCfg) -> Task:
        return self._wrap(self.family.task_fn(cfg["base"]), cfg["aug"])

    def eval_task_fn(self, cfg: TaskCfg) -> Task:
        return self._wrap(self.family.eval_task_fn(cfg["base"]), cfg["aug"])

    @property
    def name(self) -> str:
        return f"{type(self).__name__.removesuffix('Family')}_{self.family.name}"


class _LogUniformFamily(_FamilyWrapper):
    """A family wrapper that samples one scalar log-uniform in [low, high] per task.

    Subclasses name the bound fields and the cfg entry at class level; the bounds
    are checked (0 < low <= high, and high <= 1 where `_at_most_one`).
    """

    _low: ClassVar[str]
    _high: ClassVar[str]
    _aug: ClassVar[str]
    _at_most_one: ClassVar[bool] = False

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_family(self.family, owner)
        low, high = getattr(self, self._low), getattr(self, self._high)
        _check_range(owner, self._low, low, self._high, high)
        if self._at_most_one:
            check_number(high, owner, self._high, high=1.0)

    @property
    def bounds(self) -> tuple[float, float]:
        """`(low, high)` of the sampled scalar."""
        return float(getattr(self, self._low)), float(getattr(self, self._high))

    def _sample_aug(self, key: PRNGKey) -> dict[str, Any]:
        return {self._aug: _log_uniform(key, (), *self.bounds)}


# -- 1. ReparamWeights ----------------------------------------------------------------------

LEVELS = ("global", "tensor", "parameter")


@lopt_core.declare
class ReparamWeights(_TaskWrapper):
    """Stores the parameters divided by `scale`: the base loss is evaluated at `theta * scale`.

    The initial function is the base task's (init divides the base init by the
    scale) and the loss landscape's values are unchanged (min over theta is the
    base minimum), but the gradient with respect to theta is `scale` times the
    base gradient at `theta * scale`, so the problem is more or less sensitive.
    The aux is the base aux at `theta * scale`.

    Attributes:
      task: the wrapped task.
      scale: a positive scalar (one factor for every parameter), or a pytree with
        the params' structure whose leaves are scalars (one factor per tensor) or
        arrays of the leaf's shape (one per parameter).
    """

    task: Task
    scale: Any = 1.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_task(self.task, owner)
        if _is_concrete(self.scale):
            for leaf in jax.tree_util.tree_leaves(self.scale):
                if not bool(np.all(np.asarray(leaf) > 0)) or not bool(
                    np.all(np.isfinite(np.asarray(leaf)))
                ):
                    raise ValueError(
                        f"{owner}: scale must be finite and > 0 everywhere, got {leaf!r}."
                    )

    def _scales(self, params: Params) -> Any:
        structure = jax.tree_util.tree_structure(params)
        if jax.tree_util.tree_structure(self.scale) == structure:
            return self.scale
        leaves = jax.tree_util.tree_leaves(self.scale)
        if len(leaves) == 1 and np.shape(leaves[0]) == ():
            return jax.tree_util.tree_map(lambda _: leaves[0], params)
        raise ValueError(
            f"{type(self).__name__}: scale must be a scalar or have the params' structure "
            f"{structure}, got {jax.tree_util.tree_structure(self.scale)}."
        )

    def init_with_state(self, key: PRNGKey) -> tuple[Params, ModelState]:
        params, state = self.task.init_with_state(key)
        theta = jax.tree_util.tree_map(
            lambda p, s: (p / s).astype(p.dtype), params, self._scales(params)
        )
        return theta, state

    def to_base(self, theta: Params) -> Params:
        """The base task's parameters `theta * scale`."""
        return jax.tree_util.tree_map(
            lambda t, s: (t * s).astype(t.dtype), theta, self._scales(theta)
        )

    def loss_with_state_and_aux(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[Any, ModelState, dict[str, Any]]:
        return self.task.loss_with_state_and_aux(self.to_base(params), state, key, data)


@lopt_core.declare
class ReparamWeightsFamily(_LogUniformFamily):
    """`ReparamWeights` over a family, with scales log-uniform in [min_scale, max_scale].

    Attributes:
      family: the wrapped family.
      level: "global" (one scale per task), "tensor" (one per parameter tensor)
        or "parameter" (one per parameter; the cfg holds the params-shaped scales).
      min_scale, max_scale: the range of the scales, 0 < min_scale <= max_scale.
    """

    family: TaskFamily
    level: str = "global"
    min_scale: float = 0.01
    max_scale: float = 100.0

    _low, _high, _aug = "min_scale", "max_scale", "scale"

    def __post_init__(self) -> None:
        check_choice(self.level, type(self).__name__, "level", LEVELS)
        super().__post_init__()

    def _sample_aug(self, key: PRNGKey) -> dict[str, Any]:
        if self.level == "global":
            return super()._sample_aug(key)
        lo, hi = self.bounds
        leaves, treedef = jax.tree_util.tree_flatten(_abstract_params(self.family))
        keys = jax.random.split(key, len(leaves))
        shapes = [() if self.level == "tensor" else tuple(x.shape) for x in leaves]
        scales = [_log_uniform(k, s, lo, hi) for k, s in zip(keys, shapes)]
        return {"scale": jax.tree_util.tree_unflatten(treedef, scales)}

    def _wrap(self, task: Task, aug: dict[str, Any]) -> Task:
        return ReparamWeights(task, aug["scale"])

    @property
    def name(self) -> str:
        return f"ReparamWeights_{self.level}_{self.family.name}"


# -- 2. ReducedBatchSize --------------------------------------------------------------------

BATCH_MODES = ("mask", "slice")


def _batch_size(data: Batch, owner: str) -> int:
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree_util.tree_leaves(data)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"{owner}: every array of the batch needs the same leading batch axis, got "
            f"leading sizes {sorted(map(str, sizes))}. Wrap a task whose batch is batched."
        )
    return int(sizes.pop())


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """The mean of `values` over the leading positions where `mask` is True.

    Floating values keep their dtype; others (integer counts) give float32.
    """
    values = jnp.asarray(values)
    where = mask.reshape(mask.shape + (1,) * (values.ndim - 1))
    mean = jnp.sum(jnp.where(where, values, 0), axis=0) / jnp.sum(mask)
    return mean.astype(values.dtype) if jnp.issubdtype(values.dtype, jnp.floating) else mean


def kept_examples(fraction: Any, batch_size: int) -> Any:
    """max(1, round(fraction * batch_size)): the examples ReducedBatchSize keeps."""
    return jnp.maximum(1, jnp.round(fraction * batch_size)).astype(jnp.int32)


@lopt_core.declare
class ReducedBatchSize(_TaskWrapper):
    """Trains on the first `max(1, round(fraction * B))` examples of each base batch of B.

    Shapes stay static: with mode "mask" (the default, and what the family uses, so
    the fraction may be sampled per task and traced) the loss is the mean of the
    per-example base losses over the kept examples; the per-example loss is the
    base loss on a batch of one example (vmapped), so the base loss must be a
    mean over its batch axis, and the base task must have no model state. With
    mode "slice" the batch's leading axis is sliced; this is exact for any base
    task (a non-mean loss, model state) but the fraction must be a concrete
    number, not traced, so it cannot vary across a vmapped family.

    The aux: with mode "slice" the base aux on the sliced batch; with mode "mask"
    each aux value is the mean, over the kept examples, of the base aux on each
    single example (so an aux that is a mean over the batch, such as an accuracy,
    equals the base aux on the kept examples; an aux that does not depend on the
    batch, such as a norm of the params, equals the base aux).

    Attributes:
      task: the wrapped task; every array of its batch has a leading batch axis.
      fraction: the fraction of the batch used, in (0, 1].
      mode: "mask" or "slice".
    """

    task: Task
    fraction: Any = 0.5
    mode: str = "mask"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_task(self.task, owner)
        check_choice(self.mode, owner, "mode", BATCH_MODES)
        if self.mode == "slice" and not _is_concrete(self.fraction):
            raise ValueError(
                f"{owner}: fraction is traced but mode='slice' needs a concrete number "
                "(the sliced shape is static); use mode='mask' for a traced fraction."
            )
        if np.ndim(self.fraction) == 0:
            check_number(self.fraction, owner, "fraction", low=0.0, high=1.0, low_open=True)

    def loss_with_state_and_aux(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[Any, ModelState, dict[str, Any]]:
        owner = self.name
        size = _batch_size(data, owner)
        if self.mode == "slice":
            n = max(1, round(float(self.fraction) * size))
            sliced = jax.tree_util.tree_map(lambda x: x[:n], data)
            return self.task.loss_with_state_and_aux(params, state, key, sliced)
        if state is not None:
            raise ValueError(
                f"{owner}: mode='mask' evaluates the base loss per example, which needs a "
                "task without model state; use mode='slice' with a concrete fraction."
            )

        def one(example: Batch) -> tuple[Any, dict[str, Any]]:
            single = jax.tree_util.tree_map(lambda x: x[None], example)
            loss, _, aux = self.task.loss_with_state_and_aux(params, None, key, single)
            return loss, aux

        losses, auxes = jax.vmap(one)(data)
        mask = jnp.arange(size) < kept_examples(self.fraction, size)
        return (
            _masked_mean(losses, mask),
            None,
            jax.tree_util.tree_map(lambda a: _masked_mean(a, mask), auxes),
        )


@lopt_core.declare
class ReducedBatchSizeFamily(_LogUniformFamily):
    """`ReducedBatchSize` (mode "mask") over a family, the fraction log-uniform in
    [min_fraction, max_fraction].

    Attributes:
      family: the wrapped family (its tasks' losses are means over the batch).
      min_fraction, max_fraction: 0 < min_fraction <= max_fraction <= 1.
    """

    family: TaskFamily
    min_fraction: float = 0.1
    max_fraction: float = 1.0

    _low, _high, _aug, _at_most_one = "min_fraction", "max_fraction", "fraction", True

    def _wrap(self, task: Task, aug: dict[str, Any]) -> Task:
        return ReducedBatchSize(task, aug["fraction"])


# -- 3. ConvertFloatDType -------------------------------------------------------------------

FLOAT_DTYPES = ("bfloat16", "float16", "float32")


def _cast_floats(tree: Any, dtype: Any) -> Any:
    def cast(x: Any) -> Any:
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(x, dtype)
        return x

    return jax.tree_util.tree_map(cast, tree)


@lopt_core.declare
class ConvertFloatDType(_TaskWrapper):
    """Trains the task in a low-precision float dtype (bfloat16 by default).

    The parameters are stored in `dtype` (init casts the base init), the batch's
    floating arrays are cast to `dtype` before the base loss (so activations are
    computed in it), and the loss is returned as float32. Integer arrays (labels)
    and the model state are left as they are. Gradients come out in `dtype`. The
    aux is the base aux on the cast params and batch, its floats cast to float32.

    Attributes:
      task: the wrapped task.
      dtype: "bfloat16", "float16" or "float32".
    """

    task: Task
    dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_task(self.task, owner)
        check_choice(self.dtype, owner, "dtype", FLOAT_DTYPES)

    def init_with_state(self, key: PRNGKey) -> tuple[Params, ModelState]:
        params, state = self.task.init_with_state(key)
        return _cast_floats(params, jnp.dtype(self.dtype)), state

    def loss_with_state_and_aux(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[Any, ModelState, dict[str, Any]]:
        dtype = jnp.dtype(self.dtype)
        loss, state, aux = self.task.loss_with_state_and_aux(
            _cast_floats(params, dtype), state, key, _cast_floats(data, dtype)
        )
        return jnp.asarray(loss, jnp.float32), state, _cast_floats(aux, jnp.float32)

    def normalizer(self, loss: Any) -> Any:
        return self.task.normalizer(jnp.asarray(loss, jnp.float32))


@lopt_core.declare
class ConvertFloatDTypeFamily(_FamilyWrapper):
    """`ConvertFloatDType` over every task of a family (nothing is sampled).

    Attributes:
      family: the wrapped family.
      dtype: as for `ConvertFloatDType`.
    """

    family: TaskFamily
    dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_family(self.family, owner)
        check_choice(self.dtype, owner, "dtype", FLOAT_DTYPES)

    def _wrap(self, task: Task, aug: dict[str, Any]) -> Task:
        return ConvertFloatDType(task, self.dtype)


# -- 4. gradient transforms: NormalizeGradients, SubsampleDirections ------------------------

#: fold_in data for the key of a gradient transform, so the base loss keeps its key.
_GRAD_KEY = 0x6A7D


class _GradientTransform(_TaskWrapper):
    """The base loss in value; `jax.grad` gives `transform(base grad, key)` (custom_vjp).

    The model state and the aux are the base task's.
    """

    @abc.abstractmethod
    def transform(self, grads: Params, key: PRNGKey) -> Params:
        """The gradient the optimizer sees, from the base gradient and the loss key."""

    def loss_with_state_and_aux(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[Any, ModelState, dict[str, Any]]:
        base = self.task

        def fn(p: Params, s: ModelState, k: PRNGKey, d: Batch) -> tuple[Any, Any]:
            loss, new_s, aux = base.loss_with_state_and_aux(p, s, k, d)
            return loss, (new_s, aux)

        @jax.custom_vjp
        def wrapped(p: Params, s: ModelState, k: PRNGKey, d: Batch) -> tuple[Any, Any, Any]:
            loss, (new_s, aux) = fn(p, s, k, d)
            return loss, new_s, aux

        def fwd(p: Params, s: ModelState, k: PRNGKey, d: Batch) -> Any:
            loss, vjp_fn, (new_s, aux) = jax.vjp(fn, p, s, k, d, has_aux=True)
            return (loss, new_s, aux), (vjp_fn, jax.random.fold_in(k, _GRAD_KEY))

        def bwd(res: Any, cotangents: Any) -> Any:
            vjp_fn, k_grad = res
            g_loss = cotangents[0]
            dp, ds, dk, dd = vjp_fn(g_loss)
            return self.transform(dp, k_grad), ds, dk, dd

        wrapped.defvjp(fwd, bwd)
        return wrapped(params, state, key, data)


@lopt_core.declare
class NormalizeGradients(_GradientTransform):
    """The loss is the base loss; its gradient is the base gradient divided by its
    global norm (unit norm; a zero gradient stays zero).

    Attributes:
      task: the wrapped task.
    """

    task: Task

    def __post_init__(self) -> None:
        _check_task(self.task, type(self).__name__)

    def transform(self, grads: Params, key: PRNGKey) -> Params:
        del key
        norm = _tree_norm(grads)
        safe = jnp.where(norm > 0, norm, 1.0)
        return jax.tree_util.tree_map(lambda g: (g / safe).astype(g.dtype), grads)


@lopt_core.declare
class SubsampleDirections(_GradientTransform):
    """The loss is the base loss; its gradient keeps each coordinate with probability
    `fraction` (a Bernoulli mask drawn from the loss key) and divides the kept ones by
    `fraction`, so the gradient is unbiased.

    The mask's key is `jax.random.fold_in(loss_key, 0x6A7D)` (see `direction_mask`);
    the base loss gets the loss key unchanged.

    Attributes:
      task: the wrapped task.
      fraction: the probability of keeping a coordinate, in (0, 1].
    """

    task: Task
    fraction: Any = 0.5

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_task(self.task, owner)
        check_number(self.fraction, owner, "fraction", low=0.0, high=1.0, low_open=True)

    def direction_mask(self, params: Params, key: PRNGKey) -> Params:
        """The keep-mask (bool, like `params`) for the gradient transform key `key`."""
        leaves, treedef = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(key, len(leaves))
        masks = [jax.random.bernoulli(k, self.fraction, np.shape(x)) for k, x in zip(keys, leaves)]
        return jax.tree_util.tree_unflatten(treedef, masks)

    def transform(self, grads: Params, key: PRNGKey) -> Params:
        mask = self.direction_mask(grads, key)
        return jax.tree_util.tree_map(
            lambda g, m: jnp.where(m, g / self.fraction, 0.0).astype(g.dtype), grads, mask
        )


@lopt_core.declare
class NormalizeGradientsFamily(_FamilyWrapper):
    """`NormalizeGradients` over every task of a family (nothing is sampled).

    Attributes:
      family: the wrapped family.
    """

    family: TaskFamily

    def __post_init__(self) -> None:
        _check_family(self.family, type(self).__name__)

    def _wrap(self, task: Task, aug: dict[str, Any]) -> Task:
        return NormalizeGradients(task)


@lopt_core.declare
class SubsampleDirectionsFamily(_LogUniformFamily):
    """`SubsampleDirections` over a family, the fraction log-uniform in
    [min_fraction, max_fraction].

    Attributes:
      family: the wrapped family.
      min_fraction, max_fraction: 0 < min_fraction <= max_fraction <= 1.
    """

    family: TaskFamily
    min_fraction: float = 0.1
    max_fraction: float = 1.0

    _low, _high, _aug, _at_most_one = "min_fraction", "max_fraction", "fraction", True

    def _wrap(self, task: Task, aug: dict[str, Any]) -> Task:
        return SubsampleDirections(task, aug["fraction"])


# -- 5. AsyncDelayedGradients ---------------------------------------------------------------


@lopt_core.declare
class AsyncDelayedGradients(_TaskWrapper):
    """The gradient of `delay` steps ago, as asynchronous data-parallel training sees it.

    The model state is `{"base": base_state, "history": ...}`: the history holds the
    params of the last `buffer_size` calls (`buffer_size` = `max_delay`, or `delay`
    when None), each leaf stacked on a leading axis, oldest first, all set to the
    initial params by `init_with_state`. Each `loss_with_state(params, ...)` returns
    the base loss at `params` (value unchanged) whose gradient is the base gradient
    at the params of `delay` calls ago (the initial params in the first steps), on
    the same batch and key, and pushes `params` into the history. So with one loss
    evaluation per step, the gradient used at step t is the base gradient at the
    params of step max(t - delay, 0). The aux is the base aux at `params` (the
    current params, like the loss value).

    Attributes:
      task: the wrapped task.
      delay: the delay in steps, an integer in [1, buffer_size] (traced in a family).
      max_delay: the history length (static); None for `delay`.
    """

    task: Task
    delay: Any = 1
    max_delay: int | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_task(self.task, owner)
        if self.max_delay is not None:
            check_positive_int(self.max_delay, owner, "max_delay")
        elif not _is_concrete(self.delay):
            raise ValueError(f"{owner}: a traced delay needs max_delay (the history length).")
        if _is_concrete(self.delay):
            check_positive_int(self.delay, owner, "delay")
            if int(self.delay) > self.buffer_size:
                raise ValueError(
                    f"{owner}: delay must be <= max_delay, got delay={self.delay!r} and "
                    f"max_delay={self.max_delay!r}."
                )

    @property
    def buffer_size(self) -> int:
        return int(self.max_delay if self.max_delay is not None else self.delay)

    def init_with_state(self, key: PRNGKey) -> tuple[Params, ModelState]:
        params, state = self.task.init_with_state(key)
        n = self.buffer_size
        history = jax.tree_util.tree_map(lambda p: jnp.repeat(p[None], n, axis=0), params)
        return params, {"base": state, "history": history}

    def loss_with_state_and_aux(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[Any, ModelState, dict[str, Any]]:
        if not isinstance(state, dict) or "history" not in state:
            raise ValueError(
                f"{self.name}: the model state must be the one init_with_state returns (it "
                "holds the parameter history); call loss_with_state, not loss."
            )
        history = state["history"]
        index = jnp.asarray(self.buffer_size - self.delay, jnp.int32)
        old = jax.tree_util.tree_map(lambda h: h[index], history)
        loss, new_base, aux = self.task.loss_with_state_and_aux(
            jax.lax.stop_gradient(params), state["base"], key, data
        )
        # The value of `old + (params - sg(params))` is `old`; its gradient flows to params.
        shifted = jax.tree_util.tree_map(
            lambda o, p: o + (p - jax.lax.stop_gradient(p)), old, params
        )
        old_loss, _, _ = self.task.loss_with_state_and_aux(shifted, state["base"], key, data)
        loss = jax.lax.stop_gradient(loss) + (old_loss - jax.lax.stop_gradient(old_loss))
        pushed = jax.tree_util.tree_map(
            lambda h, p: jnp.concatenate([h[1:], jax.lax.stop_gradient(p)[None]], axis=0),
            history,
            params,
        )
        return loss, {"base": new_base, "history": pushed}, aux


@lopt_core.declare
class AsyncDelayedGradientsFamily(_FamilyWrapper):
    """`AsyncDelayedGradients` over a family, the delay uniform in 1..max_delay.

    Attributes:
      family: the wrapped family.
      max_delay: the largest delay (the history length).
    """

    family: TaskFamily
    max_delay: int = 3

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_family(self.family, owner)
        check_positive_int(self.max_delay, owner, "max_delay")

    def _sample_aug(self, key: PRNGKey) -> dict[str, Any]:
        return {"delay": jax.random.randint(key, (), 1, int(self.max_delay) + 1)}

    def _wrap(self, task: Task, aug: dict[str, Any]) -> Task:
        return AsyncDelayedGradients(task, aug["delay"], int(self.max_delay))


# -- 6. ScaleLoss, LabelNoise ---------------------------------------------------------------


@lopt_core.declare
class ScaleLoss(_TaskWrapper):
    """The base loss multiplied by `scale`; `normalizer` divides it back out first.

    The aux is the base aux, unscaled.

    Attributes:
      task: the wrapped task.
      scale: a positive factor.
    """

    task: Task
    scale: Any = 1.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_task(self.task, owner)
        check_positive(self.scale, owner, "scale")

    def loss_with_state_and_aux(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[Any, ModelState, dict[str, Any]]:
        loss, state, aux = self.task.loss_with_state_and_aux(params, state, key, data)
        return (loss * self.scale).astype(jnp.result_type(loss)), state, aux

    def normalizer(self, loss: Any) -> Any:
        return self.task.normalizer(loss / self.scale)


@lopt_core.declare
class ScaleLossFamily(_LogUniformFamily):
    """`ScaleLoss` over a family, the factor log-uniform in [min_scale, max_scale].

    Attributes:
      family: the wrapped family.
      min_scale, max_scale: 0 < min_scale <= max_scale.
    """

    family: TaskFamily
    min_scale: float = 0.001
    max_scale: float = 1000.0

    _low, _high, _aug = "min_scale", "max_scale", "scale"

    def _wrap(self, task: Task, aug: dict[str, Any]) -> Task:
        return ScaleLoss(task, aug["scale"])


#: fold_in data for LabelNoise's key, so the base loss keeps the loss key.
_LABEL_KEY = 0x1AB3


def _num_classes_of(task: Task) -> int | None:
    n = getattr(task, "num_classes", None)
    if n is None and task.datasets is not None:
        n = task.datasets.extra_info.get("num_classes")
    return None if n is None else int(n)


@lopt_core.declare
class LabelNoise(_TaskWrapper):
    """Replaces a `fraction` of the batch's labels by uniformly random classes.

    Each label is replaced with probability `fraction` by a class drawn uniformly
    from 0..num_classes-1 (which may be the same class, so the expected rate of
    changed labels is `fraction * (1 - 1/num_classes)`), keyed by
    `jax.random.fold_in(loss_key, 0x1AB3)` (see `noisy_labels`); the base loss gets
    the loss key unchanged. The aux is the base aux on the noisy labels.

    Attributes:
      task: a classification task whose batch is a dict with integer labels.
      fraction: the probability of replacing a label, in [0, 1].
      num_classes: the number of classes; None reads `task.num_classes` or
        `task.datasets.extra_info["num_classes"]`.
      label_key: the batch entry holding the labels.
    """

    task: Task
    fraction: Any = 0.1
    num_classes: int | None = None
    label_key: str = "label"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_task(self.task, owner)
        check_number(self.fraction, owner, "fraction", low=0.0, high=1.0)
        if self.num_classes is not None:
            check_positive_int(self.num_classes, owner, "num_classes")
        elif _num_classes_of(self.task) is None:
            raise ValueError(
                f"{owner}: the task {self.task.name!r} does not say its number of classes "
                "(no num_classes attribute nor datasets.extra_info['num_classes']); pass "
                "num_classes=."
            )
        ds = self.task.datasets
        if ds is not None and ds.abstract_batch is not None:
            self._check_labels(ds.abstract_batch)

    @property
    def classes(self) -> int:
        return int(self.num_classes) if self.num_classes is not None else _num_classes_of(self.task)

    def _check_labels(self, data: Batch) -> None:
        labels = data.get(self.label_key) if isinstance(data, dict) else None
        if labels is None or not jnp.issubdtype(labels.dtype, jnp.integer):
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(
                f"LabelNoise: the batch of task {self.task.name!r} has no integer labels under "
                f"{self.label_key!r} (batch: {keys}); LabelNoise needs a classification task. "
                "Pass label_key= the batch entry holding the integer labels, or wrap a "
                "classification task."
            )

    def noisy_labels(self, labels: jax.Array, key: PRNGKey) -> jax.Array:
        """`labels` with the noise of loss key `key`."""
        k_flip, k_class = jax.random.split(jax.random.fold_in(key, _LABEL_KEY))
        flip = jax.random.bernoulli(k_flip, self.fraction, labels.shape)
        random = jax.random.randint(k_class, labels.shape, 0, self.classes, labels.dtype)
        return jnp.where(flip, random, labels)

    def loss_with_state_and_aux(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[Any, ModelState, dict[str, Any]]:
        self._check_labels(data)
        noisy = {**data, self.label_key: self.noisy_labels(data[self.label_key], key)}
        return self.task.loss_with_state_and_aux(params, state, key, noisy)


@lopt_core.declare
class LabelNoiseFamily(_FamilyWrapper):
    """`LabelNoise` over a family, the fraction uniform in [min_fraction, max_fraction].

    Attributes:
      family: the wrapped classification family.
      min_fraction, max_fraction: 0 <= min_fraction <= max_fraction <= 1.
      num_classes, label_key: as for `LabelNoise`.
    """

    family: TaskFamily
    min_fraction: float = 0.0
    max_fraction: float = 0.5
    num_classes: int | None = None
    label_key: str = "label"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_family(self.family, owner)
        check_number(self.min_fraction, owner, "min_fraction", low=0.0, high=1.0)
        check_number(self.max_fraction, owner, "max_fraction", low=0.0, high=1.0)
        if float(self.min_fraction) > float(self.max_fraction):
            raise ValueError(
                f"{owner}: min_fraction must be <= max_fraction, got {self.min_fraction!r} "
                f"and {self.max_fraction!r}."
            )

    def _sample_aug(self, key: PRNGKey) -> dict[str, Any]:
        lo, hi = float(self.min_fraction), float(self.max_fraction)
        return {"fraction": jax.random.uniform(key, (), minval=lo, maxval=hi)}

    def _wrap(self, task: Task, aug: dict[str, Any]) -> Task:
        return LabelNoise(task, aug["fraction"], self.num_classes, self.label_key)


# -- 7. RelativeLossNormalizer -------------------------------------------------------------

#: fold_in data for the keys of the initial-loss measurement, so the base cfg keeps its key.
_INITIAL_LOSS_KEY = 0x1A17
#: The floor of a measured initial loss (a loss of exactly 0 at init would divide by 0).
_TINY_LOSS = 1e-12


@lopt_core.declare
class RelativeLossNormalizer(_TaskWrapper):
    """The base task with the normalizer `log_relative_normalizer(loss, initial_loss)`.

    The loss, gradient, model state, aux and datasets are the base task's; only the
    normalizer changes: 7 at `initial_loss`, 2 units less per 10x reduction,
    clipped to [-3, 10], NaN and inf read 10 (see
    `lopt_tasks.mixture.log_relative_normalizer`). So tasks whose own normalizers
    differ (a clip to [0, 1000], 1.5 log K for a classifier, per-pixel [0, 1])
    all read on one scale relative to where they started.

    Attributes:
      task: the wrapped task.
      initial_loss: the loss that reads 7, a positive scalar (may be traced).
    """

    task: Task
    initial_loss: Any = 1.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_task(self.task, owner)
        check_positive(self.initial_loss, owner, "initial_loss")

    def normalizer(self, loss: Any) -> Any:
        return log_relative_normalizer(loss, self.initial_loss)


def _has_keyed_train(family: TaskFamily) -> bool:
    ds = family.datasets
    return ds is None or callable(getattr(ds.split("train"), "sample", None))


@lopt_core.declare
class RelativeLossNormalizerFamily(_FamilyWrapper):
    """`RelativeLossNormalizer` over a family, each task's initial loss measured in `sample`.

    `sample(key)` samples the base cfg from `key` itself (so wrapping changes no
    sampled task) and measures `initial_loss`: the loss at one initialisation of
    the sampled task on one train batch, `abs(loss)` floored at 1e-12 (1 when not
    finite), stored as `cfg["aug"]["initial_loss"]` (float32). The keys are
    `k_init, k_batch, k_loss = jax.random.split(jax.random.fold_in(key, 0x1A17), 3)`:
    `task.init_with_state(k_init)`, the batch
    `family.datasets.split("train").sample(k_batch)` (None for a family without
    datasets) and the loss key `k_loss`. Everything is jit-able and vmappable; the
    measurement costs one init and one loss evaluation per sample.

    This is not the expected initial loss (one init, one batch): for tasks whose
    loss at init varies a lot between inits or batches, the 7 is approximate.

    Attributes:
      family: the wrapped family; its train split must draw batches from keys.

    Raises:
      ValueError: the family's train split is a plain iterator (not keyed).
    """

    family: TaskFamily

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_family(self.family, owner)
        if not _has_keyed_train(self.family):
            split = self.family.datasets.split("train")
            raise ValueError(
                f"{owner}: the train split of family {self.family.name!r} "
                f"({type(split).__name__}) cannot draw batches from keys, so the initial "
                "loss cannot be measured inside sample. Hold its data in a keyed split "
                "(lopt_core.ArraySplit, or any split with sample(key)), or keep the "
                "family's own normalizer (MixtureTaskFamily(..., normalizer='task'))."
            )

    def initial_loss(self, cfg: TaskCfg, key: PRNGKey) -> jax.Array:
        """The measured initial loss of the base task of `cfg` (a float32 scalar > 0)."""
        k_init, k_batch, k_loss = jax.random.split(jax.random.fold_in(key, _INITIAL_LOSS_KEY), 3)
        task = self.family.task_fn(cfg)
        params, state = task.init_with_state(k_init)
        ds = self.family.datasets
        batch = None if ds is None else ds.split("train").sample(k_batch)
        loss, _ = task.loss_with_state(params, state, k_loss, batch)
        loss = jnp.abs(jnp.asarray(loss, jnp.float32))
        return jnp.where(jnp.isfinite(loss), jnp.maximum(loss, _TINY_LOSS), 1.0)

    def sample(self, key: PRNGKey) -> TaskCfg:
        base = self.family.sample(key)
        return {"base": base, "aug": {"initial_loss": self.initial_loss(base, key)}}

    def _wrap(self, task: Task, aug: dict[str, Any]) -> Task:
        return RelativeLossNormalizer(task, aug["initial_loss"])


# -- catalog entries: each family wrapper over the embedded-digits image-MLP family ----------


def _digits() -> TaskFamily:
    from lopt_tasks.parametric import ImageMLPFamily_Digits8

    return ImageMLPFamily_Digits8()


@CATALOG.task_family()
def ReparamWeights_ImageMLPFamily_Digits8(
    level: str = "global", min_scale: float = 0.01, max_scale: float = 100.0
) -> TaskFamily:
    """ReparamWeightsFamily over ImageMLPFamily_Digits8 (scales log-uniform per level)."""
    return ReparamWeightsFamily(_digits(), level, min_scale, max_scale)


@CATALOG.task_family()
def ReducedBatchSize_ImageMLPFamily_Digits8(
    min_fraction: float = 0.1, max_fraction: float = 1.0
) -> TaskFamily:
    """ReducedBatchSizeFamily over ImageMLPFamily_Digits8 (a sampled fraction of batch 128)."""
    return ReducedBatchSizeFamily(_digits(), min_fraction, max_fraction)


@CATALOG.task_family()
def ConvertFloatDType_ImageMLPFamily_Digits8(dtype: str = "bfloat16") -> TaskFamily:
    """ConvertFloatDTypeFamily over ImageMLPFamily_Digits8: bfloat16 params and activations."""
    return ConvertFloatDTypeFamily(_digits(), dtype)


@CATALOG.task_family()
def NormalizeGradients_ImageMLPFamily_Digits8() -> TaskFamily:
    """NormalizeGradientsFamily over ImageMLPFamily_Digits8: unit-norm gradients."""
    return NormalizeGradientsFamily(_digits())


@CATALOG.task_family()
def SubsampleDirections_ImageMLPFamily_Digits8(
    min_fraction: float = 0.1, max_fraction: float = 1.0
) -> TaskFamily:
    """SubsampleDirectionsFamily over ImageMLPFamily_Digits8 (a sampled kept fraction)."""
    return SubsampleDirectionsFamily(_digits(), min_fraction, max_fraction)


@CATALOG.task_family()
def AsyncDelayedGradients_ImageMLPFamily_Digits8(max_delay: int = 3) -> TaskFamily:
    """AsyncDelayedGradientsFamily over ImageMLPFamily_Digits8 (delay uniform in 1..max)."""
    return AsyncDelayedGradientsFamily(_digits(), max_delay)


@CATALOG.task_family()
def ScaleLoss_ImageMLPFamily_Digits8(
    min_scale: float = 0.001, max_scale: float = 1000.0
) -> TaskFamily:
    """ScaleLossFamily over ImageMLPFamily_Digits8 (loss factor log-uniform)."""
    return ScaleLossFamily(_digits(), min_scale, max_scale)


@CATALOG.task_family()
def LabelNoise_ImageMLPFamily_Digits8(
    min_fraction: float = 0.0, max_fraction: float = 0.5
) -> TaskFamily:
    """LabelNoiseFamily over ImageMLPFamily_Digits8 (a sampled fraction of random labels)."""
    return LabelNoiseFamily(_digits(), min_fraction, max_fraction)


@CATALOG.task_family()
def RelativeLossNormalizer_ImageMLPFamily_Digits8() -> TaskFamily:
    """RelativeLossNormalizerFamily over ImageMLPFamily_Digits8 (7 at each task's init loss)."""
    return RelativeLossNormalizerFamily(_digits())


__all__ = [
    "AsyncDelayedGradients",
    "AsyncDelayedGradientsFamily",
    "ConvertFloatDType",
    "ConvertFloatDTypeFamily",
    "LabelNoise",
    "LabelNoiseFamily",
    "NormalizeGradients",
    "NormalizeGradientsFamily",
    "ReducedBatchSize",
    "ReducedBatchSizeFamily",
    "RelativeLossNormalizer",
    "RelativeLossNormalizerFamily",
    "ReparamWeights",
    "ReparamWeightsFamily",
    "ScaleLoss",
    "ScaleLossFamily",
    "SubsampleDirections",
    "SubsampleDirectionsFamily",
    "kept_examples",
]
