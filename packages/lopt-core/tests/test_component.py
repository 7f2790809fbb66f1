"""Components as declarations: equality, hashing, static jit arguments, recorded config."""

import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import lopt_core
from lopt_core import testing
from lopt_core.checkpoint import load_metadata, save
from lopt_core.component import ConfigError, component, config_of, renamed_arguments


@component
class Scale:
    """Multiplies by `factor`."""

    factor: float = 2.0
    name_: str = "scale"

    def __post_init__(self):
        lopt_core.validation.check_positive(self.factor, "Scale", "factor")

    def __call__(self, x):
        return self.factor * x


@component
class Unchecked:
    value: float


@component
class Outer:
    inner: Scale
    schedule: object = None


def test_equal_configurations_compare_and_hash_equal():
    assert Scale(3.0) == Scale(3.0)
    assert hash(Scale(3.0)) == hash(Scale(3.0))
    assert Scale(3.0) != Scale(4.0)
    assert len({Scale(3.0), Scale(3.0), Scale(4.0)}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        Scale().factor = 5.0  # type: ignore[misc]
    assert repr(Scale(3.0)) == "Scale(factor=3.0)"  # only the fields changed from defaults


def test_equal_configurations_do_not_recompile_a_jit_with_static_arguments():
    traces = []

    def apply(fn, x):
        traces.append(fn)
        return fn(x)

    jitted = jax.jit(apply, static_argnums=0)
    x = jnp.ones(3)
    assert float(jitted(Scale(3.0), x)[0]) == 3.0
    with testing.count_compiles() as c:
        out = jitted(Scale(3.0), x)  # a new, equal instance
    assert c["n"] == 0
    assert len(traces) == 1
    assert float(out[0]) == 3.0
    with testing.count_compiles() as c:
        assert float(jitted(Scale(5.0), x)[0]) == 5.0
    assert c["n"] == 1


def test_constructor_validation_names_the_argument():
    with pytest.raises(ValueError, match=r"Scale: factor must be a finite number > 0.0, got -1.0"):
        Scale(-1.0)


def test_config_is_the_fields_and_nested_components_are_described():
    assert config_of(Scale(3.0)) == {"factor": 3.0, "name_": "scale"}
    cfg = config_of(Outer(Scale(1.5)))
    assert cfg["inner"]["class"].endswith(":Scale")
    assert cfg["inner"]["config"] == {"factor": 1.5, "name_": "scale"}
    assert config_of(Outer(Scale(), schedule=jnp.asarray(0.5)))["schedule"] == 0.5


def test_a_checkpoint_of_a_non_recordable_field_raises_at_save_time_naming_it(tmp_path):
    producer = Outer(Scale(), schedule=lambda step: 0.1)
    with pytest.raises(ConfigError, match=r"Outer\.schedule = .*cannot be recorded"):
        save(tmp_path / "ck", {"a": jnp.zeros(1)}, producer=producer)
    assert not (tmp_path / "ck").exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match=r"Outer\.inner\.value = inf is not finite"):
        config_of(Outer(Unchecked(float("inf"))))
    save(tmp_path / "ok", {"a": jnp.zeros(1)}, producer=Outer(Scale(2.5)))
    assert load_metadata(tmp_path / "ok")["producer"]["config"]["inner"]["config"]["factor"] == 2.5


def test_renamed_arguments_accept_the_old_spelling_and_refuse_both():
    @renamed_arguments(multiplier="factor")
    @component
    class Aliased:
        factor: float = 1.0

    assert Aliased(multiplier=4.0) == Aliased(factor=4.0)
    with pytest.raises(TypeError, match="got both 'multiplier' and 'factor'"):
        Aliased(multiplier=1.0, factor=2.0)


def test_importing_lopt_core_registers_no_jax_monitoring_listener():
    code = (
        "from jax._src import monitoring as m\n"
        "before = len(m.get_event_duration_listeners())\n"
        "import lopt_core, lopt_core.testing\n"
        "after = len(m.get_event_duration_listeners())\n"
        "with lopt_core.testing.count_compiles():\n"
        "    pass\n"
        "print(before, after, len(m.get_event_duration_listeners()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after, used = map(int, out.stdout.split())
    assert after == before
    assert used == before + 1
