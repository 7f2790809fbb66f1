"""A task family that mixes several task families inside one jit.

`MixtureTaskFamily(families, weights)` samples, per task, which member family it
is (an int32 index drawn by weight) together with a cfg of *every* member. Its
task holds the parameters of every member, `{"f0": params of family 0, "f1": ...}`
(each member initialised from its own key), and its loss is
`lax.switch(index, member losses)`: member `i` reads only `params["f<i>"]` and its
own batch, so the gradients of the other members' parameters are exactly zero
and an optimizer that is zero-preserving leaves them where they started. The
batch is a tuple with one batch per member (None for members without data),
and the normalizer is the selected member's normalizer (another `lax.switch`).
By default (`normalizer="relative"`) every member is wrapped in
`lopt_tasks.augmentation.RelativeLossNormalizerFamily`, so each member's
normalizer is `log_relative_normalizer` against the loss its task had at
initialisation (measured in `sample`): 7 at init, -2 per 10x reduction, for every
member whatever its own normalizer, so losses of different members are on one
scale when an estimator averages them over tasks. `normalizer="task"` keeps each
member's own normalizer.

Because the cfg and parameter structure are the same for every sample, the
family is vmappable and one `VectorizedLOptTruncatedStep` trains tasks of all
members in one jit. The cost: under `vmap` the switch index is batched, so XLA
evaluates every member's loss for every task and selects; compute and memory per
task grow with the *sum* of the members' sizes (parameters, optimizer state and
batches of all members are carried by every task), whatever the index. For
families of very different sizes prefer `lopt_outer.mixture.MixtureEstimator`,
one estimator (and jit) per family of which one runs per outer step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lopt_core import SPLITS, Datasets, Task, TaskFamily
from lopt_core.typing import Batch, ModelState, Params, PRNGKey, TaskCfg
from lopt_core.validation import check_choice, check_members
from lopt_tasks._common import AuxFirstTask
from lopt_tasks._plugin import CATALOG

__all__ = ["MixtureTaskFamily", "log_relative_normalizer"]

#: The choices of `MixtureTaskFamily(normalizer=...)`.
NORMALIZERS = ("relative", "task")

#: `log_relative_normalizer`'s value at the initial loss, its floor and its cap.
_AT_INIT, _FLOOR, _CAP = 7.0, -3.0, 10.0


def log_relative_normalizer(loss: Any, initial_loss: Any) -> jax.Array:
    """`7 + 2 log10(loss / initial_loss + 1e-5)`, clipped to [-3, 10]; NaN and inf map to 10.

    The quadratics' normalizer, built to sit on the scale of the classification
    families' (`parametric_classification_normalizer`: chance 7.0, a perfect fit
    -3.0, diverged 10): the expected loss at initialisation maps to 7, every 10x
    reduction takes 2 units off, down to -3 at 1e-5 of the initial loss, and a
    run that grew the loss about 32x or more (or produced NaN) reads 10. Negative
    losses (a noisy data term) count as 0.

    Args:
      loss: the raw loss.
      initial_loss: the expected loss at the task's initialisation (positive).
    """
    loss = jnp.asarray(loss, jnp.float32)
    ratio = jnp.maximum(loss, 0.0) / jnp.maximum(jnp.asarray(initial_loss, jnp.float32), 1e-12)
    value = _AT_INIT + 2.0 * jnp.log10(ratio + 1e-5)
    value = jnp.nan_to_num(value, nan=_CAP, posinf=_CAP, neginf=_CAP)
    return jnp.clip(value, _FLOOR, _CAP)


def _key(i: int) -> str:
    return f"f{i}"


def _missing(shape: jax.ShapeDtypeStruct) -> jax.Array:
    """The aux value of a member that did not run: NaN, or 0 for non-float dtypes."""
    if jnp.issubdtype(shape.dtype, jnp.inexact):
        return jnp.full(shape.shape, jnp.nan, shape.dtype)
    return jnp.zeros(shape.shape, shape.dtype)


class _MixtureSplit:
    """One split of a mixture: every member's batch of that split, as a tuple.

    Iterating draws the next batch of every member (None for members without
    data). Members without data contribute None; `abstract_batch` is the tuple of
    the members' abstract batches.
    """

    def __init__(self, splits: Sequence[Any]) -> None:
        self.splits = tuple(splits)
        self.abstract_batch = tuple(
            None if s is None else getattr(s, "abstract_batch", None) for s in self.splits
        )

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        return tuple(None if s is None else next(s) for s in self.splits)


class _KeyedMixtureSplit(_MixtureSplit):
    """A mixture split whose members all draw batches from keys: `sample(key)` is jit-able.

    One key is split into one key per member, so a key gives every member's batch.
    """

    def sample(self, key: PRNGKey) -> Batch:
        keys = jax.random.split(key, len(self.splits))
        return tuple(None if s is None else s.sample(k) for s, k in zip(self.splits, keys))


def _mixture_datasets(families: Sequence[TaskFamily]) -> Datasets | None:
    member = [f.datasets for f in families]
    if all(d is None for d in member):
        return None
    keyed = all(d is None or d.keyed for d in member)
    cls = _KeyedMixtureSplit if keyed else _MixtureSplit
    splits = {s: cls([None if d is None else d.split(s) for d in member]) for s in SPLITS}
    extra = {"members": tuple({} if d is None else dict(d.extra_info) for d in member)}
    abstract = tuple(None if d is None else d.abstract_batch for d in member)
    return Datasets(**splits, extra_info=extra, abstract_batch=abstract)


class _MixtureTask(AuxFirstTask):
    """The task of one mixture sample: every member's task, of which `index` is trained."""

    def __init__(self, family: MixtureTaskFamily, cfg: TaskCfg, tasks: Sequence[Task]) -> None:
        self.family = family
        self.index = jnp.asarray(cfg["family"], jnp.int32)
        self.tasks = tuple(tasks)
        self.datasets = family.datasets
        self._name = f"{family.name}_sample"

    def init_with_state(self, key: PRNGKey) -> tuple[Params, ModelState]:
        keys = jax.random.split(key, len(self.tasks))
        pairs = [t.init_with_state(k) for t, k in zip(self.tasks, keys)]
        params = {_key(i): p for i, (p, _) in enumerate(pairs)}
        if all(s is None for _, s in pairs):
            return params, None
        return params, {_key(i): s for i, (_, s) in enumerate(pairs)}

    def _member_data(self, data: Batch, i: int) -> Batch:
        return None if data is None else data[i]

    def loss_with_state_and_aux(
        self, params: Params, state: ModelState, key: PRNGKey, data: Batch
    ) -> tuple[Any, ModelState, dict[str, Any]]:
        """The selected member's loss, state and aux (`lax.switch`).

        The other members' state is passed through unchanged. The aux holds every
        member's aux values under `"f<i>/<name>"`: the selected member's values,
        and NaN (0 for integer values) for the members not selected, so a reader
        can tell a member that did not run from one that reported 0.
        """
        operands = (params, state, key, data)
        shapes = [
            jax.eval_shape(lambda o, i=i: self._member_step(i, o)[2], operands)
            for i in range(len(self.tasks))
        ]

        def branch(i: int) -> Any:
            def run(operands: tuple) -> tuple[jax.Array, ModelState, dict[str, Any]]:
                loss, new_s, own_aux = self._member_step(i, operands)
                aux = {}
                for j, shape in enumerate(shapes):
                    values = own_aux if j == i else jax.tree_util.tree_map(_missing, shape)
                    aux.update({f"{_key(j)}/{name}": v for name, v in values.items()})
                return loss, new_s, aux

            return run

        branches = [branch(i) for i in range(len(self.tasks))]
        return jax.lax.switch(self.index, branches, operands)

    def _member_step(self, i: int, operands: tuple) -> tuple[jax.Array, ModelState, dict[str, Any]]:
        """Member `i`'s loss, the mixture's next state and member `i`'s aux."""
        p, s, k, d = operands
        task = self.tasks[i]
        own = None if s is None else s[_key(i)]
        loss, new_own, aux = task.loss_with_state_and_aux(
            p[_key(i)], own, k, self._member_data(d, i)
        )
        if s is None:
            new_s = None
        else:
            new_s = dict(s)
            new_s[_key(i)] = jax.tree_util.tree_map(
                lambda new, old: jnp.asarray(new).astype(jnp.result_type(old)), new_own, own
            )
        return jnp.asarray(loss, jnp.float32), new_s, dict(aux)

    def normalizer(self, loss: Any) -> jax.Array:
        """The selected member's normalizer (`lax.switch` over the members' normalizers)."""
        fns = [(lambda x, t=t: jnp.asarray(t.normalizer(x), jnp.float32)) for t in self.tasks]
        return jax.lax.switch(self.index, fns, jnp.asarray(loss, jnp.float32))


