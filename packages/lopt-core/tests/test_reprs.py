"""Compact reprs of components: only the fields changed from their defaults (`print_changed_only`)."""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt_core
from lopt_core.component import compact_repr


@lopt_core.declare
class Adamish:
    learning_rate: float = 0.01
    b1: float = 0.9
    eps: float = 1e-8


@lopt_core.declare
class Clip:
    opt: Any
    grad_clip: float = 1.0


@lopt_core.declare
class Holder:
    value: Any = None
    flag: bool = False
    count: int = 1
    decays: tuple = (0.5, 0.9)
    margin: float = float("nan")


@lopt_core.declare
class Derived:
    size: int = 2
    hidden: str = dataclasses.field(default="x", repr=False)
    area: int = dataclasses.field(default=0, init=False)

    def __post_init__(self):
        object.__setattr__(self, "area", self.size * self.size)


@lopt_core.declare
class OwnRepr:
    size: int = 2

    def __repr__(self):
        return "<own>"


@lopt_core.declare
class WithFactory:
    names: tuple = dataclasses.field(default_factory=lambda: ("a", "b"))


class Pair(NamedTuple):
    init: Any
    update: Any


class Point(NamedTuple):
    x: Any
    y: Any


class Opaque:
    pass


def _make_closures():
    def init_fn(params):
        return params

    def update_fn(updates, state):
        return updates, state

    return Pair(init_fn, update_fn)


def _schedule(step):
    return 0.1 * step


@dataclasses.dataclass(frozen=True)
class PlainDataclass:
    a: int = 1
    b: Any = None


#: How this module's functions are named: its import path (as pytest imported it), then ".".
HERE = f"{__name__}."

CASES = [
    # Defaults, and fields changed from them, in declaration order.
    (Adamish(), "Adamish()"),
    (Adamish(1e-3), "Adamish(learning_rate=0.001)"),
    (Adamish(b1=0.8, learning_rate=0.1), "Adamish(learning_rate=0.1, b1=0.8)"),
    (Adamish(eps=1e-8), "Adamish()"),  # passed explicitly, equal to the default
    (Adamish(learning_rate=1), "Adamish(learning_rate=1)"),  # 1 == 0.01? no: shown
    # Fields without defaults always show; nested components are compact too.
    (Clip(Adamish(1e-3)), "Clip(opt=Adamish(learning_rate=0.001))"),
    (Clip(Adamish(), 2.0), "Clip(opt=Adamish(), grad_clip=2.0)"),
    (Clip(Clip(Adamish())), "Clip(opt=Clip(opt=Adamish()))"),
    (Clip(None), "Clip(opt=None)"),
    # A flag is not a count: True == 1, but it differs from the default 1.
    (Holder(count=True), "Holder(count=True)"),
    (Holder(flag=0), "Holder(flag=0)"),
    (Holder(), "Holder()"),  # NaN default: NaN counts as equal to NaN
    (Holder(margin=0.5), "Holder(margin=0.5)"),
    (Holder(decays=(0.5, 0.9)), "Holder()"),
    (Holder(decays=[0.5, 0.9]), "Holder(decays=[0.5, 0.9])"),  # a list is not the tuple
    (Holder(decays=(0.5,)), "Holder(decays=(0.5,))"),
    # Arrays show their dtype and shape, never their values.
    (Holder(jnp.zeros((3, 4))), "Holder(value=f32[3,4])"),
    (Holder(np.zeros((2,), np.float64)), "Holder(value=f64[2])"),
    (Holder(jnp.asarray(3, jnp.int32)), "Holder(value=i32[])"),
    (Holder(np.zeros((5,), np.uint8)), "Holder(value=u8[5])"),
    (Holder(jnp.zeros((1, 2), jnp.bfloat16)), "Holder(value=bf16[1,2])"),
    (Holder(np.zeros((2,), bool)), "Holder(value=bool[2])"),
    (Holder(jax.ShapeDtypeStruct((7,), jnp.float16)), "Holder(value=f16[7])"),
    (
        Holder({"w": jnp.ones((2, 3)), "b": jnp.ones(3)}),
        "Holder(value={'w': f32[2,3], 'b': f32[3]})",
    ),
    (Holder(np.float32(0.5)), "Holder(value=np.float32(0.5))"),  # a numpy scalar is a number
    # Long sequences and dicts: the first three, "..." and the last.
    (Holder(tuple(range(8))), "Holder(value=(0, 1, 2, 3, 4, 5, 6, 7))"),
    (Holder(tuple(range(100))), "Holder(value=(0, 1, 2, ..., 99))"),
    (Holder(list(range(9))), "Holder(value=[0, 1, 2, ..., 8])"),
    (
        Holder({str(i): i for i in range(20)}),
        "Holder(value={'0': 0, '1': 1, '2': 2, ..., '19': 19})",
    ),
    (Holder((jnp.ones(2),) * 10), "Holder(value=(f32[2], f32[2], f32[2], ..., f32[2]))"),
    # Functions by name, closures by their maker, never an address.
    (Holder(_schedule), f"Holder(value={HERE}_schedule)"),
    (Holder(lambda x: x), "Holder(value=<lambda>)"),
    (Holder(functools.partial(_schedule, 2)), f"Holder(value=partial({HERE}_schedule, ...))"),
    (Holder(_make_closures()), f"Holder(value={HERE}_make_closures(...))"),
    (Holder(Point(1, jnp.ones(2))), "Holder(value=Point(x=1, y=f32[2]))"),
    (Holder(Opaque()), "Holder(value=<Opaque>)"),
    (Holder(PlainDataclass(b=2)), "Holder(value=PlainDataclass(b=2))"),
    (Holder("x" * 100), f"Holder(value='{'x' * 100}')"),  # strings are kept whole
    # Fields with repr=False or init=False never show; a written __repr__ is kept.
    (Derived(3, hidden="y"), "Derived(size=3)"),
    (OwnRepr(3), "<own>"),
    (WithFactory(), "WithFactory()"),
    (WithFactory(("c",)), "WithFactory(names=('c',))"),
]


