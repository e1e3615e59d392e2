"""Introspection: which members a module serves, their specs, request models and refusals."""

from __future__ import annotations

import datetime
import enum
import inspect
import json
import pathlib
import sys
import types
import typing
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import BaseModel, ValidationError

from demessaging.core import (
    ModuleModels,
    ModuleSpec,
    build_models,
    inspect_module,
    is_data_type,
    load_module,
)
from demessaging.core.schema import api_info
from demessaging.errors import DemessagingWarning, ModuleLoadError, SignatureError

POS_ONLY = inspect.Parameter.POSITIONAL_ONLY
POS_OR_KW = inspect.Parameter.POSITIONAL_OR_KEYWORD
KW_ONLY = inspect.Parameter.KEYWORD_ONLY


def names(spec: ModuleSpec) -> tuple[list[str], list[str]]:
    return [f.name for f in spec.functions], [c.name for c in spec.classes]


# --------------------------------------------------------------------------------------
# Member selection
# --------------------------------------------------------------------------------------

DATA_TYPES = '''
import dataclasses
import enum
from typing import NamedTuple, Protocol

from pydantic import BaseModel
from typing_extensions import TypedDict


class Color(enum.Enum):
    RED = "red"


class Point(BaseModel):
    x: float


@dataclasses.dataclass
class Span:
    days: int


class Options(TypedDict):
    name: str


class Pair(NamedTuple):
    left: int
    right: int


class Failure(Exception):
    """An error type."""


class Readable(Protocol):
    def read(self) -> str: ...
'''


def test_all_selects_functions_and_classes_in_its_order(module_spec):
    spec = module_spec(
        """
        __all__ = ["second", "Service", "first"]


        def first(x: int) -> int:
            return x


        def second(x: int) -> int:
            return x


        def not_listed(x: int) -> int:
            return x


        class Service:
            def run(self) -> int:
                return 1
        """
    )
    assert names(spec) == (["second", "first"], ["Service"])
    assert [m.name for m in spec.members] == ["second", "first", "Service"]


def test_all_skips_constants_and_data_types(module_spec):
    spec = module_spec(
        DATA_TYPES
        + """
__all__ = [
    "LIMIT", "NAMES", "Color", "Point", "Span", "Options", "Pair", "Failure", "Readable",
    "served",
]

LIMIT = 3
NAMES = ["a"]


def served(x: int) -> int:
    return x
"""
    )
    assert names(spec) == (["served"], [])


def test_all_serves_names_it_imports(write_module, monkeypatch):
    helper = write_module("def helper(x: int) -> int:\n    return x + 1\n", "helper")
    monkeypatch.syspath_prepend(str(helper.parent))
    spec = inspect_module(
        write_module(f"from {helper.stem} import helper\n\n__all__ = ['helper']\n", "reexport")
    )
    assert names(spec) == (["helper"], [])
    assert spec.functions[0].func(1) == 2


def test_all_naming_a_builtin_callable_warns_and_skips_it(module_spec):
    source = """
        from math import sqrt

        __all__ = ["sqrt", "root"]


        def root(x: float) -> float:
            return sqrt(x)
        """
    with pytest.warns(DemessagingWarning, match=r"\.sqrt is not a Python function"):
        spec = module_spec(source)
    assert names(spec) == (["root"], [])


def test_all_naming_a_missing_member_raises(write_module):
    path = write_module(
        """
        __all__ = ["present", "absent"]


        def present(x: int) -> int:
            return x
        """
    )
    with pytest.raises(ModuleLoadError, match=r"__all__ names 'absent', which is not defined"):
        inspect_module(path)


def test_all_with_only_constants_and_data_types_has_nothing_to_serve(write_module):
    path = write_module(DATA_TYPES + '\n__all__ = ["Color", "Point"]\nLIMIT = 1\n')
    with pytest.raises(ModuleLoadError, match="has no public functions or classes to serve"):
        inspect_module(path)


def test_without_all_only_public_members_defined_in_the_module(write_module, monkeypatch):
    helper = write_module(
        """
        def helper(x: int) -> int:
            return x


        class HelperClass:
            def run(self) -> int:
                return 1
        """,
        "helper",
    )
    monkeypatch.syspath_prepend(str(helper.parent))
    source = (
        f"""
import json
from collections import OrderedDict
from math import sqrt
from os.path import join

from {helper.stem} import HelperClass, helper
"""
        + DATA_TYPES
        + '''
LIMIT = 10
square = None


def public(x: float) -> float:
    """Served."""
    return sqrt(x)


def _private(x: int) -> int:
    return x


class Service:
    def run(self) -> int:
        return 1


class _Hidden:
    def run(self) -> int:
        return 1
'''
    )
    spec = inspect_module(write_module(source, "own"))
    assert names(spec) == (["public"], ["Service"])


def test_without_all_nothing_to_serve_raises(write_module):
    path = write_module(
        DATA_TYPES
        + """
from math import sqrt
from os.path import join

LIMIT = 3


def _private(x: int) -> int:
    return x
"""
    )
    with pytest.raises(ModuleLoadError, match=r"module 'dmu_mod_\d+' has no public functions"):
        inspect_module(path)


