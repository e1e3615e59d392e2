"""The dispatcher: JSON bytes in, the declared member called, an Outcome out. No broker."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from demessaging.backend.dispatcher import Dispatcher, Outcome, type_name
from demessaging.core import ModuleModels
from demessaging.errors import ExecutionError, RequestError, ResultError, SignatureError
from demessaging.protocol.envelope import ErrorInfo

BACKEND = '''
"""A backend whose members record every call."""

from __future__ import annotations

import asyncio
import os
import sys
from os import system as run_system
from typing import Any

CALLS: list[str] = []
INSTANCES: list[object] = []
DEFAULT_ITEMS = [1, 2]


class BackendError(Exception):
    """Raised by the backend."""


def add(a: int, b: int = 10) -> int:
    CALLS.append("add")
    return a + b


def echo(value: Any) -> Any:
    CALLS.append("echo")
    return value


def defaults(a: int, items: list[int] = DEFAULT_ITEMS, label: str | None = None) -> list[Any]:
    CALLS.append("defaults")
    return [a, items is DEFAULT_ITEMS, label]


def positional(a: int, b: int = 2, /, c: int = 3, *, d: int = 4) -> list[int]:
    CALLS.append("positional")
    return [a, b, c, d]


def positional_default(items: list[int] = DEFAULT_ITEMS, /) -> bool:
    CALLS.append("positional_default")
    return items is DEFAULT_ITEMS


def fail(message: str) -> int:
    CALLS.append("fail")
    raise ValueError(message)


def fail_custom(message: str) -> int:
    CALLS.append("fail_custom")
    raise BackendError(message)


def fail_silently() -> int:
    CALLS.append("fail_silently")
    raise RuntimeError()


def leave(code: int) -> int:
    CALLS.append("leave")
    sys.exit(code)


def wrong(kind: str) -> int:
    CALLS.append("wrong")
    return {"text": "many", "none": None, "list": [1]}[kind]


def nothing() -> None:
    CALLS.append("nothing")
    return 5


def unencodable() -> Any:
    CALLS.append("unencodable")
    return object()


async def twice(x: int) -> int:
    CALLS.append("twice")
    await asyncio.sleep(0)
    return 2 * x


async def async_fail() -> int:
    CALLS.append("async_fail")
    await asyncio.sleep(0)
    raise KeyError("missing")


async def async_wrong() -> int:
    await asyncio.sleep(0)
    return "not a number"


class Counter:
    """Counts."""

    def __init__(self, start: int, step: int = 1) -> None:
        CALLS.append("Counter.__init__")
        INSTANCES.append(self)
        self.value = start
        self.step = step

    def bump(self, times: int = 1) -> int:
        CALLS.append("Counter.bump")
        self.value += self.step * times
        return self.value

    def explode(self) -> int:
        CALLS.append("Counter.explode")
        raise BackendError(f"exploded at {self.value}")

    async def later(self, x: int) -> int:
        CALLS.append("Counter.later")
        await asyncio.sleep(0)
        return self.value + x

    @staticmethod
    def double(x: int) -> int:
        CALLS.append("Counter.double")
        return 2 * x

    @classmethod
    def describe(cls, prefix: str) -> str:
        CALLS.append("Counter.describe")
        return f"{prefix}{cls.__name__}"

    @property
    def current(self) -> int:
        CALLS.append("Counter.current")
        return self.value

    def _secret(self) -> int:
        CALLS.append("Counter._secret")
        return 0


class Fragile:
    def __init__(self, size: int) -> None:
        CALLS.append("Fragile.__init__")
        if size < 0:
            raise ValueError("size must not be negative")
        self.size = size

    def area(self) -> int:
        CALLS.append("Fragile.area")
        return self.size**2


class Tools:
    @staticmethod
    def join(a: str, b: str = "!", /) -> str:
        CALLS.append("Tools.join")
        return a + b

    @classmethod
    def name(cls) -> str:
        CALLS.append("Tools.name")
        return cls.__name__
'''


@pytest.fixture(scope="module")
def backend_models(shared_models) -> ModuleModels:
    return shared_models(BACKEND, "backend")


@pytest.fixture
def dispatcher(backend_models) -> Dispatcher:
    """The backend's dispatcher, with its records of calls and instances emptied."""
    module = backend_models.spec.module
    module.CALLS.clear()
    module.INSTANCES.clear()
    return Dispatcher(backend_models)


