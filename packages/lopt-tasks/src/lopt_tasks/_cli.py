"""The `lopt data` command: prepare TFDS datasets and report whether they are readable."""

from __future__ import annotations

import argparse
import sys

from lopt_tasks._plugin import CATALOG


def _prepare(args: argparse.Namespace) -> int:
    from lopt_tasks.tfds_data import prepare_dataset

    try:
        path = prepare_dataset(args.name, args.data_dir)
    except RuntimeError as exc:
        print(f"lopt data prepare: {exc}", file=sys.stderr)
        return 1
    print(f"Prepared {args.name!r} as array_record in {path}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from lopt_tasks.tfds_data import DatasetNotPreparedError, default_data_dir, open_data_source

    data_dir = args.data_dir or default_data_dir()
    try:
        source = open_data_source(args.name, "train", data_dir)
    except DatasetNotPreparedError as exc:
        print(str(exc))
        return 1
    print(f"{args.name}: prepared in {data_dir} ({len(source)} train examples)")
    return 0


@CATALOG.command("data", "prepare TFDS datasets and check they are readable")
def _setup_data_command(parser: argparse.ArgumentParser) -> None:
    """Sets up `lopt data prepare NAME` and `lopt data status NAME` on `parser`."""
    sub = parser.add_subparsers(dest="data_command", required=True)
    where = (
        "the TFDS data folder (default: $LOPT_DATA_DIR, else $TFDS_DATA_DIR, else "
        "~/tensorflow_datasets)"
    )
    p = sub.add_parser(
        "prepare",
        help="download a TFDS dataset and write it as array_record (needs lopt-tasks[prepare])",
    )
    p.add_argument("name", help="TFDS dataset name, e.g. mnist, fashion_mnist, cifar10")
    p.add_argument("--data-dir", default=None, help=f"where to write it: {where}")
    p.set_defaults(func=_prepare)
    p = sub.add_parser("status", help="say whether a TFDS dataset is prepared and readable")
    p.add_argument("name", help="TFDS dataset name, e.g. mnist")
    p.add_argument("--data-dir", default=None, help=f"where to look: {where}")
    p.set_defaults(func=_status)
