"""Tuning-free optimizers: step sizes that adapt themselves, from `optax.contrib`.

Each is one declaration over `OptaxBacked`, as in `optimizers`: its fields are
optax's arguments with optax's defaults, checked at construction, and its
transform is the `optax.contrib` function called with them. Their default
learning rate is 1.0 (a multiplier of the step size they estimate), except for
`ScheduleFreeAdamW`, whose learning rate is Adam's.

`ScheduleFreeAdamW` trains at one point and is evaluated at another: evaluate
the model at `opt.eval_params(state)` (the lopt_outer benchmarks do), not at
`get_params`.

Example:
  >>> import jax.numpy as jnp
  >>> opt = DoG()
  >>> state = opt.init({"w": jnp.ones(2)})
  >>> state = opt.update(state, {"w": jnp.ones(2)})
  >>> bool((opt.get_params(state)["w"] < 1.0).all())
  True
"""

from __future__ import annotations

from typing import Any

import optax

import lopt_core
from lopt_core.typing import Params
from lopt_core.validation import (
    check_choice,
    check_learning_rate,
    check_nonnegative,
    check_number,
    check_positive,
    check_positive_int,
    check_unit_interval,
    is_traced,
)
from lopt_optimizers._plugin import CATALOG
from lopt_optimizers.optax_optimizer import HorizonState, OptaxBacked, OptaxState
from lopt_optimizers.optimizers import ScalarOrSchedule, _check_bool, _fmt, _OptaxFunction

TUNING_FREE = ("Prodigy", "ScheduleFreeAdamW", "DoG", "Mechanic")
"""The registered names of the optimizers in this module."""


def _check_pair_of_betas(value: Any, owner: str, argument: str) -> tuple[Any, Any]:
    """`value` as a pair of decays, each in [0, 1)."""
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2:
        raise ValueError(
            f"{owner}: {argument} must be a pair (b1, b2) of decays, got {value!r}. "
            f"Pass for example {argument}=(0.9, 0.999)."
        )
    for i, beta in enumerate(pair):
        check_unit_interval(beta, owner, f"{argument}[{i}]")
    return pair


def _check_open_unit(value: Any, owner: str, argument: str) -> Any:
    return check_number(value, owner, argument, low=0.0, high=1.0, low_open=True, high_open=True)


@CATALOG.optimizer("Prodigy", "Prodigy: Adam with an estimated distance to the solution.")
@lopt_core.declare
class Prodigy(_OptaxFunction):
    """Prodigy: Adam whose step size is an online estimate of the distance to the solution.

    Attributes:
      learning_rate: multiplier of the estimated step size (float >= 0 or optax
        schedule); 1.0 needs no tuning.
      betas: decays `(b1, b2)` of the first and second moments, each in [0, 1)
        (a tuple; a list is converted).
      beta3: decay of the step-size estimate's accumulators, in [0, 1), or None
        for `sqrt(b2)`.
      eps: added to the root of the second moment, >= 0.
      estim_lr0: the initial distance estimate, > 0.
      estim_lr_coef: multiplier of the distance estimate, > 0.
      weight_decay: decoupled weight decay, >= 0.
      safeguard_warmup: leave the learning rate out of the estimate's denominator
        (steadier with a warm-up schedule).

    Built as `optax.contrib.prodigy(...)`.

    References:
      Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free
      Learner", ICML 2024 (arXiv:2306.06101), Alg. 4.
    """

    learning_rate: ScalarOrSchedule = 1.0
    betas: tuple[float, float] = (0.9, 0.999)
    beta3: float | None = None
    eps: float = 1e-8
    estim_lr0: float = 1e-6
    estim_lr_coef: float = 1.0
    weight_decay: float = 0.0
    safeguard_warmup: bool = False

    checks = {
        "beta3": check_unit_interval,
        "eps": check_nonnegative,
        "estim_lr0": check_positive,
        "estim_lr_coef": check_positive,
        "weight_decay": check_nonnegative,
        "safeguard_warmup": _check_bool,
    }

    def __post_init__(self) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "betas", _check_pair_of_betas(self.betas, owner, "betas"))
        super().__post_init__()

    optax_fn = staticmethod(optax.contrib.prodigy)

    @property
    def name(self) -> str:
        """`Prodigy_lr.._b1.._b2.._wd..`."""
        b1, b2 = self.betas
        return (
            f"Prodigy_lr{_fmt(self.learning_rate)}_b1{_fmt(b1)}_b2{_fmt(b2)}"
            f"_wd{_fmt(self.weight_decay)}"
        )