@pytest.mark.parametrize(("component", "expected"), CASES, ids=[e for _, e in CASES])
def test_repr_shows_only_the_fields_changed_from_their_defaults(component, expected):
    assert repr(component) == expected


def test_a_long_repr_of_another_value_is_cut():
    class Verbose:
        def __repr__(self):
            return "V" * 200

    text = repr(Holder(Verbose()))
    assert text == f"Holder(value={'V' * 77}...)"


def test_equality_and_hashing_are_unchanged():
    assert Adamish(1e-3) == Adamish(learning_rate=1e-3)
    assert hash(Adamish(1e-3)) == hash(Adamish(learning_rate=1e-3))
    assert Adamish() == Adamish(eps=1e-8) and Adamish(1e-3) != Adamish()
    assert Clip(Adamish()) == Clip(Adamish()) and len({Clip(Adamish()), Clip(Adamish())}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        Adamish().b1 = 0.5  # type: ignore[misc]


def test_compact_repr_is_the_repr_and_works_on_any_dataclass():
    assert compact_repr(Adamish(0.1)) == repr(Adamish(0.1))
    assert compact_repr(PlainDataclass()) == "PlainDataclass()"
    assert compact_repr(OwnRepr(5)) == "OwnRepr(size=5)"


def test_a_traced_array_field_prints_its_shape():
    seen = []

    @jax.jit
    def f(x):
        seen.append(repr(Holder(x)))
        return x

    f(jnp.ones((2, 2)))
    assert seen == ["Holder(value=f32[2,2])"]


def test_repr_false_leaves_the_class_without_a_generated_repr():
    @lopt_core.declare(repr=False)
    class Hidden:
        size: int = 1

    assert repr(Hidden()).startswith("<") and "Hidden object at" in repr(Hidden())
