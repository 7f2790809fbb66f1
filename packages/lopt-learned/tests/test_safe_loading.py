"""load_learned_optimizer on crafted files: nothing runs, nothing large is allocated.

Every crafted file is correctly checksummed (a checksum proves nothing: anyone can
write one). Each must raise a CheckpointError whose message names the problem,
import nothing the file names, and allocate no more than a small multiple of the
file's size (tracemalloc traces numpy buffers and JAX's tracing alike).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

import lopt_core
from lopt_core import CheckpointError
from lopt_core.checkpoint import MAGIC
from lopt_core.component import describe
from lopt_learned import (
    AdafacMLPLOpt,
    MLPLOpt,
    RNNMLPLOpt,
    load_learned_optimizer,
    load_pretrained,
    save_learned_optimizer,
)
from lopt_learned.export import MAX_THETA_LEAVES

MiB = 2**20
MLP = "lopt_learned.mlp_lopt:MLPLOpt"


# -- building files ---------------------------------------------------------------------
def write_payload(path: Path, payload: bytes) -> Path:
    """A checkpoint file holding `payload`, with a valid checksum."""
    path.write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload)
    return path


def write(path: Path, tree: Any, metadata: Any) -> Path:
    """A checksummed file of any tree and metadata (flax's encoder accepts any leaf)."""
    meta = metadata if isinstance(metadata, str) else json.dumps(metadata)
    return write_payload(path, serialization.msgpack_serialize({"metadata": meta, "tree": tree}))


def mlp_theta(**config: Any) -> dict[str, Any]:
    return jax.device_get(MLPLOpt(**config).init(jax.random.PRNGKey(0)))


THETA = mlp_theta()


def producer(cls: str = MLP, **config: Any) -> dict[str, Any]:
    return {"producer": {"class": cls, "config": config}}


def with_leaf(value: Any) -> dict[str, Any]:
    """MLPLOpt's theta with its first weight replaced by `value`."""
    theta = {k: dict(v) for k, v in THETA.items()}
    theta["mlp/~/linear_0"]["w"] = value
    return theta


class Case(NamedTuple):
    name: str
    build: Callable[[Path], Path]
    match: str


def case(name: str, tree: Any, metadata: Any, match: str) -> Case:
    return Case(name, lambda tmp: write(tmp / f"{name}.lopt", tree, metadata), match)


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "theta.lopt")
    return tmp / "theta.lopt"


def _many_leaves(tmp: Path) -> Path:
    tree = {f"l{i}": np.zeros(1, np.float32) for i in range(MAX_THETA_LEAVES + 1)}
    return write(tmp / "many.lopt", tree, producer(hidden_layers=10**6))


def _garbage(tmp: Path) -> Path:
    return write_payload(tmp / "garbage.lopt", b"\xc1" * 64)


UNREGISTERED = "not a registered learned optimizer"
MISMATCH = "does not match the expected tree"
GROWS = MISMATCH + r": the file holds 6 arrays of 1762 values in all, but its recorded config"
ANY_CLASS = "a 'module:QualName' string"

