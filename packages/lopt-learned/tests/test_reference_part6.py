# ruff: noqa: E402, RUF005  (the notebook code is kept verbatim)
# fmt: off
"""Part 6's three architectures, run with only their imports changed, and the library versions.

Imports: `learned_optimization.learned_optimizers.base` and
`learned_optimization.optimizers.base` both become `lopt_core`, which provides
`LearnedOptimizer` and `Optimizer`. Each notebook cell below is copied as is;
the asserts after each cell check its printed values and that the library
class of the same name (`lopt_learned.MetaSGDWD`, `PerParamMLP`,
`HParamControllerLOPT`) computes the same thing.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

import lopt_core as lopt_base
import lopt_core as opt_base
import lopt_learned

key = jax.random.PRNGKey(0)


@flax.struct.dataclass
class LOptState:
  params: Any
  model_state: Any
  iteration: jnp.ndarray


MetaParams = Any  # typing definition to label some types below

class MetaSGDWD(lopt_base.LearnedOptimizer):
  def __init__(self, initial_lr=1e-3, initial_wd=1e-2):
    self._initial_lr = initial_lr
    self._initial_wd = initial_wd

  def init(self, key) -> MetaParams:
    """Initialize the weights of the learned optimizer.

    In this case the initial learning rate, and initial weight decay.
    """
    # These are the initial values with which we would start meta-optimizing from
    return {
        "log_lr": jnp.log(self._initial_lr),
        "log_wd": jnp.log(self._initial_wd)
    }

  def opt_fn(self, theta: MetaParams) -> opt_base.Optimizer:
    # define an anonymous class which implements the optimizer.
    # this captures over the meta-parameters, theta.

    class _Opt(opt_base.Optimizer):
      def init(self, params, model_state=None, **kwargs) -> LOptState:
        # For our inital inner-opt state we pack the params, model state,
        # and iteration into the LOptState dataclass.
        return LOptState(
            params=params,
            model_state=model_state,
            iteration=jnp.asarray(0, dtype=jnp.int32))

      def update(self,
                 opt_state: LOptState,
                 grads,
                 model_state=None,
                 **kwargs) -> LOptState:
        """Perform the actual update."""
        # We grab the meta-parameters and transform them back to their original
        # space
        lr = jnp.exp(theta["log_lr"])
        wd = jnp.exp(theta["log_wd"])

        # Next we define the weight update.
        def _update_one(p, g):
          return p - g * lr - p * wd

        next_params = jax.tree_util.tree_map(_update_one, opt_state.params, grads)
        # Pack the new parameters back up
        return LOptState(
            params=next_params,
            model_state=model_state,
            iteration=opt_state.iteration + 1)
    return _Opt()


def test_meta_sgd_wd():
    lopt = MetaSGDWD()
    key = jax.random.PRNGKey(0)
    theta = lopt.init(key)
    opt = lopt.opt_fn(theta)
    fake_params = {"a": 1.0, "b": 2.0}
    opt_state = opt.init(fake_params)
    fake_grads = {"a": -1.0, "b": 1.0}
    new_opt_state = opt.update(opt_state, fake_grads)

    out = opt.get_params(new_opt_state)
    np.testing.assert_allclose(float(out["a"]), 0.991, rtol=1e-6)
    np.testing.assert_allclose(float(out["b"]), 1.979, rtol=1e-6)

    lib = lopt_learned.MetaSGDWD()
    lib_opt = lib.opt_fn(lib.init(key))
    lib_out = lib_opt.get_params(lib_opt.update(lib_opt.init(fake_params), fake_grads))
    np.testing.assert_allclose(float(lib_out["a"]), 0.991, rtol=1e-6)
    np.testing.assert_allclose(float(lib_out["b"]), 1.979, rtol=1e-6)


@flax.struct.dataclass
class PerParamState:
  params: Any
  model_state: Any
  iteration: jnp.ndarray
  momentums: Any


import haiku as hk


class PerParamMLP(lopt_base.LearnedOptimizer):
  def __init__(self, decay=0.9, hidden_size=64):
    self.decay = decay
    self.hidden_size = hidden_size

    def forward(grads, momentum, params):
      features = jnp.asarray([params, momentum, grads])
      # transpose to have features dim last. The MLP will operate on this,
      # and treat the leading dimensions as a batch dimension.
      features = jnp.transpose(features,
                               list(range(1, 1 + len(grads.shape))) + [0])

      outs = hk.nets.MLP([self.hidden_size, 2])(features)

      scale = outs[..., 0]
      mag = outs[..., 1]
      # Compute a step as follows.
      return scale * 0.01 * jnp.exp(mag * 0.01)

    self.net = hk.without_apply_rng(hk.transform(forward))



  def init(self, key) -> MetaParams:
    """Initialize the weights of the learned optimizer."""
    # to initialize our neural network, we must pass in a batch that looks like
    # data we might train on.
    # Because we are operating per parameter, the shape of this batch doesn't
    # matter.
    fake_grads = fake_params = fake_mom = jnp.zeros([10, 10])
    return {"nn": self.net.init(key, fake_grads, fake_mom, fake_params)}

  def opt_fn(self, theta: MetaParams) -> opt_base.Optimizer:
    # define an anonymous class which implements the optimizer.
    # this captures over the meta-parameters, theta.

    parent = self

    class _Opt(opt_base.Optimizer):
      def init(self, params, model_state=None, **kwargs) -> LOptState:
        # In addition to params, model state, and iteration, we also need the
        # initial momentum values.

        momentums = jax.tree_util.tree_map(jnp.zeros_like, params)

        return PerParamState(
            params=params,
            model_state=model_state,
            iteration=jnp.asarray(0, dtype=jnp.int32),
            momentums=momentums)

      def update(self,
                 opt_state: LOptState,
                 grads,
                 model_state=None,
                 **kwargs) -> LOptState:
        """Perform the actual update."""

        # update all the momentums
        def _update_one_momentum(m, g):
          return m * parent.decay + (g * (1 - parent.decay))

        next_moms = jax.tree_util.tree_map(_update_one_momentum, opt_state.momentums,
                                 grads)

        # Update all the params
        def _update_one(g, m, p):
          step = parent.net.apply(theta["nn"], g, m, p)
          return p - step

        next_params = jax.tree_util.tree_map(_update_one, opt_state.params, grads,
                                   next_moms)

        # Pack the new parameters back up
        return PerParamState(
            params=next_params,
            model_state=model_state,
            iteration=opt_state.iteration + 1,
            momentums=next_moms)
    return _Opt()


def test_per_param_mlp():
    lopt = PerParamMLP()
    key = jax.random.PRNGKey(0)
    theta = lopt.init(key)
    shapes = jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), theta)
    assert shapes == {
        "nn": {
            "mlp/~/linear_0": {"b": ((64,), jnp.float32), "w": ((3, 64), jnp.float32)},
            "mlp/~/linear_1": {"b": ((2,), jnp.float32), "w": ((64, 2), jnp.float32)},
        }
    }

    opt = lopt.opt_fn(theta)
    fake_params = {"a": jnp.ones([2, 3]), "b": jnp.ones([1])}
    opt_state = opt.init(fake_params)
    fake_grads = {"a": -jnp.ones([2, 3]), "b": -jnp.ones([1])}
    new_opt_state = opt.update(opt_state, fake_grads)

    new_params = opt.get_params(new_opt_state)
    np.testing.assert_allclose(np.asarray(new_opt_state.momentums["a"]), -0.1 * np.ones([2, 3]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(new_opt_state.momentums["b"]), [-0.1], rtol=1e-6)
    assert new_params["a"].shape == (2, 3) and new_params["b"].shape == (1,)
    # The notebook maps `_update_one(g, m, p)` over (params, grads, momentums), so its
    # new "params" are momentum - net(params, grads, momentum): about -0.1024 here.
    np.testing.assert_allclose(np.asarray(new_params["a"]), -0.1024453, rtol=1e-5)

    # The library class: same key, same theta, same step.
    lib = lopt_learned.PerParamMLP()
    lib_theta = lib.init(key)
    jax.tree_util.tree_map(np.testing.assert_array_equal, lib_theta, theta)
    lib_opt = lib.opt_fn(lib_theta)
    lib_state = lib_opt.update(lib_opt.init(fake_params), fake_grads)
    # The library applies the step the notebook describes: p - net(g, m, p), with the
    # features in the order (param, momentum, grad).
    for k in fake_params:
        g, p = fake_grads[k], fake_params[k]
        want = p - lopt.net.apply(theta["nn"], g, new_opt_state.momentums[k], p)
        np.testing.assert_allclose(lib_opt.get_params(lib_state)[k], want, rtol=1e-6)
    assert float(lib_opt.get_params(lib_state)["b"][0]) != 1.0
    np.testing.assert_allclose(np.asarray(lib_state.momentums), -0.1 * np.ones(7), rtol=1e-6)


@flax.struct.dataclass
class HParamControllerInnerOptState:
  params: Any
  model_state: Any
  iteration: Any
  rnn_hidden_state: Any




def rnn_mod():
  return hk.LSTM(128)

@hk.transform
def initial_state_fn():
  rnn_hidden_state = rnn_mod().initial_state(batch_size=1)
  return rnn_hidden_state

@hk.transform
def forward_fn(hidden_state, input):
  mod = rnn_mod()
  output, next_state = mod(input, hidden_state)
  log_lr = hk.Linear(1)(output)
  return next_state, jnp.exp(log_lr) * 0.01


class HParamControllerLOPT(lopt_base.LearnedOptimizer):
  def init(self, key):
    """Initialize weights of learned optimizer."""
    # Only one input -- just the loss.
    n_input_features = 1
    # This takes no input parameters -- hence the {}.
    initial_state = initial_state_fn.apply({}, key)

    fake_input_data = jnp.zeros([1, n_input_features])
    rnn_params = forward_fn.init(key, initial_state, fake_input_data)
    return {"rnn_params": rnn_params, "initial_rnn_hidden_state": initial_state}

  def opt_fn(self, theta):
    class _Opt(opt_base.Optimizer):
      def init(self, params, model_state=None, **kwargs):
        # Copy the initial, meta-learned rnn state into the inner-parameters
        # so that it can be updated by the RNN.
        return HParamControllerInnerOptState(
            params=params,
            model_state=model_state,
            iteration=jnp.asarray(0, dtype=jnp.int32),
            rnn_hidden_state=theta["initial_rnn_hidden_state"])

      def update(self, opt_state, grads, loss=None, model_state=None, **kwargs):
        # As this loss is not part of the default Optimizer definition, we assert
        # that it is non None
        assert loss is not None

        # Add a batch dimension to the loss
        batched_loss = jnp.reshape(loss, [1, 1])

        # run the RNN
        rnn_forward = hk.without_apply_rng(forward_fn).apply
        next_rnn_state, lr = rnn_forward(theta["rnn_params"],
                                         opt_state.rnn_hidden_state,
                                         batched_loss)

        # use the results of the RNN to update the parameters.
        def update_one(p, g):
          return p - g * lr

        next_params = jax.tree_util.tree_map(update_one, opt_state.params, grads)

        return HParamControllerInnerOptState(
            params=next_params,
            model_state=model_state,
            iteration=opt_state.iteration + 1,
            rnn_hidden_state=next_rnn_state)

    return _Opt()


def test_hparam_controller():
    lopt = HParamControllerLOPT()
    theta = lopt.init(key)
    opt = lopt.opt_fn(theta)

    params = {"a": jnp.ones([3, 2]), "b": jnp.ones([2, 1])}
    opt_state = opt.init(params)
    fake_grads = {"a": -jnp.ones([3, 2]), "b": -jnp.ones([2, 1])}
    opt_state = opt.update(opt_state, fake_grads, loss=1.0)
    shapes = jax.tree_util.tree_map(lambda x: x.shape, opt_state)
    assert shapes.params == {"a": (3, 2), "b": (2, 1)}
    assert shapes.model_state is None
    assert shapes.iteration == ()
    assert shapes.rnn_hidden_state.hidden == (1, 128)
    assert shapes.rnn_hidden_state.cell == (1, 128)
    # p - g * lr with g = -1 and lr = 0.01 * exp(out) > 0: every parameter grew.
    assert np.all(np.asarray(opt_state.params["a"]) > 1.0)

    # The library class: same key, same LSTM weights, same step.
    lib = lopt_learned.HParamControllerLOPT()
    lib_theta = lib.init(key)
    jax.tree_util.tree_map(np.testing.assert_array_equal, lib_theta["rnn_params"], theta["rnn_params"])
    lib_opt = lib.opt_fn(lib_theta)
    lib_state = lib_opt.update(lib_opt.init(params), fake_grads, loss=1.0)
    for k in params:
        np.testing.assert_allclose(lib_state.params[k], opt_state.params[k], rtol=1e-6)
    np.testing.assert_allclose(
        lib_state.rnn_hidden_state["hidden"], opt_state.rnn_hidden_state.hidden, rtol=1e-5, atol=1e-7
    )
