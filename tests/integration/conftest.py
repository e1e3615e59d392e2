"""Backend processes, and the session's broker, for the integration tests.

The brokers (``--brokers``, ``$DEMESSAGING_TEST_BROKERS``) are in :mod:`tests.brokers`; every
test taking ``broker`` or ``broker_url`` runs against each chosen broker. (``broker`` is
defined here, not there, because the unit tests' ``broker`` is an in-process one.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import venv
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from demessaging._local import locked, stop_process
from demessaging.backend.listener import DEFAULT_SUBSCRIPTION
from demessaging.client import Client
from demessaging.config import Settings
from demessaging.message import Prop
from demessaging.transport.base import Subscription, Transport
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


# -- what the broker carried, for failures of many calls -----------------------------------


class Witness:
    """Subscriptions of their own to a backend's request topic and a client's reply topic.

    Made before the calls, they get a copy of every request and reply the broker took: when
    calls go unanswered, :meth:`explain` tells, for each, whether its request reached the
    broker, whether the backend ran it (its function records ``tag`` in ``log_dir``),
    whether its reply reached the broker, and whether the request is still unacknowledged
    on the backends' subscription (read once the backends are stopped). Requests and replies
    are told apart by ``tag``, a text (``call-<number>-end``) in both their payloads, whatever
    their encoding.
    """

    SUBSCRIPTION = "test-witness"
    TAG = re.compile(rb"call-(\d+)-end")

    def __init__(
        self, transport: Transport, topic: str, requests: Subscription, replies: Subscription
    ) -> None:
        self._transport = transport
        self._topic = topic
        self._requests = requests
        self._replies = replies

    @classmethod
    async def start(cls, broker_url: str, topic: str, response_topic: str) -> Witness:
        transport = Settings(broker_url=broker_url).connect()
        requests = await transport.subscribe(topic, cls.SUBSCRIPTION, shared=True, prefetch=1000)
        replies = await transport.subscribe(
            response_topic, cls.SUBSCRIPTION, shared=True, prefetch=1000
        )
        return cls(transport, topic, requests, replies)

    @classmethod
    async def _read(
        cls, subscription: Subscription, quiet: float = 3.0
    ) -> tuple[set[int], Counter[str]]:
        """The tags of the messages ``subscription`` gets until none comes for ``quiet`` s, and
        how many of each ``messageType`` came (a call's ``ping`` and ``pong`` carry no tag),
        and how many shared their message id with another one."""
        found: set[int] = set()
        kinds: Counter[str] = Counter()
        ids: Counter[str | None] = Counter()
        while True:
            try:
                message = await asyncio.wait_for(subscription.receive(), quiet)
            except asyncio.TimeoutError:
                shared = sum(n for n in ids.values() if n > 1)  # two messages, one id: a fault
                if shared:
                    kinds["sharing a message id"] = shared
                return found, kinds
            found.update(int(n) for n in cls.TAG.findall(bytes(message.payload)))
            kinds[message.properties.get(Prop.MESSAGE_TYPE, "?")] += 1
            ids[message.message_id] += 1

    async def explain(
        self, missing: dict[int, object], backends: list[Backend], log_dir: Path
    ) -> str:
        """What became of the calls ``missing`` (tag -> what the call gave instead)."""
        published, sent = await self._read(self._requests)
        replied, answered = await self._read(self._replies)
        ran = {int(n) for log in log_dir.iterdir() for n in self.TAG.findall(log.read_bytes())}
        for backend in backends:
            await asyncio.to_thread(backend.stop)
        left = await self._transport.subscribe(
            self._topic, DEFAULT_SUBSCRIPTION, shared=True, prefetch=1000
        )
        unacknowledged, _ = await self._read(left)
        await left.close()
        lines = [
            f"{len(missing)} call(s) got no reply; at the broker: requests {dict(sent)}, "
            f"replies {dict(answered)}"
        ]
        for tag, got in sorted(missing.items()):
            lines.append(
                f"call-{tag}-end: request at the broker {tag in published}, run {tag in ran}, "
                f"reply at the broker {tag in replied}, request left unacknowledged "
                f"{tag in unacknowledged}; the call gave {got!r}"
            )
        for number, backend in enumerate(backends):
            noted = [
                line
                for line in backend.output().splitlines()
                if "WARNING" in line or "ERROR" in line
            ]
            lines += [f"backend {number} warned:", *noted[-20:]]
        return "\n".join(lines)

    async def close(self) -> None:
        await self._transport.close()
