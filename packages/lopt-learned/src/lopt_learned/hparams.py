"""Hand-designed optimizers whose hyperparameters are the meta-parameters.

Hyperparameters are stored in an unconstrained space (logs, logs of one minus a
decay) so that meta-gradient steps keep them valid. The update math runs in
float32; parameters keep their dtype and accumulators are float32.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import flax
import jax
import jax.numpy as jnp
import numpy as np

import lopt_core
from lopt_core.typing import MetaParams, Params, PRNGKey
from lopt_core.validation import check_positive, check_unit_interval
from lopt_learned._common import F32, Layout
from lopt_learned._driver import LearnedArchitecture, LearnedOptimizerState, StepInputs
from lopt_learned._plugin import CATALOG
from lopt_learned.compat import with_old_spellings


def _f32_tree(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x).astype(F32), tree)


def _zeros_f32(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.zeros(jnp.shape(x), F32), tree)


def _cast_like(new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda n, o: n.astype(jnp.result_type(o)), new, old)


def _log(x: Any) -> jax.Array:
    return jnp.log(jnp.asarray(x, F32))


def _log_one_minus(x: float) -> jax.Array:
    # In float64, then cast, as the reference computes it: log(1 - 0.999) in float32
    # is -6.9077682, because 1 - 0.999 rounds to 0.00100004673 there.
    return jnp.asarray(np.log1p(-np.float64(x)), F32)


def _from_log_one_minus(x: jax.Array) -> jax.Array:
    return 1.0 - jnp.exp(x)


def _exp(x: Any) -> jax.Array:
    return jnp.exp(jnp.asarray(x, F32))


@flax.struct.dataclass
class HParamState(LearnedOptimizerState):
    """State of the learnable-hyperparameter optimizers: `LearnedOptimizerState`'s fields, and

    Attributes:
      accumulators: a dict of float32 trees shaped like params (`momentum`, or
        `mu` and `nu`); empty for SGD.
    """

    accumulators: dict[str, Any]


class _HParamArchitecture(LearnedArchitecture):
    """The state and the float32 step shared by the optimizers of this module.

    A subclass names its accumulators and writes `_update(theta, params, grads,
    accumulators, iteration) -> (new params, new accumulators)` on float32 trees.
    """

    state_class = HParamState
    accumulator_names: ClassVar[tuple[str, ...]] = ()

    def init_state(
        self, theta: MetaParams, params: Params, layout: Layout, **kwargs: Any
    ) -> dict[str, Any]:
        """Zero float32 accumulators shaped like the params."""
        return {"accumulators": {n: _zeros_f32(params) for n in self.accumulator_names}}

    def step(self, theta: MetaParams, state: HParamState, inputs: StepInputs) -> HParamState:
        """`_update` in float32; the new params are cast back to their dtypes."""
        new, acc = self._update(
            theta,
            _f32_tree(state.params),
            _f32_tree(inputs.grads),
            state.accumulators,
            state.iteration,
        )
        return state.replace(params=_cast_like(new, state.params), accumulators=acc)

    @abc.abstractmethod
    def _update(
        self, theta: MetaParams, params: Any, grads: Any, acc: dict[str, Any], iteration: Any
    ) -> tuple[Any, dict[str, Any]]:
        """`(new params, new accumulators)` from float32 params and grads."""


@CATALOG.learned_optimizer("LearnableSGD", "SGD with a meta-learned learning rate")
@with_old_spellings
@lopt_core.declare
class LearnableSGD(_HParamArchitecture):
    """SGD with a meta-learned learning rate: `p -= exp(theta["log_lr"]) * g`.

    theta is `{"log_lr": log(initial_learning_rate)}`.

    Attributes:
      initial_learning_rate: the learning rate theta starts from (> 0).

    Example:
      >>> LearnableSGD(0.1).init(jax.random.PRNGKey(0))
      {'log_lr': Array(-2.3025851, dtype=float32)}
    """

    initial_learning_rate: float = 0.01

    def __post_init__(self) -> None:
        check_positive(self.initial_learning_rate, "LearnableSGD", "initial_learning_rate")

    def init(self, key: PRNGKey) -> MetaParams:
        """`{"log_lr": log(initial_learning_rate)}` (float32 scalar); the key is unused."""
        del key
        return {"log_lr": _log(self.initial_learning_rate)}

    def _update(
        self, theta: MetaParams, params: Any, grads: Any, acc: dict[str, Any], iteration: Any
    ) -> tuple[Any, dict[str, Any]]:
        lr = _exp(theta["log_lr"])
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), {}


@CATALOG.learned_optimizer("LearnableSGDM", "SGD with momentum, lr and momentum meta-learned")
@with_old_spellings
@lopt_core.declare
class LearnableSGDM(_HParamArchitecture):
    """SGD with heavy-ball momentum; learning rate and momentum are meta-learned.

    The update is optax's `sgd(lr, momentum)`: `v = momentum * v + g; p -= lr * v`.
    theta is `{"log_lr": log(lr), "one_minus_momentum": log(1 - momentum)}`.

    Attributes:
      initial_learning_rate: the learning rate theta starts from (> 0).
      initial_momentum: the momentum theta starts from, in [0, 1).
    """

    initial_learning_rate: float = 0.01
    initial_momentum: float = 0.9
    accumulator_names = ("momentum",)

    def __post_init__(self) -> None:
        check_positive(self.initial_learning_rate, "LearnableSGDM", "initial_learning_rate")
        check_unit_interval(self.initial_momentum, "LearnableSGDM", "initial_momentum")

    def init(self, key: PRNGKey) -> MetaParams:
        """The initial theta (float32 scalars); the key is unused."""
        del key
        return {
            "log_lr": _log(self.initial_learning_rate),
            "one_minus_momentum": _log_one_minus(self.initial_momentum),
        }

    def _update(
        self, theta: MetaParams, params: Any, grads: Any, acc: dict[str, Any], iteration: Any
    ) -> tuple[Any, dict[str, Any]]:
        lr = _exp(theta["log_lr"])
        mom = _from_log_one_minus(jnp.asarray(theta["one_minus_momentum"], F32))
        v = jax.tree_util.tree_map(lambda v, g: mom * v + g, acc["momentum"], grads)
        new = jax.tree_util.tree_map(lambda p, v: p - lr * v, params, v)
        return new, {"momentum": v}


@CATALOG.learned_optimizer("LearnableAdam", "Adam with its four hyperparameters meta-learned")
@with_old_spellings
@lopt_core.declare
class LearnableAdam(_HParamArchitecture):
    """Adam whose four hyperparameters are meta-learned.

    Bias-corrected, with `eps_root=1e-8` inside the root, as
    `optax.adam(lr, b1, b2, eps, eps_root=1e-8)`. theta is `{"log_epsilon",
    "log_lr", "one_minus_beta1", "one_minus_beta2"}`: logs of eps and the learning
    rate, and logs of one minus each beta. The defaults give -18.420681,
    -6.9077554, -2.3025851 and -6.9077554.

    Attributes:
      initial_learning_rate: the learning rate theta starts from (> 0).
      initial_b1: the first-moment decay theta starts from, in [0, 1).
      initial_b2: the second-moment decay theta starts from, in [0, 1).
      initial_eps: the epsilon theta starts from (> 0).

    Example:
      >>> theta = LearnableAdam().init(jax.random.PRNGKey(0))
      >>> opt = LearnableAdam().opt_fn(theta)
      >>> state = opt.init({"p": jnp.zeros([2])})

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """

    initial_learning_rate: float = 1e-3
    initial_b1: float = 0.9
    initial_b2: float = 0.999
    initial_eps: float = 1e-8
    accumulator_names = ("mu", "nu")
    eps_root = 1e-8

    def __post_init__(self) -> None:
        check_positive(self.initial_learning_rate, "LearnableAdam", "initial_learning_rate")
        check_unit_interval(self.initial_b1, "LearnableAdam", "initial_b1")
        check_unit_interval(self.initial_b2, "LearnableAdam", "initial_b2")
        check_positive(self.initial_eps, "LearnableAdam", "initial_eps")

    def init(self, key: PRNGKey) -> MetaParams:
        """The initial theta (float32 scalars); the key is unused."""
        del key
        return {
            "log_epsilon": _log(self.initial_eps),
            "log_lr": _log(self.initial_learning_rate),
            "one_minus_beta1": _log_one_minus(self.initial_b1),
            "one_minus_beta2": _log_one_minus(self.initial_b2),
        }

    def _update(
        self, theta: MetaParams, params: Any, grads: Any, acc: dict[str, Any], iteration: Any
    ) -> tuple[Any, dict[str, Any]]:
        lr = _exp(theta["log_lr"])
        b1 = _from_log_one_minus(jnp.asarray(theta["one_minus_beta1"], F32))
        b2 = _from_log_one_minus(jnp.asarray(theta["one_minus_beta2"], F32))
        eps = _exp(theta["log_epsilon"])
        mu = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, acc["mu"], grads)
        nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, acc["nu"], grads)
        t = (iteration + 1).astype(F32)
        c1 = 1 - b1**t
        c2 = 1 - b2**t

        def step(p, m, v):
            return p - lr * (m / c1) / (jnp.sqrt(v / c2 + self.eps_root) + eps)

        return jax.tree_util.tree_map(step, params, mu, nu), {"mu": mu, "nu": nu}


@CATALOG.learned_optimizer("MetaSGDWD", "SGD with meta-learned learning rate and weight decay")
@with_old_spellings
@lopt_core.declare
class MetaSGDWD(_HParamArchitecture):
    """SGD with a meta-learned learning rate and weight decay (Part 6's first example).

    The update is `p = p - lr * g - weight_decay * p`; theta is `{"log_lr", "log_wd"}`.

    Attributes:
      initial_learning_rate: the learning rate theta starts from (> 0).
      initial_weight_decay: the weight decay theta starts from (> 0).

    Example:
      >>> lopt = MetaSGDWD()
      >>> opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
      >>> s = opt.update(opt.init({"a": 1.0, "b": 2.0}), {"a": -1.0, "b": 1.0})
      >>> opt.get_params(s)  # {'a': 0.991, 'b': 1.979}
    """

    initial_learning_rate: float = 1e-3
    initial_weight_decay: float = 1e-2

    def __post_init__(self) -> None:
        check_positive(self.initial_learning_rate, "MetaSGDWD", "initial_learning_rate")
        check_positive(self.initial_weight_decay, "MetaSGDWD", "initial_weight_decay")

    def init(self, key: PRNGKey) -> MetaParams:
        """`{"log_lr", "log_wd"}` (float32 scalars); the key is unused."""
        del key
        return {
            "log_lr": _log(self.initial_learning_rate),
            "log_wd": _log(self.initial_weight_decay),
        }

    def _update(
        self, theta: MetaParams, params: Any, grads: Any, acc: dict[str, Any], iteration: Any
    ) -> tuple[Any, dict[str, Any]]:
        lr = _exp(theta["log_lr"])
        wd = _exp(theta["log_wd"])
        return jax.tree_util.tree_map(lambda p, g: p - g * lr - p * wd, params, grads), {}
