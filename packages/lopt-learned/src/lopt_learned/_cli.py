"""The `lopt convert` command: other libraries' learned-optimizer checkpoints to lopt files.

Only argparse at import: `lopt convert --help` imports no JAX; the conversion
modules load when the command runs.
"""

from __future__ import annotations

import argparse
import sys

from lopt_learned._plugin import CATALOG

#: lopt_core.checkpoint.DEFAULT_MAX_BYTES, written out so that `--help` imports no JAX
#: (a test checks the two agree).
DEFAULT_MAX_BYTES = 256 * 2**20


def _convert_reference(args: argparse.Namespace) -> int:
    from lopt_core import CheckpointError
    from lopt_learned.export import save_learned_optimizer
    from lopt_learned.reference_checkpoint import load_reference_checkpoint

    try:
        loaded = load_reference_checkpoint(
            args.file,
            bugged_loss_features=args.bugged_loss_features,
            bugged_next_lstm_state=args.bugged_next_lstm_state,
            max_bytes=args.max_bytes,
        )
    except CheckpointError as exc:
        print(f"lopt convert reference-checkpoint: {exc}", file=sys.stderr)
        return 1
    out = save_learned_optimizer(args.out, loaded.lopt, loaded.theta, loaded.metadata)
    print(f"Wrote {out}: {loaded.lopt!r}")
    return 0


@CATALOG.command("convert", "convert other libraries' learned-optimizer checkpoints to lopt")
def _setup_convert_command(parser: argparse.ArgumentParser) -> None:
    """Sets up `lopt convert reference-checkpoint FILE OUT` on `parser`."""
    sub = parser.add_subparsers(dest="convert_command", required=True)
    p = sub.add_parser(
        "reference-checkpoint",
        help="a learned_optimization HyperV2 (VeLO) checkpoint -> a lopt theta file",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("file", help="the reference's checkpoint (for VeLO, its `params` file)")
    p.add_argument("out", help="the lopt theta file to write, e.g. velo.lopt")
    p.add_argument(
        "--bugged-loss-features",
        action="store_true",
        help="the checkpoint was trained with use_bugged_loss_features=True (not VeLO)",
    )
    p.add_argument(
        "--bugged-next-lstm-state",
        action="store_true",
        help="the checkpoint was trained with use_bugged_next_lstm_state=True",
    )
    p.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help="refuse larger files than this many bytes",
    )
    p.set_defaults(func=_convert_reference)
