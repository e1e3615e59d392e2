"""A module written for DASF's demessaging 0.6, run unchanged by its own ``main()``.

The same file (``tests/data/dasf_module.py``: ``configure``, a progress report, a class and
``main()`` under ``if __name__ == "__main__"``) is started with DASF's command line once under
demessaging and once under demessaging 0.6.4, and called by a demessaging client: both must
give the same answers, progress reports included.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from demessaging.client import Client, Progress
from demessaging.errors import RemoteError
from tests.brokers import Broker

from .conftest import Backend, dasf_backend, old_options, python_env, wait_until_answering

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


# -- a module with its own array codec, and DASF 0.6.4 clients ------------------------------------

ARRAYS = MODULE.parent / "dasf_arrays"
#: 12 MB of float64: 16 MB in base64, the module's codec.
LARGE = 1_500_000


def encoded(value: np.ndarray) -> str:
    """What ``array_codec.encode_array`` writes: base64 of the ``.npy`` bytes."""
    buffer = io.BytesIO()
    np.save(buffer, value, allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decoded(text: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


@pytest.fixture
def arrays_dir(tmp_path: Path) -> Path:
    """The module and the codec module next to it, as their author keeps them."""
    folder = tmp_path / "arrays"
    shutil.copytree(ARRAYS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def connection(broker: Broker, topic: str) -> list[str]:
    """DASF's options for ``broker``; ``--websocket-url`` takes any URL under demessaging."""
    if broker.url.startswith("ws"):
        return old_options(broker, topic)
    return ["-t", topic, "--websocket-url", broker.url, "--persistent", "persistent"]


def test_a_module_with_its_own_codec_takes_small_and_16_mb_arrays(
    broker: Broker, topic: str, arrays_dir: Path
) -> None:
    """``python dasf_arrays.py ... listen`` under demessaging, called with the codec's values."""
    command = [sys.executable, "dasf_arrays.py", *connection(broker, topic), "listen"]
    with (
        dasf_backend(command, arrays_dir) as backend,
        Client(topic, broker_url=broker.url, timeout=60) as client,
    ):
        wait_until_answering(client, backend)
        small = np.arange(6.0).reshape(2, 3)
        assert client.call({"func_name": "total", "a": encoded(small)}) == 15.0
        scaled = client.call({"func_name": "scale", "a": encoded(small), "factor": 3.0})
        if not isinstance(scaled, np.ndarray):  # the serializer's text, where replies are JSON
            scaled = decoded(scaled)
        np.testing.assert_array_equal(scaled, small * 3)
        if broker.name == "dasf-broker":
            return  # requests in pieces there are another matter (its frame limit, its rights)
        large = np.linspace(0.0, 1.0, LARGE)
        wire = encoded(large)
        assert len(wire) > 16_000_000
        total = client.call({"func_name": "total", "a": wire}, timeout=120)
        assert total == pytest.approx(large.sum())
        # demessaging's own encoding of the array: the validators get the array itself
        total = client.call({"func_name": "total", "a": large}, timeout=120)
        assert total == pytest.approx(large.sum())


def test_a_demessaging_client_sends_the_codec_s_values_to_a_dasf_064_backend(
    ws_broker: Broker, topic: str, arrays_dir: Path, old_python: Path
) -> None:
    """The other direction: ``dasf_arrays.py`` under demessaging 0.6.4, small arrays."""
    command = [str(old_python), "dasf_arrays.py", *old_options(ws_broker, topic), "listen"]
    with (
        dasf_backend(command, arrays_dir) as backend,
        Client(topic, broker_url=ws_broker.url, timeout=60) as client,
    ):
        wait_until_answering(client, backend)
        small = np.arange(6.0).reshape(2, 3)
        assert client.call({"func_name": "total", "a": encoded(small)}) == 15.0
        scaled = client.call({"func_name": "scale", "a": encoded(small), "factor": 3.0})
        np.testing.assert_array_equal(decoded(scaled), small * 3)  # 0.6.4 answers in JSON


OLD_ARRAYS_CALLS = """
import json
import numpy as np

import client

small = np.arange(6.0).reshape(2, 3)
print(json.dumps({"total": client.total(small), "scale": client.scale(small, 3.0).tolist()}))
"""