class _Plain:
    pass


class _Colour(enum.Enum):
    RED = 1


class _Model(BaseModel):
    x: int


class _Tuple(typing.NamedTuple):
    a: int


class _TypingDict(typing.TypedDict):
    a: int


class _Proto(typing.Protocol):
    def read(self) -> str: ...


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_Plain, False),
        (_Colour, True),
        (_Model, True),
        (_Tuple, True),
        (_TypingDict, True),
        (_Proto, True),
        (KeyError, True),
        (tuple, False),
        (dict, False),
        (len, False),
        (_Colour.RED, False),
    ],
)
def test_is_data_type(obj, expected):
    assert is_data_type(obj) is expected


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

SIMPLE = '''
"""A simple module."""


def echo(x: int) -> int:
    return x
'''


@pytest.mark.parametrize("as_text", [True, False])
def test_load_by_file_path(write_module, as_text):
    path = write_module(SIMPLE)
    spec = inspect_module(str(path) if as_text else path)
    assert spec.name == path.stem
    assert sys.modules[path.stem] is spec.module
    assert spec.module.__file__ == str(path.resolve())
    assert spec.doc is not None
    assert spec.info.description == "A simple module."
    assert names(spec) == (["echo"], [])


def test_load_by_dotted_name(write_module, monkeypatch):
    path = write_module(SIMPLE)
    monkeypatch.syspath_prepend(str(path.parent))
    spec = inspect_module(path.stem)
    assert spec.name == path.stem
    assert names(spec) == (["echo"], [])


def test_load_submodule_of_a_package_by_dotted_name(tmp_path, monkeypatch, fresh_name):
    package = tmp_path / fresh_name("pkg")
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "analysis.py").write_text(SIMPLE)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = inspect_module(f"{package.name}.analysis")
    assert spec.name == f"{package.name}.analysis"
    assert names(spec) == (["echo"], [])


def test_load_module_object_is_used_as_it_is(write_module):
    module = load_module(write_module(SIMPLE))
    assert load_module(module) is module
    assert inspect_module(module).module is module


def test_loading_a_file_twice_gives_the_same_module(write_module):
    path = write_module(SIMPLE)
    assert load_module(path) is load_module(str(path))


def test_missing_file_raises(tmp_path):
    with pytest.raises(ModuleLoadError, match="no such file"):
        load_module(tmp_path / "absent_backend.py")


def test_unknown_dotted_name_raises(fresh_name):
    name = fresh_name("surely_absent")
    with pytest.raises(ModuleLoadError, match=f"no module named '{name}'"):
        load_module(name)


def test_file_with_invalid_module_name_raises(tmp_path):
    path = tmp_path / "not-a-name.py"
    path.write_text(SIMPLE)
    with pytest.raises(ModuleLoadError, match="not a valid module name"):
        load_module(path)


def test_file_raising_on_import_raises_module_load_error(write_module):
    path = write_module(
        'def f(x: int) -> int:\n    return x\n\n\nraise RuntimeError("no data here")\n'
    )
    with pytest.raises(ModuleLoadError, match="RuntimeError: no data here") as info:
        inspect_module(path)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert path.stem not in sys.modules


def test_file_with_syntax_error_raises_module_load_error(write_module):
    path = write_module("def f(x: int) -> int\n    return x\n")
    with pytest.raises(ModuleLoadError, match="SyntaxError"):
        inspect_module(path)


def test_dotted_module_raising_on_import_raises_module_load_error(write_module, monkeypatch):
    path = write_module('raise ValueError("bad configuration")\n')
    monkeypatch.syspath_prepend(str(path.parent))
    with pytest.raises(ModuleLoadError, match="ValueError: bad configuration"):
        inspect_module(path.stem)


def test_dotted_module_with_missing_dependency_names_the_dependency(write_module, monkeypatch):
    path = write_module("import dmu_dependency_nowhere\n")
    monkeypatch.syspath_prepend(str(path.parent))
    with pytest.raises(ModuleLoadError, match=r"importing .* failed.*dmu_dependency_nowhere"):
        load_module(path.stem)


def test_missing_dependency_that_prefixes_the_module_name_is_named(
    tmp_path, monkeypatch, fresh_name
):
    dependency = fresh_name("climate")
    (tmp_path / f"{dependency}_tools.py").write_text(f"import {dependency}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleLoadError) as info:
        load_module(f"{dependency}_tools")
    assert "failed" in str(info.value)
    assert f"No module named '{dependency}'" in str(info.value)


def test_loading_a_file_does_not_replace_an_unrelated_imported_module(
    tmp_path, monkeypatch, fresh_name
):
    name = fresh_name("taken")
    original = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, original)
    path = tmp_path / f"{name}.py"
    path.write_text(SIMPLE)
    with pytest.raises(ModuleLoadError, match=rf"has the name of the module '{name}'.*rename"):
        load_module(path)
    assert sys.modules[name] is original


# --------------------------------------------------------------------------------------
# Classes
# --------------------------------------------------------------------------------------