CASES = [
    # -- the class: looked up, never imported
    case("helpers-module", THETA, producer("helpers:MLPLOpt"), UNREGISTERED),
    case("os-system", THETA, producer("os:system"), "saved by 'os:system', which is not"),
    case("antigravity", THETA, producer("antigravity:geohash"), UNREGISTERED),
    case("builtins-object", THETA, producer("builtins:object"), UNREGISTERED),
    case("abstract-base", THETA, producer("lopt_core:LearnedOptimizer"), UNREGISTERED),
    case("typo", THETA, producer("lopt_learned.mlp_lopt:MLPLopt"), "Close matches: " + MLP),
    case("no-colon", THETA, producer("subprocess.Popen"), "or, if you trust that class, pass"),
    case("class-int", THETA, producer(5), ANY_CLASS + ", got 5"),
    case("class-list", THETA, producer(["os", "system"]), ANY_CLASS),
    case("class-empty", THETA, producer(""), ANY_CLASS),
    case("class-missing", THETA, {"producer": {"config": {}}}, ANY_CLASS + ", got None"),
    # -- the producer and metadata
    case("no-producer", THETA, {"step": 1}, "records no learned optimizer"),
    case("producer-list", THETA, {"producer": [MLP]}, "'producer' must be a JSON object"),
    case("producer-str", THETA, {"producer": MLP}, "'producer' must be a JSON object"),
    case("metadata-list", THETA, "[1, 2]", "metadata must be a JSON object"),
    case("metadata-recursion-bomb", THETA, "[" * 100_000, "metadata nests deeper"),
    # -- the config: declared fields, JSON values of the annotated kinds, validation
    case(
        "config-list",
        THETA,
        {"producer": {"class": MLP, "config": [1]}},
        "config must be a JSON object",
    ),
    case("unknown-field", THETA, producer(width=32), "MLPLOpt has no field 'width'"),
    case("dunder-field", THETA, producer(__class__="x"), "has no field '__class__'"),
    case(
        "size-str", THETA, producer(hidden_size="32"), "hidden_size = '32' is not of its type, int"
    ),
    case(
        "size-bool", THETA, producer(hidden_size=True), "hidden_size = True is not of its type, int"
    ),
    case(
        "size-float",
        THETA,
        producer(hidden_size=32.0),
        "hidden_size = 32.0 is not of its type, int",
    ),
    case("size-dict", THETA, producer(hidden_size={"a": 1}), "is a JSON dict, not a number"),
    case("size-huge-int", THETA, producer(hidden_size=10**30), "an integer out of range"),
    case("step-nan", THETA, producer(step_mult=float("nan")), "step_mult = nan is not a finite"),
    case("size-zero", THETA, producer(hidden_size=0), "hidden_size must be a positive"),
    case("size-negative", THETA, producer(hidden_layers=-5), "hidden_layers must be"),
    case(
        "decays-strings",
        THETA,
        producer("lopt_learned.adafac_mlp_lopt:AdafacMLPLOpt", initial_momentum_decays=["a"]),
        r"initial_momentum_decays = \['a'\] is not of its type, tuple\[float, \.\.\.\]",
    ),
    # -- configs that ask for more than the file holds: refused before they are traced
    case("hidden-size-100000", THETA, producer(hidden_size=100_000), GROWS),
    case("hidden-layers-200000", THETA, producer(hidden_layers=200_000), GROWS),
    case("layers-200000-width-1", THETA, producer(hidden_layers=200_000, hidden_size=1), GROWS),
    case(
        "layers-200000-in-40-leaves",
        {f"mlp/~/linear_{i}": {"w": np.zeros(1, np.float32)} for i in range(40)},
        producer(hidden_layers=200_000, hidden_size=1),
        "holds 40 arrays of 40 values in all, but its recorded config",
    ),
    case(
        "rnn-lstm-100000",
        THETA,
        producer("lopt_learned.rnn_mlp_lopt:RNNMLPLOpt", lstm_hidden_size=100_000),
        MISMATCH,
    ),
    case(
        "adafac-5000-decays",
        THETA,
        producer("lopt_learned.adafac_mlp_lopt:AdafacMLPLOpt", initial_rms_decays=[0.5] * 5000),
        r"initial_rms_decays must hold exactly 1 decay\(s\), got \[0.5, 0.5.*\.\.\.$",
    ),
    case(
        "adam-against-mlp-theta",
        THETA,
        producer("lopt_learned.hparams:LearnableAdam"),
        MISMATCH + r".*path \['log_epsilon'\] is expected but missing",
    ),
    Case("too-many-leaves", _many_leaves, "holds 10001 arrays, more than a theta may have"),
    # -- the theta: structure, shapes and dtypes
    case("float64-leaf", with_leaf(np.zeros((19, 32))), producer(), r"a float64 array"),
    case("int8-leaf", with_leaf(np.zeros((19, 32), np.int8)), producer(), "a int8 array"),
    case(
        "bool-leaf",
        with_leaf(np.zeros((19, 32), bool)),
        producer(),
        r"path \['mlp/~/linear_0'\]\['w'\] has dtype bool, expected float32",
    ),
    case(
        "int32-leaf",
        with_leaf(np.zeros((19, 32), np.int32)),
        producer(),
        "has dtype int32, expected float32",
    ),
    case("complex-leaf", with_leaf(np.zeros((19, 32), np.complex64)), producer(), "complex64"),
    case("str-leaf", with_leaf("import os"), producer(), r"\['w'\] is a Python str"),
    case("float-leaf", with_leaf(0.5), producer(), r"\['w'\] is a Python float"),
    case(
        "wrong-shape",
        with_leaf(np.zeros((19, 31), np.float32)),
        producer(),
        r"has shape \(19, 31\), expected \(19, 32\)",
    ),
    case("missing-leaf", {"mlp/~/linear_0": THETA["mlp/~/linear_0"]}, producer(), MISMATCH),
    case(
        "extra-leaf",
        {**THETA, "evil": np.zeros(1, np.float32)},
        producer(),
        r"path \['evil'\] is present but not expected",
    ),
    case("tree-is-array", np.zeros(3, np.float32), producer(), "not the dict that MLPLOpt.init"),
    case("tree-is-none", None, producer(), MISMATCH),
    case("tree-is-str", "theta", producer(), r"the leaf <root> is a Python str"),
    # -- the file itself
    Case("fifo", _fifo, "is a FIFO"),
    Case("dev-zero", lambda tmp: Path("/dev/zero"), "is a character device"),
    Case("directory", lambda tmp: tmp, "is a directory"),
    Case("msgpack-garbage", _garbage, "not a valid msgpack document"),
]


