"""Hand-designed optimizers: each is one declaration of its hyperparameters and its optax transform.

Every optimizer is a frozen dataclass (`lopt_core.declare`) over `OptaxBacked`:
its fields are its configuration (recorded in checkpoints, compared and hashed
by value), `checks` names the validation each field must pass, and `transform()`
builds the optax transform. Every `learning_rate` accepts a float or an optax
schedule (`step -> learning rate`). Argument names follow optax (`b1`, `b2`,
`eps`, `eps_root`); the reference library's spellings (`beta1`, ...) are
accepted through `lopt_optimizers.compat`. `name` follows the reference
library: `SGD_lr0.01`, `Adam_lr0.01_b10.9_b20.999_eps1e-08`, ...
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lopt_core
from lopt_core.validation import (
    check_learning_rate,
    check_nonnegative,
    check_number,
    check_positive,
    check_unit_interval,
)
from lopt_optimizers._plugin import CATALOG
from lopt_optimizers.compat import with_old_spellings
from lopt_optimizers.optax_optimizer import OptaxBacked
from lopt_optimizers.schedules import PiecewiseLinear

ScalarOrSchedule = Any
"""A float, a scalar array or an optax schedule `step -> value`."""

BETA = check_unit_interval
NONNEG = check_nonnegative
POSITIVE = check_positive


def _fmt(value: Any) -> str:
    """A hyperparameter as it appears in a `name`."""
    if callable(value):
        return getattr(value, "__name__", "schedule")
    if isinstance(value, jax.core.Tracer):
        return "traced"
    if isinstance(value, (bool, int, float, str)) or value is None:
        return str(value)
    return str(float(value))


def _is_value(value: Any, expected: float) -> bool:
    """True when `value` is concretely `expected` (False for traced values)."""
    if callable(value) or isinstance(value, jax.core.Tracer):
        return False
    return float(value) == expected


class _Formatted(dict):
    """The fields of `component`, each formatted by `_fmt` when a format string reads it."""

    def __init__(self, component: Any) -> None:
        super().__init__()
        self.component = component

    def __missing__(self, field: str) -> str:
        return _fmt(getattr(self.component, field))


class _OptaxFunction(OptaxBacked):
    """An optimizer that is one optax function called with its fields as keyword arguments.

    Subclasses set `optax_fn` (for example `optax.adam`) and `name_format`, the
    reference library's name after the class name, `str.format` style over the
    fields (for example `"lr{learning_rate}_m{momentum}"`).
    """

    optax_fn: Any = None
    name_format: str = ""

    def transform(self) -> optax.GradientTransformation:
        """`optax_fn(**fields)`."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return self.optax_fn(**fields)

    @property
    def name(self) -> str:
        """The reference library's name for this configuration: `Adam_lr0.01_b10.9...`."""
        return f"{type(self).__name__}_{self.name_format.format_map(_Formatted(self))}"


def _accumulator_decay(value: Any, owner: str, argument: str) -> Any:
    return check_number(value, owner, argument, low=0.0, high=1.0, low_open=True)


@CATALOG.optimizer("SGD", "Stochastic gradient descent (optax.sgd).")
@lopt_core.declare
class SGD(_OptaxFunction):
    """Stochastic gradient descent: `params -= learning_rate * grads`.

    Attributes:
      learning_rate: step size (float >= 0 or optax schedule).

    Example:
      >>> import jax.numpy as jnp
      >>> opt = SGD(0.1)
      >>> s = opt.update(opt.init({"w": jnp.ones(2)}), {"w": jnp.ones(2)})
      >>> opt.get_params(s)["w"]
      Array([0.9, 0.9], dtype=float32)

    References:
      Robbins & Monro, "A Stochastic Approximation Method", 1951.
    """

    learning_rate: ScalarOrSchedule = 0.01

    checks = {}

    optax_fn = staticmethod(optax.sgd)

    name_format = "lr{learning_rate}"


