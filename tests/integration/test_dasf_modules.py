"""A module written for DASF's demessaging 0.6, run unchanged by its own ``main()``.

The same file (``tests/data/dasf_module.py``: ``configure``, a progress report, a class and
``main()`` under ``if __name__ == "__main__"``) is started with DASF's command line once under
demessaging and once under demessaging 0.6.4, and called by a demessaging client: both must
give the same answers, progress reports included.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from demessaging.client import Client, Progress
from demessaging.errors import RemoteError
from tests.brokers import Broker

from .conftest import Backend, dasf_backend, old_options, wait_until_answering

MODULE = Path(__file__).resolve().parents[1] / "data" / "dasf_module.py"


@pytest.fixture(params=["demessaging", "demessaging-0.6.4"])
def python(request: pytest.FixtureRequest) -> Path:
    """The Python that runs the module: ours, or one with demessaging 0.6.4."""
    if request.param == "demessaging":
        return Path(sys.executable)
    return Path(request.getfixturevalue("old_python"))


@pytest.fixture
def backend(python: Path, ws_broker: Broker, topic: str, tmp_path: Path) -> Iterator[Backend]:
    """``python dasf_module.py OPTIONS listen``, as its author starts it."""
    shutil.copy(MODULE, tmp_path / MODULE.name)
    command = [str(python), MODULE.name, *old_options(ws_broker, topic), "listen"]
    with dasf_backend(command, tmp_path) as backend:
        yield backend


def test_a_dasf_module_answers_the_same_under_both_versions(
    ws_broker: Broker, topic: str, backend: Backend
) -> None:
    with Client(topic, broker_url=ws_broker.url, timeout=30) as client:
        wait_until_answering(client, backend)
        assert client.call({"func_name": "hello", "message": "hi", "repeat": 2}) == ["hi", "hi"]
        greeting = {"class_name": "Greeter", "greeting": "Moin", "function": {}}
        greeting["function"] = {"func_name": "greet", "name": "Ada"}
        assert client.call(greeting) == "Moin, Ada!"
        with pytest.raises(RemoteError, match="greater than or equal to 1"):
            client.call({"func_name": "hello", "message": "hi", "repeat": 0})
        with pytest.raises(RemoteError):  # left out by configure(methods=...)
            client.call({**greeting, "function": {"func_name": "shout", "name": "Ada"}})
        names = [f["name"] for f in client.api_info()["functions"]]
        assert names == ["count_up", "hello"]


def test_progress_of_a_dasf_module_reaches_the_caller_in_order(
    ws_broker: Broker, topic: str, backend: Backend
) -> None:
    seen: list[Progress] = []
    with Client(topic, broker_url=ws_broker.url, timeout=30) as client:
        wait_until_answering(client, backend)
        assert client.call({"func_name": "count_up", "n": 3}, on_progress=seen.append) == 3
    assert seen, "no progress arrived"
    assert seen[0].status == "running"
    assert seen[0].report["step_message"] == "counting"
    final = seen[-1].report
    assert seen[-1].status == "success"
    assert [c["step_message"] for c in final["children"]] == ["step 1", "step 2", "step 3"]
    assert {c["status"] for c in final["children"]} == {"success"}
