"""Brokers and backend processes for the integration tests.

Brokers are chosen with ``--brokers`` or ``$DEMESSAGING_TEST_BROKERS`` (comma-separated; all by
default), each with the transport it is reached by:

- ``pulsar-lite``: pulsar-lite, binary protocol;
- ``pulsar``: Apache Pulsar standalone, binary protocol;
- ``pulsar-ws``: the same Apache Pulsar standalone, through its WebSocket API;
- ``dasf-broker``: dasf-broker-django (DASF's broker), through its WebSocket API. It gives
  every message to every consumer of a topic: tests of backends sharing the work skip it.

Each broker is started once per session on 127.0.0.1 and stopped by its PID; every test taking
``broker`` or ``broker_url`` runs against each of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
import venv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from demessaging import embedded
from demessaging._local import locked
from demessaging.client import Client
from demessaging.testing import dasf_broker, pulsar

ROOT = Path(__file__).resolve().parents[2]
KNOWN = ("pulsar-lite", "pulsar", "pulsar-ws", "dasf-broker")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--brokers",
        default=os.environ.get("DEMESSAGING_TEST_BROKERS", ",".join(KNOWN)),
        help=f"comma-separated brokers for the integration tests, of: {', '.join(KNOWN)}",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker_name" in metafunc.fixturenames:
        names = selected_brokers(metafunc.config)
        unknown = set(names) - set(KNOWN)
        if unknown:
            raise pytest.UsageError(f"unknown brokers {sorted(unknown)}; known: {KNOWN}")
        metafunc.parametrize("broker_name", names, scope="session")


def selected_brokers(config: pytest.Config) -> list[str]:
    """The brokers chosen for this run."""
    return [n.strip() for n in config.getoption("brokers").split(",") if n.strip()]


@dataclass(frozen=True)
class Broker:
    """A broker running for the session: its name, URL and admin REST API (if it has one)."""

    name: str
    url: str
    admin_url: str = ""
    #: whether consumers of one subscription share its messages (each goes to one of them)
    shared: bool = True
    #: dasf-broker-django itself, on that broker
    django: dasf_broker.DasfBroker | None = None

    def needs_sharing(self) -> None:
        """Skip the test on a broker that gives every message to every consumer."""
        if not self.shared:
            pytest.skip(f"{self.name} gives every message to every consumer of a topic")


@pytest.fixture(scope="session")
def pulsar_standalone(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[pulsar.PulsarStandalone]:
    """Apache Pulsar standalone, for the whole session (shared by ``pulsar`` and ``pulsar-ws``)."""
    with pulsar.start(tmp_path_factory.mktemp("pulsar")) as standalone:
        yield standalone


@pytest.fixture(scope="session")
def broker(broker_name: str, request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A broker running for the whole session."""
    if broker_name in ("pulsar", "pulsar-ws"):
        standalone = request.getfixturevalue("pulsar_standalone")
        if broker_name == "pulsar":
            yield Broker(broker_name, standalone.broker_url, standalone.admin_url)
        else:
            ws_url = f"ws://127.0.0.1:{standalone.web_port}"
            yield Broker(broker_name, ws_url, standalone.admin_url)
        return
    folder = request.getfixturevalue("tmp_path_factory").mktemp(broker_name)
    if broker_name == "dasf-broker":
        with dasf_broker.start(folder) as django_broker:
            yield Broker(broker_name, django_broker.url, shared=False, django=django_broker)
        return
    lite = embedded.start(folder)
    assert lite.owned
    try:
        yield Broker(broker_name, lite.broker_url)
    finally:
        lite.stop()
        assert embedded.find_running(folder) is None


@pytest.fixture(scope="session")
def broker_url(broker: Broker) -> str:
    """The service URL of the session's broker."""
    return broker.url


@pytest.fixture
def topic() -> str:
    """A topic no other test uses."""
    return f"it-{uuid.uuid4().hex[:10]}"


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
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
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


@pytest.fixture(scope="session")
def old_python() -> Path:
    """The Python of an environment with demessaging 0.6.4."""
    env = pulsar.cache_dir() / "dasf-0.6.4-env"
    env.parent.mkdir(parents=True, exist_ok=True)
    with locked(env.parent / "dasf-0.6.4-install.lock"):
        if not (env / "installed").exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(env)
            subprocess.run(
                [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", OLD],
                check=True,
                timeout=600,
            )
            (env / "installed").write_text(OLD)
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


@contextlib.contextmanager
def dasf_backend(command: list[str], cwd: Path) -> Iterator[Backend]:
    """A backend started with DASF's command line in ``cwd``; stopped at the end."""
    log = cwd / "dasf-backend.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
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
