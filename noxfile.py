"""Sessions for the lopt monorepo.

`nox` runs every package's tests, the third-party plugin example, lint, the
type check of lopt-core and `dist` (build every distribution into dist/, check it,
and install packages one at a time from it into fresh venvs).
`nox -s demo` runs the main job. `nox -s bench` runs the benchmark suite.

Each package's tests run in an env of their own that holds only that package,
the lopt packages it declares (transitively) and its `test` dependency group, so
a sibling that a package uses without declaring it makes its tests fail.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "plugin_example", "ray", "lint", "typecheck", "dist"]
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
            project = PACKAGES[name]["data"]["project"]
            # A local package's extras (`lopt-tasks[streaming]`): their requirements.
            for extra in re.findall(r"\[([^\]]*)\]", req.split(";")[0])[:1]:
                for one in extra.split(","):
                    todo.extend(project.get("optional-dependencies", {})[one.strip()])
            if name not in local:
                local[name] = PACKAGES[name]["path"]
                todo.extend(project.get("dependencies", []))
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
    # caches a file builds up stay in one process: about 0.7x the serial time. A slow
    # file therefore sets the floor; --durations names the slowest tests in CI's log.
    session.install("pytest-xdist>=3.5", env=_ENV)
    path = PACKAGES[package]["path"]
    session.run(
        "pytest", str(path / "tests"), "-q", "-n", "2", "--dist", "loadfile",
        "--durations=10", *session.posargs, env=_ENV,
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
    if out is None:  # `nox --install-only`: nothing ran
        return
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


DIST = ROOT / "dist"
# The README blocks `nox -s dist` runs sit right below this line in their README.
DIST_MARKER = "<!-- nox -s dist runs this block -->"
# Every distribution the repository builds: the five packages, the `lopt`
# meta-distribution at the root and the plugin example.
DISTRIBUTIONS = sorted([*PACKAGES, "lopt", "lopt-plugin-example"])
VERSIONS = {
    "lopt": tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"],
    **{name: package["data"]["project"]["version"] for name, package in PACKAGES.items()},
}

# Run by a fresh venv's python: the lopt distributions installed there are exactly the
# expected ones, and each one was installed from its wheel in dist/ (its RECORD lists
# the files and hashes of that wheel).
_CHECK_INSTALLED = """\
import csv, io, re, sys, zipfile
from importlib import metadata
from pathlib import Path