class MixtureTaskFamily(TaskFamily):
    """A weighted mixture of task families whose tasks all share one cfg and param structure.

    The cfg is `{"family": int32 index drawn by weight, "cfgs": (cfg of family 0,
    cfg of family 1, ...)}`: every member is sampled for every task. The task's
    params are `{"f0": ..., "f1": ...}` (every member initialised), its batch a
    tuple of every member's batch, its loss the selected member's loss through
    `lax.switch` (the other members' params get zero gradients), and its
    normalizer the selected member's normalizer.

    With `normalizer="relative"` (the default) the members are wrapped in
    `RelativeLossNormalizerFamily`: each sample measures every member task's loss
    at one initialisation on one train batch, and each member's normalizer is
    `log_relative_normalizer(loss, that initial loss)`, so every member reads 7 at
    its start and the members' meta-losses share one scale. `families` then holds
    the wrapped members (`members` the given ones), and every member's data must
    be keyed. With `normalizer="task"` each member keeps its own normalizer (which
    may be on a different scale: FixedDimQuadraticFamilyData clips raw losses to
    [0, 1000], the image classifiers clip at 1.5 log K).

    Cost: a vmapped step evaluates every member for every task (a batched switch
    is a select), so compute and memory grow with the sum of the members' sizes.

    The datasets (None when no member has data) give, per split, a tuple of
    every member's batch; when every member's data is keyed (`Datasets.keyed`),
    one key draws every member's batch, inside jit.

    Args:
      families: the member families (at least one).
      weights: the probability of each member (normalised); uniform by default.
      name: the family's name; `Mixture(<member>,...)` (the given members) by default.
      normalizer: "relative" (every member on the initial-loss scale) or "task"
        (each member's own normalizer).

    Raises:
      TypeError: a member is not a TaskFamily.
      ValueError: no members, weights of the wrong length or not positive, an
        unknown normalizer, or (with "relative") a member whose train data is not
        keyed.

    Example:
      >>> from lopt_tasks.quadratics import FixedDimQuadraticFamily, NoisyQuadraticFamily
      >>> family = MixtureTaskFamily((FixedDimQuadraticFamily(3), NoisyQuadraticFamily(5)))
      >>> cfg = family.sample(jax.random.PRNGKey(0))
      >>> sorted(cfg["cfgs"][0]["aug"])  # the member's measured initial loss
      ['initial_loss']
    """

    def __init__(
        self,
        families: Sequence[TaskFamily],
        weights: Sequence[float] | None = None,
        name: str | None = None,
        normalizer: str = "relative",
    ) -> None:
        owner = type(self).__name__
        check_choice(normalizer, owner, "normalizer", NORMALIZERS)
        members, weights = check_members(
            families,
            weights,
            owner,
            "families",
            TaskFamily,
            "lopt_core.TaskFamily",
        )
        if normalizer == "relative":
            # A lazy import: augmentation imports log_relative_normalizer from here.
            from lopt_tasks.augmentation import RelativeLossNormalizerFamily

            families = tuple(RelativeLossNormalizerFamily(f) for f in members)
        else:
            families = tuple(members)
        self.members = tuple(members)
        self.families = families
        self.weights = weights
        self.normalizer = normalizer
        self.datasets = _mixture_datasets(families)
        self._name = name or "Mixture(" + ",".join(f.name for f in members) + ")"

    @property
    def probabilities(self) -> np.ndarray:
        """The members' probabilities (float32, summing to one)."""
        n = len(self.families)
        w = np.ones(n) if self.weights is None else np.asarray(self.weights, np.float64)
        return (w / w.sum()).astype(np.float32)

    def sample(self, key: PRNGKey) -> TaskCfg:
        """`{"family": int32 member index, "cfgs": every member's sample}`."""
        k_index, *keys = jax.random.split(key, len(self.families) + 1)
        logits = jnp.log(jnp.asarray(self.probabilities))
        index = jax.random.categorical(k_index, logits).astype(jnp.int32)
        cfgs = tuple(f.sample(k) for f, k in zip(self.families, keys))
        return {"family": index, "cfgs": cfgs}

    def task_fn(self, cfg: TaskCfg) -> Task:
        tasks = [f.task_fn(c) for f, c in zip(self.families, cfg["cfgs"])]
        return _MixtureTask(self, cfg, tasks)

    def eval_task_fn(self, cfg: TaskCfg) -> Task:
        tasks = [f.eval_task_fn(c) for f, c in zip(self.families, cfg["cfgs"])]
        return _MixtureTask(self, cfg, tasks)


@CATALOG.task_family()
def MixtureFamily_Quadratic10_Digits8() -> MixtureTaskFamily:
    """An even MixtureTaskFamily of FixedDimQuadraticFamily(10) and ImageMLPFamily_Digits8.

    Both members are on the relative scale (7 at each task's initial loss).
    """
    from lopt_tasks.parametric import ImageMLPFamily_Digits8
    from lopt_tasks.quadratics import FixedDimQuadraticFamily

    return MixtureTaskFamily(
        (FixedDimQuadraticFamily(10), ImageMLPFamily_Digits8()),
        name="MixtureFamily_Quadratic10_Digits8",
    )
