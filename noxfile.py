"""Sessions for the lopt monorepo.

`nox` runs every package's tests, the third-party plugin example, lint and the
type check of lopt-core.
`nox -s demo` runs the main job. `nox -s bench` runs the benchmark suite.

Each package's tests run in an env of their own that holds only that package,
the lopt packages it declares (transitively) and its `test` dependency group, so
a sibling that a package uses without declaring it makes its tests fail.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "plugin_example", "ray", "lint", "typecheck"]
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")

PYTHON = "3.11"
_ENV = {"UV_COMPILE_BYTECODE": "1", "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}


def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[@]", req, maxsplit=1)[0].strip().lower()


def _packages() -> dict[str, dict]:
    """The package table, derived from packages/*/pyproject.toml."""
    out = {}
    for pyproject in sorted(ROOT.glob("packages/*/pyproject.toml")):
        data = tomllib.loads(pyproject.read_text())
        out[data["project"]["name"]] = {"path": pyproject.parent, "data": data}
    return out


PACKAGES = _packages()


def _local_closure(reqs: list[str]) -> tuple[list[str], list[str]]:
    """Splits requirements into local package paths (with their lopt deps) and the rest."""
    local: dict[str, Path] = {}
    external: list[str] = []
    todo = list(reqs)
    while todo:
        req = todo.pop()
        name = _name(req)
        if name in PACKAGES:
            if name not in local:
                local[name] = PACKAGES[name]["path"]
                todo.extend(PACKAGES[name]["data"]["project"].get("dependencies", []))
        else:
            external.append(req)
    return [str(p) for p in local.values()], external


def _install_package(session: nox.Session, name: str, group: str | None = "test") -> None:
    data = PACKAGES[name]["data"]
    reqs = [name]
    if group:
        reqs += data.get("dependency-groups", {}).get(group, [])
    local, external = _local_closure(reqs)
    args = []
    for path in local:
        args += ["-e", path]
    session.install(*args, *external, env=_ENV)


@nox.session(python=PYTHON)
@nox.parametrize("package", sorted(PACKAGES))
def tests(session: nox.Session, package: str) -> None:
    """Runs one package's tests in an env holding only what it declares."""
    _install_package(session, package)
    # Two workers (one per core here), a test file per worker at a time, so the jit
    # caches a file builds up stay in one process: about 0.7x the serial time.
    session.install("pytest-xdist>=3.5", env=_ENV)
    path = PACKAGES[package]["path"]
    session.run(
        "pytest", str(path / "tests"), "-q", "-n", "2", "--dist", "loadfile",
        *session.posargs, env=_ENV,
    )  # fmt: skip


@nox.session(python=PYTHON)
def plugin_example(session: nox.Session) -> None:
    """Installs the third-party example non-editable beside lopt-core and checks it."""
    example = ROOT / "examples" / "lopt-plugin-example"
    # Non-editable, as a user would install it; rebuilt every run so edits are picked up.
    fresh = ["--reinstall-package", "lopt-core", "--reinstall-package", "lopt-plugin-example"]
    session.install(
        *(fresh if session.venv_backend == "uv" else []),
        str(PACKAGES["lopt-core"]["path"]),
        str(example),
        "pytest",
        env=_ENV,
    )
    out = session.run("lopt", "list", silent=True, env=_ENV)
    for needle in ("example_quadratic", "example_signsgd", "example_learnable_signsgd"):
        if needle not in out or "lopt-plugin-example" not in out:
            session.error(f"`lopt list` does not show {needle} from lopt-plugin-example:\n{out}")
    session.run("pytest", str(example / "tests"), "-q", *session.posargs, env=_ENV)


@nox.session(python=PYTHON)
def ray(session: nox.Session) -> None:
    """The Ray backend's tests on a real local Ray cluster (kept out of the core suite)."""
    _install_package(session, "lopt-outer")
    session.install("-e", f"{PACKAGES['lopt-outer']['path']}[ray]", env=_ENV)
    session.run(
        "pytest",
        str(PACKAGES["lopt-outer"]["path"] / "tests_ray"),
        "-q",
        *session.posargs,
        env=_ENV,
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install("ruff", env=_ENV)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy over lopt-core, with the config in its pyproject.toml ([tool.mypy])."""
    _install_package(session, "lopt-core", group="typecheck")
    core = PACKAGES["lopt-core"]["path"]
    session.run(
        "mypy",
        "--config-file",
        str(core / "pyproject.toml"),
        str(core / "src" / "lopt_core"),
        *session.posargs,
        env=_ENV,
    )


def _install_all(session: nox.Session, *extra: str) -> None:
    local, external = _local_closure(list(PACKAGES))
    args = []
    for path in local:
        args += ["-e", path]
    session.install(*args, *external, *extra, env=_ENV)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job: meta-train a learned optimizer and evaluate it against Adam."""
    _install_all(session, "matplotlib")
    session.run("python", str(ROOT / "examples" / "demo.py"), *session.posargs, env=_ENV)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark suite: one JSON line per workload (see benchmarks/README.md)."""
    _install_all(session, "ray>=2.40")
    session.run("python", str(ROOT / "benchmarks" / "run.py"), *session.posargs, env=_ENV)