@pytest.fixture
def debug_dispatcher(dispatcher) -> Dispatcher:
    return Dispatcher(dispatcher.models, debug=True)


def calls(dispatcher: Dispatcher) -> list[str]:
    return dispatcher.models.spec.module.CALLS


def handle(dispatcher: Dispatcher, request: Any) -> Outcome:
    payload = request if isinstance(request, bytes) else json.dumps(request).encode()
    return dispatcher.handle(payload)


def result(dispatcher: Dispatcher, request: Any) -> Any:
    outcome = handle(dispatcher, request)
    assert outcome.ok, outcome.error
    assert outcome.error is None
    return json.loads(outcome.payload)


def error(dispatcher: Dispatcher, request: Any, stage: str) -> ErrorInfo:
    outcome = handle(dispatcher, request)
    assert not outcome.ok
    assert outcome.payload == b""
    assert outcome.error is not None
    assert outcome.error.stage == stage, outcome.error
    return outcome.error


# --------------------------------------------------------------------------------------
# Calls that work
# --------------------------------------------------------------------------------------


def test_function_call(dispatcher):
    assert result(dispatcher, {"func_name": "add", "a": 1, "b": 2}) == 3
    assert calls(dispatcher) == ["add"]


def test_outcome_payload_is_json_bytes(dispatcher):
    outcome = dispatcher.handle(b'{"func_name": "echo", "value": {"k": [1, "\\u00e9"]}}')
    assert outcome.ok
    assert isinstance(outcome.payload, bytes)
    assert json.loads(outcome.payload) == {"k": [1, "é"]}


def test_omitted_parameter_gets_the_functions_own_default(dispatcher):
    assert result(dispatcher, {"func_name": "add", "a": 1}) == 11
    # the very default object, not a copy made by the request model
    assert result(dispatcher, {"func_name": "defaults", "a": 1}) == [1, True, None]
    assert result(dispatcher, {"func_name": "defaults", "a": 1, "items": [1, 2]}) == [
        1,
        False,
        None,
    ]
    assert result(dispatcher, {"func_name": "defaults", "a": 1, "label": "x"}) == [1, True, "x"]


def test_positional_only_parameters(dispatcher):
    request = {"func_name": "positional", "a": 1, "b": 20, "c": 30, "d": 40}
    assert result(dispatcher, request) == [1, 20, 30, 40]
    assert result(dispatcher, {"func_name": "positional", "a": 1}) == [1, 2, 3, 4]
    assert result(dispatcher, {"func_name": "positional", "a": 1, "c": 5}) == [1, 2, 5, 4]
    assert result(dispatcher, {"func_name": "positional_default"}) is True
    assert result(dispatcher, {"func_name": "positional_default", "items": [1, 2]}) is False


def test_positional_only_parameters_of_a_static_method(dispatcher):
    request = {"class_name": "Tools", "function": {"func_name": "join", "a": "x"}}
    assert result(dispatcher, request) == "x!"
    request["function"]["b"] = "?"
    assert result(dispatcher, request) == "x?"


def test_instance_method_gets_a_new_instance_per_call(dispatcher):
    request = {"class_name": "Counter", "start": 10, "function": {"func_name": "bump"}}
    assert result(dispatcher, request) == 11
    assert result(dispatcher, request) == 11
    module = dispatcher.models.spec.module
    assert len(module.INSTANCES) == 2
    assert module.INSTANCES[0] is not module.INSTANCES[1]
    assert calls(dispatcher) == ["Counter.__init__", "Counter.bump"] * 2


def test_instance_method_with_constructor_and_method_arguments(dispatcher):
    request = {
        "class_name": "Counter",
        "start": 1,
        "step": 5,
        "function": {"func_name": "bump", "times": 3},
    }
    assert result(dispatcher, request) == 16


def test_static_method_needs_no_constructor_arguments(dispatcher):
    request = {"class_name": "Counter", "function": {"func_name": "double", "x": 21}}
    assert result(dispatcher, request) == 42
    assert calls(dispatcher) == ["Counter.double"]
    assert dispatcher.models.spec.module.INSTANCES == []


def test_class_method_gets_the_class(dispatcher):
    request = {"class_name": "Counter", "function": {"func_name": "describe", "prefix": "I am "}}
    assert result(dispatcher, request) == "I am Counter"
    assert calls(dispatcher) == ["Counter.describe"]
    request = {"class_name": "Tools", "function": {"func_name": "name"}}
    assert result(dispatcher, request) == "Tools"


