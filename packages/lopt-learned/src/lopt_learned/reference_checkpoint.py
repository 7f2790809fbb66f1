"""Reading the reference implementation's HyperV2 (VeLO) checkpoints, and `lopt convert`.

The reference library (learned_optimization) writes a learned optimizer's theta
with `flax.serialization.to_bytes`: a bare msgpack document, without a header or
a checksum, of the state dict of `ParameterCheckpoint(params=theta, gen_id,
step)`, i.e. `{"params": theta, "gen_id": str, "step": int}`. Its older HyperV2
baselines store the tuple `(theta, gen_id, step)`, i.e. `{"0": theta, "1":
gen_id, "2": step}`, and `save_state(path, theta)` stores theta alone. theta is
haiku's parameter dicts: `ff_mod_stack` (the bank of MLPs, a leading axis of
`param_inits`), `rnn_params` (`linear`, `linear_1`, `linear_2`, `rnn/linear`,
`rnn_to_controls`, `step_size`) and `lstm_init_state` (haiku's `LSTMState`,
which flax stores as `{"hidden", "cell"}`). Arrays are flax's msgpack
extension `(shape, dtype name, bytes)`. VeLO's published weights are such a file
(`params`, beside the `config.gin` that configures
`HyperV2(lstm_hidden_size=512, param_inits=256, use_bugged_loss_features=False)`).

These are exactly the names and shapes of lopt's `HyperV2` theta, so converting
is reading: the file is decoded as untrusted input with `lopt_core.checkpoint`'s
decoder (its msgpack limits, arrays built only for accepted dtypes after their
byte counts are checked, nothing pickled, nothing named in the file imported),
the configuration is read off the arrays' shapes, and the theta is compared,
shape by shape, with what that configuration's `init` gives.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lopt_core import CheckpointError
from lopt_core.checkpoint import (
    DEFAULT_MAX_BYTES,
    MAGIC,
    check_tree,
    leaf_kind,
    read_file,
    unpack,
)
from lopt_learned.export import (
    LoadedLearnedOptimizer,
    _check_theta,
)
from lopt_learned.hyper_v2 import HyperV2

THETA_KEYS = ("ff_mod_stack", "lstm_init_state", "rnn_params")
"""The top-level entries of a HyperV2 theta, in the reference's layout and lopt's."""

_PICKLE_PROTOCOL_BYTE = 0x80


def _decode(data: memoryview, where: str) -> Any:
    if bytes(data[: len(MAGIC)]) == MAGIC:
        raise CheckpointError(
            f"{where} is a lopt theta file, not a reference checkpoint; read it with "
            "lopt_learned.load_learned_optimizer."
        )
    if len(data) and data[0] == _PICKLE_PROTOCOL_BYTE:
        raise CheckpointError(
            f"{where} looks like a Python pickle. Pickles can run code when loaded, so "
            "they are never read. The reference writes its checkpoints with "
            "flax.serialization.to_bytes (msgpack); convert the file with that, or pass "
            "the reference's own checkpoint file."
        )
    return unpack(
        data,
        where,
        "a reference checkpoint is what flax.serialization.to_bytes writes",
    )


def _split_document(doc: Any, where: str) -> tuple[Any, str, int]:
    """`(theta, gen_id, step)` from the document's top level (its three layouts)."""
    if isinstance(doc, dict) and set(THETA_KEYS) <= set(doc):
        return doc, "", 0
    for theta_key, gen_key, step_key in (("params", "gen_id", "step"), ("0", "1", "2")):
        if isinstance(doc, dict) and set(doc) == {theta_key, gen_key, step_key}:
            gen_id, step = doc[gen_key], doc[step_key]
            if not isinstance(gen_id, str):
                raise CheckpointError(
                    f"{where}: its {gen_key!r} entry is {leaf_kind(gen_id)}, not a string."
                )
            if isinstance(step, bool) or not isinstance(step, int):
                raise CheckpointError(
                    f"{where}: its {step_key!r} entry is {leaf_kind(step)}, not an integer."
                )
            return doc[theta_key], gen_id, step
    got = sorted(map(str, doc))[:8] if isinstance(doc, dict) else type(doc).__name__
    raise CheckpointError(
        f"{where}: its top level is {got}, not a reference checkpoint's "
        "{'params', 'gen_id', 'step'} (a ParameterCheckpoint), {'0', '1', '2'} (a "
        f"(theta, gen_id, step) tuple) or a HyperV2 theta {list(THETA_KEYS)}."
    )


def _shape(theta: Any, where: str, *keys: str) -> tuple[int, ...]:
    node = theta
    for i, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            path = "".join(f"[{k!r}]" for k in keys[: i + 1])
            raise CheckpointError(
                f"{where}: its theta has no entry {path}; it is not a HyperV2 (VeLO) "
                f"theta, whose entries are {list(THETA_KEYS)} with haiku's names."
            )
        node = node[key]
    if not hasattr(node, "shape"):
        raise CheckpointError(f"{where}: the theta entry {list(keys)} is {leaf_kind(node)}.")
    return tuple(node.shape)