CLASSES = '''
class Base:
    def inherited(self, x: int) -> int:
        """From the base."""
        return x

    def overridden(self) -> str:
        return "base"

    def hidden(self) -> int:
        return 0

    @staticmethod
    def base_static(x: int) -> int:
        return x


class Station:
    """A station."""

    LIMIT = 3

    def __init__(self, name: str, height: float = 0.0, *, active: bool = True) -> None:
        self.name = name

    def measure(self, count: int) -> list[float]:
        return []

    @staticmethod
    def convert(value: float, unit: str = "K") -> float:
        return value

    @classmethod
    def default(cls, name: str) -> str:
        return name

    @property
    def label(self) -> str:
        return self.name

    def _private(self) -> int:
        return 1

    def __len__(self) -> int:
        return 1


class Child(Base):
    hidden = None

    def overridden(self) -> str:
        return "child"

    def own(self) -> int:
        return 2
'''


@pytest.fixture
def class_spec(module_spec):
    spec = module_spec(CLASSES, "classes")
    return {c.name: c for c in spec.classes}


def test_class_constructor_parameters(class_spec):
    ctor = class_spec["Station"].constructor
    assert ctor.name == "__init__"
    assert ctor.qualname == "Station.__init__"
    assert [(p.name, p.kind, p.annotation) for p in ctor.parameters] == [
        ("name", POS_OR_KW, str),
        ("height", POS_OR_KW, float),
        ("active", KW_ONLY, bool),
    ]
    assert [p.required for p in ctor.parameters] == [True, False, False]
    assert ctor.parameters[1].default == 0.0


def test_class_methods_public_static_and_class_methods(class_spec):
    station = class_spec["Station"]
    assert [(m.name, m.kind) for m in station.methods] == [
        ("measure", "method"),
        ("convert", "staticmethod"),
        ("default", "classmethod"),
    ]
    measure, convert, default = station.methods
    assert measure.qualname == "Station.measure"
    assert [p.name for p in measure.parameters] == ["count"]  # no self
    assert [p.name for p in convert.parameters] == ["value", "unit"]
    assert [p.name for p in default.parameters] == ["name"]  # no cls
    assert [m.needs_instance for m in station.methods] == [True, False, False]
    assert measure.returns == list[float]


def test_class_without_init_has_no_constructor_parameters(class_spec):
    assert class_spec["Base"].constructor.parameters == ()


def test_class_inherited_methods_and_overrides(class_spec):
    child = class_spec["Child"]
    by_name = {m.name: m for m in child.methods}
    assert set(by_name) == {"overridden", "own", "inherited", "base_static"}
    assert by_name["overridden"].func is child.cls.__dict__["overridden"]
    assert by_name["inherited"].qualname == "Child.inherited"
    assert by_name["inherited"].info.description == "From the base."
    assert by_name["base_static"].kind == "staticmethod"


def test_class_attribute_hides_a_base_method(class_spec):
    assert "hidden" in [m.name for m in class_spec["Base"].methods]
    assert "hidden" not in [m.name for m in class_spec["Child"].methods]


def test_class_models_are_built(module_models):
    models = module_models(CLASSES, "classes")
    assert set(models.classes) == {
        "ClassBase",
        "ClassBaseStatic",
        "ClassStation",
        "ClassStationStatic",
        "ClassChild",
        "ClassChildStatic",
    }
    call = models.validate_json(
        '{"class_name": "Station", "name": "north", "active": false,'
        ' "function": {"func_name": "measure", "count": 2}}'
    )
    assert call.target.spec.qualname == "Station.measure"
    assert call.constructor == {"name": "north", "active": False}
    assert call.arguments == {"count": 2}
    call = models.validate_json(
        '{"class_name": "Station", "function": {"func_name": "convert", "value": 1}}'
    )
    assert call.target.spec.kind == "staticmethod"
    assert call.constructor == {}
    assert call.arguments == {"value": 1.0}


# --------------------------------------------------------------------------------------
# Annotations
# --------------------------------------------------------------------------------------

TYPED = """
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import pathlib
from typing import Annotated, Literal, NamedTuple, Optional, Union

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from demessaging import ArraySpec

Grid = Annotated[np.ndarray, ArraySpec(dtype="int64", shape=(2, None))]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Point(BaseModel):
    x: float
    y: float = Field(0.0, ge=0)


@dataclasses.dataclass
class Span:
    start: dt.date
    days: int = 1


class Options(TypedDict):
    name: str
    size: int


class Pair(NamedTuple):
    left: int
    right: str


def scalars(i: int, f: float, s: str, b: bool) -> None:
    pass


def optional(a: Optional[int], b: Union[int, str], c: int | None = None) -> None:
    pass


def literal(mode: Literal["fast", "slow"], level: Literal[1, 2] = 1) -> None:
    pass


def enums(color: Color, level: Level = Level.LOW) -> None:
    pass


def times(when: dt.datetime, day: dt.date) -> None:
    pass


def paths(path: pathlib.Path) -> None:
    pass


def containers(
    items: list[int], table: dict[str, float], pair: tuple[int, str], many: tuple[float, ...],
    tags: set[str],
) -> None:
    pass


def models(point: Point, span: Span, options: Options, named: Pair) -> None:
    pass


def arrays(
    any_array: np.ndarray,
    floats: npt.NDArray[np.float64],
    grid: Grid,
    maybe: np.ndarray | None = None,
    stack: list[npt.NDArray[np.int32]] = [],
    table: dict[str, npt.NDArray[np.float64]] = {},
) -> npt.NDArray[np.float64]:
    return floats


def positions(a: int, b: int = 2, /, c: int = 3, *, d: int, e: str = "e") -> None:
    pass
"""


