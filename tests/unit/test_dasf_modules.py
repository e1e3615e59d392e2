"""Modules written for DASF's demessaging 0.6: ``configure``, progress reports and ``main()``."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydantic import field_validator

from demessaging import configure
from demessaging.backend import ListenerThread, serve
from demessaging.backend.dispatcher import Dispatcher
from demessaging.client import Client, Progress
from demessaging.core import inspect_module
from demessaging.core.schema import module_schema
from demessaging.errors import ConfigurationError, RemoteError, SignatureError
from demessaging.protocol.envelope import JSON
from tests.helpers import generated_client

DASF_MODULE = Path(__file__).resolve().parents[1] / "data" / "dasf_module.py"

CONFIGURED = '''
from pydantic import field_validator
from demessaging import configure


def _upper(cls, value):
    return value.upper()


def _twice(value):
    return value * 2


@configure(
    field_params={"n": {"gt": 0, "le": 10, "title": "Count", "description": "How many."}},
    returns={"description": "The text, n times."},
    validators={"text": [_upper]},
    return_validators=[_twice],
    json_schema_extra={"examples": [{"func_name": "times", "text": "a", "n": 2}]},
)
def times(text: str, n: int = 3) -> str:
    """Repeat a text.

    Parameters
    ----------
    n
        Said in the docstring.
    """
    return text * n


@configure(annotations={"value": float}, return_annotation=float, doc="Halve a number.")
def half(value):
    """Replaced."""
    return value / 2


@configure(
    methods=["area"],
    init_doc="Make a square.",
    field_params={"side": {"ge": 0}},
    validators={"check": field_validator("side", mode="before")(lambda cls, v: abs(float(v)))},
)
class Square:
    """A square."""

    def __init__(self, side: float) -> None:
        self.side = side

    def area(self) -> float:
        """Its area."""
        return self.side**2

    def perimeter(self) -> float:
        """Left out by ``methods``."""
        return 4 * self.side
'''


@pytest.fixture
def configured(write_module: Callable[..., Path]) -> Dispatcher:
    return Dispatcher.from_module(write_module(CONFIGURED))


def test_field_params_constrain_and_describe_a_parameter(configured: Dispatcher) -> None:
    assert configured.call({"func_name": "times", "text": "ab", "n": 2}) == "ABABABAB"
    with pytest.raises(Exception, match="less than or equal to 10"):
        configured.call({"func_name": "times", "text": "ab", "n": 11})
    schema = module_schema(configured.models)["$defs"]["FuncTimes"]
    n = schema["properties"]["n"]
    assert (n["exclusiveMinimum"], n["maximum"], n["title"]) == (0, 10, "Count")
    assert n["description"] == "How many."  # field_params win over the docstring
    assert schema["examples"] == [{"func_name": "times", "text": "a", "n": 2}]
    returns = configured.models.functions["times"].returns.json_schema()
    assert returns["description"] == "The text, n times."


def test_annotations_and_doc_replace_the_source_ones(configured: Dispatcher) -> None:
    spec = configured.models.functions["half"].spec
    assert spec.info.description == "Halve a number."
    assert configured.call({"func_name": "half", "value": "3"}) == 1.5
    with pytest.raises(Exception, match="valid number"):
        configured.call({"func_name": "half", "value": "x"})


def test_class_settings_choose_methods_and_validate_the_constructor(
    configured: Dispatcher,
) -> None:
    square = configured.models.spec.classes[0]
    assert [m.name for m in square.methods] == ["area"]
    assert square.constructor.info.description == "Make a square."
    request = {"class_name": "Square", "side": "-3", "function": {"func_name": "area"}}
    assert configured.call(request) == 9.0  # the before-validator made it 3.0
    with pytest.raises(Exception, match="Input should be 'area'"):
        configured.call({**request, "function": {"func_name": "perimeter"}})


def test_configure_merges_and_refuses_what_it_cannot_do() -> None:
    @configure(field_params={"a": {"gt": 0}})
    @configure(field_params={"a": {"lt": 5}}, returns={"title": "r"})
    def f(a: int) -> int:
        return a

    config = f.__demessaging_config__  # type: ignore[attr-defined]
    assert config.field_params == {"a": {"lt": 5, "gt": 0}}
    assert config.returns == {"title": "r"}
    with pytest.raises(ConfigurationError, match="name"):
        configure(name="other")(f)
    with pytest.raises(ConfigurationError, match="unknown setting 'methods' for a function"):
        configure(methods=["x"])(f)
    with pytest.raises(ConfigurationError, match="JSON string or keywords"):
        configure('{"doc": "x"}', doc="y")
    assert configure('{"doc": "from JSON"}')(f).__demessaging_config__.doc == "from JSON"  # type: ignore[attr-defined]
    assert configure(template="function.py", registry=None)(f) is f  # DASF's, no effect


def test_configure_naming_a_missing_parameter_is_a_signature_error(
    write_module: Callable[..., Path],
) -> None:
    source = """
    from demessaging import configure

    @configure(field_params={"b": {"gt": 0}})
    def f(a: int) -> int:
        return a
    """
    with pytest.raises(SignatureError, match="'b'"):
        inspect_module(write_module(source))


def test_a_field_validator_object_targets_its_own_field() -> None:
    @configure(validators={"any-key": field_validator("x")(lambda cls, v: v + 1)})
    def g(x: int) -> int:
        return x

    config = g.__demessaging_config__  # type: ignore[attr-defined]
    assert set(config.validators) == {"x"}


# -- a module's own codec (serializers and validators) --------------------------------------------

ARRAYS = DASF_MODULE.parent / "dasf_arrays" / "dasf_arrays.py"


def _encoded(value: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, value, allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _decoded(text: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


def test_a_parameter_with_a_serializer_and_validators_takes_the_codec_s_wire_value() -> None:
    dispatcher = Dispatcher.from_module(ARRAYS)
    a = np.arange(6.0).reshape(2, 3)
    assert dispatcher.call({"func_name": "total", "a": _encoded(a)}) == 15.0
    outcome = dispatcher.handle(json.dumps({"func_name": "scale", "a": _encoded(a)}), JSON)
    assert outcome.ok, outcome
    np.testing.assert_array_equal(_decoded(json.loads(outcome.payload)), a * 2)  # its serializer
    schema = module_schema(dispatcher.models)["$defs"]["FuncTotal"]["properties"]["a"]
    assert "type" not in schema  # Any, as DASF 0.6 describes it
    with pytest.raises(Exception, match=r"expected an array in base64 \.npy, got int"):
        dispatcher.call({"func_name": "total", "a": 3})


def test_an_explicit_annotation_keeps_its_type_despite_a_codec(
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    dispatcher = make_dispatcher(
        """
        from demessaging import configure

        def _shout(value):
            return value.upper()

        @configure(annotations={"a": str}, serializers={"a": str}, validators={"a": [_shout]})
        def typed(a) -> str:
            return a

        @configure(validators={"a": [_shout]})
        def checked(a: str) -> str:
            return a
        """
    )
    assert dispatcher.call({"func_name": "typed", "a": "x"}) == "X"
    with pytest.raises(Exception, match="valid string"):
        dispatcher.call({"func_name": "typed", "a": 3})
    with pytest.raises(Exception, match="valid string"):  # validators alone: the type stays
        dispatcher.call({"func_name": "checked", "a": 3})


def test_a_generated_client_of_a_module_with_its_own_codec_sends_arrays(tmp_path: Path) -> None:
    broker_url = f"memory://{uuid.uuid4().hex[:8]}"
    with generated_client(ARRAYS, tmp_path, name="arrays", broker_url=broker_url) as arrays:
        source = Path(arrays.__file__).read_text()
        assert "def total(a: typing.Any) -> float:" in source
        with serve(ARRAYS, broker_url=broker_url, topic="dasf_arrays"):
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # the same fingerprints: no API change warned
                assert arrays.total(np.arange(4.0)) == 6.0
                scaled = arrays.scale(np.arange(4.0), factor=3.0)
            np.testing.assert_array_equal(scaled, np.arange(4.0) * 3)


# -- progress reports ---------------------------------------------------------------------------


def test_a_reporter_parameter_is_filled_by_the_backend_and_reports_each_step() -> None:
    dispatcher = Dispatcher.from_module(DASF_MODULE)
    spec = dispatcher.models.functions["count_up"].spec
    assert [p.name for p in spec.parameters] == ["n"]  # callers never send the report
    assert [p.name for p in spec.reporters] == ["reporter"]
    sent: list[tuple[str, dict[str, object]]] = []
    outcome = dispatcher.handle(
        b'{"func_name": "count_up", "n": 2}',
        JSON,
        lambda payload, status: sent.append((status, json.loads(payload))),
    )
    assert outcome.ok
    assert outcome.payload == b"2"
    statuses = [status for status, _ in sent]
    assert statuses[0] == "running"
    assert statuses[-1] == "success"
    final = sent[-1][1]
    assert final["step_message"] == "counting"
    assert [c["step_message"] for c in final["children"]] == ["step 1", "step 2"]  # type: ignore[index,union-attr]
    assert all(c["status"] == "success" for c in final["children"])  # type: ignore[index,union-attr]
    # each call gets a report of its own: the module's default is never touched
    again: list[str] = []
    dispatcher.handle(b'{"func_name": "count_up", "n": 1}', JSON, lambda p, s: again.append(s))
    assert dispatcher.call({"func_name": "count_up", "n": 0}) == 0  # no reporter: no progress
    assert again[0] == "running"
    assert len(again) == 4


#: What DASF 0.6.4's generated client sends for ``count_up(2)`` (its report, serialised).
DASF_064_REQUEST = {
    "func_name": "count_up",
    "n": 2,
    "reporter": {
        "settings": {"show_method": "AUTO", "use_curses": True},
        "report_id": "root",
        "status": "running",
        "step_message": "from the client",
        "steps": 0,
        "children": [],
        "report_type": "tree",
    },
}


def test_the_report_a_dasf_client_sends_is_the_one_the_function_gets() -> None:
    dispatcher = Dispatcher.from_module(DASF_MODULE)
    sent: list[tuple[str, dict[str, object]]] = []
    outcome = dispatcher.handle(
        json.dumps(DASF_064_REQUEST),
        JSON,
        lambda payload, status: sent.append((status, json.loads(payload))),
    )
    assert outcome.ok, outcome
    assert outcome.payload == b"2"
    assert sent[0][1]["step_message"] == "from the client"  # as DASF 0.6.4's backend does
    assert sent[-1][0] == "success"
    assert [c["step_message"] for c in sent[-1][1]["children"]] == ["step 1", "step 2"]  # type: ignore[union-attr]
    schema = module_schema(dispatcher.models)["$defs"]["FuncCountUp"]
    assert "reporter" not in schema["properties"]  # callers other than DASF's never send it
    again: list[dict[str, object]] = []  # the next call without one gets the default again
    dispatcher.handle(
        b'{"func_name": "count_up", "n": 1}', JSON, lambda p, s: again.append(json.loads(p))
    )
    assert again[0]["step_message"] == "counting"
    assert dispatcher.call({**DASF_064_REQUEST, "reporter": None}) == 2
    with pytest.raises(Exception, match="reporter"):
        dispatcher.call({**DASF_064_REQUEST, "reporter": 3})
    with pytest.raises(Exception, match="Extra inputs"):
        dispatcher.call({"func_name": "hello", "message": "x", "reporter": {}})


def test_a_method_gets_the_report_a_dasf_client_sends(
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    dispatcher = make_dispatcher(
        """
        from deprogressapi import ProgressReport

        DEFAULT = ProgressReport(step_message="counting")

        class Counter:
            def __init__(self, start: int) -> None:
                self.start = start

            def count(self, n: int, reporter: ProgressReport = DEFAULT) -> int:
                with reporter:
                    return self.start + n
        """
    )
    sent: list[dict[str, object]] = []
    method = {"func_name": "count", "n": 2, "reporter": {"step_message": "mine"}}
    request = {"class_name": "Counter", "start": 1, "function": method}
    outcome = dispatcher.handle(json.dumps(request), JSON, lambda p, s: sent.append(json.loads(p)))
    assert (outcome.ok, outcome.payload) == (True, b"3")
    assert {report["step_message"] for report in sent} == {"mine"}


def test_a_constructor_gets_the_report_a_dasf_client_sends(
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    dispatcher = make_dispatcher(
        """
        from deprogressapi import ProgressReport

        class Loader:
            def __init__(
                self, start: int, reporter: ProgressReport = ProgressReport(step_message="loading")
            ) -> None:
                with reporter:
                    with reporter.create_subreport(step_message="opened"):
                        self.start = start

            def count(self, n: int) -> int:
                return self.start + n
        """
    )
    sent: list[dict[str, object]] = []
    mine = {**DASF_064_REQUEST["reporter"], "step_message": "mine"}  # type: ignore[dict-item]
    request = {"class_name": "Loader", "start": 1, "reporter": mine}
    request["function"] = {"func_name": "count", "n": 2}
    outcome = dispatcher.handle(json.dumps(request), JSON, lambda p, s: sent.append(json.loads(p)))
    assert (outcome.ok, outcome.payload) == (True, b"3")
    assert {report["step_message"] for report in sent} == {"mine"}  # as DASF 0.6.4's backend does
    assert sent[-1]["status"] == "success"
    assert [c["step_message"] for c in sent[-1]["children"]] == ["opened"]  # type: ignore[union-attr]
    schema = module_schema(dispatcher.models)["$defs"]["ClassLoader"]
    assert "reporter" not in schema["properties"]  # callers other than DASF's never send it
    default: list[dict[str, object]] = []  # without one, the constructor's default
    del request["reporter"]
    outcome = dispatcher.handle(
        json.dumps(request), JSON, lambda p, s: default.append(json.loads(p))
    )
    assert (outcome.ok, outcome.payload) == (True, b"3")
    assert {report["step_message"] for report in default} == {"loading"}
    with pytest.raises(Exception, match="reporter"):
        dispatcher.call({**request, "reporter": 3})


def test_a_client_sees_the_progress_before_the_result(
    serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(DASF_MODULE)
    seen: list[Progress] = []
    assert client().call({"func_name": "count_up", "n": 3}, on_progress=seen.append) == 3
    assert seen
    assert seen[0].status == "running"
    assert seen[-1].status == "success"
    assert len(seen[-1].report["children"]) == 3


def test_a_failing_on_progress_does_not_fail_the_call(
    serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(DASF_MODULE)

    def broken(progress: Progress) -> None:
        raise RuntimeError("caller's bug")

    assert client().call({"func_name": "count_up", "n": 1}, on_progress=broken) == 1
    with pytest.raises(RemoteError, match="greater than or equal to 1"):
        client().call({"func_name": "hello", "message": "x", "repeat": 0})


# -- main() ----------------------------------------------------------------------------------------


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python dasf_module.py ARGS``: the module's own ``main()``."""
    return subprocess.run(
        [sys.executable, str(DASF_MODULE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_main_runs_dasf_commands_of_the_module() -> None:
    done = _run("compute", '{"func_name": "hello", "message": "hi", "repeat": 2}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["hi", "hi"]
    schema = json.loads(_run("schema", "-i", "2").stdout)
    assert set(schema["$defs"]) >= {"FuncHello", "FuncCountUp", "ClassGreeter"}
    bad = _run("compute", '{"func_name": "hello", "message": "hi", "repeat": 0}')
    assert bad.returncode == 1
    assert "error validating request" in bad.stderr
    members = json.loads(_run("--members", "hello", "-t", "dasf-module", "schema").stdout)
    assert "FuncCountUp" not in members["$defs"]


def test_main_takes_dasf_connection_options_and_environment() -> None:
    pulsar = _run("-H", "broker.example", "-p", "8081", "generate")
    assert pulsar.returncode == 0, pulsar.stderr
    assert 'broker_url="ws://broker.example:8081"' in pulsar.stdout
    assert 'topic="dasf-module"' in pulsar.stdout  # main(messaging_config=...)
    env = {"DE_BACKEND_WEBSOCKET_URL": "ws://127.0.0.1:9/ws", "DE_BACKEND_TOPIC": "from-env"}
    websocket = _run("generate", env=env)
    assert 'broker_url="ws://127.0.0.1:9/ws"' in websocket.stdout
    assert 'topic="dasf-module"' in websocket.stdout  # main()'s keywords win over the env
    flagged = _run("-t", "from-flag", "generate", env=env)
    assert 'topic="from-flag"' in flagged.stdout  # and the command line over both
    assert "def count_up(n: int) -> int:" in flagged.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["shell"], "shell command is not supported"),
        (["listen", "--dump-to", "x"], "--dump-to is not supported"),
        (["--producer-url", "ws://a/ws", "listen"], "must equal --websocket-url"),
        (["--persistent", "maybe", "listen"], "persistent or non-persistent"),
        (["--header", "not json", "test-connect"], "headers must be a JSON object"),
    ],
)
def test_main_refuses_what_it_does_not_support(args: list[str], message: str) -> None:
    done = _run(*args)
    assert done.returncode == 1
    assert message in done.stderr


@pytest.mark.parametrize("args", [["-H", "127.0.0.1", "-p", "PORT"], ["--websocket-url", "URL"]])
@pytest.mark.parametrize("command", ["listen", "test-connect"])
def test_main_names_its_own_settings_when_no_broker_answers(
    command: str, args: list[str], tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    url = f"ws://127.0.0.1:{port}"
    args = [a.replace("PORT", str(port)).replace("URL", url) for a in args]
    start = time.monotonic()
    done = _run(*args, command)
    assert time.monotonic() - start < 15  # under 1 s usually; not a 30 s retry loop
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"Error: cannot reach the broker at {url}: connection refused; start the broker, or set "
        "its URL in --websocket-url or -H/-p (DE_BACKEND_WEBSOCKET_URL, DE_BACKEND_HOST/_PORT)"
    ]


def test_main_without_topic_asks_for_one(write_module: Callable[..., Path]) -> None:
    from demessaging import main

    path = write_module("def f(x: int) -> int:\n    return x\n")
    with pytest.raises(SystemExit) as exit_info:
        main(str(path), "schema")
    assert exit_info.value.code == 2  # argparse: --topic is required


def test_main_refuses_unknown_settings() -> None:
    from demessaging import main

    with pytest.raises(SystemExit, match="unknown messaging_config settings: colour"):
        main("__main__", "schema", messaging_config={"topic": "t", "colour": "red"})
    with pytest.raises(SystemExit, match="unknown settings of main"):
        main("__main__", "schema", messaging_config={"topic": "t"}, flavour=1)


def test_main_reads_argparse_habits_of_dasf_command_lines() -> None:
    from demessaging.dasf.main import argparse_style

    # --members takes every name up to the next option; long options may be shortened
    assert argparse_style(
        ["--members", "a", "b", "--top=t", "--websocket", "ws://x", "listen"]
    ) == [
        *("--members", "a", "--members", "b", "--topic", "t", "--websocket-url", "ws://x"),
        "listen",
    ]
    assert argparse_style(["-t=t", "schema", "--ind", "-1"]) == [
        "-t",
        "t",
        "schema",
        "--indent",
        "-1",
    ]
    assert argparse_style(["--p", "1", "listen"]) == ["--p", "1", "listen"]  # ambiguous: click says
    members = json.loads(_run("--mem", "hello", "count_up", "-t", "x", "schema").stdout)
    assert set(members["$defs"]) >= {"FuncHello", "FuncCountUp"}
    assert "ClassGreeter" not in members["$defs"]
    flagged = _run("--top=from-flag", "generate")
    assert 'topic="from-flag"' in flagged.stdout
    assert "expected at least one argument" in _run("--members", "-t", "x", "schema").stderr
    assert _run("--members", "hello", "schema").returncode == 2  # the command became a member


def test_dasf_reports_are_a_registered_report_type() -> None:
    from deprogressapi import ProgressReport

    from demessaging import PulsarMessageConstants
    from demessaging.core.reporter import Reporter, is_progress_report, report_type
    from demessaging.dasf import constants
    from demessaging.dasf.progress import DEPROGRESSAPI

    assert report_type(ProgressReport) is DEPROGRESSAPI
    assert report_type(Reporter) is None
    assert is_progress_report(ProgressReport)
    assert is_progress_report(Reporter)
    assert not is_progress_report(dict)
    assert not is_progress_report("ProgressReport")
    assert PulsarMessageConstants.PropertyKeys is constants.PropertyKeys
    sent: list[tuple[bytes, str]] = []
    default = ProgressReport(step_message="default")
    report = DEPROGRESSAPI.make(ProgressReport, default, lambda p, s: sent.append((p, s)))
    assert report is not default
    report.submit()
    assert sent
    assert json.loads(sent[-1][0])["step_message"] == "default"
    assert sent[-1][1] == "running"