def test_async_function(dispatcher):
    assert result(dispatcher, {"func_name": "twice", "x": 4}) == 8
    assert calls(dispatcher) == ["twice"]


def test_async_method(dispatcher):
    request = {"class_name": "Counter", "start": 3, "function": {"func_name": "later", "x": 4}}
    assert result(dispatcher, request) == 7


def test_request_values_are_coerced_to_annotations(dispatcher):
    assert result(dispatcher, {"func_name": "add", "a": 1.0, "b": "2"}) == 3


def test_call_returns_the_python_value(dispatcher):
    assert dispatcher.call({"func_name": "add", "a": 2}) == 12
    assert dispatcher.call('{"func_name": "add", "a": 2, "b": 0}') == 2


def test_class_without_init_and_from_module(write_module):
    path = write_module(
        "class Greeter:\n    def greet(self, name: str) -> str:\n        return 'hi ' + name\n"
    )
    dispatcher = Dispatcher.from_module(path)
    request = {"class_name": "Greeter", "function": {"func_name": "greet", "name": "x"}}
    assert result(dispatcher, request) == "hi x"
    assert dispatcher.debug is False


# --------------------------------------------------------------------------------------
# Results are validated
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["text", "none", "list"])
def test_result_breaking_its_annotation_is_a_result_error(dispatcher, kind):
    info = error(dispatcher, {"func_name": "wrong", "kind": kind}, "result")
    assert info.type == "ValidationError"
    assert "wrong returned a value that does not match its return annotation" in info.message
    assert calls(dispatcher) == ["wrong"]


def test_none_annotation_refuses_a_value(dispatcher):
    info = error(dispatcher, {"func_name": "nothing"}, "result")
    assert "nothing returned a value" in info.message


def test_async_result_is_validated(dispatcher):
    info = error(dispatcher, {"func_name": "async_wrong"}, "result")
    assert "async_wrong returned a value" in info.message


def test_unencodable_result_is_a_result_error(dispatcher):
    info = error(dispatcher, {"func_name": "unencodable"}, "result")
    assert "unencodable returned a value that cannot be encoded" in info.message


def test_call_raises_result_error(dispatcher):
    with pytest.raises(ResultError) as exc_info:
        dispatcher.call({"func_name": "wrong", "kind": "text"})
    assert exc_info.value.stage == "result"


# --------------------------------------------------------------------------------------
# Exceptions raised by the backend
# --------------------------------------------------------------------------------------


def test_builtin_exception_is_reported_bare(dispatcher):
    info = error(dispatcher, {"func_name": "fail", "message": "bad input"}, "execution")
    assert info.type == "ValueError"
    assert info.message == "bad input"
    assert info.traceback is None
    assert calls(dispatcher) == ["fail"]
    assert info.text() == "error executing request: ValueError: bad input"


def test_module_exception_is_reported_qualified(dispatcher):
    info = error(dispatcher, {"func_name": "fail_custom", "message": "no data"}, "execution")
    assert info.type == f"{dispatcher.models.spec.name}.BackendError"
    assert info.message == "no data"
    assert info.traceback is None


def test_exception_without_message_is_reported_by_its_type(dispatcher):
    info = error(dispatcher, {"func_name": "fail_silently"}, "execution")
    assert (info.type, info.message) == ("RuntimeError", "RuntimeError")


def test_exception_in_a_method_and_in_async_code(dispatcher):
    info = error(
        dispatcher,
        {"class_name": "Counter", "start": 7, "function": {"func_name": "explode"}},
        "execution",
    )
    assert info.type.endswith(".BackendError")
    assert info.message == "exploded at 7"
    info = error(dispatcher, {"func_name": "async_fail"}, "execution")
    assert (info.type, info.message) == ("KeyError", "'missing'")


def test_exception_in_the_constructor_is_an_execution_error(dispatcher):
    request = {"class_name": "Fragile", "size": -1, "function": {"func_name": "area"}}
    info = error(dispatcher, request, "execution")
    assert (info.type, info.message) == ("ValueError", "size must not be negative")
    assert calls(dispatcher) == ["Fragile.__init__"]


def test_system_exit_does_not_escape(dispatcher):
    info = error(dispatcher, {"func_name": "leave", "code": 3}, "execution")
    assert (info.type, info.message) == ("SystemExit", "3")
    assert calls(dispatcher) == ["leave"]
    # the dispatcher still works afterwards
    assert result(dispatcher, {"func_name": "add", "a": 0}) == 10