def hyper_v2_config(theta: Any, where: str = "theta") -> dict[str, Any]:
    """The HyperV2 sizes a theta in the reference's layout was built with, read off its shapes.

    Args:
      theta: a HyperV2 theta (nested dicts of arrays or ShapeDtypeStructs).
      where: how messages name theta.

    Returns:
      `lstm_hidden_size`, `param_inits`, `ff_hidden_size` and `ff_hidden_layers`.

    Raises:
      lopt_core.CheckpointError: an entry these are read from is missing, or theta
        uses other numbers of decays than the reference's defaults (the decay
        values themselves are not stored in a checkpoint).
    """
    gates = _shape(theta, where, "rnn_params", "rnn/linear", "b")
    controls = _shape(theta, where, "rnn_params", "rnn_to_controls", "b")
    first = _shape(theta, where, "ff_mod_stack", "~", "b0")
    if len(gates) != 1 or gates[0] % 4 or len(controls) != 1 or len(first) != 2:
        raise CheckpointError(
            f"{where}: its LSTM bias {gates}, control bias {controls} or first MLP bias "
            f"{first} is not shaped as a HyperV2 theta's (4 * lstm_hidden_size,), "
            "(param_inits,) and (param_inits, ff_hidden_size)."
        )
    bank = theta["ff_mod_stack"]["~"]
    layers = 0
    while f"b{layers + 1}" in bank:
        layers += 1
    default = HyperV2()
    blocks = default.input_sizes
    for j in (3, 4):  # the momentum block and the second-moment block
        rows = _shape(theta, where, "ff_mod_stack", "~", f"w0__{j}")
        if len(rows) != 3 or rows[1] != blocks[j]:
            raise CheckpointError(
                f"{where}: its MLP input block w0__{j} is {rows}, built for another number "
                f"of accumulator decays than the reference's defaults ({blocks[j]} rows); "
                "a checkpoint does not record the decays, so only the defaults are read."
            )
    return {
        "lstm_hidden_size": gates[0] // 4,
        "param_inits": controls[0],
        "ff_hidden_size": first[1] if layers else default.ff_hidden_size,
        "ff_hidden_layers": layers,
    }


def read_reference_checkpoint(
    path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[dict[str, Any], str, int]:
    """The theta, `gen_id` and `step` a reference checkpoint holds, as plain dicts of arrays.

    Raises:
      lopt_core.CheckpointError: the file is missing, not a regular file, larger
        than `max_bytes`, a pickle, a lopt file, not a msgpack document, not laid
        out as a reference checkpoint, or holds something other than dicts and
        arrays of accepted dtypes in its theta (the message names the path).
    """
    path = Path(path)
    where = repr(str(path))
    doc = _decode(read_file(path, max_bytes), where)
    theta, gen_id, step = _split_document(doc, where)
    if not isinstance(theta, dict):
        raise CheckpointError(f"{where}: its theta is {leaf_kind(theta)}, not a dict.")
    return check_tree(theta, where), gen_id, step


def load_reference_checkpoint(
    path: str | os.PathLike,
    *,
    bugged_loss_features: bool = False,
    bugged_next_lstm_state: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadedLearnedOptimizer:
    """A HyperV2 and its theta from a checkpoint of the reference implementation (e.g. VeLO's).

    The sizes (`lstm_hidden_size`, `param_inits`, the MLP's) are read off the
    arrays; the two flags a checkpoint does not record default to VeLO's
    meta-training configuration.

    Args:
      path: the reference's checkpoint file (for VeLO: its `params` file).
      bugged_loss_features: the reference's `use_bugged_loss_features`: True for
        checkpoints trained with its default (not VeLO).
      bugged_next_lstm_state: the reference's `use_bugged_next_lstm_state`: True
        for its older HyperV2 baselines (the `no_config` checkpoints).
      max_bytes: refuse larger files (256 MiB by default; VeLO's is about 9 MB).

    Returns:
      `LoadedLearnedOptimizer(HyperV2(...), theta, metadata)`; the metadata names
      the source file and its `gen_id` and `step`.

    Raises:
      lopt_core.CheckpointError: as `read_reference_checkpoint`, or theta is not a
        HyperV2 theta of the sizes its shapes imply (the message names the first
        entry that differs).

    Example:
      >>> loaded = load_reference_checkpoint("velo/params")
      >>> tx = lopt_learned.velo(num_steps=10_000, theta=loaded)
    """
    theta, gen_id, step = read_reference_checkpoint(path, max_bytes=max_bytes)
    where = repr(str(path))
    config = hyper_v2_config(theta, where)
    lopt = HyperV2(
        **config,
        bugged_loss_features=bugged_loss_features,
        bugged_next_lstm_state=bugged_next_lstm_state,
    )
    checked = _check_theta(lopt, theta, Path(path))
    metadata = {
        "converted_from": "learned_optimization checkpoint",
        "source_file": Path(path).name,
        "source_gen_id": gen_id[:200],
        "source_step": step,
    }
    return LoadedLearnedOptimizer(lopt, checked, metadata)
