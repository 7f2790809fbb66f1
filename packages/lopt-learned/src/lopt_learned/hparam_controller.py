"""Part 6's hyperparameter controller: an LSTM reads the loss and sets the learning rate."""

from __future__ import annotations

from typing import Any

import flax
import haiku as hk
import jax
import jax.numpy as jnp

import lopt_core
from lopt_core.typing import MetaParams, Params, PRNGKey
from lopt_core.validation import check_positive_int
from lopt_learned._common import F32, Layout, set_fields
from lopt_learned._driver import LearnedArchitecture, LearnedOptimizerState, StepInputs
from lopt_learned._plugin import CATALOG


def _forward(hidden_size: int, hidden: Any, cell: Any, x: jax.Array) -> tuple:
    out, nxt = hk.LSTM(hidden_size)(x, hk.LSTMState(hidden, cell))
    log_lr = hk.Linear(1)(out)
    return nxt, jnp.exp(log_lr) * 0.01


_NETS: dict[int, Any] = {}


def _net(hidden_size: int) -> Any:
    if hidden_size not in _NETS:
        _NETS[hidden_size] = hk.without_apply_rng(
            hk.transform(lambda h, c, x: _forward(hidden_size, h, c, x))
        )
    return _NETS[hidden_size]


@flax.struct.dataclass
class HParamControllerState(LearnedOptimizerState):
    """State of an HParamControllerLOPT optimizer: `LearnedOptimizerState`'s fields, and

    Attributes:
      rnn_hidden_state: `{"hidden", "cell"}`, float32 `(1, hidden_size)` each.
    """

    rnn_hidden_state: dict[str, jax.Array]


@CATALOG.learned_optimizer("HParamControllerLOPT", "LSTM on the loss setting SGD's lr")
@lopt_core.declare
class HParamControllerLOPT(LearnedArchitecture):
    """An LSTM controller on the training loss that outputs SGD's learning rate (Part 6).

    Each step the loss goes through `hk.LSTM(hidden_size)`, then `hk.Linear(1)`;
    the learning rate is `0.01 * exp(output)` and `p -= lr * g`. The initial LSTM
    state is meta-learned too. The optimizer needs the loss at every step.

    theta: `{"initial_rnn_hidden_state": {"hidden", "cell"} (1, hidden_size),
    "rnn_params": the LSTM's and linear head's weights}`.

    Attributes:
      hidden_size: the LSTM's width.

    Example:
      >>> lopt = HParamControllerLOPT()
      >>> opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
      >>> s = opt.update(opt.init({"a": jnp.ones([3, 2])}), {"a": -jnp.ones([3, 2])}, loss=1.0)
    """

    hidden_size: int = 128
    state_class = HParamControllerState
    needs_loss = True

    def __post_init__(self) -> None:
        set_fields(
            self,
            hidden_size=check_positive_int(self.hidden_size, "HParamControllerLOPT", "hidden_size"),
        )

    def init(self, key: PRNGKey) -> MetaParams:
        """A zero initial LSTM state and the LSTM and head weights for one input (the loss)."""
        zero = jnp.zeros([1, self.hidden_size], F32)
        rnn_params = _net(self.hidden_size).init(key, zero, zero, jnp.zeros([1, 1], F32))
        return {
            "initial_rnn_hidden_state": {"cell": zero, "hidden": zero},
            "rnn_params": rnn_params,
        }

    def init_state(
        self, theta: MetaParams, params: Params, layout: Layout, **kwargs: Any
    ) -> dict[str, Any]:
        """Copies theta's meta-learned initial LSTM state into the inner state."""
        return {"rnn_hidden_state": dict(theta["initial_rnn_hidden_state"])}

    def step(
        self, theta: MetaParams, state: HParamControllerState, inputs: StepInputs
    ) -> HParamControllerState:
        """Feeds the loss to the LSTM and takes an SGD step at the learning rate it outputs."""
        h = state.rnn_hidden_state
        nxt, lr = _net(self.hidden_size).apply(
            theta["rnn_params"],
            h["hidden"],
            h["cell"],
            jnp.reshape(jnp.asarray(inputs.loss, F32), (1, 1)),
        )
        lr = jnp.reshape(lr, ())
        new = jax.tree_util.tree_map(
            lambda p, g: (jnp.asarray(p, F32) - jnp.asarray(g, F32) * lr).astype(
                jnp.result_type(p)
            ),
            state.params,
            inputs.grads,
        )
        return state.replace(params=new, rnn_hidden_state={"hidden": nxt.hidden, "cell": nxt.cell})
