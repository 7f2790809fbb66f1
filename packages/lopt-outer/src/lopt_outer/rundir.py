"""A run directory belongs to one run: its lock, its manifest, and the checks that keep it whole.

`claim(config, backend, learner)` is what `meta_train` does before a backend
touches `config.output_dir`:

- it takes the directory's lock (`run.lock`, an `fcntl` lock the kernel drops
  when the process dies), so a second run into the same folder fails at once
  and names the owner;
- it removes the temp files of writes a killed run left behind;
- it compares the run's configuration (`fingerprint`: the learned optimizer,
  every estimator with its truncated step and task family, the meta-optimizer,
  the starting theta) with the one recorded in the folder's `run.json`. A folder holding
  another run is refused, naming each differing field, unless the caller asks to
  `overwrite` it (the old run's files are deleted) or lists the changed fields in
  `override` (the run resumes with the new values);
- a folder whose checkpoint this backend cannot resume from (a Ray run, say,
  continued with the in-process backend) is refused the same way, instead of
  being restarted from scratch over the old run's metrics and theta.

Settings that may change between a run and its resume are not compared:
`num_steps`, `time_budget_s`, `checkpoint_every`, `log_every`, `progress`,
`metric_writers`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lopt_core
from lopt_core.component import describe
from lopt_outer.metric_writers import METRICS_FILE
from lopt_outer.run import CHECKPOINT_NAME, RAY_CHECKPOINT_NAME, RESUME_MAX_BYTES

__all__ = [
    "LOCK_NAME",
    "MANIFEST_NAME",
    "RUN_FILES",
    "RunDirectoryError",
    "claim",
    "differences",
    "fingerprint",
    "remove_stale_temp_files",
]

LOCK_NAME = "run.lock"
"""The lock file inside a run directory; it names the process that owns the run."""

MANIFEST_NAME = "run.json"
"""The run's recorded configuration (`fingerprint`) inside its directory."""

RUN_FILES = (
    CHECKPOINT_NAME,
    RAY_CHECKPOINT_NAME,
    METRICS_FILE,
    "theta.lopt",
    MANIFEST_NAME,
    "tensorboard",
)
"""What a run writes into its directory: `overwrite` deletes exactly these."""


class RunDirectoryError(ValueError):
    """The output directory is in use, holds another run, or cannot hold this one."""


# -- the configuration ----------------------------------------------------------------
def _describe(obj: Any, path: str) -> Any:
    # Not strict: a value that cannot be recorded (a notebook's task family, say) is
    # compared by its class and the arguments it keeps, instead of failing the run.
    return describe(obj, path, strict=False)


def fingerprint(learner: Any) -> dict[str, Any]:
    """The configuration a resumed run must share with the run it continues, as JSON.

    The seed is not in it: the checkpoint records it, and resuming with another
    seed is refused by `lopt_outer.run.find_checkpoint` (no override can allow it).

    Args:
      learner: the `SingleMachineGradientLearner`.

    Returns:
      `{"learned_optimizer", "theta_opt", "estimators", "init_theta"}`: each
      component as `{"class", "config"}` (`lopt_core.component.describe`), and a
      SHA-256 of the starting theta when one was given; plus, when the learner
      sets them, `init_theta_from_path`, `init_outer_state_from_path`,
      `reset_outer_iteration`, `init_seed` and `num_steps`.
    """
    gl = learner.gradient_learner
    init_theta = gl.init_theta
    return {
        "learned_optimizer": _describe(gl.meta_init, "learned_optimizer"),
        "theta_opt": _describe(gl.theta_opt, "theta_opt"),
        "estimators": [
            _describe(est, f"estimators[{i}]") for i, est in enumerate(learner.gradient_estimators)
        ],
        "init_theta": None if init_theta is None else _digest(init_theta),
        # Only the options a run sets, so runs that set none keep their fingerprint.
        **{
            name: str(value) if isinstance(value, os.PathLike) else value
            for name in _START_OPTIONS
            if (value := getattr(gl, name, None)) not in (None, False)
        },
    }


#: The GradientLearner options that choose where meta-training starts.
_START_OPTIONS = (
    "init_theta_from_path",
    "init_outer_state_from_path",
    "reset_outer_iteration",
    "init_seed",
    "num_steps",
)