@CATALOG.optimizer("SGDM", "SGD with heavy-ball momentum (optax.sgd with momentum).")
@lopt_core.declare
class SGDM(_OptaxFunction):
    """Stochastic gradient descent with heavy-ball momentum.

    Attributes:
      learning_rate: step size (float >= 0 or optax schedule).
      momentum: decay of the velocity, in [0, 1).

    References:
      Polyak, "Some methods of speeding up the convergence of iteration methods", 1964.
    """

    learning_rate: ScalarOrSchedule = 0.01
    momentum: float = 0.9

    checks = {"momentum": BETA}

    optax_fn = staticmethod(optax.sgd)

    name_format = "lr{learning_rate}_m{momentum}"


@CATALOG.optimizer("Adam", "Adam with eps_root, the reference's defaults (optax.adam).")
@with_old_spellings
@lopt_core.declare
class Adam(_OptaxFunction):
    """Adam, with `eps_root` inside the square root as in the reference library.

    Attributes:
      learning_rate: step size (float >= 0 or optax schedule).
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment, >= 0.
      eps_root: added to the second moment inside the root, >= 0.

    Built as `optax.adam(...)`: a chain of `scale_by_adam` and a scaling by the
    negative learning rate, so its optax state is `(ScaleByAdamState, EmptyState)`
    for a constant learning rate.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Alg. 1.
    """

    learning_rate: ScalarOrSchedule = 0.01
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    eps_root: float = 1e-8

    checks = {"b1": BETA, "b2": BETA, "eps": NONNEG, "eps_root": NONNEG}

    optax_fn = staticmethod(optax.adam)

    name_format = "lr{learning_rate}_b1{b1}_b2{b2}_eps{eps}"

    @property
    def name(self) -> str:
        """`Adam_lr.._b1.._b2.._eps..`, plus `_epsroot..` when eps_root is not 1e-8."""
        suffix = "" if _is_value(self.eps_root, 1e-8) else f"_epsroot{_fmt(self.eps_root)}"
        return super().name + suffix


@CATALOG.optimizer("AdamW", "Adam with decoupled weight decay (optax.adamw).")
@lopt_core.declare
class AdamW(_OptaxFunction):
    """Adam with decoupled weight decay.

    Attributes:
      learning_rate: step size (float >= 0 or optax schedule).
      b1, b2: decays of the first and second moments, in [0, 1).
      eps, eps_root: added outside and inside the root, >= 0.
      weight_decay: decoupled decay rate, >= 0 (multiplied by the learning rate).
      mask: optax mask (a pytree of bools or a function of params) choosing which
        params decay; None decays all. A function cannot be recorded in a checkpoint.

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, Alg. 2.
    """

    learning_rate: ScalarOrSchedule = 0.01
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    eps_root: float = 0.0
    weight_decay: float = 1e-4
    mask: Any = None

    checks = {"b1": BETA, "b2": BETA, "eps": NONNEG, "eps_root": NONNEG, "weight_decay": NONNEG}

    optax_fn = staticmethod(optax.adamw)

    name_format = "lr{learning_rate}_b1{b1}_b2{b2}_eps{eps}_wd{weight_decay}"


def _check_bool(value: Any, owner: str, argument: str) -> Any:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{owner}: {argument} must be True or False, got {value!r} "
            f"({type(value).__name__}). Pass {argument}=True or {argument}=False."
        )
    return value


def _scale_by_uncorrected_adam(
    b1: float, b2: float, eps: float, nesterov: bool
) -> optax.GradientTransformation:
    """Adam's moments without bias correction: `m / (sqrt(v) + eps)`.

    With `nesterov`, the numerator is `b1 * m + (1 - b1) * g` (the new first
    moment's next value if the gradient repeated). The state is optax's
    `ScaleByAdamState`, as for `optax.scale_by_adam`.
    """

    def init_fn(params: Any) -> optax.ScaleByAdamState:
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)

    def update_fn(updates: Any, state: optax.ScaleByAdamState, params: Any = None) -> Any:
        del params
        mu = optax.tree_utils.tree_update_moment(updates, state.mu, b1, 1)
        nu = optax.tree_utils.tree_update_moment_per_elem_norm(updates, state.nu, b2, 2)
        if nesterov:
            numerator = jax.tree_util.tree_map(lambda m, g: b1 * m + (1.0 - b1) * g, mu, updates)
        else:
            numerator = mu
        out = jax.tree_util.tree_map(lambda n, v: n / (jnp.sqrt(v) + eps), numerator, nu)
        count = optax.safe_increment(state.count)
        return out, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


