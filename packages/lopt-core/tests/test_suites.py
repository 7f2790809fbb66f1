"""lopt_core.suites: Suite and SuiteTask values, their errors, and suites as registered components."""

import types

import pytest

import lopt_core
from lopt_core import REGISTRY, Suite, SuiteTask

TASKS = (SuiteTask("QuadraticTask", "quadratic"), SuiteTask("ImageMLP_Digits8_Relu32", "image_mlp"))


def test_a_suite_holds_its_tasks_kinds_and_settings():
    s = Suite("mini", "1.0", TASKS, horizons=(10, 20), seeds=2, description="two tasks")
    assert s.task_names == ("QuadraticTask", "ImageMLP_Digits8_Relu32")
    assert s.kinds == ("quadratic", "image_mlp")
    assert (s.horizons, s.seeds, s.num_evals, s.eval_batches) == ((10, 20), 2, 20, 4)
    # lists become tuples, so equal suites hash equal
    assert (
        Suite("mini", "1.0", list(TASKS), horizons=[10, 20], seeds=2, description="two tasks") == s
    )
    assert hash(Suite("mini", "1.0", TASKS, (10, 20), 2, description="two tasks")) == hash(s)


def test_a_subset_keeps_name_and_version():
    s = Suite("mini", "1.0", TASKS, horizons=(10, 20), seeds=3)
    sub = s.subset(("QuadraticTask",), horizons=(10,), seeds=1)
    assert (sub.name, sub.version, sub.task_names, sub.horizons, sub.seeds) == (
        "mini",
        "1.0",
        ("QuadraticTask",),
        (10,),
        1,
    )
    with pytest.raises(ValueError, match=r"has no tasks \['Nope'\]; its tasks are"):
        s.subset(("Nope",))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"version": "1 0"}, "version must be letters"),
        ({"tasks": ()}, "non-empty sequence of SuiteTask"),
        ({"tasks": ("QuadraticTask",)}, "non-empty sequence of SuiteTask"),
        ({"tasks": TASKS + TASKS[:1]}, r"tasks \['QuadraticTask'\] appear more than once"),
        ({"horizons": (20, 10)}, "horizons must be increasing positive integers"),
        ({"horizons": (0,)}, "horizons must be increasing positive integers"),
        ({"horizons": (10, 10)}, "horizons must be increasing positive integers"),
        ({"seeds": 0}, "seeds must be an integer >= 1"),
        ({"num_evals": True}, "num_evals must be an integer >= 1"),
        ({"eval_batches": 0}, "eval_batches must be an integer >= 1"),
    ],
)
def test_bad_suites_are_refused_naming_the_field(kwargs, match):
    args = {"name": "bad", "version": "1", "tasks": TASKS, **kwargs}
    with pytest.raises(ValueError, match=match):
        Suite(**args)


def test_bad_suite_tasks_are_refused():
    with pytest.raises(ValueError, match="SuiteTask: kind must be a non-empty string"):
        SuiteTask("QuadraticTask", "")


def test_a_plugin_registers_a_suite_through_the_hook():
    module = types.ModuleType("suite_plugin")

    def lopt_register_suites(register):
        register("plugin_suite", lambda: Suite("plugin_suite", "3", TASKS[:1]), "one quadratic")

    module.lopt_register_suites = lopt_core.hookimpl(lopt_register_suites)
    before = list(REGISTRY._extra_plugins)
    REGISTRY.add_plugin(module, "suite-plugin", "0.1")
    try:
        assert "plugin_suite" in lopt_core.list_suites()
        suite = lopt_core.get_suite("plugin_suite")
        assert isinstance(suite, Suite) and suite.version == "3"
    finally:
        REGISTRY._extra_plugins[:] = before
        REGISTRY.reload()


def test_a_catalog_declares_suites():
    catalog = lopt_core.Catalog()

    @catalog.suite(description="declared")
    def DeclaredSuite():
        return Suite("DeclaredSuite", "1", TASKS)

    assert catalog.names("suites") == ["DeclaredSuite"]
