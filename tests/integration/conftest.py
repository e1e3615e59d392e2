"""Backend processes, and the session's broker, for the integration tests.

The brokers (``--brokers``, ``$DEMESSAGING_TEST_BROKERS``) are in :mod:`tests.brokers`; every
test taking ``broker`` or ``broker_url`` runs against each chosen broker. (``broker`` is
defined here, not there, because the unit tests' ``broker`` is an in-process one.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import venv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from demessaging._local import locked, stop_process
from demessaging.client import Client
from tests.brokers import Broker, Brokers
from tools import pulsar

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def broker(broker_name: str, brokers: Brokers) -> Broker:
    """A broker running for the whole session."""
    return brokers.get(broker_name)


@pytest.fixture(scope="session")
def broker_url(broker: Broker) -> str:
    """The service URL of the session's broker."""
    return broker.url


@dataclass
class Backend:
    """A `demessaging listen` process."""

    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        stop_process(self.process, 20, sig=sig, name="the backend")
        return self.process.returncode


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Backend]]:
    """Start backends with the CLI: ``launch(module, topic, url, workers=2, env=None)``.

    ``env`` is added to the environment. Unless ``wait`` is False, waits until the backend
    serves. All are stopped at the end of the test.
    """
    started: list[Backend] = []

    def start(
        module: Path,
        topic: str,
        url: str,
        workers: int = 2,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> Backend:
        log = tmp_path / f"backend-{len(started)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "demessaging",
                    "--log-level",
                    "debug",
                    "listen",
                    str(module),
                    "--broker-url",
                    url,
                    "--topic",
                    topic,
                    "--workers",
                    str(workers),
                ],
                stdout=subprocess.DEVNULL,
                stderr=out,
                cwd=tmp_path,
                env=os.environ | (env or {}),
            )
        backend = Backend(process, log)
        started.append(backend)
        deadline = time.monotonic() + 30
        while wait and "serving" not in backend.output():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the backend did not start:\n{backend.output()}")
            time.sleep(0.05)
        return backend

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture
def backends(broker_url: str, launch: Callable[..., Backend]) -> Callable[..., Backend]:
    """Start backends on the session's broker: ``backends(module, topic, workers=2)``."""

    def start(module: Path, topic: str, workers: int = 2) -> Backend:
        return launch(module, topic, broker_url, workers)

    return start


# -- DASF's demessaging 0.6.4 -------------------------------------------------------------

OLD = "demessaging[backend]==0.6.4"
#: What DASF modules of the tests import besides demessaging 0.6.4.
OLD_EXTRAS = ("numpy", "xarray", "scipy")


@pytest.fixture(scope="session")
def old_python() -> Path:
    """The Python of an environment with demessaging 0.6.4 (and numpy, xarray, scipy)."""
    env = pulsar.cache_dir() / "dasf-0.6.4-env"
    env.parent.mkdir(parents=True, exist_ok=True)
    wanted = " ".join((OLD, *OLD_EXTRAS))
    marker = env / "installed"
    with locked(env.parent / "dasf-0.6.4-install.lock"):
        if not marker.exists() or marker.read_text() != wanted:
            if not marker.exists():
                venv.EnvBuilder(with_pip=True, clear=True).create(env)
            subprocess.run(
                [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", OLD, *OLD_EXTRAS],
                check=True,
                timeout=600,
                env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            )
            marker.write_text(wanted)
    return env / "bin" / "python"


def old_options(broker: Broker, topic: str) -> list[str]:
    """demessaging 0.6.4's options that reach ``broker`` (they go before its subcommand)."""
    if broker.name == "dasf-broker":
        return ["-t", topic, "--websocket-url", broker.url]
    port = broker.url.rsplit(":", 1)[1]
    return ["-t", topic, "-H", "127.0.0.1", "-p", port, "--persistent", "persistent"]


@pytest.fixture
def ws_broker(broker: Broker) -> Broker:
    if not broker.url.startswith("ws"):
        pytest.skip("DASF backends, clients and command lines speak only the WebSocket API")
    return broker


ROOT = Path(__file__).resolve().parents[2]


def python_env(python: Path | str) -> dict[str, str]:
    """The environment to run ``python`` in: this checkout first on its path if it is ours;
    no ``PYTHONPATH`` for demessaging 0.6.4's, whose own demessaging it would hide."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if Path(python) == Path(sys.executable):
        env["PYTHONPATH"] = str(ROOT)
    return env


@contextlib.contextmanager
def dasf_backend(command: list[str], cwd: Path) -> Iterator[Backend]:
    """A backend started with DASF's command line in ``cwd``; stopped at the end."""
    log = cwd / "dasf-backend.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=python_env(command[0])
        )
    backend = Backend(process, log)
    try:
        yield backend
    finally:
        backend.stop()


def wait_until_answering(client: Client, backend: Backend, seconds: float = 60) -> None:
    """Ping until the backend answers: DASF backends subscribe in the background."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.ping(timeout=2)
            return
        except Exception:
            assert backend.process.poll() is None, f"the backend stopped:\n{backend.output()}"
            assert time.monotonic() < deadline, f"the backend never answered:\n{backend.output()}"