@pytest.fixture(scope="module")
def typed(shared_models) -> ModuleModels:
    return shared_models(TYPED, "typed")


def params(models: ModuleModels, function: str) -> dict[str, Any]:
    return {p.name: p for p in models.functions[function].spec.parameters}


def args_json(models: ModuleModels, function: str, **arguments: Any) -> dict[str, Any]:
    """Validate a JSON request and return the arguments it carries."""
    call = models.validate_json(json.dumps({"func_name": function, **arguments}))
    assert call.target.spec.name == function
    return call.arguments


def args_python(models: ModuleModels, function: str, **arguments: Any) -> dict[str, Any]:
    return models.validate_python({"func_name": function, **arguments}).arguments


def test_postponed_annotations_and_import_aliases_are_resolved(typed):
    module = typed.spec.module
    assert params(typed, "times")["when"].annotation is datetime.datetime
    assert params(typed, "times")["day"].annotation is datetime.date
    assert params(typed, "paths")["path"].annotation is pathlib.Path
    assert params(typed, "arrays")["any_array"].annotation is np.ndarray
    assert params(typed, "arrays")["floats"].annotation == npt.NDArray[np.float64]
    assert params(typed, "optional")["a"].annotation == typing.Optional[int]  # noqa: UP045
    assert params(typed, "enums")["color"].annotation is module.Color
    assert params(typed, "models")["span"].annotation is module.Span
    assert typed.functions["arrays"].spec.returns == npt.NDArray[np.float64]
    assert all(p.annotated for f in typed.spec.functions for p in f.parameters)


def test_scalars(typed):
    assert args_json(typed, "scalars", i=3, f=2, s="x", b=True) == {
        "i": 3,
        "f": 2.0,
        "s": "x",
        "b": True,
    }
    with pytest.raises(ValidationError, match=r"scalars\.i"):
        args_json(typed, "scalars", i="three", f=2, s="x", b=True)
    with pytest.raises(ValidationError, match=r"scalars\.i"):
        args_json(typed, "scalars", i=1.5, f=2, s="x", b=True)


def test_optional_and_unions(typed):
    assert args_json(typed, "optional", a=None, b="x") == {"a": None, "b": "x"}
    assert args_json(typed, "optional", a=1, b=2, c=None) == {"a": 1, "b": 2, "c": None}
    assert args_json(typed, "optional", a=1, b=2, c=5)["c"] == 5
    with pytest.raises(ValidationError, match=r"optional\.b"):
        args_json(typed, "optional", a=1, b=[1])
    with pytest.raises(ValidationError, match=r"optional\.c"):
        args_json(typed, "optional", a=1, b=1, c="many")
    # Optional without a default is still required
    with pytest.raises(ValidationError, match=r"optional.a\n.*Field required"):
        args_json(typed, "optional", b=1)


def test_literal(typed):
    assert args_json(typed, "literal", mode="fast", level=2) == {"mode": "fast", "level": 2}
    with pytest.raises(ValidationError, match=r"literal\.mode"):
        args_json(typed, "literal", mode="medium")
    with pytest.raises(ValidationError, match=r"literal\.level"):
        args_json(typed, "literal", mode="slow", level=3)


def test_enum(typed):
    module = typed.spec.module
    arguments = args_json(typed, "enums", color="blue", level=2)
    assert arguments["color"] is module.Color.BLUE
    assert arguments["level"] is module.Level.HIGH
    assert args_python(typed, "enums", color=module.Color.RED)["color"] is module.Color.RED
    with pytest.raises(ValidationError, match=r"enums\.color"):
        args_json(typed, "enums", color="green")


def test_datetime_and_date(typed):
    arguments = args_json(typed, "times", when="2024-02-29T12:30:00Z", day="2024-03-01")
    assert arguments["when"] == datetime.datetime(2024, 2, 29, 12, 30, tzinfo=datetime.UTC)
    assert arguments["day"] == datetime.date(2024, 3, 1)
    with pytest.raises(ValidationError, match=r"times\.day"):
        args_json(typed, "times", when="2024-02-29T12:30:00", day="2024-02-30")
    with pytest.raises(ValidationError, match=r"times\.when"):
        args_json(typed, "times", when="yesterday", day="2024-03-01")


def test_path(typed):
    arguments = args_json(typed, "paths", path="/data/run 1/out.nc")
    assert arguments["path"] == pathlib.Path("/data/run 1/out.nc")
    assert isinstance(arguments["path"], pathlib.Path)
    with pytest.raises(ValidationError, match=r"paths\.path"):
        args_json(typed, "paths", path=3)