def _digest(tree: Any) -> str:
    import hashlib

    import jax
    import numpy as np

    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(jax.device_get(tree)):
        arr = np.ascontiguousarray(leaf)
        h.update(str((arr.dtype.str, arr.shape)).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if (
        isinstance(value, dict)
        and "class" in value
        and ("config" in value or "unrecorded" in value)
    ):
        out[path] = value["class"]
        for k, v in (value.get("config") or {}).items():
            _flatten(v, f"{path}.{k}", out)
    elif isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{path}.{k}" if path else k, out)
    elif isinstance(value, list) and path.endswith("estimators"):
        for i, v in enumerate(value):
            _flatten(v, f"{path}.{i}", out)
    else:
        out[path] = value


def differences(
    recorded: dict[str, Any], current: dict[str, Any], override: Sequence[str] = ()
) -> list[tuple[str, Any, Any]]:
    """The fields where two fingerprints differ: `(path, recorded, current)`, sorted.

    Paths are dotted: `estimators.0.std`, `theta_opt.learning_rate`,
    `learned_optimizer.hidden_size`. A field listed in `override`, or below one
    listed there (`estimators.0` covers all of the first estimator), is not reported.
    """
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten(recorded, "", a)
    _flatten(current, "", b)

    def overridden(path: str) -> bool:
        return any(path == o or path.startswith(o + ".") for o in override)

    missing = object()
    out = []
    for path in sorted(set(a) | set(b)):
        old, new = a.get(path, missing), b.get(path, missing)
        if old != new and not overridden(path):
            out.append((path, None if old is missing else old, None if new is missing else new))
    return out


# -- the directory --------------------------------------------------------------------
def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Deletes the temp files of interrupted atomic writes (`.NAME.*.tmp`) in `run_dir`.

    Only safe while holding the directory's lock: no other writer can be mid-write.

    Returns:
      The files removed.
    """
    removed = []
    for p in run_dir.glob(".*.tmp"):
        if p.is_file() and not p.is_symlink():
            p.unlink()
            removed.append(p)
    return removed


def _owner_text() -> str:
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
    )


def _describe_owner(text: str) -> str:
    try:
        owner = json.loads(text)
        return (
            f"pid {owner['pid']} on {owner['host']}, started {owner['started']}"
            f" ({owner['command']!r})"
        )
    except (ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def _lock(run_dir: Path) -> Iterator[None]:
    import fcntl

    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _describe_owner(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            raise RunDirectoryError(
                f"{run_dir} is in use by another run ({owner}); wait for it to finish, "
                "stop it, or pick another output_dir (--output-dir)."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, _owner_text().encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def _existing(run_dir: Path) -> list[str]:
    return [n for n in RUN_FILES if (run_dir / n).exists()]


def _checkpoint_step(path: Path) -> int | None:
    try:
        step = lopt_core.load_metadata(path, max_bytes=RESUME_MAX_BYTES).get("step")
    except lopt_core.CheckpointError:
        return None
    return step if isinstance(step, int) else None


def _read_manifest(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunDirectoryError(
            f"{path} cannot be read ({exc}); pass overwrite=True (--overwrite) to replace the "
            "run in that folder, or pick another output_dir."
        ) from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("fingerprint"), dict):
        raise RunDirectoryError(
            f"{path} is not a lopt run manifest; pass overwrite=True (--overwrite) to replace "
            "the run in that folder, or pick another output_dir."
        )
    return manifest


def _write_manifest(run_dir: Path, backend: Any, current: dict[str, Any]) -> None:
    tmp = run_dir / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
    tmp.write_text(
        json.dumps({"backend": type(backend).__name__, "fingerprint": current}, indent=1)
    )
    os.replace(tmp, run_dir / MANIFEST_NAME)


def _overwrite(run_dir: Path, names: list[str]) -> None:
    for name in names:
        p = run_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _check_existing(
    run_dir: Path, config: Any, backend: Any, current: dict[str, Any], found: list[str]
) -> None:
    fix = (
        "pass overwrite=True (--overwrite) to delete it and start afresh, or pick another "
        "output_dir (--output-dir)"
    )
    checkpoints = [n for n in found if n in (CHECKPOINT_NAME, RAY_CHECKPOINT_NAME)]
    steps = {n: _checkpoint_step(run_dir / n) for n in checkpoints}
    described = ", ".join(f"{n} at step {s}" for n, s in steps.items()) or ", ".join(found)
    if not config.resume:
        raise RunDirectoryError(
            f"{run_dir} holds another run ({described}) and resume is off (--no-resume); {fix}."
        )
    usable = [n for n in checkpoints if n in backend.resumes_from]
    if checkpoints and not usable:
        raise RunDirectoryError(
            f"{run_dir} holds a run whose checkpoint ({described}) the "
            f"{type(backend).__name__} cannot resume from (it resumes from "
            f"{', '.join(backend.resumes_from)}); run it with the backend that wrote it, or "
            f"{fix}."
        )
    manifest = _read_manifest(run_dir)
    if manifest is None:
        if checkpoints:
            return  # a run from before manifests: only its seed is checked (find_checkpoint)
        raise RunDirectoryError(
            f"{run_dir} holds files of another run ({', '.join(found)}) but no checkpoint to "
            f"resume from; {fix}."
        )
    diffs = differences(manifest["fingerprint"], current, getattr(config, "override", ()))
    if diffs:
        listed = "; ".join(f"{p}: {old!r} there, {new!r} here" for p, old, new in diffs[:8])
        more = f" (and {len(diffs) - 8} more)" if len(diffs) > 8 else ""
        names = ",".join(p for p, _, _ in diffs)
        raise RunDirectoryError(
            f"{run_dir} holds a run with another configuration: {listed}{more}. Resume it with "
            f"the same configuration, continue with the new values by listing them in "
            f"override=(...) (--override {names}), or {fix}."
        )


@contextlib.contextmanager
def claim(config: Any, backend: Any, learner: Any) -> Iterator[None]:
    """Holds `config.output_dir` for one run, after checking it may run there.

    Nothing happens without an output_dir. The lock is released when the block
    ends (or the process dies).

    Raises:
      RunDirectoryError: the folder is in use by another run; it is a file or
        cannot be written; it holds another run (another configuration, a
        checkpoint this backend cannot resume, or resume is off) and neither
        `config.overwrite` nor `config.override` allows it. The message names
        the owner or each differing field, and the fix.
    """
    run_dir = config.output_dir
    if run_dir is None:
        yield
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirectoryError(
            f"output_dir {run_dir} is a file, not a folder; pick a folder (--output-dir)."
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-probe.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunDirectoryError(
            f"output_dir {run_dir} cannot be written ({exc.strerror or exc}); pick a folder you "
            "can write to (--output-dir)."
        ) from exc
    current = fingerprint(learner)
    with _lock(run_dir):
        remove_stale_temp_files(run_dir)
        found = _existing(run_dir)
        if found and getattr(config, "overwrite", False):
            _overwrite(run_dir, found)
        elif found:
            _check_existing(run_dir, config, backend, current, found)
        _write_manifest(run_dir, backend, current)
        yield