@CATALOG.optimizer("NAdamW", "Nesterov Adam with decoupled and L2 weight decay.")
@with_old_spellings
@lopt_core.declare
class NAdamW(_OptaxFunction):
    """Nesterov Adam with decoupled (AdamW) and L2 weight decay.

    Attributes:
      learning_rate: step size (float >= 0, optax schedule or a `schedules`
        schedule, which may need `num_steps` at init). The reference's default is 1e-4.
      b1, b2: decays of the first and second moments, in [0, 1).
      eps: added to the root of the second moment, >= 0.
      adamw_weight_decay: decoupled decay added after the moments, >= 0.
      l2_weight_decay: L2 penalty added to the gradients before the moments, >= 0.
      use_nesterov: Nesterov momentum (the default) or plain Adam momentum.
      use_bias_correction: correct the moments for their zero start (the default).

    With the defaults the update is optax's Nesterov `scale_by_adam`;
    `use_nesterov=False` is optax's plain `scale_by_adam`. `l2_weight_decay` adds
    `l2_weight_decay * params` to the gradients before the moments (an L2 penalty);
    `adamw_weight_decay` adds `adamw_weight_decay * params` to the update after
    them (decoupled decay); both are then scaled by the learning rate.

    With `m = b1 m + (1 - b1) g` and `v = b2 v + (1 - b2) g^2` (from zero) at step
    `t = 1, 2, ...`, the step before weight decay and learning rate is:

    * bias-corrected (optax's): `m_hat / (sqrt(v / (1 - b2^t)) + eps)`, with
      `m_hat = m / (1 - b1^t)`, or with Nesterov
      `m_hat = b1 m / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t)`;
    * `use_bias_correction=False` (the reference's formula without correction):
      `m / (sqrt(v) + eps)`, or with Nesterov `(b1 m + (1 - b1) g) / (sqrt(v) + eps)`.

    The reference corrects by scaling the learning rate by `sqrt(1 - b2^t) / (1 - b1^t)`
    instead, which differs from optax's correction in where `eps` sits and, with
    Nesterov, in the `b1^(t+1)` term (relative differences of order `eps` and
    `b1^(t+1)`). Its class also ignores `use_bias_correction=False` (its update
    always corrects); lopt honours it.

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """

    learning_rate: ScalarOrSchedule = 1e-4
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    adamw_weight_decay: float = 0.0
    l2_weight_decay: float = 0.0
    use_nesterov: bool = True
    use_bias_correction: bool = True

    checks = {
        "b1": BETA,
        "b2": BETA,
        "eps": NONNEG,
        "adamw_weight_decay": NONNEG,
        "l2_weight_decay": NONNEG,
        "use_nesterov": _check_bool,
        "use_bias_correction": _check_bool,
    }

    def transform(self) -> optax.GradientTransformation:
        """L2 penalty, Adam moments (see the class), decoupled decay, learning rate."""
        if self.use_bias_correction:
            moments = optax.scale_by_adam(
                b1=self.b1, b2=self.b2, eps=self.eps, nesterov=bool(self.use_nesterov)
            )
        else:
            moments = _scale_by_uncorrected_adam(self.b1, self.b2, self.eps, self.use_nesterov)
        return optax.chain(
            optax.add_decayed_weights(self.l2_weight_decay),
            moments,
            optax.add_decayed_weights(self.adamw_weight_decay),
            optax.scale_by_learning_rate(self.learning_rate),
        )

    name_format = (
        "lr{learning_rate}_b1{b1}_b2{b2}_eps{eps}_wd{adamw_weight_decay}_l2{l2_weight_decay}"
    )

    @property
    def name(self) -> str:
        """`NAdamW_lr.._b1.._b2.._eps.._wd.._l2..`, plus `_nesterovFalse` / `_biascorrFalse`."""
        suffix = "" if self.use_nesterov else "_nesterovFalse"
        suffix += "" if self.use_bias_correction else "_biascorrFalse"
        return super().name + suffix