def test_debug_mode_includes_the_traceback(debug_dispatcher):
    info = error(debug_dispatcher, {"func_name": "fail", "message": "bad input"}, "execution")
    assert info.traceback is not None
    assert "Traceback (most recent call last)" in info.traceback
    assert "in fail" in info.traceback
    assert "ValueError: bad input" in info.traceback
    assert info.text().endswith(info.traceback)


def test_call_raises_execution_error_with_the_cause(dispatcher):
    with pytest.raises(ExecutionError) as exc_info:
        dispatcher.call({"func_name": "fail", "message": "m"})
    assert exc_info.value.stage == "execution"
    assert exc_info.value.error_type == "ValueError"
    assert isinstance(exc_info.value.__cause__, ValueError)


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (ValueError, "ValueError"),
        (SystemExit, "SystemExit"),
        (json.JSONDecodeError, "json.decoder.JSONDecodeError"),
        (SignatureError, "demessaging.errors.SignatureError"),
    ],
)
def test_type_name(cls, expected):
    assert type_name(cls) == expected


# --------------------------------------------------------------------------------------
# Refused requests: stage "request", nothing is called
# --------------------------------------------------------------------------------------


def refused(dispatcher: Dispatcher, request: Any, *fragments: str) -> ErrorInfo:
    info = error(dispatcher, request, "request")
    assert info.type == "ValidationError"
    assert info.traceback is None
    for fragment in fragments:
        assert fragment in info.message, info.message
    assert calls(dispatcher) == []
    assert dispatcher.models.spec.module.INSTANCES == []
    return info


UNKNOWN = "the request names no function or class this backend serves"


@pytest.mark.parametrize(
    "request_",
    [
        {"func_name": "nowhere"},
        {"func_name": "ADD", "a": 1},
        {"func_name": "__init__"},
        {"func_name": "__class__"},
        {"func_name": "__import__", "name": "os"},
        {"func_name": "__builtins__"},
        {"func_name": "os.system", "command": "true"},
        {"func_name": "system", "command": "true"},
        {"func_name": "run_system", "command": "true"},
        {"func_name": "sys.exit"},
        {"func_name": "asyncio"},
        {"func_name": "BackendError", "message": "x"},
        {"func_name": "Counter", "start": 1},
        {"func_name": "Counter.double", "x": 1},
        {"func_name": ["add"], "a": 1},
        {"func_name": None, "a": 1},
        {"func_name": 1, "a": 1},
        {"a": 1},
        {},
        {"class_name": "Nowhere", "function": {"func_name": "bump"}},
        {"class_name": "BackendError", "function": {"func_name": "with_traceback"}},
        {"class_name": "__class__", "function": {"func_name": "mro"}},
        {"class_name": "os", "function": {"func_name": "system", "command": "true"}},
        {"class_name": 5, "function": {"func_name": "bump"}},
    ],
)
def test_unknown_members_are_refused(dispatcher, request_):
    info = refused(dispatcher, request_, UNKNOWN)
    assert "add" in info.message
    assert "Counter.bump" in info.message


@pytest.mark.parametrize(
    "method",
    ["nowhere", "__init__", "__class__", "__dict__", "_secret", "current", "value", "BUMP"],
)
def test_unknown_methods_are_refused(dispatcher, method):
    request = {"class_name": "Counter", "start": 1, "function": {"func_name": method}}
    info = refused(dispatcher, request, "function")
    assert "bump" in info.message


def test_method_request_without_function_is_refused(dispatcher):
    refused(dispatcher, {"class_name": "Counter", "start": 1}, "function", "Field required")


def test_method_attribute_walk_is_refused(dispatcher):
    request = {
        "class_name": "Counter",
        "start": 1,
        "function": {"func_name": "bump.__globals__"},
    }
    refused(dispatcher, request)