@CATALOG.optimizer("ScheduleFreeAdamW", "Schedule-free AdamW: evaluate at eval_params.")
@lopt_core.declare
class ScheduleFreeAdamW(_OptaxFunction):
    """Schedule-free AdamW: no learning-rate schedule, an averaged evaluation point.

    Gradients are taken at `y = (1 - b1) z + b1 x`, an interpolation between the
    base AdamW iterate `z` (without momentum) and `x`, a running average of the
    `z`s weighted by the learning rate to the power `weight_lr_power`. The state's
    params are `y`; the model should be evaluated at `x`, which `eval_params`
    returns (`optax.contrib.schedule_free_eval_params`).

    Attributes:
      learning_rate: AdamW's step size (float >= 0 or optax schedule).
      warmup_steps: length of a linear warm-up from 0 (a positive int), or None.
      b1: the interpolation weight of the average, in (0, 1) (its evaluation
        point divides by it).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment, >= 0.
      weight_decay: decoupled weight decay, >= 0.
      weight_lr_power: the power of the learning rate in the averaging weights, >= 0.

    Built as `optax.contrib.schedule_free_adamw(...)`.

    References:
      Defazio et al., "The Road Less Scheduled", NeurIPS 2024 (arXiv:2405.15682),
      Alg. 1.
    """

    learning_rate: ScalarOrSchedule = 0.0025
    warmup_steps: int | None = None
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    weight_lr_power: float = 2.0

    checks = {
        "warmup_steps": check_positive_int,
        "b1": _check_open_unit,
        "b2": check_unit_interval,
        "eps": check_nonnegative,
        "weight_decay": check_nonnegative,
        "weight_lr_power": check_nonnegative,
    }

    optax_fn = staticmethod(optax.contrib.schedule_free_adamw)

    name_format = "lr{learning_rate}_b1{b1}_b2{b2}_eps{eps}_wd{weight_decay}_warmup{warmup_steps}"

    def eval_params(self, opt_state: OptaxState) -> Params:
        """The averaged point `x` to evaluate the model at (not the training point `y`)."""
        inner = opt_state.optax_opt_state
        if isinstance(inner, HorizonState):
            inner = inner.inner
        return optax.contrib.schedule_free_eval_params(inner, opt_state.params)


@CATALOG.optimizer("DoG", "DoG: distance-over-gradients step sizes (optax.contrib.dog).")
@lopt_core.declare
class DoG(_OptaxFunction):
    """DoG (distance over gradients): SGD whose step is `max distance / sqrt(sum |g|^2)`.

    The step size at step `t` is the largest distance from the initial params seen
    so far divided by the root of the summed squared gradient norms.

    Attributes:
      learning_rate: multiplier of that step size (float >= 0 or optax schedule);
        1.0 needs no tuning.
      init_step: `(kind, value)`, how the first step's distance is chosen: kind
        "heuristic" (`value * (1 + ||params||)`), "distance" (`value` itself) or
        "learning_rate" (`value` is the first step size); value > 0. A tuple; a
        list is converted.
      eps: added to the denominator, >= 0.
      weight_decay: L2 weight decay added to the gradients (>= 0), or None.
      mask: optax mask choosing which params decay; None decays all.

    Built as `optax.contrib.dog(...)`.

    References:
      Ivgi, Hinder & Carmon, "DoG is SGD's Best Friend: A Parameter-Free Dynamic
      Step Size Schedule", ICML 2023 (arXiv:2302.12022), Alg. 1.
    """

    learning_rate: ScalarOrSchedule = 1.0
    init_step: tuple[str, float] = ("heuristic", 1e-6)
    eps: float = 1e-8
    weight_decay: float | None = None
    mask: Any = None

    checks = {"eps": check_nonnegative, "weight_decay": check_nonnegative}

    def __post_init__(self) -> None:
        owner = type(self).__name__
        try:
            pair = tuple(self.init_step)
        except TypeError:
            pair = ()
        if len(pair) != 2 or not isinstance(pair[0], str):
            raise ValueError(
                f"{owner}: init_step must be a pair (kind, value), got {self.init_step!r}. "
                "Pass for example init_step=('heuristic', 1e-6)."
            )
        check_choice(pair[0], owner, "init_step[0]", ("distance", "learning_rate", "heuristic"))
        check_positive(pair[1], owner, "init_step[1]")
        object.__setattr__(self, "init_step", pair)
        super().__post_init__()

    optax_fn = staticmethod(optax.contrib.dog)

    @property
    def name(self) -> str:
        """`DoG_lr.._init<kind><value>`."""
        kind, value = self.init_step
        return f"DoG_lr{_fmt(self.learning_rate)}_init{kind}{_fmt(value)}"