@CATALOG.optimizer("RMSProp", "RMSProp with optional momentum (optax.rmsprop).")
@with_old_spellings
@lopt_core.declare
class RMSProp(_OptaxFunction):
    """RMSProp, optionally with (Nesterov) momentum.

    Attributes:
      learning_rate: step size (float >= 0 or optax schedule).
      decay: decay of the squared-gradient average, in [0, 1).
      eps: added to the squared-gradient average, >= 0.
      momentum: momentum decay, in [0, 1); 0 for none.
      nesterov: use Nesterov momentum.

    References:
      Tieleman & Hinton, Lecture 6.5 of "Neural Networks for Machine Learning", 2012.
    """

    learning_rate: ScalarOrSchedule = 0.01
    decay: float = 0.9
    eps: float = 1e-8
    momentum: float = 0.0
    nesterov: bool = False

    checks = {"decay": BETA, "eps": NONNEG, "momentum": BETA}

    optax_fn = staticmethod(optax.rmsprop)

    name_format = "lr{learning_rate}_d{decay}_eps{eps}_m{momentum}_nesterov{nesterov}"


@CATALOG.optimizer("AdaBelief", "AdaBelief: Adam on the gradient's deviation (optax).")
@lopt_core.declare
class AdaBelief(_OptaxFunction):
    """AdaBelief: Adam whose second moment tracks the gradient's deviation from its mean.

    Attributes:
      learning_rate: step size (float >= 0 or optax schedule).
      b1: decay of the first moment, in [0, 1).
      b2: decay of the belief (centred second moment), in [0, 1).
      eps, eps_root: added outside and inside the root, >= 0.

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
      Gradients", NeurIPS 2020, Alg. 2.
    """

    learning_rate: ScalarOrSchedule = 0.01
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-16
    eps_root: float = 1e-16

    checks = {"b1": BETA, "b2": BETA, "eps": NONNEG, "eps_root": NONNEG}

    optax_fn = staticmethod(optax.adabelief)

    name_format = "lr{learning_rate}_b1{b1}_b2{b2}_eps{eps}"


@CATALOG.optimizer("AdaGrad", "AdaGrad: summed squared gradients (optax.adagrad).")
@lopt_core.declare
class AdaGrad(_OptaxFunction):
    """AdaGrad: steps scaled by the root of the summed squared gradients.

    Attributes:
      learning_rate: step size (float >= 0 or optax schedule).
      initial_accumulator_value: starting value of the squared-gradient sum, >= 0.
      eps: added to the root, >= 0.

    References:
      Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and
      Stochastic Optimization", JMLR 2011.
    """

    learning_rate: ScalarOrSchedule = 0.01
    initial_accumulator_value: float = 0.1
    eps: float = 1e-7

    checks = {"initial_accumulator_value": NONNEG, "eps": NONNEG}

    optax_fn = staticmethod(optax.adagrad)

    name_format = "lr{learning_rate}_iav{initial_accumulator_value}_eps{eps}"