def test_containers(typed):
    arguments = args_json(
        typed,
        "containers",
        items=[1, 2],
        table={"a": 1},
        pair=[1, "x"],
        many=[1, 2.5],
        tags=["a", "b", "a"],
    )
    assert arguments == {
        "items": [1, 2],
        "table": {"a": 1.0},
        "pair": (1, "x"),
        "many": (1.0, 2.5),
        "tags": {"a", "b"},
    }
    ok = {"items": [], "table": {}, "pair": [1, "x"], "many": [], "tags": []}
    for field, bad in [
        ("items", ["x"]),
        ("table", {"a": "b"}),
        ("pair", [1, "x", 2]),
        ("many", ["x"]),
        ("tags", "abc"),
    ]:
        with pytest.raises(ValidationError, match=f"containers.{field}"):
            args_json(typed, "containers", **{**ok, field: bad})


def test_pydantic_models_dataclasses_typeddicts_namedtuples(typed):
    module = typed.spec.module
    arguments = args_json(
        typed,
        "models",
        point={"x": 1},
        span={"start": "2024-01-01"},
        options={"name": "n", "size": 2},
        named=[1, "r"],
    )
    assert arguments["point"] == module.Point(x=1.0, y=0.0)
    assert arguments["span"] == module.Span(start=datetime.date(2024, 1, 1), days=1)
    assert arguments["options"] == {"name": "n", "size": 2}
    assert arguments["named"] == module.Pair(1, "r")
    assert isinstance(arguments["named"], module.Pair)
    ok = {
        "point": {"x": 1},
        "span": {"start": "2024-01-01"},
        "options": {"name": "n", "size": 2},
        "named": [1, "r"],
    }
    for field, bad in [
        ("point", {"x": 1, "y": -1}),
        ("span", {"start": "soon"}),
        ("options", {"name": "n"}),
        ("named", [1]),
    ]:
        with pytest.raises(ValidationError, match=f"models.{field}"):
            args_json(typed, "models", **{**ok, field: bad})


def test_arrays_are_converted(typed):
    arguments = args_json(
        typed,
        "arrays",
        any_array=[[1, 2], [3, 4]],
        floats=[1, 2],
        grid=[[1, 2, 3], [4, 5, 6]],
        stack=[[1, 2], [3]],
        table={"t": [0.5]},
    )
    assert isinstance(arguments["any_array"], np.ndarray)
    assert arguments["any_array"].dtype.kind == "i"
    assert arguments["any_array"].shape == (2, 2)
    assert arguments["floats"].dtype == np.float64
    np.testing.assert_array_equal(arguments["floats"], [1.0, 2.0])
    assert arguments["grid"].dtype == np.int64
    assert arguments["grid"].shape == (2, 3)
    assert [a.dtype for a in arguments["stack"]] == [np.int32, np.int32]
    assert arguments["table"]["t"].dtype == np.float64


def test_arrays_accept_numpy_arrays_and_none(typed):
    floats = np.array([1.5, 2.5])
    arguments = args_python(
        typed,
        "arrays",
        any_array=np.zeros(3, dtype=np.float32),
        floats=floats,
        grid=np.ones((2, 1), dtype=np.int64),
        maybe=None,
    )
    assert arguments["any_array"].dtype == np.float32
    assert arguments["floats"] is floats
    assert arguments["maybe"] is None
    assert (
        args_json(typed, "arrays", any_array=[1], floats=[1], grid=[[1], [2]], maybe=[True])[
            "maybe"
        ].dtype
        == np.bool_
    )


ARRAY_OK = {"any_array": [1], "floats": [1.0], "grid": [[1], [2]]}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("floats", ["a", "b"], "got text"),
        ("floats", [True, "x"], "got text"),
        ("floats", [[1, 2], [3]], "not convertible to an array"),
        ("any_array", [{"a": 1}], "got ragged or mixed data"),
        ("grid", [[1.5], [2.5]], "expected dtype int64, got float64"),
        ("grid", [[1, 2, 3]], r"expected shape \(2, \*\), got \(1, 3\)"),
        ("grid", [1, 2], r"expected shape \(2, \*\), got \(2,\)"),
        ("grid", [[[1]], [[2]]], r"expected shape \(2, \*\), got \(2, 1, 1\)"),
        ("stack", [[1.5]], "expected dtype int32, got float64"),
        ("table", {"t": ["x"]}, "got text"),
    ],
)
def test_arrays_refuse_wrong_dtype_and_shape(typed, field, value, message):
    with pytest.raises(ValidationError, match=message) as info:
        args_json(typed, "arrays", **{**ARRAY_OK, field: value})
    assert info.value.errors()[0]["loc"][1] == field


def test_array_schema_describes_dtype_and_shape(typed):
    schema = typed.functions["arrays"].request.model_json_schema()
    props = schema["properties"]
    assert props["floats"]["x-dtype"] == "float64"
    assert props["grid"]["x-dtype"] == "int64"
    assert props["grid"]["x-shape"] == [2, None]
    assert props["grid"]["minItems"] == props["grid"]["maxItems"] == 2
    assert props["grid"]["items"]["items"] == {"type": "integer"}
    assert "x-dtype" not in props["any_array"]
    assert props["stack"]["items"]["x-dtype"] == "int32"
    returns = typed.functions["arrays"].returns
    assert returns.json_schema()["x-dtype"] == "float64"
    assert returns.dump_json(np.array([1.0, 2.5])) == b"[1.0,2.5]"


