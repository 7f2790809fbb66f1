"""muLO: AdafacMLPLOpt with the maximal-update (muP) per-tensor scaling of its step.

A per-parameter learned optimizer normalises its inputs per tensor, so its raw
step has the same size per coordinate at any width, like Adam's. Under muP such
an Adam-like update must be scaled per tensor for the network's function to
change by a width-independent amount: hidden weight matrices' updates by
`1 / fan_in`, input and output layers' and biases' not at all (the output layer
carries the `1 / fan_in` multiplier in the network instead). A learned optimizer
meta-trained on narrow muP networks then transfers to wider ones.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

import lopt_core
from lopt_core.typing import Params
from lopt_core.validation import check_positive_int
from lopt_learned._common import F32, Layout, set_fields
from lopt_learned._plugin import CATALOG
from lopt_learned.adafac_mlp_lopt import AdafacMLPLOpt, AdafacMLPLOptState


def mup_lr_scales(params: Params, base_fan_in: int = 32) -> Params:
    """The muP multipliers of an Adam-like step per tensor, by the default rule.

    Tensors of rank >= 2 are weights: the first and the last of them in tree
    order are the input and output layers (multiplier 1); every other one is a
    hidden matrix, with multiplier `base_fan_in / fan_in`, `fan_in` the product of
    all its dims but the last (haiku's `(in, out)` and `(h, w, in, out)` layouts).
    Tensors of rank < 2 (biases, scales) get 1. For other layouts pass the
    multipliers to `init` as `mup_lr_scales=`.

    Args:
      params: the parameters (arrays or ShapeDtypeStructs).
      base_fan_in: the fan-in at which the multiplier is 1 (> 0).

    Returns:
      A tree like `params` of Python floats.
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    matrices = [i for i, x in enumerate(leaves) if np.ndim(x) >= 2]
    hidden = set(matrices[1:-1])
    scales = [
        base_fan_in / float(np.prod(np.shape(x)[:-1])) if i in hidden else 1.0
        for i, x in enumerate(leaves)
    ]
    return jax.tree_util.tree_unflatten(treedef, scales)


@flax.struct.dataclass
class MuAdafacMLPLOptState(AdafacMLPLOptState):
    """State of a MuAdafacMLPLOpt optimizer: `AdafacMLPLOptState`'s fields, and

    Attributes:
      lr_scales: float32 `(num_tensors,)`, each tensor's muP step multiplier.
    """

    lr_scales: jax.Array


@CATALOG.learned_optimizer(
    "MuAdafacMLPLOpt", "AdafacMLPLOpt with muP per-tensor step scaling (muLO)"
)
@lopt_core.declare
class MuAdafacMLPLOpt(AdafacMLPLOpt):
    """mu-AdafacMLPLOpt: AdafacMLPLOpt whose step is scaled per tensor by the muP rule.

    The step of `AdafacMLPLOpt` (the same theta, features and MLP), after its
    optional `step_bound`, is multiplied per tensor by a muP multiplier:
    `base_fan_in / fan_in` for hidden weight matrices, 1 for the input and output
    layers and for biases. `init` takes the multipliers as `mup_lr_scales=` (a tree
    of floats shaped like the params); by default `mup_lr_scales(params,
    base_fan_in)` (the first and last matrices in tree order are the input and
    output layers). Pair it with a muP network, whose output layer multiplies
    its logits by `base / fan_in` (e.g. lopt_tasks' image MLP tasks with
    `mup_base_width`).

    State: as AdafacMLPLOpt's (4 floats per parameter besides the parameters,
    plus the factored accumulators), and one float per tensor.

    Attributes:
      base_fan_in: fan-in at which a hidden matrix's multiplier is 1 (> 0).
      exp_mult, step_mult, hidden_size, hidden_layers, initial_momentum_decays,
      initial_rms_decays, initial_adafactor_decays, step_bound: as for
      AdafacMLPLOpt.

    Example:
      >>> lopt = MuAdafacMLPLOpt()
      >>> opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
      >>> state = opt.init({"w0": jnp.ones([8, 64]), "w1": jnp.ones([64, 64]),
      ...                   "w2": jnp.ones([64, 10])})

    References:
      Therien, Joseph, Knyazev, Oyallon, Rish and Belilovsky, "muLO:
      Compute-Efficient Meta-Generalization of Learned Optimizers", 2024; Yang et
      al., "Tensor Programs V: Tuning Large Neural Networks via Zero-Shot
      Hyperparameter Transfer", 2022.
    """

    base_fan_in: int = 32
    state_class = MuAdafacMLPLOptState

    def __post_init__(self) -> None:
        super().__post_init__()
        set_fields(
            self,
            base_fan_in=check_positive_int(self.base_fan_in, "MuAdafacMLPLOpt", "base_fan_in"),
        )

    def init_state(self, theta: Any, params: Params, layout: Layout, **kwargs: Any) -> dict:
        """AdafacMLPLOpt's zero accumulators and the per-tensor muP multipliers.

        Raises:
          ValueError: `mup_lr_scales` is not a tree of numbers shaped like the params.
        """
        fields = super().init_state(theta, params, layout, **kwargs)
        scales = kwargs.get("mup_lr_scales")
        if scales is None:
            scales = mup_lr_scales(params, self.base_fan_in)
        try:
            flat = layout.treedef.flatten_up_to(scales)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"MuAdafacMLPLOpt: mup_lr_scales must be a tree of numbers with the "
                f"params' structure ({layout.treedef}); got {scales!r} ({err})."
            ) from None
        fields["lr_scales"] = jnp.asarray([jnp.asarray(x, F32) for x in flat], F32)
        return fields

    def _scale_step(
        self, step: jax.Array, state: MuAdafacMLPLOptState, layout: Layout
    ) -> jax.Array:
        return step * layout.broadcast(state.lr_scales)