@pytest.mark.parametrize(
    ("request_", "fragments"),
    [
        ({"func_name": "add", "a": 1, "c": 3}, ("c: Extra inputs are not permitted",)),
        ({"func_name": "add", "a": 1, "__class__": 3}, ("Extra inputs are not permitted",)),
        ({"func_name": "add"}, ("a: Field required",)),
        ({"func_name": "add", "b": 1}, ("a: Field required",)),
        ({"func_name": "add", "a": "one"}, ("a: Input should be a valid integer",)),
        ({"func_name": "add", "a": 1.5}, ("a:",)),
        ({"func_name": "add", "a": None}, ("a:",)),
        (
            {"class_name": "Counter", "function": {"func_name": "bump"}},
            ("start: Field required",),
        ),
        (
            {"class_name": "Counter", "start": 1, "other": 2, "function": {"func_name": "bump"}},
            ("other: Extra inputs are not permitted",),
        ),
        (
            {"class_name": "Counter", "start": 1, "function": {"func_name": "bump", "x": 1}},
            ("x: Extra inputs are not permitted",),
        ),
        (
            {"class_name": "Counter", "start": 1, "function": {"func_name": "double"}},
            ("start: Extra inputs are not permitted",),
        ),
        (
            {"class_name": "Counter", "function": {"func_name": "double"}},
            ("x: Field required",),
        ),
        ({"func_name": "positional", "b": 2}, ("a: Field required",)),
        ({"func_name": "positional", "a": 1, "e": 2}, ("e: Extra inputs are not permitted",)),
    ],
)
def test_invalid_arguments_are_refused(dispatcher, request_, fragments):
    refused(dispatcher, request_, *fragments)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{",
        b'{"func_name": "add", "a": 1',
        b"{'func_name': 'add', 'a': 1}",
        b'{"func_name": "add", "a": 1}}',
        b"func_name=add&a=1",
        b"\x00\xff\xfe\xfd",
        bytes(range(256)),
        b"\x80" + random.Random(1234).randbytes(200),
        b"\x93\xa3add\x01\x02",  # msgpack is not accepted on the JSON path
    ],
    ids=[
        "empty",
        "open-brace",
        "truncated",
        "python-repr",
        "trailing-garbage",
        "form-encoded",
        "binary",
        "all-bytes",
        "random",
        "msgpack",
    ],
)
def test_invalid_json_is_refused(dispatcher, payload):
    info = refused(dispatcher, payload)
    assert "Invalid JSON" in info.message


@pytest.mark.parametrize(
    "payload",
    [b"[]", b'["add", 1]', b"3", b"-1.5", b"null", b"true", b'"add"', b'[{"func_name": "add"}]'],
)
def test_non_object_json_is_refused(dispatcher, payload):
    refused(dispatcher, payload, UNKNOWN)


def test_call_raises_request_error(dispatcher):
    with pytest.raises(RequestError) as exc_info:
        dispatcher.call({"func_name": "os.system", "command": "true"})
    assert exc_info.value.stage == "request"
    assert calls(dispatcher) == []


def test_parse_accepts_mappings_and_text(dispatcher):
    for request in ({"func_name": "add", "a": 1}, '{"func_name": "add", "a": 1}'):
        call = dispatcher.parse(request)
        assert call.target.spec.name == "add"
        assert call.arguments == {"a": 1}
    assert calls(dispatcher) == []


# --------------------------------------------------------------------------------------
# Bugs
# --------------------------------------------------------------------------------------


def test_class_without_methods_does_not_crash_the_dispatcher(make_dispatcher):
    dispatcher = make_dispatcher(
        "class Holder:\n    def __init__(self, x: int) -> None:\n        self.x = x\n\n\n"
        "def f(a: int) -> int:\n    return a\n"
    )
    outcome = handle(dispatcher, {"class_name": "Holder", "x": 1})
    assert outcome.error is not None
    assert outcome.error.stage == "request"


def test_function_parameter_named_class_name(make_dispatcher):
    source = "def label(a: int, class_name: str = 'x') -> str:\n    return f'{a}{class_name}'\n"
    refusal: SignatureError | None = None
    try:
        dispatcher = make_dispatcher(source)
    except SignatureError as exc:  # refusing it at introspection is fine too
        refusal = exc
    if refusal is not None:
        assert (refusal.member, refusal.parameter) == ("label", "class_name")
        return
    assert result(dispatcher, {"func_name": "label", "a": 1}) == "1x"
    assert result(dispatcher, {"func_name": "label", "a": 1, "class_name": "y"}) == "1y"


def test_internal_field_names_are_not_accepted_on_the_wire(make_dispatcher):
    dispatcher = make_dispatcher("def clone(copy: int) -> int:\n    return copy\n")
    assert result(dispatcher, {"func_name": "clone", "copy": 2}) == 2
    info = error(dispatcher, {"func_name": "clone", "copy_": 2}, "request")
    assert "copy_" in info.message