def test_positional_only_and_keyword_only_parameters(typed):
    kinds = {name: p.kind for name, p in params(typed, "positions").items()}
    assert kinds == {"a": POS_ONLY, "b": POS_ONLY, "c": POS_OR_KW, "d": KW_ONLY, "e": KW_ONLY}
    assert args_json(typed, "positions", a=1, d=4) == {"a": 1, "d": 4}
    assert args_json(typed, "positions", a=1, b=2, c=3, d=4, e="x") == {
        "a": 1,
        "b": 2,
        "c": 3,
        "d": 4,
        "e": "x",
    }
    with pytest.raises(ValidationError, match=r"positions\.d"):
        args_json(typed, "positions", a=1)
    schema = typed.functions["positions"].request.model_json_schema()
    assert schema["required"] == ["func_name", "a", "d"]


def test_requests_refuse_extra_and_missing_arguments(typed):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        args_json(typed, "paths", path="/x", other=1)
    with pytest.raises(ValidationError, match=r"paths.path\n.*Field required"):
        args_json(typed, "paths")
    with pytest.raises(ValidationError, match="no function or class this backend serves"):
        args_json(typed, "nowhere")


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="typing.TypedDict works from 3.12")
def test_typing_typeddict_before_312_is_refused_naming_the_parameter(module_spec):
    spec = module_spec(
        """
        from typing import TypedDict


        class Options(TypedDict):
            name: str


        def configure(options: Options) -> None:
            pass
        """
    )
    with pytest.raises(SignatureError, match="typing_extensions") as info:
        build_models(spec)
    assert (info.value.member, info.value.parameter) == ("configure", "options")
    assert "parameter 'options' of 'configure'" in str(info.value)


def test_unsigned_integer_arrays_accept_json_integers(module_models):
    models = module_models(
        """
        import numpy as np
        import numpy.typing as npt


        def histogram(counts: npt.NDArray[np.uint8]) -> int:
            return int(counts.sum())
        """
    )
    counts = models.validate_json('{"func_name": "histogram", "counts": [1, 2, 255]}')
    assert counts.arguments["counts"].dtype == np.uint8


def test_narrowing_array_conversion_does_not_overflow_silently(module_models):
    models = module_models(
        """
        import numpy as np
        import numpy.typing as npt


        def scale(values: npt.NDArray[np.int32]) -> int:
            return int(values.sum())
        """
    )
    try:
        call = models.validate_json('{"func_name": "scale", "values": [1099511627776, 1]}')
    except ValidationError:
        return  # refusing is fine
    assert call.arguments["values"].tolist() == [2**40, 1]


def test_datetime64_arrays_round_trip_through_json(module_models):
    models = module_models(
        """
        import numpy as np
        import numpy.typing as npt


        def latest(times: npt.NDArray[np.datetime64]) -> npt.NDArray[np.datetime64]:
            return times
        """
    )
    returns = models.functions["latest"].returns
    encoded = returns.dump_json(np.array(["2024-01-01T00:00"], dtype="datetime64[m]"))
    call = models.validate_json(b'{"func_name": "latest", "times": ' + encoded + b"}")
    assert call.arguments["times"].dtype.kind == "M"


# --------------------------------------------------------------------------------------
# Docstrings
# --------------------------------------------------------------------------------------

DOCS = '''
"""Module summary."""


def numpy_style(a: int, b: str = "x") -> int:
    """Numpy summary.

    Longer numpy text.

    Parameters
    ----------
    a : int
        The numpy a.
    b
        The numpy b.

    Returns
    -------
    int
        The numpy result.
    """
    return a


def google_style(a: int, b: str = "x") -> int:
    """Google summary.

    Args:
        a: The google a.
        b: The google b.

    Returns:
        The google result.
    """
    return a


def rest_style(a: int, b: str = "x") -> int:
    """Rest summary.

    :param a: The rest a.
    :param b: The rest b.
    :returns: The rest result.
    """
    return a


def undocumented(a: int) -> int:
    return a


class Station:
    """A station.

    Parameters
    ----------
    name
        Name from the class docstring.
    height
        Height from the class docstring.
    """

    def __init__(self, name: str, height: float = 0.0, depth: float = 0.0) -> None:
        """Build it.

        Parameters
        ----------
        name
            Name from __init__.
        depth
            Depth from __init__.
        """

    def measure(self, count: int) -> float:
        """Measure something.

        Parameters
        ----------
        count
            How many times.

        Returns
        -------
        float
            The measurement.
        """
        return 0.0
'''


@pytest.fixture
def docs(module_models) -> ModuleModels:
    return module_models(DOCS, "docs")