@pytest.fixture(scope="module", autouse=True)
def _warm(tmp_path_factory):
    """Load the registry and initialise JAX, so measurements see only the load."""
    path = tmp_path_factory.mktemp("warm") / "ok.lopt"
    save_learned_optimizer(path, MLPLOpt(), THETA)
    load_learned_optimizer(path)
    lopt_core.list_learned_optimizers()


@pytest.fixture
def _no_blocking():
    """A FIFO or device that blocked the reader would hang the suite: fail instead.

    Only for the crafted files (a FIFO, /dev/zero, ...): the round trips of the large
    architectures compile for more than a minute on a loaded 2-core machine.
    """
    if not hasattr(signal, "SIGALRM"):  # not on Windows
        yield
        return
    old = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the reader blocked"))
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _bound(path: Path) -> int:
    """The allowed peak: 4 times the file's size plus 4 MiB (JAX's tracing of small configs)."""
    size = path.stat().st_size if path.is_file() else 0
    return 4 * size + 4 * MiB


def test_the_table_is_large_and_its_names_unique():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("crafted", CASES, ids=[c.name for c in CASES])
@pytest.mark.usefixtures("_no_blocking")
def test_crafted_file_is_refused_quickly_cheaply_and_without_running_code(
    tmp_path, monkeypatch, crafted
):
    # A `helpers.py` that leaves a marker when imported, where an import would find it.
    marker = tmp_path / "imported.marker"
    (tmp_path / "helpers.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = set(sys.modules)
    path = crafted.build(tmp_path)
    bound = _bound(path)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(CheckpointError, match=crafted.match) as info:
            load_learned_optimizer(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 10, "loading a crafted file must fail fast"
    assert peak < bound, f"{crafted.name}: peak {peak} bytes, bound {bound}"
    assert str(path) in str(info.value)
    assert len(str(info.value)) < 2000, "a message must not echo a hostile value in full"
    assert not marker.exists()
    assert "helpers" not in sys.modules
    assert set(sys.modules) - modules == set()


def test_a_module_named_in_the_file_is_never_imported(tmp_path, monkeypatch):
    """Before: `_import_class` imported `helpers` (running helpers.py) to look for the class."""
    marker = tmp_path / "imported.marker"
    (tmp_path / "helpers.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('ran')\n"
        "from lopt_learned import MLPLOpt\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path / "t.lopt", THETA, producer("helpers:MLPLOpt"))
    with pytest.raises(CheckpointError, match="'helpers:MLPLOpt', which is not a registered") as e:
        load_learned_optimizer(path)
    assert "allow=(TheClass,)" in str(e.value) and "Install the lopt plugin" in str(e.value)
    assert not marker.exists()
    assert "helpers" not in sys.modules


def test_a_huge_config_is_refused_before_anything_is_allocated(tmp_path):
    """Before: `hidden_size: 100000` built a 40 GB zero theta to compare against."""
    path = write(tmp_path / "t.lopt", THETA, producer(hidden_size=100_000))
    assert path.stat().st_size < 8 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=GROWS):
            load_learned_optimizer(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB


def test_a_deep_config_fails_fast(tmp_path):
    """Before: `hidden_layers: 200000` traced 200000 layers (many minutes)."""
    path = write(tmp_path / "t.lopt", THETA, producer(hidden_layers=200_000))
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"with its integers capped at 4, a MLPLOpt already"):
        load_learned_optimizer(path)
    assert time.perf_counter() - start < 5


def test_over_max_bytes_is_refused_with_the_fix(tmp_path):
    path = save_learned_optimizer(tmp_path / "t.lopt", MLPLOpt(), THETA)
    size = path.stat().st_size
    with pytest.raises(
        CheckpointError, match=rf"over the limit of max_bytes=4096.*max_bytes={size}"
    ):
        load_learned_optimizer(path, max_bytes=4096)
    assert load_learned_optimizer(path, max_bytes=size).lopt == MLPLOpt()


def test_a_theta_of_the_right_size_but_declared_larger_is_refused(tmp_path):
    """A config whose theta has more bytes than the file holds, at equal leaf count."""
    path = write(tmp_path / "t.lopt", mlp_theta(hidden_size=4), producer(hidden_size=5))
    with pytest.raises(CheckpointError, match=MISMATCH):
        load_learned_optimizer(path)


# -- what is legitimate still loads -----------------------------------------------------
@pytest.mark.parametrize("name", lopt_core.list_learned_optimizers())
def test_every_registered_learned_optimizer_round_trips(tmp_path, name):
    lopt = lopt_core.get_learned_optimizer(name)
    theta = jax.tree_util.tree_map(lambda x: x + 0.5, lopt.init(jax.random.PRNGKey(1)))
    path = save_learned_optimizer(tmp_path / "t.lopt", lopt, theta, {"step": 3})
    tracemalloc.start()
    try:
        loaded = load_learned_optimizer(path, expected=type(lopt))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loaded.lopt == lopt and loaded.metadata["step"] == 3
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded.theta, theta)
    assert peak < _bound(path)


def test_a_registered_name_stands_for_its_class(tmp_path):
    path = write(tmp_path / "t.lopt", mlp_theta(hidden_size=8), producer("MLPLOpt", hidden_size=8))
    assert load_learned_optimizer(path).lopt == MLPLOpt(hidden_size=8)


def test_recorded_lists_and_old_spellings_still_load(tmp_path):
    ada = AdafacMLPLOpt(initial_momentum_decays=(0.5, 0.9, 0.99))
    path = save_learned_optimizer(tmp_path / "a.lopt", ada, ada.init(jax.random.PRNGKey(0)))
    assert load_learned_optimizer(path).lopt == ada
    rnn = {"class": "lopt_learned.rnn_mlp_lopt:RNNMLPLOpt", "config": {"step_multiplier": 0.01}}
    theta = jax.device_get(RNNMLPLOpt().init(jax.random.PRNGKey(0)))
    write(tmp_path / "r.lopt", theta, {"producer": rnn})
    assert load_learned_optimizer(tmp_path / "r.lopt").lopt == RNNMLPLOpt(step_mult=0.01)


def test_the_shipped_pretrained_theta_still_loads():
    loaded = load_pretrained("MLPLOpt_Digits8")
    assert loaded.lopt == MLPLOpt()
    assert loaded.theta["mlp/~/linear_0"]["w"].shape == (19, 32)
    assert loaded.theta["mlp/~/linear_0"]["w"].dtype == np.float32


@lopt_core.declare
class ScaledSGD(lopt_core.LearnedOptimizer):
    """An unregistered learned optimizer, as a user would write one."""

    width: int = 3
    scale: float = 1.0

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"ScaledSGD: width must be >= 1, got {self.width}.")

    def init(self, key):
        return {"w": jnp.zeros((self.width,)), "log_lr": jnp.asarray(-3.0)}

    def opt_fn(self, theta, is_training=False):
        raise AssertionError("not used")


