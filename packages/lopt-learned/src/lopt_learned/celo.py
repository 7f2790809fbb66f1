"""Celo and Celo2: a tiny per-parameter MLP with a normalised step and a learned schedule.

Both architectures split the step into a direction and a magnitude:

- the direction is the output of a per-parameter MLP (two hidden layers of 8,
  ReLU) on Adam-style features, divided by its root mean square over each tensor,
  so every tensor's update has RMS exactly one before scaling;
- the magnitude is one learning rate per step, `learning_rate * exp(s)`, where
  `s` comes from a small learned scheduler and is clipped to
  `[-max_log_lr_change, max_log_lr_change]`.

So no theta can make a step larger than
`learning_rate * exp(max_log_lr_change)` in RMS per tensor: the step is bounded
by construction, whatever the horizon.

`Celo` schedules over the fraction of training done, `t / num_steps`, so it
needs the horizon at `init` (`opt.init(params, num_steps=N)`, or
`as_optax(lopt, theta, num_steps=N)`). `Celo2` schedules over the iteration
count (embedded at timescales 1 to 100k steps), so it needs neither the horizon
nor the loss and works as a plain optax transform.

At its initial theta the MLP computes the Adam direction `m / sqrt(v)` exactly
(one ReLU pair carries it through both hidden layers) plus a small random
contribution of the other units (`init_noise`), and the scheduler outputs zero,
so the optimizer starts as Adam with a per-tensor normalised update and learning
rate `learning_rate` (1e-3).

Deviations from the paper, stated plainly: the scheduler is an MLP on the
time (or fraction) features rather than the paper's recurrent scheduler, and the
MLP's inputs are the Adam-style subset of the paper's features (no factored
second moments).

References:
  Moudgil, Knyazev, Lajoie and Belilovsky, "Learning Versatile Optimizers on a
  Compute Diet", 2025 (Celo), and its follow-up Celo2 by the same group (2025).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

import lopt_core
from lopt_core.typing import MetaParams, Params, PRNGKey
from lopt_core.validation import (
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_unit_interval,
)
from lopt_learned._common import (
    F32,
    TIMESCALES,
    Layout,
    check_decays,
    mlp_apply,
    second_moment_normalize,
    set_fields,
    tanh_time_features,
)
from lopt_learned._driver import LearnedArchitecture, LearnedOptimizerState, StepInputs
from lopt_learned._plugin import CATALOG

FRACTIONS = (0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
"""Scales of Celo's training-fraction features `tanh(fraction / scale - 1)`."""

_EPS = 1e-8


@flax.struct.dataclass
class CeloState(LearnedOptimizerState):
    """State of a Celo or Celo2 optimizer: `LearnedOptimizerState`'s fields, and

    Attributes:
      momenta: float32 `(num_momentum_decays, num_params)`, leaves concatenated.
      rms: float32 `(num_params,)` second moments of the gradients.
      num_steps: float32 scalar, the training horizon (Celo; 0 for Celo2).
    """

    momenta: jax.Array
    rms: jax.Array
    num_steps: jax.Array


def _dense_init(key: jax.Array, fan_in: int, fan_out: int) -> jax.Array:
    init = hk.initializers.TruncatedNormal(stddev=1.0 / np.sqrt(fan_in))
    return hk.transform(lambda: init([fan_in, fan_out], F32)).apply({}, key)