@pytest.mark.parametrize("style", ["numpy", "google", "rest"])
def test_docstring_styles_reach_spec_and_schema(docs, style):
    models = docs.functions[f"{style}_style"]
    spec = models.spec
    title = {"numpy": "Numpy", "google": "Google", "rest": "Rest"}[style]
    expected = f"{title} summary."
    if style == "numpy":
        expected += "\n\nLonger numpy text."
    assert spec.info.description == expected
    assert [p.description for p in spec.parameters] == [f"The {style} a.", f"The {style} b."]
    assert spec.info.returns == f"The {style} result."
    schema = models.request.model_json_schema()
    assert schema["description"] == expected
    assert schema["properties"]["a"]["description"] == f"The {style} a."
    assert schema["properties"]["b"]["description"] == f"The {style} b."
    info = {f["name"]: f for f in api_info(docs)["functions"]}[f"{style}_style"]
    assert info["return_schema"]["description"] == f"The {style} result."


def test_undocumented_function_has_no_descriptions(docs):
    models = docs.functions["undocumented"]
    assert models.spec.info.description == ""
    schema = models.request.model_json_schema()
    assert "description" not in schema
    assert "description" not in schema["properties"]["a"]


def test_class_docstring_describes_constructor_arguments(docs):
    station = docs.spec.classes[0]
    assert station.info.description == "A station."
    descriptions = {p.name: p.description for p in station.constructor.parameters}
    assert descriptions == {
        "name": "Name from the class docstring.",
        "height": "Height from the class docstring.",
        "depth": "Depth from __init__.",
    }
    schema = docs.classes["ClassStation"].model_json_schema()
    assert schema["description"] == "A station."
    assert schema["properties"]["name"]["description"] == "Name from the class docstring."
    assert schema["properties"]["depth"]["description"] == "Depth from __init__."
    method = docs.methods[("Station", "measure")]
    assert method.spec.info.returns == "The measurement."
    method_schema = method.request.model_json_schema()
    assert method_schema["description"] == "Measure something."
    assert method_schema["properties"]["count"]["description"] == "How many times."


def test_module_docstring_is_parsed(docs):
    assert docs.spec.info.description == "Module summary."


# --------------------------------------------------------------------------------------
# Signatures that cannot be served
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "member", "parameter", "fragment"),
    [
        (
            "def spread(a: int, *values: int) -> int:\n    return a\n",
            "spread",
            "values",
            r"\*values cannot be sent",
        ),
        (
            "def options(a: int, **extra: int) -> int:\n    return a\n",
            "options",
            "extra",
            r"\*\*extra cannot be sent",
        ),
        (
            "def call(func_name: str) -> str:\n    return func_name\n",
            "call",
            "func_name",
            "reserved by the request layout",
        ),
        (
            "def hide(_secret: int) -> int:\n    return 1\n",
            "hide",
            "_secret",
            "names starting with '_'",
        ),
        (
            "class Tool:\n"
            "    def __init__(self, class_name: str) -> None:\n        pass\n\n"
            "    def run(self) -> int:\n        return 1\n",
            "Tool.__init__",
            "class_name",
            "reserved by the request layout",
        ),
        (
            "class Tool:\n"
            "    def __init__(self, function: str) -> None:\n        pass\n\n"
            "    def run(self) -> int:\n        return 1\n",
            "Tool.__init__",
            "function",
            "reserved by the request layout",
        ),
        (
            "class Tool:\n    def run(self, func_name: str) -> int:\n        return 1\n",
            "Tool.run",
            "func_name",
            "reserved by the request layout",
        ),
        (
            "class Tool:\n    def run(self, *items: int) -> int:\n        return 1\n",
            "Tool.run",
            "items",
            r"\*items cannot be sent",
        ),
        (
            "from __future__ import annotations\n\nfrom typing import TYPE_CHECKING\n\n"
            "if TYPE_CHECKING:\n    from decimal import Decimal\n\n\n"
            "def price(amount: Decimal) -> int:\n    return 1\n",
            "price",
            "amount",
            "cannot be resolved.*NameError.*TYPE_CHECKING",
        ),
        (
            "from __future__ import annotations\n\nfrom typing import TYPE_CHECKING\n\n"
            "if TYPE_CHECKING:\n    from decimal import Decimal\n\n\n"
            "def price(amount: int) -> Decimal:\n    return 1\n",
            "price",
            "return",
            "cannot be resolved",
        ),
        (
            "class Engine:\n    pass\n\n__all__ = ['start']\n\n\n"
            "def start(engine: Engine) -> int:\n    return 1\n",
            "start",
            "engine",
            "is not supported.*Unable to generate pydantic-core schema",
        ),
        (
            "import collections.abc\n\n\n"
            "def apply(fn: collections.abc.Callable[[int], int]) -> int:\n    return 1\n",
            "apply",
            "fn",
            "is not supported.*JsonSchema",
        ),
        (
            "class Engine:\n    pass\n\n__all__ = ['make']\n\n\n"
            "def make(size: int) -> Engine:\n    return Engine()\n",
            "make",
            "return",
            "is not supported",
        ),
    ],
    ids=[
        "var-positional",
        "var-keyword",
        "func_name",
        "private-parameter",
        "constructor-class_name",
        "constructor-function",
        "method-func_name",
        "method-var-positional",
        "type-checking-only-name",
        "type-checking-only-return",
        "arbitrary-class",
        "callable",
        "arbitrary-class-return",
    ],
)
def test_unservable_signatures(module_models, source, member, parameter, fragment):
    with pytest.raises(SignatureError, match=fragment) as info:
        module_models(source)
    error = info.value
    assert isinstance(error, ModuleLoadError)
    assert (error.member, error.parameter) == (member, parameter)
    if parameter == "return":
        assert f"the return annotation of {member!r}" in str(error)
    else:
        assert f"parameter {parameter!r} of {member!r}" in str(error)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        (
            "from collections.abc import AsyncIterator\n\n\n"
            "async def count(n: int) -> AsyncIterator[int]:\n    yield n\n",
            "async generator functions cannot be served yet",
        ),
        (
            "def count(n: int) -> list[int]:\n    yield n\n",
            r"must be annotated to return Iterator\[T\]",
        ),
        ("def count(n: int):\n    yield n\n", "must be annotated to return Iterator"),
    ],
    ids=["async-generator", "list-annotation", "no-annotation"],
)
def test_generators_without_an_iterator_annotation_are_refused(module_spec, source, fragment):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DemessagingWarning)  # the missing return annotation
        with pytest.raises(SignatureError, match=fragment) as info:
            module_spec(source)
    assert info.value.member == "count"
    assert info.value.parameter is None
    assert "'count'" in str(info.value)