def test_allow_admits_an_unregistered_class_of_the_caller(tmp_path):
    lopt = ScaledSGD(width=5, scale=2.0)
    path = save_learned_optimizer(tmp_path / "s.lopt", lopt, lopt.init(jax.random.PRNGKey(0)))
    with pytest.raises(CheckpointError, match=r"ScaledSGD', which is not a registered.*allow="):
        load_learned_optimizer(path)
    loaded = load_learned_optimizer(path, allow=(ScaledSGD,))
    assert loaded.lopt == lopt and loaded.theta["w"].shape == (5,)
    assert load_learned_optimizer(path, allow=[MLPLOpt, ScaledSGD]).lopt == lopt
    assert load_learned_optimizer(path, expected=ScaledSGD).lopt == lopt  # expected allows
    assert load_learned_optimizer(path, expected=ScaledSGD(width=5, scale=2.0)).lopt == lopt
    with pytest.raises(CheckpointError, match="holds a ScaledSGD theta, not a MLPLOpt one"):
        load_learned_optimizer(path, expected=MLPLOpt, allow=(ScaledSGD,))


def test_allowed_classes_get_the_same_checks(tmp_path):
    spec = f"{ScaledSGD.__module__}:{ScaledSGD.__qualname__}"
    theta = {"w": np.zeros(3, np.float32), "log_lr": np.float32(-3.0)}
    cases = [
        ({"width": 0}, "ScaledSGD: width must be >= 1, got 0"),
        ({"width": "3"}, "ScaledSGD.width = '3' is not of its type, int"),
        ({"depth": 3}, "ScaledSGD has no field 'depth'"),
        ({"width": 10**6}, "asks for more"),
        ({"width": 4}, r"path \['w'\] has shape \(3,\), expected \(4,\)"),
    ]
    for config, match in cases:
        path = write(tmp_path / "s.lopt", theta, {"producer": {"class": spec, "config": config}})
        with pytest.raises(CheckpointError, match=match):
            load_learned_optimizer(path, allow=(ScaledSGD,))


