"""Hand-designed optimizers whose hyperparameters are the meta-parameters.

Hyperparameters are stored in an unconstrained space (logs, logs of one minus a
decay) so that meta-gradient steps keep them valid. The update math runs in
float32; parameters keep their dtype and accumulators are float32.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

from lopt_core import LearnedOptimizer
from lopt_core.typing import MetaParams, ModelState, Params, PRNGKey
from lopt_learned._base import ThetaOptimizer, check_theta
from lopt_learned._common import F32, check_grads, keep_model_state, layout_of


def _f32_tree(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x).astype(F32), tree)


def _zeros_f32(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.zeros(jnp.shape(x), F32), tree)


def _cast_like(new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda n, o: n.astype(jnp.result_type(o)), new, old)


def _log_one_minus(x: float) -> jax.Array:
    return jnp.log(1.0 - jnp.asarray(x, F32))


def _from_log_one_minus(x: jax.Array) -> jax.Array:
    return 1.0 - jnp.exp(x)


@flax.struct.dataclass
class HParamState:
    """State of the learnable-hyperparameter optimizers.

    Attributes:
      params: the parameters.
      model_state: the model state, or None.
      iteration: int32 number of updates applied.
      accumulators: a dict of float32 trees shaped like params (`momentum`, or
        `mu` and `nu`); empty for SGD.
    """

    params: Params
    model_state: ModelState
    iteration: jax.Array
    accumulators: dict[str, Any]


class _HParamOptimizer(ThetaOptimizer):
    """Shared init for the optimizers of this module."""

    accumulator_names: tuple[str, ...] = ()

    def init(
        self,
        params: Params,
        model_state: ModelState = None,
        num_steps: int | None = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> HParamState:
        """The initial state: zero accumulators, iteration 0."""
        del num_steps, key, kwargs
        return HParamState(
            params=params,
            model_state=model_state,
            iteration=jnp.asarray(0, jnp.int32),
            accumulators={n: _zeros_f32(params) for n in self.accumulator_names},
        )

    def _grads_f32(self, opt_state: HParamState, grads: Params) -> Any:
        """`grads` as float32, after checking they are shaped like the params.

        Without the check, a gradient of another shape would broadcast against its
        parameter and silently change the parameter's shape.
        """
        check_grads(layout_of(opt_state.params), grads, type(self.lopt).__name__)
        return _f32_tree(grads)

    def _next(
        self, opt_state: HParamState, new_params: Any, model_state: Any, acc: dict
    ) -> HParamState:
        return HParamState(
            params=_cast_like(new_params, opt_state.params),
            model_state=keep_model_state(opt_state.model_state, model_state),
            iteration=opt_state.iteration + 1,
            accumulators=acc,
        )


class LearnableSGDOptimizer(_HParamOptimizer):
    """SGD with the learning rate `exp(theta["log_lr"])`."""

    def update(
        self,
        opt_state: HParamState,
        grads: Params,
        loss: Any = None,
        model_state: ModelState = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> HParamState:
        """`p -= lr * g`."""
        lr = jnp.exp(jnp.asarray(self.theta["log_lr"], F32))
        new = jax.tree_util.tree_map(
            lambda p, g: p - lr * g, _f32_tree(opt_state.params), self._grads_f32(opt_state, grads)
        )
        return self._next(opt_state, new, model_state, {})


class LearnableSGDMOptimizer(_HParamOptimizer):
    """SGD with heavy-ball momentum, hyperparameters from theta."""

    accumulator_names = ("momentum",)

    def update(
        self,
        opt_state: HParamState,
        grads: Params,
        loss: Any = None,
        model_state: ModelState = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> HParamState:
        """`v = momentum * v + g; p -= lr * v` (optax's `sgd(lr, momentum)`)."""
        lr = jnp.exp(jnp.asarray(self.theta["log_lr"], F32))
        mom = _from_log_one_minus(jnp.asarray(self.theta["one_minus_momentum"], F32))
        v = jax.tree_util.tree_map(
            lambda v, g: mom * v + g,
            opt_state.accumulators["momentum"],
            self._grads_f32(opt_state, grads),
        )
        new = jax.tree_util.tree_map(lambda p, v: p - lr * v, _f32_tree(opt_state.params), v)
        return self._next(opt_state, new, model_state, {"momentum": v})


class LearnableAdamOptimizer(_HParamOptimizer):
    """Adam (bias-corrected, `epsilon_root=1e-8` inside the root), hyperparameters from theta."""

    accumulator_names = ("mu", "nu")
    epsilon_root = 1e-8

    def update(
        self,
        opt_state: HParamState,
        grads: Params,
        loss: Any = None,
        model_state: ModelState = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> HParamState:
        """One Adam step with `lr, beta1, beta2, epsilon` decoded from theta."""
        th = self.theta
        lr = jnp.exp(jnp.asarray(th["log_lr"], F32))
        b1 = _from_log_one_minus(jnp.asarray(th["one_minus_beta1"], F32))
        b2 = _from_log_one_minus(jnp.asarray(th["one_minus_beta2"], F32))
        eps = jnp.exp(jnp.asarray(th["log_epsilon"], F32))
        g = self._grads_f32(opt_state, grads)
        mu = jax.tree_util.tree_map(
            lambda m, g: b1 * m + (1 - b1) * g, opt_state.accumulators["mu"], g
        )
        nu = jax.tree_util.tree_map(
            lambda v, g: b2 * v + (1 - b2) * g * g, opt_state.accumulators["nu"], g
        )
        t = (opt_state.iteration + 1).astype(F32)
        c1 = 1 - b1**t
        c2 = 1 - b2**t

        def step(p, m, v):
            return p - lr * (m / c1) / (jnp.sqrt(v / c2 + self.epsilon_root) + eps)

        new = jax.tree_util.tree_map(step, _f32_tree(opt_state.params), mu, nu)
        return self._next(opt_state, new, model_state, {"mu": mu, "nu": nu})


class MetaSGDWDOptimizer(_HParamOptimizer):
    """SGD with decoupled weight decay, both rates from theta."""

    def update(
        self,
        opt_state: HParamState,
        grads: Params,
        loss: Any = None,
        model_state: ModelState = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> HParamState:
        """`p = p - lr * g - wd * p`."""
        lr = jnp.exp(jnp.asarray(self.theta["log_lr"], F32))
        wd = jnp.exp(jnp.asarray(self.theta["log_wd"], F32))
        new = jax.tree_util.tree_map(
            lambda p, g: p - g * lr - p * wd,
            _f32_tree(opt_state.params),
            self._grads_f32(opt_state, grads),
        )
        return self._next(opt_state, new, model_state, {})


class LearnableSGD(LearnedOptimizer):
    """SGD with a meta-learned learning rate.

    theta is `{"log_lr": log(initial_lr)}`.

    Example:
      >>> LearnableSGD(0.1).init(jax.random.PRNGKey(0))
      {'log_lr': Array(-2.3025851, dtype=float32)}
    """

    def __init__(self, initial_lr: float = 0.01) -> None:
        """Args: initial_lr: the learning rate theta starts from (> 0)."""
        self.initial_lr = initial_lr

    def init(self, key: PRNGKey) -> MetaParams:
        """`{"log_lr": log(initial_lr)}` (float32 scalar); the key is unused."""
        del key
        return {"log_lr": jnp.log(jnp.asarray(self.initial_lr, F32))}

    def opt_fn(self, theta: MetaParams, is_training: bool = False) -> LearnableSGDOptimizer:
        """SGD at `exp(theta["log_lr"])`."""
        check_theta(theta, ("log_lr",), type(self).__name__)
        return LearnableSGDOptimizer(self, theta, is_training)


class LearnableSGDM(LearnedOptimizer):
    """SGD with momentum; learning rate and momentum are meta-learned.

    theta is `{"log_lr": log(lr), "one_minus_momentum": log(1 - momentum)}`.
    """

    def __init__(self, initial_lr: float = 0.01, initial_momentum: float = 0.9) -> None:
        """Args: initial_lr, initial_momentum: the values theta starts from."""
        self.initial_lr = initial_lr
        self.initial_momentum = initial_momentum

    def init(self, key: PRNGKey) -> MetaParams:
        """The initial theta (float32 scalars); the key is unused."""
        del key
        return {
            "log_lr": jnp.log(jnp.asarray(self.initial_lr, F32)),
            "one_minus_momentum": _log_one_minus(self.initial_momentum),
        }

    def opt_fn(self, theta: MetaParams, is_training: bool = False) -> LearnableSGDMOptimizer:
        """SGD with momentum at the hyperparameters theta encodes."""
        check_theta(theta, ("log_lr", "one_minus_momentum"), type(self).__name__)
        return LearnableSGDMOptimizer(self, theta, is_training)


class LearnableAdam(LearnedOptimizer):
    """Adam whose four hyperparameters are meta-learned.

    theta is `{"log_epsilon", "log_lr", "one_minus_beta1", "one_minus_beta2"}`:
    logs of epsilon and the learning rate, and logs of one minus each beta. The
    defaults give -18.420681, -6.9077554, -2.3025851 and -6.9077554.

    Example:
      >>> theta = LearnableAdam().init(jax.random.PRNGKey(0))
      >>> opt = LearnableAdam().opt_fn(theta)
      >>> state = opt.init({"p": jnp.zeros([2])})

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """

    def __init__(
        self,
        initial_lr: float = 1e-3,
        initial_beta1: float = 0.9,
        initial_beta2: float = 0.999,
        initial_epsilon: float = 1e-8,
    ) -> None:
        """Args: the hyperparameters theta starts from."""
        self.initial_lr = initial_lr
        self.initial_beta1 = initial_beta1
        self.initial_beta2 = initial_beta2
        self.initial_epsilon = initial_epsilon

    def init(self, key: PRNGKey) -> MetaParams:
        """The initial theta (float32 scalars); the key is unused."""
        del key
        return {
            "log_epsilon": jnp.log(jnp.asarray(self.initial_epsilon, F32)),
            "log_lr": jnp.log(jnp.asarray(self.initial_lr, F32)),
            "one_minus_beta1": _log_one_minus(self.initial_beta1),
            "one_minus_beta2": _log_one_minus(self.initial_beta2),
        }

    def opt_fn(self, theta: MetaParams, is_training: bool = False) -> LearnableAdamOptimizer:
        """Adam at the hyperparameters theta encodes."""
        check_theta(
            theta,
            ("log_epsilon", "log_lr", "one_minus_beta1", "one_minus_beta2"),
            type(self).__name__,
        )
        return LearnableAdamOptimizer(self, theta, is_training)


class MetaSGDWD(LearnedOptimizer):
    """SGD with a meta-learned learning rate and weight decay (Part 6's first example).

    The update is `p = p - lr * g - wd * p`; theta is `{"log_lr", "log_wd"}`.

    Example:
      >>> lopt = MetaSGDWD()
      >>> opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
      >>> s = opt.update(opt.init({"a": 1.0, "b": 2.0}), {"a": -1.0, "b": 1.0})
      >>> opt.get_params(s)  # {'a': 0.991, 'b': 1.979}
    """

    def __init__(self, initial_lr: float = 1e-3, initial_wd: float = 1e-2) -> None:
        """Args: initial_lr, initial_wd: the rates theta starts from (> 0)."""
        self.initial_lr = initial_lr
        self.initial_wd = initial_wd

    def init(self, key: PRNGKey) -> MetaParams:
        """`{"log_lr", "log_wd"}` (float32 scalars); the key is unused."""
        del key
        return {
            "log_lr": jnp.log(jnp.asarray(self.initial_lr, F32)),
            "log_wd": jnp.log(jnp.asarray(self.initial_wd, F32)),
        }

    def opt_fn(self, theta: MetaParams, is_training: bool = False) -> MetaSGDWDOptimizer:
        """SGD with weight decay at the rates theta encodes."""
        check_theta(theta, ("log_lr", "log_wd"), type(self).__name__)
        return MetaSGDWDOptimizer(self, theta, is_training)