def old_client(old_python: Path, folder: Path, script: str, broker: Broker, topic: str) -> str:
    """Generate the module's client with demessaging 0.6.4, as its users do, and run ``script``."""
    generated = subprocess.run(
        [str(old_python), script, *old_options(broker, topic), "generate"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env=python_env(old_python),
    )
    assert generated.returncode == 0, generated.stderr[-3000:]
    return generated.stdout


def run_old(old_python: Path, folder: Path, code: str) -> subprocess.CompletedProcess[str]:
    ran = subprocess.run(
        [str(old_python), "-c", code],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=240,
        env=python_env(old_python),
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    return ran


def test_a_dasf_064_client_sends_arrays_through_the_module_s_codec(
    ws_broker: Broker, topic: str, arrays_dir: Path, old_python: Path, python: Path
) -> None:
    """0.6.4's generated client of ``dasf_arrays.py``, against the module under both versions.

    Small arrays only: a 0.6.4 client sends a request as one message, and none of the test
    brokers it reaches (WebSocket API only) takes 16 MB in one message.
    """
    source = old_client(old_python, arrays_dir, "dasf_arrays.py", ws_broker, topic)
    # 0.6.4 writes numpy.ndarray annotations without importing numpy; its users add the line
    (arrays_dir / "client.py").write_text("import numpy\n" + source)
    command = [str(python), "dasf_arrays.py", *old_options(ws_broker, topic), "listen"]
    with (
        dasf_backend(command, arrays_dir) as backend,
        Client(topic, broker_url=ws_broker.url, timeout=60) as client,
    ):
        wait_until_answering(client, backend)
        ran = run_old(old_python, arrays_dir, OLD_ARRAYS_CALLS)
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["total"] == 15.0
    assert result["scale"] == (np.arange(6.0).reshape(2, 3) * 3).tolist()


OLD_PROGRESS_CALLS = """
import contextlib, io, json

from deprogressapi import ProgressReport

import client

shown = io.StringIO()
with contextlib.redirect_stdout(shown):
    report = ProgressReport(step_message="asked by the client", settings={"show_method": "PRINT"})
    result = CALL
reports, text, decoder = [], shown.getvalue(), json.JSONDecoder()
index = text.find("{")
while index >= 0:
    report, end = decoder.raw_decode(text, index)
    reports.append(report)
    index = text.find("{", end)
print(json.dumps({"result": result, "reports": reports}))
"""


def test_a_dasf_064_client_follows_the_progress_of_a_module(
    ws_broker: Broker, topic: str, backend: Backend, old_python: Path, tmp_path: Path
) -> None:
    """0.6.4's generated client sends its report; the module's reports come back to it."""
    with Client(topic, broker_url=ws_broker.url, timeout=30) as client:
        wait_until_answering(client, backend)
    source = old_client(old_python, tmp_path, MODULE.name, ws_broker, topic)
    # 0.6.4 writes deprogressapi.tree.ProgressReport without the import; its users add it
    (tmp_path / "client.py").write_text("import deprogressapi.tree\n" + source)
    code = OLD_PROGRESS_CALLS.replace("CALL", "client.count_up(3, reporter=report)")
    result = json.loads(run_old(old_python, tmp_path, code).stdout.strip().splitlines()[-1])
    assert result["result"] == 3
    reports = result["reports"]
    assert reports, "no progress arrived"
    # the report the client sent is the one the module fills (its message, its settings)
    assert {r["step_message"] for r in reports if r["report_id"] == "root"} == {
        "asked by the client"
    }
    final = reports[-1]
    assert final["status"] == "success"
    assert [c["step_message"] for c in final["children"]] == ["step 1", "step 2", "step 3"]


def test_a_dasf_064_client_follows_the_progress_of_a_constructor(
    ws_broker: Broker, topic: str, backend: Backend, old_python: Path, tmp_path: Path
) -> None:
    """A class whose constructor takes a report: 0.6.4's client sends it next to the
    constructor's arguments, and the constructor's reports come back to it."""
    with Client(topic, broker_url=ws_broker.url, timeout=30) as client:
        wait_until_answering(client, backend)
    source = old_client(old_python, tmp_path, MODULE.name, ws_broker, topic)
    (tmp_path / "client.py").write_text("import deprogressapi.tree\n" + source)
    code = OLD_PROGRESS_CALLS.replace("CALL", "client.Tally(2, reporter=report).add(3)")
    result = json.loads(run_old(old_python, tmp_path, code).stdout.strip().splitlines()[-1])
    assert result["result"] == 5
    reports = result["reports"]
    assert reports, "no progress arrived"
    assert {r["step_message"] for r in reports if r["report_id"] == "root"} == {
        "asked by the client"
    }
    assert reports[-1]["status"] == "success"
    assert [c["step_message"] for c in reports[-1]["children"]] == ["start 1", "start 2"]