class _CeloBase(LearnedArchitecture):
    """The shared architecture of Celo and Celo2 (see the module docstring)."""

    state_class = CeloState
    horizon_aware: ClassVar[bool] = False
    """Whether the scheduler reads the fraction of training (and `init` needs `num_steps`)."""

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_positive(self.learning_rate, owner, "learning_rate")
        check_nonnegative(self.max_log_lr_change, owner, "max_log_lr_change")
        check_nonnegative(self.init_noise, owner, "init_noise")
        hidden = check_positive_int(self.hidden_size, owner, "hidden_size")
        if hidden < 2:
            raise ValueError(
                f"{owner}: hidden_size must be >= 2 (two units carry the initial Adam "
                f"direction), got {hidden}."
            )
        set_fields(
            self,
            hidden_size=hidden,
            momentum_decays=check_decays(self.momentum_decays, owner, "momentum_decays"),
            rms_decay=float(check_unit_interval(self.rms_decay, owner, "rms_decay")),
        )

    @property
    def num_features(self) -> int:
        """Per-parameter inputs: gradient, parameter, k momenta, second moment, k Adam
        directions `m / sqrt(v)` and the inverse root `1 / sqrt(v)` (10 for k = 3)."""
        return 4 + 2 * len(self.momentum_decays)

    @property
    def _adam_feature(self) -> int:
        """Index of `m_0 / sqrt(v)` (the first momentum's Adam direction)."""
        return 3 + len(self.momentum_decays)

    def _schedule_features(self, state: CeloState) -> jax.Array:
        if self.horizon_aware:
            frac = jnp.asarray(state.iteration, F32) / jnp.maximum(state.num_steps, 1.0)
            return jnp.tanh(frac / jnp.asarray(FRACTIONS, F32) - 1.0)
        return tanh_time_features(state.iteration)

    @property
    def _num_schedule_features(self) -> int:
        return len(FRACTIONS) if self.horizon_aware else len(TIMESCALES)

    def init(self, key: PRNGKey) -> MetaParams:
        """The update MLP (`w0..w2`, `b0..b2`) and the scheduler (`w0, b0, w1, b1`).

        The update MLP starts at the Adam direction plus `init_noise` times the
        other units' contribution; the scheduler's last layer starts at zero.
        """
        keys = jax.random.split(key, 5)
        n_in, h, a = self.num_features, self.hidden_size, self._adam_feature
        w0 = _dense_init(keys[0], n_in, h)
        w0 = w0.at[:, :2].set(0.0).at[a, 0].set(1.0).at[a, 1].set(-1.0)
        w1 = _dense_init(keys[1], h, h)
        w1 = w1.at[:, :2].set(0.0).at[0, 0].set(1.0).at[1, 1].set(1.0)
        w2 = self.init_noise * _dense_init(keys[2], h, 1)
        w2 = w2.at[0, 0].set(1.0).at[1, 0].set(-1.0)
        n_sched = self._num_schedule_features
        return {
            "mlp": {
                "w0": w0,
                "b0": jnp.zeros([h], F32),
                "w1": w1,
                "b1": jnp.zeros([h], F32),
                "w2": w2,
                "b2": jnp.zeros([1], F32),
            },
            "scheduler": {
                "w0": _dense_init(keys[3], n_sched, h),
                "b0": jnp.zeros([h], F32),
                "w1": jnp.zeros([h, 1], F32),
                "b1": jnp.zeros([1], F32),
            },
        }

    def init_state(
        self, theta: MetaParams, params: Params, layout: Layout, **kwargs: Any
    ) -> dict[str, Any]:
        """Zero moments (and, for Celo, the horizon `num_steps`)."""
        num_steps = kwargs.get("num_steps")
        owner = type(self).__name__
        if self.horizon_aware:
            if num_steps is None:
                raise ValueError(
                    f"{owner} schedules over the fraction of training, so it needs the "
                    f"horizon: pass opt.init(params, num_steps=N) or "
                    f"as_optax(lopt, theta, num_steps=N); Celo2 needs no horizon."
                )
            num_steps = check_positive(num_steps, owner, "num_steps")
        return {
            "momenta": jnp.zeros((len(self.momentum_decays), layout.total), F32),
            "rms": jnp.zeros((layout.total,), F32),
            "num_steps": jnp.asarray(num_steps if self.horizon_aware else 0.0, F32),
        }

    def learning_rate_at(self, theta: MetaParams, state: CeloState) -> jax.Array:
        """The scheduled learning rate of the next step (a float32 scalar)."""
        sched = theta["scheduler"]
        x = self._schedule_features(state)
        hidden = jax.nn.relu(x @ sched["w0"] + sched["b0"])
        s = (hidden @ sched["w1"] + sched["b1"])[0]
        s = jnp.clip(s, -self.max_log_lr_change, self.max_log_lr_change)
        return self.learning_rate * jnp.exp(s)

    def step(self, theta: MetaParams, state: CeloState, inputs: StepInputs) -> CeloState:
        """Moments, 10 normalised features, MLP direction normalised per tensor, scheduled."""
        layout = inputs.layout
        g, p = inputs.flat()
        decays = jnp.asarray(self.momentum_decays, F32)[:, None]
        m = state.momenta * decays + (1.0 - decays) * g[None]
        v = state.rms * self.rms_decay + (1.0 - self.rms_decay) * jnp.square(g)
        inv_root = 1.0 / (jnp.sqrt(v) + _EPS)
        feats = jnp.concatenate(
            [g[None], p[None], m, v[None], m * inv_root[None], inv_root[None]], axis=0
        )
        feats = second_moment_normalize(layout, feats)
        nn = theta["mlp"]
        layers = [(nn["w0"], nn["b0"]), (nn["w1"], nn["b1"]), (nn["w2"], nn["b2"])]
        direction = second_moment_normalize(layout, mlp_apply(layers, feats), eps=1e-30)[0]
        step = self.learning_rate_at(theta, state) * direction
        return state.replace(params=layout.unflatten(p - step), momenta=m, rms=v)