@CATALOG.optimizer("Adafactor", "Adafactor: factored second moments (optax.adafactor).")
@lopt_core.declare
class Adafactor(_OptaxFunction):
    """Adafactor: factored second moments, relative step sizes and update clipping.

    Attributes:
      learning_rate: step size (float >= 0 or optax schedule).
      min_dim_size_to_factor: only factor dimensions at least this large.
      decay_rate: exponent of the second-moment decay schedule, >= 0.
      decay_offset: step offset of that schedule, >= 0.
      multiply_by_parameter_scale: scale steps by the parameters' RMS.
      clipping_threshold: clip the update's RMS to this (> 0), or None.
      momentum: first-moment decay in [0, 1), or None for no momentum.
      dtype_momentum: dtype of the momentum accumulator, kept as its name: `jnp.bfloat16`
        and `"bfloat16"` are one configuration, and a name can be recorded.
      weight_decay_rate: decoupled weight decay (>= 0), or None.
      eps: regularizer of the second moment, >= 0.
      factored: factor the second moment of matrices.
      weight_decay_mask: optax mask choosing which params decay.

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
      ICML 2018, Alg. 4.
    """

    learning_rate: ScalarOrSchedule = 0.01
    min_dim_size_to_factor: int = 128
    decay_rate: float = 0.8
    decay_offset: int = 0
    multiply_by_parameter_scale: bool = True
    clipping_threshold: float | None = 1.0
    momentum: float | None = None
    dtype_momentum: Any = "float32"
    weight_decay_rate: float | None = None
    eps: float = 1e-30
    factored: bool = True
    weight_decay_mask: Any = None

    checks = {
        "min_dim_size_to_factor": lopt_core.validation.check_positive_int,
        "decay_rate": NONNEG,
        "decay_offset": NONNEG,
        "clipping_threshold": POSITIVE,
        "momentum": BETA,
        "weight_decay_rate": NONNEG,
        "eps": NONNEG,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "dtype_momentum", jnp.dtype(self.dtype_momentum).name)

    def transform(self) -> optax.GradientTransformation:
        """`optax.adafactor` with every argument."""
        return optax.adafactor(
            self.learning_rate,
            min_dim_size_to_factor=self.min_dim_size_to_factor,
            decay_rate=self.decay_rate,
            decay_offset=self.decay_offset,
            multiply_by_parameter_scale=self.multiply_by_parameter_scale,
            clipping_threshold=self.clipping_threshold,
            momentum=self.momentum,
            dtype_momentum=jnp.dtype(self.dtype_momentum),
            weight_decay_rate=self.weight_decay_rate,
            eps=self.eps,
            factored=self.factored,
            weight_decay_mask=self.weight_decay_mask,
        )

    name_format = "lr{learning_rate}_d{decay_rate}_clip{clipping_threshold}_m{momentum}"


@CATALOG.optimizer("Lamb", "LAMB: Adam with a layer-wise trust ratio (optax.lamb).")
@lopt_core.declare
class Lamb(_OptaxFunction):
    """LAMB: Adam steps rescaled per layer by the trust ratio ||params|| / ||step||.

    Attributes:
      learning_rate: step size (float >= 0 or optax schedule).
      b1, b2: decays of the first and second moments, in [0, 1).
      eps, eps_root: added outside and inside the root, >= 0.
      weight_decay: decoupled decay rate, >= 0.
      mask: optax mask choosing which params decay.

    References:
      You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
      minutes", ICLR 2020, Alg. 2.
    """

    learning_rate: ScalarOrSchedule = 0.01
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-6
    eps_root: float = 0.0
    weight_decay: float = 0.0
    mask: Any = None

    checks = {"b1": BETA, "b2": BETA, "eps": NONNEG, "eps_root": NONNEG, "weight_decay": NONNEG}

    optax_fn = staticmethod(optax.lamb)

    name_format = "lr{learning_rate}_b1{b1}_b2{b2}_eps{eps}_wd{weight_decay}"


@CATALOG.optimizer("Lars", "LARS: momentum SGD with a layer-wise trust ratio (optax.lars).")
@lopt_core.declare
class Lars(_OptaxFunction):
    """LARS: SGD with momentum whose step is rescaled per layer by a trust ratio.

    Attributes:
      learning_rate: step size (float >= 0 or optax schedule).
      weight_decay: decay rate, >= 0.
      weight_decay_mask: optax mask choosing which params decay.
      trust_coefficient: scale of the trust ratio, > 0.
      eps: added to the trust ratio's denominator, >= 0.
      trust_ratio_mask: optax mask choosing which params use the trust ratio.
      momentum: momentum decay, in [0, 1).
      nesterov: use Nesterov momentum.

    References:
      You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
      Alg. 1.
    """

    learning_rate: ScalarOrSchedule = 0.01
    weight_decay: float = 0.0
    weight_decay_mask: Any = True
    trust_coefficient: float = 0.001
    eps: float = 0.0
    trust_ratio_mask: Any = True
    momentum: float = 0.9
    nesterov: bool = False

    checks = {
        "weight_decay": NONNEG,
        "trust_coefficient": POSITIVE,
        "eps": NONNEG,
        "momentum": BETA,
    }

    optax_fn = staticmethod(optax.lars)

    name_format = "lr{learning_rate}_m{momentum}_wd{weight_decay}_tc{trust_coefficient}"


