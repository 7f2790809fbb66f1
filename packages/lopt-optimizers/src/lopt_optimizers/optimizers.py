"""Hand-designed optimizers: each one is an optax transform behind `OptaxOptimizer`.

Every `learning_rate` accepts a float or an optax schedule (`step -> learning
rate`, for example `optax.cosine_decay_schedule(1e-2, 1000)`). A negative or
non-finite learning rate raises at construction. `name` follows the reference
library: `SGD_lr0.01`, `Adam_lr0.01_b10.9_b20.999_eps1e-08`, ...
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from lopt_optimizers._validation import check_learning_rate, check_number
from lopt_optimizers.optax_optimizer import OptaxOptimizer

ScalarOrSchedule = Any
"""A float, a scalar array or an optax schedule `step -> value`."""


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


def _beta(value: Any, owner: str, argument: str) -> Any:
    return check_number(value, owner, argument, low=0.0, high=1.0, high_open=True)


def _nonneg(value: Any, owner: str, argument: str) -> Any:
    return check_number(value, owner, argument, low=0.0)


class SGD(OptaxOptimizer):
    """Stochastic gradient descent: `params -= learning_rate * grads`.

    Example:
      >>> import jax.numpy as jnp
      >>> opt = SGD(0.1)
      >>> s = opt.update(opt.init({"w": jnp.ones(2)}), {"w": jnp.ones(2)})
      >>> opt.get_params(s)["w"]
      Array([0.9, 0.9], dtype=float32)

    References:
      Robbins & Monro, "A Stochastic Approximation Method", 1951.
    """

    def __init__(self, learning_rate: ScalarOrSchedule = 0.01) -> None:
        """Builds SGD.

        Args:
          learning_rate: step size (float >= 0 or optax schedule).

        Raises:
          ValueError: the learning rate is negative or not finite.
        """
        owner = type(self).__name__
        self.learning_rate = check_learning_rate(learning_rate, owner)
        super().__init__(optax.sgd(learning_rate))

    @property
    def name(self) -> str:
        """`SGD_lr<learning_rate>`."""
        return f"SGD_lr{_fmt(self.learning_rate)}"


class SGDM(OptaxOptimizer):
    """Stochastic gradient descent with heavy-ball momentum.

    References:
      Polyak, "Some methods of speeding up the convergence of iteration methods", 1964.
    """

    def __init__(self, learning_rate: ScalarOrSchedule = 0.01, momentum: float = 0.9) -> None:
        """Builds SGD with momentum.

        Args:
          learning_rate: step size (float >= 0 or optax schedule).
          momentum: decay of the velocity, in [0, 1).

        Raises:
          ValueError: an argument is out of range or not finite.
        """
        owner = type(self).__name__
        self.learning_rate = check_learning_rate(learning_rate, owner)
        self.momentum = _beta(momentum, owner, "momentum")
        super().__init__(optax.sgd(learning_rate, momentum))

    @property
    def name(self) -> str:
        """`SGDM_lr<learning_rate>_m<momentum>`."""
        return f"SGDM_lr{_fmt(self.learning_rate)}_m{_fmt(self.momentum)}"


class Adam(OptaxOptimizer):
    """Adam, with `epsilon_root` inside the square root as in the reference library.

    Built as `optax.adam(...)`: a chain of `scale_by_adam` and a scaling by the
    negative learning rate, so its optax state is `(ScaleByAdamState, EmptyState)`
    for a constant learning rate.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Alg. 1.
    """

    def __init__(
        self,
        learning_rate: ScalarOrSchedule = 0.01,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        epsilon_root: float = 1e-8,
    ) -> None:
        """Builds Adam.

        Args:
          learning_rate: step size (float >= 0 or optax schedule).
          beta1: decay of the first moment, in [0, 1).
          beta2: decay of the second moment, in [0, 1).
          epsilon: added to the root of the second moment, >= 0.
          epsilon_root: added to the second moment inside the root, >= 0.

        Raises:
          ValueError: an argument is out of range or not finite.
        """
        owner = type(self).__name__
        self.learning_rate = check_learning_rate(learning_rate, owner)
        self.beta1 = _beta(beta1, owner, "beta1")
        self.beta2 = _beta(beta2, owner, "beta2")
        self.epsilon = _nonneg(epsilon, owner, "epsilon")
        self.epsilon_root = _nonneg(epsilon_root, owner, "epsilon_root")
        super().__init__(
            optax.adam(learning_rate, b1=beta1, b2=beta2, eps=epsilon, eps_root=epsilon_root)
        )

    @property
    def name(self) -> str:
        """`Adam_lr<lr>_b1<beta1>_b2<beta2>_eps<epsilon>`, plus `_epsroot<..>` if not 1e-8."""
        out = (
            f"Adam_lr{_fmt(self.learning_rate)}_b1{_fmt(self.beta1)}_b2{_fmt(self.beta2)}"
            f"_eps{_fmt(self.epsilon)}"
        )
        if not _is_value(self.epsilon_root, 1e-8):
            out += f"_epsroot{_fmt(self.epsilon_root)}"
        return out


class AdamW(OptaxOptimizer):
    """Adam with decoupled weight decay.

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, Alg. 2.
    """

    def __init__(
        self,
        learning_rate: ScalarOrSchedule = 0.01,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        eps_root: float = 0.0,
        weight_decay: float = 1e-4,
        mask: Any = None,
    ) -> None:
        """Builds AdamW.

        Args:
          learning_rate: step size (float >= 0 or optax schedule).
          b1: decay of the first moment, in [0, 1).
          b2: decay of the second moment, in [0, 1).
          eps: added to the root of the second moment, >= 0.
          eps_root: added to the second moment inside the root, >= 0.
          weight_decay: decoupled decay rate, >= 0 (multiplied by the learning rate).
          mask: optax mask (a pytree of bools or a function of params) choosing which
            params decay; None decays all.

        Raises:
          ValueError: an argument is out of range or not finite.
        """
        owner = type(self).__name__
        self.learning_rate = check_learning_rate(learning_rate, owner)
        self.b1 = _beta(b1, owner, "b1")
        self.b2 = _beta(b2, owner, "b2")
        self.eps = _nonneg(eps, owner, "eps")
        self.eps_root = _nonneg(eps_root, owner, "eps_root")
        self.weight_decay = _nonneg(weight_decay, owner, "weight_decay")
        super().__init__(
            optax.adamw(
                learning_rate,
                b1=b1,
                b2=b2,
                eps=eps,
                eps_root=eps_root,
                weight_decay=weight_decay,
                mask=mask,
            )
        )

    @property
    def name(self) -> str:
        """`AdamW_lr.._b1.._b2.._eps.._wd..`."""
        return (
            f"AdamW_lr{_fmt(self.learning_rate)}_b1{_fmt(self.b1)}_b2{_fmt(self.b2)}"
            f"_eps{_fmt(self.eps)}_wd{_fmt(self.weight_decay)}"
        )


class NAdamW(OptaxOptimizer):
    """Nesterov Adam with decoupled (AdamW) and L2 weight decay.

    The update is optax's Nesterov `scale_by_adam`. `l2_weight_decay` adds
    `l2_weight_decay * params` to the gradients before the moments (an L2 penalty);
    `adamw_weight_decay` adds `adamw_weight_decay * params` to the update after
    them (decoupled decay); both are then scaled by the learning rate.

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """

    def __init__(
        self,
        learning_rate: ScalarOrSchedule = 1e-4,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        adamw_weight_decay: float = 0.0,
        l2_weight_decay: float = 0.0,
    ) -> None:
        """Builds NAdamW (the reference's defaults).

        Args:
          learning_rate: step size (float >= 0 or optax schedule).
          beta1: decay of the first moment, in [0, 1).
          beta2: decay of the second moment, in [0, 1).
          epsilon: added to the root of the second moment, >= 0.
          adamw_weight_decay: decoupled decay rate, >= 0.
          l2_weight_decay: L2 penalty added to the gradients, >= 0.

        Raises:
          ValueError: an argument is out of range or not finite.
        """
        owner = type(self).__name__
        self.learning_rate = check_learning_rate(learning_rate, owner)
        self.beta1 = _beta(beta1, owner, "beta1")
        self.beta2 = _beta(beta2, owner, "beta2")
        self.epsilon = _nonneg(epsilon, owner, "epsilon")
        self.adamw_weight_decay = _nonneg(adamw_weight_decay, owner, "adamw_weight_decay")
        self.l2_weight_decay = _nonneg(l2_weight_decay, owner, "l2_weight_decay")
        super().__init__(
            optax.chain(
                optax.add_decayed_weights(l2_weight_decay),
                optax.scale_by_adam(b1=beta1, b2=beta2, eps=epsilon, nesterov=True),
                optax.add_decayed_weights(adamw_weight_decay),
                optax.scale_by_learning_rate(learning_rate),
            )
        )

    @property
    def name(self) -> str:
        """`NAdamW_lr.._b1.._b2.._eps.._wd.._l2..`."""
        return (
            f"NAdamW_lr{_fmt(self.learning_rate)}_b1{_fmt(self.beta1)}_b2{_fmt(self.beta2)}"
            f"_eps{_fmt(self.epsilon)}_wd{_fmt(self.adamw_weight_decay)}"
            f"_l2{_fmt(self.l2_weight_decay)}"
        )


class RMSProp(OptaxOptimizer):
    """RMSProp, optionally with (Nesterov) momentum.

    References:
      Tieleman & Hinton, Lecture 6.5 of "Neural Networks for Machine Learning", 2012.
    """

    def __init__(
        self,
        learning_rate: ScalarOrSchedule = 0.01,
        decay: float = 0.9,
        epsilon: float = 1e-8,
        momentum: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        """Builds RMSProp.

        Args:
          learning_rate: step size (float >= 0 or optax schedule).
          decay: decay of the squared-gradient average, in [0, 1).
          epsilon: added to the squared-gradient average, >= 0.
          momentum: momentum decay, in [0, 1); 0 for none.
          nesterov: use Nesterov momentum.

        Raises:
          ValueError: an argument is out of range or not finite.
        """
        owner = type(self).__name__
        self.learning_rate = check_learning_rate(learning_rate, owner)
        self.decay = _beta(decay, owner, "decay")
        self.epsilon = _nonneg(epsilon, owner, "epsilon")
        self.momentum = _beta(momentum, owner, "momentum")
        self.nesterov = bool(nesterov)
        super().__init__(
            optax.rmsprop(
                learning_rate, decay=decay, eps=epsilon, momentum=momentum, nesterov=nesterov
            )
        )

    @property
    def name(self) -> str:
        """`RMSProp_lr.._d.._eps.._m.._nesterov..`."""
        return (
            f"RMSProp_lr{_fmt(self.learning_rate)}_d{_fmt(self.decay)}_eps{_fmt(self.epsilon)}"
            f"_m{_fmt(self.momentum)}_nesterov{self.nesterov}"
        )


class AdaBelief(OptaxOptimizer):
    """AdaBelief: Adam whose second moment tracks the gradient's deviation from its mean.

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
      Gradients", NeurIPS 2020, Alg. 2.
    """

    def __init__(
        self,
        learning_rate: ScalarOrSchedule = 0.01,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-16,
        eps_root: float = 1e-16,
    ) -> None:
        """Builds AdaBelief.

        Args:
          learning_rate: step size (float >= 0 or optax schedule).
          b1: decay of the first moment, in [0, 1).
          b2: decay of the belief (centred second moment), in [0, 1).
          eps: added to the root of the second moment, >= 0.
          eps_root: added inside the root, >= 0.

        Raises:
          ValueError: an argument is out of range or not finite.
        """
        owner = type(self).__name__
        self.learning_rate = check_learning_rate(learning_rate, owner)
        self.b1 = _beta(b1, owner, "b1")
        self.b2 = _beta(b2, owner, "b2")
        self.eps = _nonneg(eps, owner, "eps")
        self.eps_root = _nonneg(eps_root, owner, "eps_root")
        super().__init__(optax.adabelief(learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root))

    @property
    def name(self) -> str:
        """`AdaBelief_lr.._b1.._b2.._eps..`."""
        return (
            f"AdaBelief_lr{_fmt(self.learning_rate)}_b1{_fmt(self.b1)}_b2{_fmt(self.b2)}"
            f"_eps{_fmt(self.eps)}"
        )


class AdaGrad(OptaxOptimizer):
    """AdaGrad: steps scaled by the root of the summed squared gradients.

    References:
      Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and
      Stochastic Optimization", JMLR 2011.
    """

    def __init__(
        self,
        learning_rate: ScalarOrSchedule = 0.01,
        initial_accumulator_value: float = 0.1,
        eps: float = 1e-7,
    ) -> None:
        """Builds AdaGrad.

        Args:
          learning_rate: step size (float >= 0 or optax schedule).
          initial_accumulator_value: starting value of the squared-gradient sum, >= 0.
          eps: added to the root, >= 0.

        Raises:
          ValueError: an argument is out of range or not finite.
        """
        owner = type(self).__name__
        self.learning_rate = check_learning_rate(learning_rate, owner)
        self.initial_accumulator_value = _nonneg(
            initial_accumulator_value, owner, "initial_accumulator_value"
        )
        self.eps = _nonneg(eps, owner, "eps")
        super().__init__(
            optax.adagrad(
                learning_rate, initial_accumulator_value=initial_accumulator_value, eps=eps
            )
        )

    @property
    def name(self) -> str:
        """`AdaGrad_lr.._iav.._eps..`."""
        return (
            f"AdaGrad_lr{_fmt(self.learning_rate)}_iav{_fmt(self.initial_accumulator_value)}"
            f"_eps{_fmt(self.eps)}"
        )


class Adafactor(OptaxOptimizer):
    """Adafactor: factored second moments, relative step sizes and update clipping.

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
      ICML 2018, Alg. 4.
    """

    def __init__(
        self,
        learning_rate: ScalarOrSchedule = 0.01,
        min_dim_size_to_factor: int = 128,
        decay_rate: float = 0.8,
        decay_offset: int = 0,
        multiply_by_parameter_scale: bool = True,
        clipping_threshold: float | None = 1.0,
        momentum: float | None = None,
        dtype_momentum: Any = jnp.float32,
        weight_decay_rate: float | None = None,
        eps: float = 1e-30,
        factored: bool = True,
        weight_decay_mask: Any = None,
    ) -> None:
        """Builds Adafactor (optax's defaults).

        Args:
          learning_rate: step size (float >= 0 or optax schedule).
          min_dim_size_to_factor: only factor dimensions at least this large.
          decay_rate: exponent of the second-moment decay schedule, >= 0.
          decay_offset: step offset of that schedule.
          multiply_by_parameter_scale: scale steps by the parameters' RMS.
          clipping_threshold: clip the update's RMS to this, or None.
          momentum: first-moment decay in [0, 1), or None for no momentum.
          dtype_momentum: dtype of the momentum accumulator.
          weight_decay_rate: decoupled weight decay, or None.
          eps: regularizer of the second moment, >= 0.
          factored: factor the second moment of matrices.
          weight_decay_mask: optax mask choosing which params decay.

        Raises:
          ValueError: an argument is out of range or not finite.
        """
        owner = type(self).__name__
        self.learning_rate = check_learning_rate(learning_rate, owner)
        self.decay_rate = _nonneg(decay_rate, owner, "decay_rate")
        self.clipping_threshold = (
            None
            if clipping_threshold is None
            else check_number(
                clipping_threshold, owner, "clipping_threshold", low=0.0, low_open=True
            )
        )
        self.momentum = None if momentum is None else _beta(momentum, owner, "momentum")
        self.eps = _nonneg(eps, owner, "eps")
        super().__init__(
            optax.adafactor(
                learning_rate,
                min_dim_size_to_factor=min_dim_size_to_factor,
                decay_rate=decay_rate,
                decay_offset=decay_offset,
                multiply_by_parameter_scale=multiply_by_parameter_scale,
                clipping_threshold=clipping_threshold,
                momentum=momentum,
                dtype_momentum=dtype_momentum,
                weight_decay_rate=weight_decay_rate,
                eps=eps,
                factored=factored,
                weight_decay_mask=weight_decay_mask,
            )
        )

    @property
    def name(self) -> str:
        """`Adafactor_lr.._d.._clip.._m..`."""
        return (
            f"Adafactor_lr{_fmt(self.learning_rate)}_d{_fmt(self.decay_rate)}"
            f"_clip{_fmt(self.clipping_threshold)}_m{_fmt(self.momentum)}"
        )


class Lamb(OptaxOptimizer):
    """LAMB: Adam steps rescaled per layer by the trust ratio ||params|| / ||step||.

    References:
      You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
      minutes", ICLR 2020, Alg. 2.
    """

    def __init__(
        self,
        learning_rate: ScalarOrSchedule = 0.01,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-6,
        eps_root: float = 0.0,
        weight_decay: float = 0.0,
        mask: Any = None,
    ) -> None:
        """Builds LAMB.

        Args:
          learning_rate: step size (float >= 0 or optax schedule).
          b1: decay of the first moment, in [0, 1).
          b2: decay of the second moment, in [0, 1).
          eps: added to the root of the second moment, >= 0.
          eps_root: added inside the root, >= 0.
          weight_decay: decoupled decay rate, >= 0.
          mask: optax mask choosing which params decay.

        Raises:
          ValueError: an argument is out of range or not finite.
        """
        owner = type(self).__name__
        self.learning_rate = check_learning_rate(learning_rate, owner)
        self.b1 = _beta(b1, owner, "b1")
        self.b2 = _beta(b2, owner, "b2")
        self.eps = _nonneg(eps, owner, "eps")
        self.eps_root = _nonneg(eps_root, owner, "eps_root")
        self.weight_decay = _nonneg(weight_decay, owner, "weight_decay")
        super().__init__(
            optax.lamb(
                learning_rate,
                b1=b1,
                b2=b2,
                eps=eps,
                eps_root=eps_root,
                weight_decay=weight_decay,
                mask=mask,
            )
        )

    @property
    def name(self) -> str:
        """`Lamb_lr.._b1.._b2.._eps.._wd..`."""
        return (
            f"Lamb_lr{_fmt(self.learning_rate)}_b1{_fmt(self.b1)}_b2{_fmt(self.b2)}"
            f"_eps{_fmt(self.eps)}_wd{_fmt(self.weight_decay)}"
        )


class Lars(OptaxOptimizer):
    """LARS: SGD with momentum whose step is rescaled per layer by a trust ratio.

    References:
      You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
      Alg. 1.
    """

    def __init__(
        self,
        learning_rate: ScalarOrSchedule = 0.01,
        weight_decay: float = 0.0,
        weight_decay_mask: Any = True,
        trust_coefficient: float = 0.001,
        eps: float = 0.0,
        trust_ratio_mask: Any = True,
        momentum: float = 0.9,
        nesterov: bool = False,
    ) -> None:
        """Builds LARS.

        Args:
          learning_rate: step size (float >= 0 or optax schedule).
          weight_decay: decay rate, >= 0.
          weight_decay_mask: optax mask choosing which params decay.
          trust_coefficient: scale of the trust ratio, > 0.
          eps: added to the trust ratio's denominator, >= 0.
          trust_ratio_mask: optax mask choosing which params use the trust ratio.
          momentum: momentum decay, in [0, 1).
          nesterov: use Nesterov momentum.

        Raises:
          ValueError: an argument is out of range or not finite.
        """
        owner = type(self).__name__
        self.learning_rate = check_learning_rate(learning_rate, owner)
        self.weight_decay = _nonneg(weight_decay, owner, "weight_decay")
        self.trust_coefficient = check_number(
            trust_coefficient, owner, "trust_coefficient", low=0.0, low_open=True
        )
        self.eps = _nonneg(eps, owner, "eps")
        self.momentum = _beta(momentum, owner, "momentum")
        self.nesterov = bool(nesterov)
        super().__init__(
            optax.lars(
                learning_rate,
                weight_decay=weight_decay,
                weight_decay_mask=weight_decay_mask,
                trust_coefficient=trust_coefficient,
                eps=eps,
                trust_ratio_mask=trust_ratio_mask,
                momentum=momentum,
                nesterov=nesterov,
            )
        )

    @property
    def name(self) -> str:
        """`Lars_lr.._m.._wd.._tc..`."""
        return (
            f"Lars_lr{_fmt(self.learning_rate)}_m{_fmt(self.momentum)}"
            f"_wd{_fmt(self.weight_decay)}_tc{_fmt(self.trust_coefficient)}"
        )


class RAdam(OptaxOptimizer):
    """Rectified Adam: SGD with momentum until the second moment's variance is tractable.

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR
      2020, Alg. 2.
    """

    def __init__(
        self,
        learning_rate: ScalarOrSchedule = 0.01,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        eps_root: float = 0.0,
        threshold: float = 5.0,
    ) -> None:
        """Builds RAdam.

        Args:
          learning_rate: step size (float >= 0 or optax schedule).
          b1: decay of the first moment, in [0, 1).
          b2: decay of the second moment, in [0, 1).
          eps: added to the root of the second moment, >= 0.
          eps_root: added inside the root, >= 0.
          threshold: the rectification threshold on the SMA length, >= 0.

        Raises:
          ValueError: an argument is out of range or not finite.
        """
        owner = type(self).__name__
        self.learning_rate = check_learning_rate(learning_rate, owner)
        self.b1 = _beta(b1, owner, "b1")
        self.b2 = _beta(b2, owner, "b2")
        self.eps = _nonneg(eps, owner, "eps")
        self.eps_root = _nonneg(eps_root, owner, "eps_root")
        self.threshold = _nonneg(threshold, owner, "threshold")
        super().__init__(
            optax.radam(
                learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root, threshold=threshold
            )
        )

    @property
    def name(self) -> str:
        """`RAdam_lr.._b1.._b2.._eps..`."""
        return (
            f"RAdam_lr{_fmt(self.learning_rate)}_b1{_fmt(self.b1)}_b2{_fmt(self.b2)}"
            f"_eps{_fmt(self.eps)}"
        )


class Yogi(OptaxOptimizer):
    """Yogi: Adam with an additive, sign-controlled second-moment update.

    References:
      Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018,
      Alg. 2.
    """

    def __init__(
        self,
        learning_rate: ScalarOrSchedule = 0.01,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-3,
    ) -> None:
        """Builds Yogi.

        Args:
          learning_rate: step size (float >= 0 or optax schedule).
          b1: decay of the first moment, in [0, 1).
          b2: decay of the second moment, in [0, 1).
          eps: added to the root of the second moment, >= 0.

        Raises:
          ValueError: an argument is out of range or not finite.
        """
        owner = type(self).__name__
        self.learning_rate = check_learning_rate(learning_rate, owner)
        self.b1 = _beta(b1, owner, "b1")
        self.b2 = _beta(b2, owner, "b2")
        self.eps = _nonneg(eps, owner, "eps")
        super().__init__(optax.yogi(learning_rate, b1=b1, b2=b2, eps=eps))

    @property
    def name(self) -> str:
        """`Yogi_lr.._b1.._b2.._eps..`."""
        return (
            f"Yogi_lr{_fmt(self.learning_rate)}_b1{_fmt(self.b1)}_b2{_fmt(self.b2)}"
            f"_eps{_fmt(self.eps)}"
        )


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


class SM3(OptaxOptimizer):
    """SM3: memory-efficient adaptive steps from per-axis cover-set accumulators.

    optax's SM3 needs every parameter to have rank >= 1; scalar parameters are run
    through it as shape-(1,) arrays, so any params tree works.

    References:
      Anil et al., "Memory-Efficient Adaptive Optimization", NeurIPS 2019, Alg. SM3-II.
    """

    def __init__(
        self, learning_rate: ScalarOrSchedule = 0.01, momentum: float = 0.9, b2: float = 1.0
    ) -> None:
        """Builds SM3.

        Args:
          learning_rate: step size (float >= 0 or optax schedule).
          momentum: momentum decay, in [0, 1).
          b2: decay of the accumulators, in (0, 1]; 1 sums them as in the paper.

        Raises:
          ValueError: an argument is out of range or not finite.
        """
        owner = type(self).__name__
        self.learning_rate = check_learning_rate(learning_rate, owner)
        self.momentum = _beta(momentum, owner, "momentum")
        self.b2 = check_number(b2, owner, "b2", low=0.0, high=1.0, low_open=True)
        super().__init__(
            optax.chain(
                _lift_scalars(optax.scale_by_sm3(b1=momentum, b2=b2)),
                optax.scale_by_learning_rate(learning_rate),
            )
        )

    @property
    def name(self) -> str:
        """`SM3_lr.._m.._b2..`."""
        return f"SM3_lr{_fmt(self.learning_rate)}_m{_fmt(self.momentum)}_b2{_fmt(self.b2)}"