@pytest.mark.parametrize(
    "annotation", ["Iterator[int]", "Iterable[int]", "Generator[int, None, None]"]
)
def test_generator_functions_stream_their_items(module_spec, annotation):
    source = (
        "from collections.abc import Generator, Iterable, Iterator\n\n\nclass Feed:\n"
        f"    def items(self) -> {annotation}:\n        yield 1\n"
    )
    method = module_spec(source).classes[0].methods[0]
    assert method.streams
    assert method.item is int


def test_missing_parameter_annotation_warns(module_models):
    source = "def loose(a, b: int) -> int:\n    return b\n"
    with pytest.warns(DemessagingWarning, match="parameter 'a' of 'loose' has no annotation"):
        models = module_models(source)
    a, b = models.functions["loose"].spec.parameters
    assert (a.annotated, a.annotation) == (False, Any)
    assert b.annotated
    call = models.validate_json('{"func_name": "loose", "a": {"any": [1, "json"]}, "b": 1}')
    assert call.arguments["a"] == {"any": [1, "json"]}


def test_missing_return_annotation_warns(module_models):
    source = "def loose(a: int):\n    return a\n"
    with pytest.warns(DemessagingWarning, match="'loose' has no return annotation") as record:
        models = module_models(source)
    assert len(record) == 1
    spec = models.functions["loose"].spec
    assert spec.returns is Any
    assert spec.returns_annotated is False


def test_missing_method_annotations_warn_naming_the_method(module_spec):
    source = "class Tool:\n    def run(self, level):\n        return level\n"
    with pytest.warns(DemessagingWarning) as record:
        module_spec(source)
    messages = [str(w.message) for w in record]
    assert any("parameter 'level' of 'Tool.run'" in m for m in messages)
    assert any("'Tool.run' has no return annotation" in m for m in messages)


def test_init_needs_no_return_annotation(module_spec, recwarn):
    spec = module_spec(
        "class Tool:\n    def __init__(self, size: int):\n        self.size = size\n\n"
        "    def run(self) -> int:\n        return self.size\n"
    )
    assert not [w for w in recwarn if issubclass(w.category, DemessagingWarning)]
    assert spec.classes[0].constructor.returns is None


def test_parameter_shadowing_a_basemodel_attribute_keeps_its_wire_name(module_models):
    models = module_models("def copy(json: str, schema: int = 1) -> str:\n    return json\n")
    request = models.functions["copy"].request
    assert set(request.model_json_schema()["properties"]) == {"func_name", "json", "schema"}
    call = models.validate_json('{"func_name": "copy", "json": "x", "schema": 2}')
    assert call.arguments == {"json": "x", "schema": 2}


def test_parameters_colliding_after_renaming_are_both_kept(module_models):
    models = module_models("def dup(copy: int, copy_: int) -> int:\n    return copy + copy_\n")
    call = models.validate_json('{"func_name": "dup", "copy": 1, "copy_": 2}')
    assert call.arguments == {"copy": 1, "copy_": 2}


def test_every_request_model_forbids_extras_and_lists_its_parameters(typed):
    for function in typed.spec.functions:
        schema = typed.functions[function.name].request.model_json_schema()
        assert schema["additionalProperties"] is False
        assert set(schema["properties"]) == {"func_name", *(p.name for p in function.parameters)}


def test_a_script_run_as_main_is_shown_by_its_file_name() -> None:
    script = types.ModuleType("__main__")
    script.__file__ = "/srv/backends/ocean_model.py"
    exec("def depth(x: float) -> float:\n    '''Depth.'''\n    return x\n", script.__dict__)
    for obj in script.__dict__.values():
        if callable(obj):
            obj.__module__ = "__main__"
    spec = inspect_module(script)
    assert spec.name == "__main__"  # the wire and the schemas keep DASF's name
    assert spec.shown == "ocean_model"
    named = types.ModuleType("ocean.model")
    assert ModuleSpec("ocean.model", named, (), ()).shown == "ocean.model"
