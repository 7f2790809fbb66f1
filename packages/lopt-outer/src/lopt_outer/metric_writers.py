"""Metric writers: where meta-training metrics go.

A writer is built by a factory `f(run_dir) -> writer` and has `write(step,
metrics)` and `close()`. Plugins add writers through the
`lopt_register_metric_writers` hook; every run always writes JSON lines and
also uses every registered writer (see `lopt_outer.run.RunConfig.metric_writers`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["METRICS_FILE", "JsonlWriter", "TensorBoardWriter", "to_floats"]

METRICS_FILE = "metrics.jsonl"
"""The JSON-lines metrics file every run writes inside its output folder."""


def to_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Converts scalar arrays to Python floats (NaN and inf kept as floats)."""
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def _json_safe(v: float) -> Any:
    return v if math.isfinite(v) else str(v)


class JsonlWriter:
    """Appends one JSON object per logged step to `<run_dir>/metrics.jsonl`.

    Non-finite values are written as the strings "nan", "inf" and "-inf" so every
    line is strict JSON.

    Args:
      run_dir: the run's output folder.
      filename: the file name inside it.
    """

    def __init__(self, run_dir: str | os.PathLike, filename: str = METRICS_FILE) -> None:
        self.path = Path(run_dir) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a")

    def truncate_after(self, step: int) -> None:
        """Drops lines logged after `step` (work lost when a run was killed)."""
        self._f.close()
        kept = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= step:
                        kept.append(line)
                except json.JSONDecodeError:
                    continue  # a line cut off by the kill
        self.path.write_text("".join(line + "\n" for line in kept))
        self._f = self.path.open("a")

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Writes one line `{"step": step, **metrics}` and flushes it."""
        row = {"step": int(step), **{k: _json_safe(v) for k, v in to_floats(metrics).items()}}
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()

    def close(self) -> None:
        """Closes the file."""
        self._f.close()


class TensorBoardWriter:
    """Writes scalars to TensorBoard event files in `<run_dir>/tensorboard` (needs tensorboardX).

    Args:
      run_dir: the run's output folder.
      start_step: the step the run starts from. A resumed run passes its
        checkpoint's step; TensorBoard then hides every event an earlier process
        logged after it (work lost when that process was killed), so no step
        appears twice.

    Raises:
      ImportError: tensorboardX is not installed.
    """

    def __init__(self, run_dir: str | os.PathLike, start_step: int = 0) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError as exc:
            raise ImportError(
                "TensorBoardWriter needs tensorboardX: pip install tensorboardX"
            ) from exc
        # purge_step: TensorBoard drops earlier files' events at steps >= it.
        purge = int(start_step) + 1 if start_step else None
        self._w = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=purge)

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Adds every metric as a scalar at `step`."""
        for k, v in to_floats(metrics).items():
            self._w.add_scalar(k, v, int(step))
        self._w.flush()

    def close(self) -> None:
        """Closes the event file."""
        self._w.close()