@CATALOG.learned_optimizer(
    "Celo2", "tiny MLP, per-tensor normalised step, learned schedule over steps (no horizon)"
)
@lopt_core.declare
class Celo2(_CeloBase):
    """Celo2: Celo's normalised per-parameter MLP with a horizon-free learned schedule.

    See the module docstring. Needs neither the loss nor `num_steps`, so it is a
    plain optax transform through `as_optax(lopt, theta)`. The scheduler reads
    the 11 iteration features `tanh(t / tau - 1)`, tau in 1, 3, ..., 100k.

    State: 4 floats per parameter (3 momenta and the second moment), besides the
    parameters.

    Attributes:
      learning_rate: the learning rate at the scheduler's zero output (> 0).
      max_log_lr_change: bound on the scheduler's log-change of the learning rate
        (>= 0): the per-tensor RMS of a step never exceeds
        `learning_rate * exp(max_log_lr_change)`.
      hidden_size: width of the MLP's two hidden layers and of the scheduler (>= 2).
      init_noise: weight of the non-Adam units in the initial output (>= 0).
      momentum_decays: decays of the momenta; the first feeds the initial Adam
        direction.
      rms_decay: decay of the second moment.

    Example:
      >>> lopt = Celo2()
      >>> tx = as_optax(lopt, lopt.init(jax.random.PRNGKey(0)))

    References:
      Moudgil, Knyazev, Lajoie and Belilovsky, "Learning Versatile Optimizers on a
      Compute Diet", 2025, and its Celo2 follow-up (2025).
    """

    learning_rate: float = 1e-3
    max_log_lr_change: float = 3.0
    hidden_size: int = 8
    init_noise: float = 0.01
    momentum_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
    rms_decay: float = 0.999
    horizon_aware = False


@CATALOG.learned_optimizer(
    "Celo", "tiny MLP, per-tensor normalised step, learned schedule over training fraction"
)
@lopt_core.declare
class Celo(_CeloBase):
    """Celo: a normalised per-parameter MLP with a learned schedule over training fraction.

    See the module docstring. The scheduler reads 8 features
    `tanh(fraction / scale - 1)` of `fraction = t / num_steps`, scale in
    0.01 ... 1, so `init` needs `num_steps` (a ValueError names the fix when it is
    missing). The loss is not needed.

    State: 4 floats per parameter (3 momenta and the second moment), besides the
    parameters, and the horizon.

    Attributes:
      learning_rate, max_log_lr_change, hidden_size, init_noise, momentum_decays,
      rms_decay: as for `Celo2`.

    Example:
      >>> lopt = Celo()
      >>> tx = as_optax(lopt, lopt.init(jax.random.PRNGKey(0)), num_steps=1000)

    References:
      Moudgil, Knyazev, Lajoie and Belilovsky, "Learning Versatile Optimizers on a
      Compute Diet", 2025.
    """

    learning_rate: float = 1e-3
    max_log_lr_change: float = 3.0
    hidden_size: int = 8
    init_noise: float = 0.01
    momentum_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
    rms_decay: float = 0.999
    horizon_aware = True