@CATALOG.optimizer("Mechanic", "Mechanic: a learned scale for Adam(1.0) (optax.contrib.mechanize).")
@lopt_core.declare
class Mechanic(OptaxBacked):
    """Mechanic: a base optimizer's steps scaled by a factor it learns online.

    By default the base optimizer is `optax.adam(learning_rate, eps_root=0.0)`
    with `learning_rate` 1.0; Mechanic learns the scale of its steps, starting
    from `s_init`.

    Attributes:
      learning_rate: the base Adam's learning rate (float >= 0 or optax schedule).
      base_optimizer: an optax transform to scale instead of Adam, or None for
        Adam. It cannot be recorded in a checkpoint; `learning_rate` must then
        stay 1.0 (give the transform its own).
      weight_decay: the weight decay of the scale's update, >= 0.
      eps: added to the scale's denominators, >= 0.
      s_init: the initial scale, > 0.
      num_betas: how many decays the scale is tracked with, a positive int.

    Built as `optax.contrib.mechanize(base, ...)`.

    References:
      Cutkosky, Defazio & Mehta, "Mechanic: A Learning Rate Tuner", NeurIPS 2023
      (arXiv:2306.00144), Alg. 1.
    """

    learning_rate: ScalarOrSchedule = 1.0
    base_optimizer: Any = None
    weight_decay: float = 0.01
    eps: float = 1e-8
    s_init: float = 1e-6
    num_betas: int = 6

    checks = {
        "weight_decay": check_nonnegative,
        "eps": check_nonnegative,
        "s_init": check_positive,
        "num_betas": check_positive_int,
    }

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_learning_rate(self.learning_rate, owner)
        if self.base_optimizer is not None:
            if not isinstance(self.base_optimizer, optax.GradientTransformation):
                raise TypeError(
                    f"{owner}: base_optimizer must be an optax.GradientTransformation or None, "
                    f"got {type(self.base_optimizer).__name__}. Pass for example "
                    "base_optimizer=optax.sgd(1.0)."
                )
            lr = self.learning_rate
            if callable(lr) or (not is_traced(lr) and float(lr) != 1.0):
                raise ValueError(
                    f"{owner}: learning_rate ({self.learning_rate!r}) is the default Adam's and "
                    "is unused with a base_optimizer. Leave learning_rate at 1.0 and give "
                    "base_optimizer its own learning rate."
                )
        super().__post_init__()

    def transform(self) -> optax.GradientTransformation:
        """`optax.contrib.mechanize` around the base optimizer."""
        base = self.base_optimizer
        if base is None:
            base = optax.adam(self.learning_rate, eps_root=0.0)
        return optax.contrib.mechanize(
            base,
            weight_decay=self.weight_decay,
            eps=self.eps,
            s_init=self.s_init,
            num_betas=self.num_betas,
        )

    @property
    def name(self) -> str:
        """`Mechanic_lr.._wd.._sinit..`, with `_custombase` for a given base optimizer."""
        suffix = "" if self.base_optimizer is None else "_custombase"
        return (
            f"Mechanic_lr{_fmt(self.learning_rate)}_wd{_fmt(self.weight_decay)}"
            f"_sinit{_fmt(self.s_init)}{suffix}"
        )
