"""Progress: the Reporter a served function takes, its messages, and the client's bar."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from demessaging import Reporter
from demessaging.backend import ListenerThread
from demessaging.backend.dispatcher import Dispatcher
from demessaging.client import Client, Progress
from demessaging.client import bars as bars_module
from demessaging.client.bars import Bar, wanted
from demessaging.config import Settings
from demessaging.errors import RemoteError
from demessaging.protocol.envelope import JSON
from demessaging.transport.memory import MemoryBroker, MemoryTransport

MODULE = '''
import time

from demessaging import Reporter


def analyse(n: int, progress: Reporter) -> int:
    """Analyse n files.

    Parameters
    ----------
    n
        How many.
    """
    progress.start("reading files", total=n)
    for i in range(n):
        with progress.task(f"file {i}", total=2) as task:
            task.advance()
            task.advance()
        progress.advance()
    return n


def count(n: int, progress: Reporter) -> int:
    """Count fast, in many small steps."""
    progress.start(total=n)
    for _ in range(n):
        progress.advance()
    return n


def fail(progress: Reporter) -> None:
    """Fail half-way."""
    progress.start("failing", total=2)
    progress.advance()
    raise ValueError("half-way")


def quiet(progress: Reporter) -> int:
    """Never reports: the backend still ends its report."""
    return 1
'''


@pytest.fixture
def module(write_backend: Callable[[str], Path]) -> Path:
    return write_backend(MODULE)


def _handle(dispatcher: Dispatcher, request: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    sent: list[tuple[str, dict[str, Any]]] = []
    dispatcher.handle(
        json.dumps(request).encode(), JSON, lambda p, s: sent.append((s, json.loads(p)))
    )
    return sent


def test_callers_never_send_the_reporter(module: Path) -> None:
    dispatcher = Dispatcher.from_module(module)
    spec = dispatcher.models.functions["analyse"].spec
    assert [p.name for p in spec.parameters] == ["n"]
    assert [p.name for p in spec.reporters] == ["progress"]
    schema = dispatcher.models.functions["analyse"].request.model_json_schema()
    assert "progress" not in schema["properties"]


def test_the_report_tree_goes_in_dasfs_layout_and_ends_with_the_call(module: Path) -> None:
    sent = _handle(Dispatcher.from_module(module), {"func_name": "analyse", "n": 2})
    first_status, first = sent[0]
    assert first_status == "running"
    assert first["report_type"] == "tree"
    assert first["report_id"] == "root"
    assert (first["step_message"], first["steps"], first["done"]) == ("reading files", 2, 0)
    status, final = sent[-1]
    assert status == "success"
    assert (final["status"], final["done"], final["steps"]) == ("success", 2, 2)
    assert [c["step_message"] for c in final["children"]] == ["file 0", "file 1"]
    assert [c["report_id"] for c in final["children"]] == ["root.0", "root.1"]
    assert all(c["status"] == "success" and c["done"] == 2 for c in final["children"])
    statuses = [s for s, _ in sent]
    assert statuses.index("success") == len(statuses) - 1  # nothing after the end


def test_counts_are_sent_at_most_every_interval(module: Path) -> None:
    started = time.monotonic()
    sent = _handle(Dispatcher.from_module(module), {"func_name": "count", "n": 20000})
    elapsed = time.monotonic() - started
    assert len(sent) <= 3 + elapsed / Reporter.interval  # start, end, and the throttled counts
    assert sent[-1][1]["done"] == 20000


def test_a_failing_call_ends_its_report_with_error(module: Path) -> None:
    sent = _handle(Dispatcher.from_module(module), {"func_name": "fail"})
    assert sent[-1][0] == "error"
    assert sent[-1][1]["done"] == 1  # where it stood


def test_a_reporter_left_alone_is_still_ended(module: Path) -> None:
    sent = _handle(Dispatcher.from_module(module), {"func_name": "quiet"})
    assert [s for s, _ in sent] == ["success"]
    assert sent[0][1]["step_message"] == "Never reports: the backend still ends its report."


def test_progress_reaches_the_caller_before_the_result_and_in_order(
    module: Path, serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(module)
    seen: list[Progress] = []
    assert client().call({"func_name": "analyse", "n": 3}, on_progress=seen.append) == 3
    dones = [p.report["done"] for p in seen]
    assert dones == sorted(dones)
    assert seen[-1].status == "success"
    assert seen[-1].report["done"] == 3
    with pytest.raises(RemoteError, match="half-way"):
        client().call({"func_name": "fail"}, on_progress=seen.append)
    assert seen[-1].status == "error"


def test_a_reporter_outside_a_backend_reports_to_nobody() -> None:
    reporter = Reporter("local")
    with reporter.task("step", total=1) as step:
        step.advance()
    reporter.end()
    assert reporter.as_report()["children"][0]["status"] == "success"
    assert reporter.status == "success"


# -- the bar --------------------------------------------------------------------------------------


def test_bars_are_shown_in_terminals_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not wanted("auto")
    assert wanted("on")
    monkeypatch.setattr("sys.stderr", Terminal())
    assert wanted("auto")
    assert not wanted("off")


def test_a_bar_follows_the_root_step(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = io.StringIO()
    monkeypatch.setattr("sys.stderr", shown)

    def report(status: str, done: int, children: list[dict[str, Any]]) -> Progress:
        tree = {"step_message": "reading", "steps": 4, "status": status, "children": children}
        if done >= 0:
            tree["done"] = done
        return Progress(status, json.dumps(tree).encode())

    bar = Bar("analyse")
    bar(report("running", 1, [{"step_message": "file 1", "status": "running"}]))
    assert bar._bar.n == 1
    assert bar._bar.total == 4
    assert "reading: file 1" in shown.getvalue()
    # DASF's reports count finished sub-tasks
    bar(report("running", -1, [{"step_message": "a", "status": "success"}] * 3))
    assert bar._bar.n == 3
    bar(report("success", 4, []))
    assert bar._bar is None  # closed at the end
    assert "analyse" in shown.getvalue()
    bar(Progress("running", b"not json"))  # ignored, no bar
    assert bar._bar is None


def test_a_client_shows_a_bar_for_calls_without_a_callback(
    module: Path,
    broker: MemoryBroker,
    serve: Callable[..., ListenerThread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serve(module)
    made: list[Bar] = []

    class Recording(Bar):
        def __init__(self, member: str) -> None:
            super().__init__(member)
            self.reports: list[Progress] = []
            made.append(self)

        def __call__(self, progress: Progress) -> None:
            self.reports.append(progress)
            super().__call__(progress)

    monkeypatch.setattr(bars_module, "Bar", Recording)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    on = Settings(progress="on", topic="t")
    with Client(transport=MemoryTransport(broker), settings=on) as shown:
        assert shown.call({"func_name": "analyse", "n": 2}, member="analyse") == 2
        assert shown.call({"func_name": "analyse", "n": 1}, on_progress=lambda p: None) == 1
    assert len(made) == 1  # not for the call with its own callback
    assert made[0].reports[-1].status == "success"
    assert made[0]._bar is None
    off = Settings(progress="off", topic="t")
    with Client(transport=MemoryTransport(broker), settings=off) as quiet:
        assert quiet.call({"func_name": "analyse", "n": 2}) == 2
    assert len(made) == 1


def test_an_unknown_progress_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="progress must be auto, on or off"):
        Settings(progress="sometimes")