@CATALOG.optimizer("RAdam", "Rectified Adam (optax.radam).")
@lopt_core.declare
class RAdam(_OptaxFunction):
    """Rectified Adam: SGD with momentum until the second moment's variance is tractable.

    Attributes:
      learning_rate: step size (float >= 0 or optax schedule).
      b1, b2: decays of the first and second moments, in [0, 1).
      eps, eps_root: added outside and inside the root, >= 0.
      threshold: the rectification threshold on the SMA length, >= 0.

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR
      2020, Alg. 2.
    """

    learning_rate: ScalarOrSchedule = 0.01
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    eps_root: float = 0.0
    threshold: float = 5.0

    checks = {"b1": BETA, "b2": BETA, "eps": NONNEG, "eps_root": NONNEG, "threshold": NONNEG}

    optax_fn = staticmethod(optax.radam)

    name_format = "lr{learning_rate}_b1{b1}_b2{b2}_eps{eps}"


@CATALOG.optimizer("Yogi", "Yogi: Adam with an additive second moment (optax.yogi).")
@lopt_core.declare
class Yogi(_OptaxFunction):
    """Yogi: Adam with an additive, sign-controlled second-moment update.

    Attributes:
      learning_rate: step size (float >= 0 or optax schedule).
      b1, b2: decays of the first and second moments, in [0, 1).
      eps: added to the root of the second moment, >= 0.

    References:
      Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018,
      Alg. 2.
    """

    learning_rate: ScalarOrSchedule = 0.01
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-3

    checks = {"b1": BETA, "b2": BETA, "eps": NONNEG}

    optax_fn = staticmethod(optax.yogi)

    name_format = "lr{learning_rate}_b1{b1}_b2{b2}_eps{eps}"


