"""The embedded default: no broker configured anywhere, backend and client still meet."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from demessaging import embedded
from demessaging._local import stop_process
from demessaging.config import Settings
from demessaging.errors import DemessagingWarning, TransportError
from tests.helpers import generated_client

from .conftest import ROOT

CLIMATE = ROOT / "examples" / "climate.py"


def wait_until_serving(backend: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    """Wait (bounded) until a `demessaging listen` process logs that it serves."""
    deadline = time.monotonic() + timeout
    while "serving climate" not in log.read_text():
        assert backend.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("DEMESSAGING_DATA_DIR", str(folder))
    monkeypatch.delenv("DEMESSAGING_BROKER_URL", raising=False)
    return folder


def test_listen_starts_the_embedded_broker_and_clients_find_it(
    data_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "listen.log"
    with open(log, "wb") as out:
        backend = subprocess.Popen(
            [sys.executable, "-m", "demessaging", "listen", str(CLIMATE)],
            stderr=out,
            env=os.environ.copy(),
        )
    try:
        wait_until_serving(backend, log)
        assert "started the embedded broker at pulsar://127.0.0.1:" in log.read_text()
        state = json.loads((data_dir / "broker.json").read_text())
        cmdline = Path(f"/proc/{state['pid']}/cmdline").read_bytes().split(b"\0")
        assert f"127.0.0.1:{state['port']}".encode() in cmdline  # loopback only
        assert "enabled = false" in (data_dir / "pulsar-lite.toml").read_text()  # no metrics port

        # no broker named: the generator warns that it is this machine's only
        with contextlib.ExitStack() as stack:
            with pytest.warns(DemessagingWarning, match="set CLIMATE_EMBEDDED_BROKER_URL"):
                climate = stack.enter_context(
                    generated_client(CLIMATE, tmp_path / "client", name="climate-embedded")
                )
            assert climate._remote.settings.broker_url == "embedded://"
            assert climate.total(np.arange(4.0)) == 6.0

        backend.send_signal(signal.SIGTERM)
        assert backend.wait(30) == 0
        deadline = time.monotonic() + 10
        while embedded._alive(state["pid"], state["port"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not embedded._alive(state["pid"], state["port"])
        assert not (data_dir / "broker.json").exists()
    finally:
        stop_process(backend, 10)
        running = embedded.find_running(data_dir)
        if running is not None:
            stop_process(running.pid, 10)


def test_a_second_start_reuses_the_running_broker(data_dir: Path) -> None:
    with embedded.start() as first:
        second = embedded.start()
        assert (second.url, second.pid, second.owned) == (first.url, first.pid, False)
        second.stop()  # not the owner: a no-op
        assert embedded.find_running() is not None
    assert embedded.find_running() is None


def test_clients_get_a_clear_error_when_no_embedded_broker_runs(data_dir: Path) -> None:
    with pytest.raises(TransportError, match="no embedded broker is running"):
        Settings(broker_url="embedded://").connect()


def test_a_stale_state_file_is_ignored(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "broker.json").write_text(json.dumps({"pid": 999_999_999, "port": 1}))
    assert embedded.find_running() is None
    with embedded.start() as broker:
        assert broker.owned


def test_backend_and_client_reconnect_after_a_broker_restart(
    data_dir: Path, tmp_path: Path
) -> None:
    from demessaging.client import Client

    broker = embedded.start(data_dir)
    port = broker.url.rsplit(":", 1)[1]
    url = f"pulsar-lite://127.0.0.1:{port}"
    log = tmp_path / "listen.log"
    with open(log, "wb") as out:
        backend = subprocess.Popen(
            [sys.executable, "-m", "demessaging", "listen", str(CLIMATE), "--broker-url", url],
            stderr=out,
        )
    try:
        wait_until_serving(backend, log)
        with Client("climate", broker_url=url, timeout=60) as client:
            assert client.call({"func_name": "total", "values": [1, 2]}) == 3.0
            broker.stop()
            broker = embedded.start(data_dir, port=int(port))  # same port, same data
            assert client.call({"func_name": "total", "values": [3, 4]}) == 7.0
        assert backend.poll() is None
    finally:
        stop_process(backend, 30)
        broker.stop()
