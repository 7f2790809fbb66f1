"""Part 6's hyperparameter controller: an LSTM reads the loss and sets the learning rate."""

from __future__ import annotations

from typing import Any

import flax
import haiku as hk
import jax
import jax.numpy as jnp

from lopt_core import LearnedOptimizer
from lopt_core.typing import MetaParams, ModelState, Params, PRNGKey
from lopt_learned._base import ThetaOptimizer, check_theta
from lopt_learned._common import F32, check_grads, keep_model_state, layout_of, require_loss


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
class HParamControllerState:
    """State of an HParamControllerLOPT optimizer.

    Attributes:
      params: the parameters.
      model_state: the model state, or None.
      iteration: int32 number of updates applied.
      rnn_hidden_state: `{"hidden", "cell"}`, float32 `(1, hidden_size)` each.
    """

    params: Params
    model_state: ModelState
    iteration: jax.Array
    rnn_hidden_state: dict[str, jax.Array]


class HParamControllerOptimizer(ThetaOptimizer):
    """The optimizer an `HParamControllerLOPT` theta describes."""

    needs_loss = True

    def init(
        self,
        params: Params,
        model_state: ModelState = None,
        num_steps: int | None = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> HParamControllerState:
        """Copies theta's meta-learned initial LSTM state into the inner state."""
        del num_steps, key, kwargs
        layout_of(params)
        return HParamControllerState(
            params=params,
            model_state=model_state,
            iteration=jnp.asarray(0, jnp.int32),
            rnn_hidden_state=dict(self.theta["initial_rnn_hidden_state"]),
        )

    def update(
        self,
        opt_state: HParamControllerState,
        grads: Params,
        loss: Any = None,
        model_state: ModelState = None,
        key: PRNGKey | None = None,
        **kwargs: Any,
    ) -> HParamControllerState:
        """Feeds the loss to the LSTM and takes an SGD step at the learning rate it outputs.

        Raises:
          ValueError: `loss` is None, or grads are not shaped like the params.
        """
        del key, kwargs
        owner = type(self.lopt).__name__
        require_loss(loss, owner)
        layout = layout_of(opt_state.params)
        check_grads(layout, grads, owner)
        h = opt_state.rnn_hidden_state
        nxt, lr = _net(self.lopt.hidden_size).apply(
            self.theta["rnn_params"],
            h["hidden"],
            h["cell"],
            jnp.reshape(jnp.asarray(loss, F32), (1, 1)),
        )
        lr = jnp.reshape(lr, ())
        new = jax.tree_util.tree_map(
            lambda p, g: (jnp.asarray(p, F32) - jnp.asarray(g, F32) * lr).astype(
                jnp.result_type(p)
            ),
            opt_state.params,
            grads,
        )
        return HParamControllerState(
            params=new,
            model_state=keep_model_state(opt_state.model_state, model_state),
            iteration=opt_state.iteration + 1,
            rnn_hidden_state={"hidden": nxt.hidden, "cell": nxt.cell},
        )


class HParamControllerLOPT(LearnedOptimizer):
    """An LSTM controller on the training loss that outputs SGD's learning rate (Part 6).

    Each step the loss goes through `hk.LSTM(hidden_size)`, then `hk.Linear(1)`;
    the learning rate is `0.01 * exp(output)` and `p -= lr * g`. The initial LSTM
    state is meta-learned too. The optimizer needs the loss at every step.

    theta: `{"initial_rnn_hidden_state": {"hidden", "cell"} (1, hidden_size),
    "rnn_params": the LSTM's and linear head's weights}`.

    Example:
      >>> lopt = HParamControllerLOPT()
      >>> opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
      >>> s = opt.update(opt.init({"a": jnp.ones([3, 2])}), {"a": -jnp.ones([3, 2])}, loss=1.0)
    """

    def __init__(self, hidden_size: int = 128) -> None:
        """Args: hidden_size: the LSTM's width."""
        self.hidden_size = int(hidden_size)

    def init(self, key: PRNGKey) -> MetaParams:
        """A zero initial LSTM state and the LSTM and head weights for one input (the loss)."""
        zero = jnp.zeros([1, self.hidden_size], F32)
        rnn_params = _net(self.hidden_size).init(key, zero, zero, jnp.zeros([1, 1], F32))
        return {
            "initial_rnn_hidden_state": {"cell": zero, "hidden": zero},
            "rnn_params": rnn_params,
        }

    def opt_fn(self, theta: MetaParams, is_training: bool = False) -> HParamControllerOptimizer:
        """The optimizer using these LSTM weights."""
        check_theta(theta, ("initial_rnn_hidden_state", "rnn_params"), type(self).__name__)
        return HParamControllerOptimizer(self, theta, is_training)