def _lift_scalars(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """Runs `inner` on scalar leaves reshaped to shape (1,), for transforms needing rank >= 1."""

    def lift(tree: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda x: jnp.reshape(x, (1,)) if jnp.ndim(x) == 0 else x, tree
        )

    def init_fn(params: Any) -> Any:
        return inner.init(lift(params))

    def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        lifted, new_state = inner.update(
            lift(updates), state, None if params is None else lift(params)
        )
        # Back to the caller's shapes: the lifted leaves are exactly the scalar ones.
        out = jax.tree_util.tree_map(lambda u, g: jnp.reshape(u, jnp.shape(g)), lifted, updates)
        return out, new_state

    return optax.GradientTransformation(init_fn, update_fn)


@CATALOG.optimizer("SM3", "SM3: memory-efficient cover-set accumulators (optax).")
@lopt_core.declare
class SM3(_OptaxFunction):
    """SM3: memory-efficient adaptive steps from per-axis cover-set accumulators.

    Attributes:
      learning_rate: step size (float >= 0 or optax schedule).
      momentum: momentum decay, in [0, 1).
      b2: decay of the accumulators, in (0, 1]; 1 sums them as in the paper.

    optax's SM3 needs every parameter to have rank >= 1; scalar parameters are run
    through it as shape-(1,) arrays, so any params tree works.

    References:
      Anil et al., "Memory-Efficient Adaptive Optimization", NeurIPS 2019, Alg. SM3-II.
    """

    learning_rate: ScalarOrSchedule = 0.01
    momentum: float = 0.9
    b2: float = 1.0

    checks = {"momentum": BETA, "b2": _accumulator_decay}

    def transform(self) -> optax.GradientTransformation:
        """`optax.scale_by_sm3` (scalars lifted to shape (1,)) and the learning rate."""
        return optax.chain(
            _lift_scalars(optax.scale_by_sm3(b1=self.momentum, b2=self.b2)),
            optax.scale_by_learning_rate(self.learning_rate),
        )

    name_format = "lr{learning_rate}_m{momentum}_b2{b2}"


@CATALOG.optimizer("Fromage", "Fromage: steps relative to each parameter's norm (optax.fromage).")
@lopt_core.declare
class Fromage(_OptaxFunction):
    """Fromage: Frobenius-matched steps, each relative to its parameter's norm.

    Per parameter `p` with gradient `g` (norms clipped below at `min_norm`):
    `p <- (p - learning_rate * ||p|| / ||g|| * g) / sqrt(1 + learning_rate^2)`,
    where a zero norm makes the ratio 1. Built as `optax.fromage`.

    Attributes:
      learning_rate: the relative step size (float >= 0 or optax schedule). The
        reference has no default; lopt's is 0.01.
      min_norm: the smallest norm used for `p` and `g`, >= 0.

    A parameter whose norm is below `min_norm` (for example all zeros) moves by
    about `learning_rate * min_norm` per step, so start from non-zero parameters.

    References:
      Bernstein et al., "On the distance between two neural networks and the stability
      of learning", NeurIPS 2020 (arXiv:2002.03432), Alg. 1.
    """

    learning_rate: ScalarOrSchedule = 0.01
    min_norm: float = 1e-6

    checks = {"min_norm": NONNEG}

    optax_fn = staticmethod(optax.fromage)

    name_format = "lr{learning_rate}_mn{min_norm}"


@CATALOG.optimizer("PiecewiseLinearAdam", "Adam with a piecewise-linear learning rate over steps.")
@with_old_spellings
@lopt_core.declare
class PiecewiseLinearAdam(OptaxBacked):
    """Adam whose learning rate is piecewise linear in the step, as in the reference.

    The learning rate at step `t` (from 0) is `schedules.PiecewiseLinear(times,
    lrs)(t)`: `lrs[0]` up to `times[0]`, linear between the points, `lrs[-1]`
    from `times[-1]` on. The times are absolute steps, so no horizon is needed.

    Attributes:
      times: the steps of the schedule's points, non-decreasing (a tuple; a list
        is converted).
      lrs: the learning rates at those steps, each >= 0.
      b1, b2: decays of the first and second moments, in [0, 1).
      eps, eps_root: added outside and inside the root, >= 0.

    Built as `optax.scale_by_adam` followed by the schedule, negated.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Alg. 1.
    """

    times: tuple[float, ...] = (10000, 20000)
    lrs: tuple[float, ...] = (1e-4, 1e-5)
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    eps_root: float = 1e-8

    checks = {"b1": BETA, "b2": BETA, "eps": NONNEG, "eps_root": NONNEG}

    def __post_init__(self) -> None:
        owner = type(self).__name__
        try:
            times, lrs = tuple(self.times), tuple(self.lrs)
        except TypeError as exc:
            raise TypeError(
                f"{owner}: times and lrs must be sequences of numbers, got {self.times!r} and "
                f"{self.lrs!r}. Pass for example times=(1000, 2000), lrs=(1e-3, 1e-4)."
            ) from exc
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "lrs", lrs)
        super().__post_init__()
        PiecewiseLinear(times, lrs)  # checks lengths, numbers and order
        for i, lr in enumerate(lrs):
            check_learning_rate(lr, owner, f"lrs[{i}]")

    def transform(self) -> optax.GradientTransformation:
        """`scale_by_adam`, then the piecewise-linear learning rate (negated)."""
        return optax.chain(
            optax.scale_by_adam(b1=self.b1, b2=self.b2, eps=self.eps, eps_root=self.eps_root),
            optax.scale_by_learning_rate(PiecewiseLinear(self.times, self.lrs)),
        )

    @property
    def name(self) -> str:
        """`PiecewiseLinearAdam_times10000-20000_lrs0.0001-1e-05_b1.._b2.._eps..`."""
        times = "-".join(_fmt(t) for t in self.times)
        lrs = "-".join(_fmt(v) for v in self.lrs)
        return (
            f"PiecewiseLinearAdam_times{times}_lrs{lrs}_b1{_fmt(self.b1)}_b2{_fmt(self.b2)}"
            f"_eps{_fmt(self.eps)}"
        )