def test_allow_takes_classes_only(tmp_path):
    path = save_learned_optimizer(tmp_path / "t.lopt", MLPLOpt(), THETA)
    for bad in ["helpers:MLPLOpt", ("MLPLOpt",), (MLPLOpt(),), (dict,)]:
        with pytest.raises(TypeError, match="allow= takes LearnedOptimizer classes"):
            load_learned_optimizer(path, allow=bad)
    assert load_learned_optimizer(path, allow=MLPLOpt).lopt == MLPLOpt()
    with pytest.raises(TypeError, match="expected must be a LearnedOptimizer"):
        load_learned_optimizer(path, expected=dict)


def test_a_class_reached_through_allow_is_matched_exactly(tmp_path):
    """A file naming a class by its qualname only is not matched to an allowed class."""
    lopt = ScaledSGD()
    theta = jax.device_get(lopt.init(jax.random.PRNGKey(0)))
    write(tmp_path / "s.lopt", theta, {"producer": {"class": "ScaledSGD", "config": {}}})
    with pytest.raises(CheckpointError, match=UNREGISTERED):
        load_learned_optimizer(tmp_path / "s.lopt", allow=(ScaledSGD,))
    assert describe(lopt)["class"] == f"{ScaledSGD.__module__}:ScaledSGD"
