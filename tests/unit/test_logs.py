"""Log lines: JSON or text, the level and format before or after the subcommand or from the
environment, one line per call, and pulsar-client's lines routed through ours."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from demessaging.backend import ListenerThread
from demessaging.client import Client
from demessaging.errors import RemoteError
from demessaging.observe import logs

ROOT = Path(__file__).resolve().parents[2]
MODULE = '''
def double(x: int) -> int:
    """Twice x."""
    return 2 * x


def fail() -> None:
    """Fail."""
    raise ValueError("no")
'''


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger and pulsar-client's routing back as they were."""
    from demessaging.transport import pulsar_setup as pulsar

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    pulsar.LIBRARY_LOG = None


def _record(**extra: object) -> logging.LogRecord:
    record = logging.getLogger("demessaging.calls").makeRecord(
        "demessaging.calls", logging.INFO, __file__, 1, "did %s", ("it",), None
    )
    record.__dict__.update(extra)
    return record


def test_a_json_line_has_time_level_logger_message_and_the_call() -> None:
    line = json.loads(logs.JsonFormatter().format(_record(member="double", duration=0.5)))
    assert line["level"] == "INFO"
    assert line["logger"] == "demessaging.calls"
    assert line["message"] == "did it"
    assert line["time"].endswith("Z")
    assert (line["member"], line["duration"]) == ("double", 0.5)
    assert "trace_id" not in line


def test_an_exception_stays_on_its_line() -> None:
    try:
        raise ValueError("a\nmultiline\nproblem")
    except ValueError:
        record = _record()
        record.exc_info = sys.exc_info()
    text = logs.JsonFormatter().format(record)
    assert "\n" not in text
    assert "multiline" in json.loads(text)["exception"]


def test_bad_settings_are_refused(root_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="log format 'xml'"):
        logs.configure("info", "xml")
    monkeypatch.setenv("DEMESSAGING_LOG_LEVEL", "loud")
    with pytest.raises(ValueError, match="log level 'loud'"):
        logs.configure()


_PULSAR_LINES = """
import logging, threading
import pulsar
from demessaging.observe import logs
from demessaging.transport import pulsar_setup

logs.configure("info", "json")
seen = threading.Event()
class Watch(logging.Handler):
    def emit(self, record):
        if "Connection refused" in record.getMessage():
            seen.set()
logging.getLogger("pulsar").addHandler(Watch())
client = pulsar.Client(
    "pulsar://127.0.0.1:1", logger=pulsar_setup.library_logger(), operation_timeout_seconds=1
)
try:
    client.create_producer("nowhere")
except Exception as exc:
    print(type(exc).__name__, flush=True)
client.close()
seen.wait(10)
"""


def test_json_routes_pulsar_clients_lines_through_ours() -> None:
    """Through a pipe its file logger writes to: pulsar-client's threads never call Python.

    (A Python logger given to pulsar.Client aborts some processes as they exit: its threads
    log while the interpreter shuts down.) In a fresh interpreter: pulsar-client keeps the
    logger of the first client a process makes.
    """
    done = subprocess.run(
        [sys.executable, "-c", _PULSAR_LINES], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in {"Timeout", "ConnectError"}, done.stdout
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    refused = [line for line in lines if "Connection refused" in line["message"]]
    assert refused, done.stderr
    assert (refused[0]["logger"], refused[0]["level"]) == ("pulsar", "ERROR")
    assert refused[0]["message"].startswith("ClientConnection:")  # the date and thread go


def test_the_log_settings_choose_pulsar_clients_logger(root_logging: None) -> None:
    import pulsar as library

    from demessaging.transport import pulsar_setup as pulsar

    assert logs.configure("info", "json") == ("info", "json")
    chosen = pulsar.library_logger()
    assert isinstance(chosen, library.FileLogger)
    assert chosen.log_file == pulsar.LIBRARY_LOG != "/dev/stderr"
    assert logging.getLogger("pulsar").level == logging.WARNING  # its info lines are chatty
    logs.configure("debug", "text")
    assert pulsar.LIBRARY_LOG is None
    assert pulsar.library_logger().log_file == "/dev/stderr"
    assert logging.getLogger("pulsar").level == logging.INFO
    assert [type(h) for h in logging.getLogger().handlers].count(logs._Handler) == 1


def test_one_line_per_call_with_member_context_duration_status(
    write_backend: Callable[[str], Path],
    serve: Callable[..., ListenerThread],
    client: Callable[..., Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    serve(write_backend(MODULE))
    caplog.set_level(logging.INFO, logger="demessaging.calls")
    caller = client()
    assert caller.call({"func_name": "double", "x": 2}) == 4
    with pytest.raises(RemoteError):
        caller.call({"func_name": "fail"})
    caller.ping()  # not a call: no line
    lines = [r for r in caplog.records if r.name == "demessaging.calls"]
    assert [(r.member, r.status) for r in lines] == [("double", "success"), ("fail", "error")]
    assert all(r.context.isdigit() and r.duration >= 0 for r in lines)
    assert "ValueError: no" in lines[1].error


def _run(*args: str, env: dict[str, str] | None = None) -> list[str]:
    """The stderr lines of a command that fails fast (a ping no backend answers)."""
    out = subprocess.run(
        [sys.executable, "-m", "demessaging", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=os.environ | (env or {}),
    )
    return out.stderr.splitlines()


PING = ("ping", "nobody", "--broker-url", "memory://logs", "--timeout", "0.1")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--log-level", "debug", "--log-format", "json", *PING), {}),
        ((*PING, "--log-level", "debug", "--log-format", "json"), {}),
        (PING, {"DEMESSAGING_LOG_LEVEL": "debug", "DEMESSAGING_LOG_FORMAT": "json"}),
        (("--log-format", "json", *PING, "--log-level", "debug"), {}),
    ],
    ids=["before", "after", "environment", "both"],
)
def test_level_and_format_before_or_after_the_subcommand_or_from_the_environment(
    args: tuple[str, ...], env: dict[str, str]
) -> None:
    lines = _run(*args, env=env)
    assert lines[-1].startswith("Error: ")  # the command's own error, for people
    parsed = [json.loads(line) for line in lines[:-1]]
    assert any(line["level"] == "DEBUG" for line in parsed), lines


def test_the_default_is_text_at_info() -> None:
    lines = _run(*PING, env={"DEMESSAGING_LOG_LEVEL": "", "DEMESSAGING_LOG_FORMAT": ""})
    assert lines == [lines[-1]]  # no debug line
    lines = _run(*PING, "--log-level", "debug")
    assert " DEBUG " in lines[0]
    assert not lines[0].startswith("{")


def test_a_bad_variable_is_a_usage_error() -> None:
    lines = _run(*PING, env={"DEMESSAGING_LOG_FORMAT": "xml"})
    assert lines[-1] == "Error: log format 'xml': choose one of text, json"