dist, expected = Path(sys.argv[1]), set(sys.argv[2:])
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
found = {norm(d.metadata["Name"]): d for d in metadata.distributions()}
lopt = {name for name in found if name == "lopt" or name.startswith("lopt-")}
assert lopt == expected, f"lopt distributions installed: {sorted(lopt)}, expected {sorted(expected)}"
for name in sorted(expected):
    (wheel,) = dist.glob(name.replace("-", "_") + "-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        record = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
        rows = csv.reader(io.StringIO(zf.read(record).decode()))
        want = {row[0]: row[1] for row in rows if row[1] and ".dist-info/" not in row[0]}
    have = {str(f): f"{f.hash.mode}={f.hash.value}" for f in found[name].files if f.hash}
    assert want.items() <= have.items(), f"{name} is not the wheel {wheel.name}"
print("installed from dist/:", ", ".join(f"{n} {found[n].version}" for n in sorted(expected)))
"""


def _readme_block(session: nox.Session, readme: Path) -> str:
    """The ```python block right below DIST_MARKER in `readme`."""
    match = re.search(re.escape(DIST_MARKER) + r"\n```python\n(.*?)```", readme.read_text(), re.S)
    if match is None:
        session.error(f"{readme} has no ```python block right below {DIST_MARKER}")
    return match.group(1)


def _check_artifacts(session: nox.Session) -> list[Path]:
    """Each distribution has one wheel and one sdist in dist/ holding what it should."""
    artifacts = sorted([*DIST.glob("*.whl"), *DIST.glob("*.tar.gz")])
    stray = {".nox", ".venv", "build", "dist", "__pycache__", ".pytest_cache", "demo_out"}
    for name in DISTRIBUTIONS:
        stem = name.replace("-", "_")
        wheels, sdists = list(DIST.glob(f"{stem}-*.whl")), list(DIST.glob(f"{stem}-*.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            session.error(f"dist/ should hold one wheel and one sdist of {name}")
        with tarfile.open(sdists[0]) as tf:
            top = {Path(m).parts[1] for m in tf.getnames() if len(Path(m).parts) > 1}
            bad = [m for m in tf.getnames() if stray & set(Path(m).parts) or m.endswith(".pyc")]
        need = {"PKG-INFO", "pyproject.toml", "README.md", "LICENSE"}
        if name != "lopt":
            need |= {"src", "tests"}
        if bad or not need <= top or (name == "lopt" and top - need - {".gitignore"}):
            session.error(f"{sdists[0].name} holds {sorted(top)}; stray files: {bad[:5]}")
        with zipfile.ZipFile(wheels[0]) as zf:
            if not any(n.endswith(".dist-info/licenses/LICENSE") for n in zf.namelist()):
                session.error(f"{wheels[0].name} has no LICENSE")
    return artifacts


@nox.session(python=PYTHON)
def dist(session: nox.Session) -> None:
    """Builds every wheel and sdist into dist/, checks them, installs them one at a time.

    Each install goes into a fresh venv (made here, not nox's) that sees only dist/
    and the package index: lopt-learned alone (plus flax) runs its README's Flax
    example, lopt-tasks alone runs its README's quick start, lopt-core with the plugin
    example's wheel runs `lopt list` and the example's tests from its sdist.
    """
    start = time.monotonic()
    session.install("twine>=6.1", env=_ENV)
    shutil.rmtree(DIST, ignore_errors=True)
    # --no-sources: built as a user's build tool would, from the package index only.
    session.run(
        "uv", "build", "--all-packages", "--no-sources", "-o", str(DIST), "--quiet", external=True
    )  # fmt: skip
    artifacts = _check_artifacts(session)
    session.run("twine", "check", "--strict", *map(str, artifacts))

    tmp = Path(tempfile.mkdtemp(prefix="lopt-dist-"))
    check = tmp / "check_installed.py"
    check.write_text(_CHECK_INSTALLED)
    bindir = "Scripts" if os.name == "nt" else "bin"
    # lopt's own distributions come from dist/'s wheels, never from building an sdist,
    # and never from uv's cache: a wheel rebuilt from edited code keeps its file name.
    wheels_only = ["--only-binary", ",".join(DISTRIBUTIONS)]
    wheels_only += [arg for name in DISTRIBUTIONS for arg in ("--refresh-package", name)]

    def fresh_venv(label: str, requirements: list[str], expected: set[str]) -> Path:
        venv = tmp / label
        session.run("uv", "venv", "--quiet", "--python", PYTHON, str(venv), external=True)
        env = {
            "VIRTUAL_ENV": str(venv),
            "PATH": os.pathsep.join([str(venv / bindir), os.environ.get("PATH", "")]),
            "PYTHONPATH": None,
            # Imports compile only what they load: faster than compiling every file here.
            "UV_COMPILE_BYTECODE": "0",
            "JAX_PLATFORMS": _ENV["JAX_PLATFORMS"],
        }
        session.run(
            "uv", "pip", "install", "--quiet", "--python", str(venv / bindir / "python"),
            "--find-links", str(DIST), "--no-sources", *wheels_only, *requirements,
            env=env, external=True,
        )  # fmt: skip
        session.run(
            venv / bindir / "python", check, DIST, *sorted(expected), env=env, external=True
        )
        return venv

    def run_in(venv: Path, *args: str | Path) -> str:
        env = {"VIRTUAL_ENV": str(venv), "PYTHONPATH": None, "JAX_PLATFORMS": _ENV["JAX_PLATFORMS"]}
        return session.run(venv / bindir / args[0], *args[1:], env=env, external=True, silent=True)

    try:
        with session.chdir(tmp):
            # (a) lopt-learned alone pulls lopt-core and lopt-optimizers, nothing else of lopt.
            venv = fresh_venv(
                "learned",
                ["lopt-learned", "flax"],
                {"lopt-core", "lopt-optimizers", "lopt-learned"},
            )
            script = tmp / "learned_readme.py"
            script.write_text(
                _readme_block(session, PACKAGES["lopt-learned"]["path"] / "README.md")
            )
            session.log(run_in(venv, "python", script).strip())

            # (b) lopt-tasks alone pulls lopt-core only.
            venv = fresh_venv("tasks", ["lopt-tasks"], {"lopt-core", "lopt-tasks"})
            script = tmp / "tasks_readme.py"
            script.write_text(_readme_block(session, PACKAGES["lopt-tasks"]["path"] / "README.md"))
            run_in(venv, "python", script)

            # (c) lopt-core with the third-party plugin: `lopt list` shows its components,
            # and the example's tests (from its sdist) pass against the installed wheel.
            venv = fresh_venv(
                "plugin",
                ["lopt-core", "lopt-plugin-example", "pytest>=8"],
                {"lopt-core", "lopt-plugin-example"},
            )
            out = run_in(venv, "lopt", "list")
            for needle in ("example_quadratic", "example_signsgd", "example_learnable_signsgd"):
                if needle not in out or "lopt-plugin-example" not in out:
                    session.error(
                        f"`lopt list` does not show {needle} from lopt-plugin-example:\n{out}"
                    )
            (sdist,) = DIST.glob("lopt_plugin_example-*.tar.gz")
            with tarfile.open(sdist) as tf:  # our own sdist; the filter exists from 3.11.4 on
                tf.extractall(
                    tmp / "sdist", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {})
                )
            (tests,) = (tmp / "sdist").glob("*/tests")
            session.log(
                run_in(venv, "python", "-m", "pytest", tests, "-q", "-p", "no:cacheprovider")
                .strip()
                .splitlines()[-1]
            )

            # The `lopt` meta-distribution resolves to the five packages from dist/.
            (tmp / "lopt.in").write_text("lopt\n")
            pins = session.run(
                "uv", "pip", "compile", "--quiet", "--no-header", "--no-annotate", "--python-version",
                PYTHON, "--find-links", str(DIST), "--no-sources", *wheels_only, "lopt.in",
                silent=True, external=True,
            )  # fmt: skip
            for pin in (f"{name}=={version}" for name, version in VERSIONS.items()):
                if pin not in pins.splitlines():
                    session.error(f"`lopt` does not resolve {pin} from dist/:\n{pins}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    session.log(
        f"dist/: {len(artifacts)} artifacts, built, checked and installed in "
        f"{time.monotonic() - start:.0f} s"
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
    session.log(
        "Installing the five lopt packages (editable) with jax, flax, optax, dm-haiku, "
        "tensorflow-datasets, scikit-learn and matplotlib (1.1 GB installed): the first run "
        "downloads a few hundred MB (minutes on a slow network), about 25 s once uv's cache "
        "holds them, a few seconds when this env exists. Then the job runs 3,000 outer steps of "
        "meta-training and its evaluations: about 3 minutes on 2 idle cores, longer on a busy "
        "machine."
    )
    _install_all(session, "matplotlib")
    session.run("python", str(ROOT / "examples" / "demo.py"), *session.posargs, env=_ENV)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark suite: one JSON line per workload (see benchmarks/README.md).

    Arguments after `--` go to `benchmarks/run.py`: workload ids, `--repeats N`,
    `--cpu-dispatch sync|async`, and `--reference-python PY` (or
    `$LOPT_REFERENCE_PYTHON`) to time the reference library beside lopt, in an env
    that `benchmarks/reference_env.sh` builds.
    """
    _install_all(session, "ray>=2.40")
    if shutil.which("nvidia-smi") and os.environ.get("JAX_PLATFORMS", "") in ("", "cuda"):
        # An NVIDIA GPU: jax's CUDA plugin, so the workloads run on it.
        session.install("jax[cuda12]", env=_ENV)
    # No JAX_PLATFORMS unless the caller sets one: JAX runs the workloads on the
    # machine's accelerator when the env's jax has one (each JSON line names it).
    env = {"UV_COMPILE_BYTECODE": "1"}
    if "JAX_PLATFORMS" in os.environ:
        env["JAX_PLATFORMS"] = os.environ["JAX_PLATFORMS"]
    session.run("python", str(ROOT / "benchmarks" / "run.py"), *session.posargs, env=env)
