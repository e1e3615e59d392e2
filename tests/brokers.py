"""Real brokers for the integration and contract tests (a pytest plugin, see tests/conftest.py).

Brokers are chosen with ``--brokers`` or ``$DEMESSAGING_TEST_BROKERS`` (comma-separated; all by
default), each with the transport it is reached by:

- ``pulsar-lite``: pulsar-lite, binary protocol;
- ``pulsar``: Apache Pulsar standalone, binary protocol;
- ``pulsar-ws``: the same Apache Pulsar standalone, through its WebSocket API;
- ``dasf-broker``: dasf-broker-django (DASF's broker), through its WebSocket API. It gives
  every message to every consumer of a topic: tests of backends sharing the work skip it.

Each broker is started once per session, when a test first needs it, on 127.0.0.1, and stopped
by its PID at the end of the session (:class:`Brokers`). A test taking ``broker_name`` runs
once for each chosen broker.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from demessaging import embedded
from demessaging.message import Message
from demessaging.tokens import new_secret
from tests.certs import CA
from tools import dasf_broker, pulsar

KNOWN = ("pulsar-lite", "pulsar", "pulsar-ws", "dasf-broker")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--brokers",
        default=os.environ.get("DEMESSAGING_TEST_BROKERS", ",".join(KNOWN)),
        help=f"comma-separated brokers for the integration tests, of: {', '.join(KNOWN)}",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker_name" in metafunc.fixturenames:
        metafunc.parametrize("broker_name", selected_brokers(metafunc.config), scope="session")


def selected_brokers(config: pytest.Config) -> list[str]:
    """The brokers chosen for this run.

    Raises
    ------
    pytest.UsageError
        If one of them is unknown.
    """
    names = [n.strip() for n in config.getoption("brokers").split(",") if n.strip()]
    unknown = set(names) - set(KNOWN)
    if unknown:
        raise pytest.UsageError(f"unknown brokers {sorted(unknown)}; known: {KNOWN}")
    return names


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


class Brokers:
    """The brokers of a session: each started when first asked for, all stopped by :meth:`stop`.

    ``pulsar`` and ``pulsar-ws`` are one Apache Pulsar standalone, reached two ways.
    """

    def __init__(self, folders: pytest.TempPathFactory) -> None:
        self._folders = folders
        self._running: dict[str, Broker] = {}
        self._standalone: pulsar.PulsarStandalone | None = None
        self._stops: list[Callable[[], None]] = []

    def get(self, name: str) -> Broker:
        """The broker ``name`` (one of :data:`KNOWN`), started if it does not run yet."""
        if name not in self._running:
            self._running[name] = self._start(name)
        return self._running[name]

    def standalone(self) -> pulsar.PulsarStandalone:
        """Apache Pulsar standalone, started if it does not run yet."""
        if self._standalone is None:
            self._standalone = pulsar.start(self._folders.mktemp("pulsar"))
            self._stops.append(self._standalone.stop)
        return self._standalone

    def _start(self, name: str) -> Broker:
        if name == "pulsar":
            standalone = self.standalone()
            return Broker(name, standalone.broker_url, standalone.admin_url)
        if name == "pulsar-ws":
            standalone = self.standalone()
            return Broker(name, f"ws://127.0.0.1:{standalone.web_port}", standalone.admin_url)
        folder = self._folders.mktemp(name)
        if name == "dasf-broker":
            django = dasf_broker.start(folder)
            self._stops.append(django.stop)
            return Broker(name, django.url, shared=False, django=django)
        if name == "pulsar-lite":
            lite = embedded.start(folder)
            assert lite.owned

            def stop_lite() -> None:
                lite.stop()
                assert embedded.find_running(folder) is None

            self._stops.append(stop_lite)
            return Broker(name, lite.broker_url)
        raise pytest.UsageError(f"unknown broker {name!r}; known: {KNOWN}")

    def stop(self) -> None:
        """Stop every broker started, by its PID."""
        stops, self._stops = self._stops, []
        self._running.clear()
        self._standalone = None
        failures: list[Exception] = []
        for stop in stops:  # all of them, even if one fails
            try:
                stop()
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]


@pytest.fixture(scope="session")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Brokers]:
    """The session's brokers: ``brokers.get(name)``."""
    running = Brokers(tmp_path_factory)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def pulsar_standalone(brokers: Brokers) -> pulsar.PulsarStandalone:
    """Apache Pulsar standalone, for the whole session (``pulsar`` and ``pulsar-ws`` use it)."""
    return brokers.standalone()


@dataclass(frozen=True)
class SecuredPulsar:
    """Apache Pulsar standalone of a test module's own, with token authentication.

    Attributes
    ----------
    broker
        The running broker.
    secret
        The key its tokens are signed with.
    ca
        The private CA of its server certificate (for 127.0.0.1), if it speaks TLS.
    """

    broker: pulsar.PulsarStandalone
    secret: bytes
    ca: CA | None = None


@contextlib.contextmanager
def secured_pulsar(
    request: pytest.FixtureRequest, name: str, needs: str, *, tls: bool = True, **options: Any
) -> Iterator[SecuredPulsar]:
    """Apache Pulsar standalone with token authentication, stopped on leaving.

    With ``tls``, TLS on both its protocols, with a server certificate for 127.0.0.1 from a
    private CA made in the folder ``name`` (under the session's temporary folder), where the
    broker keeps its data too. ``options`` go to :func:`tools.pulsar.start`
    (``authorization``, ``client_certificates``...). The test is skipped unless ``pulsar`` is
    one of the brokers chosen; ``needs`` says what needs it (``"TLS"``).
    """
    if "pulsar" not in selected_brokers(request.config):
        pytest.skip(f"{needs} needs Apache Pulsar (--brokers pulsar)")
    folders: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
    folder = folders.mktemp(name)
    ca = CA(folder / "ca") if tls else None
    if ca is not None:
        server = ca.server("broker", "127.0.0.1")
        options["tls"] = pulsar.TLS(server.certificate, server.key, ca.certificate)
    secret = new_secret()
    with pulsar.start(folder / "broker", token_secret=secret, **options) as broker:
        yield SecuredPulsar(broker, secret, ca)


def is_probe(message: Message) -> bool:
    """Whether ``message`` is dasf-broker-django's ``api_info`` probe of a consumer that
    connects to a topic with nothing outstanding (backends answer it; tests of the transport
    drop it)."""
    props = message.properties
    return props.get("messageType") == "api_info" and props.get("response_topic") == "status-ping"


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A topic no other test uses.

    On dasf-broker-django (the test's ``broker`` or ``target``) it is made, with its control
    topic, public and open to anonymous users, as that broker's admin makes a backend's
    topics (docs/dasf.md): publishing makes none there.
    """
    name = f"it-{uuid.uuid4().hex[:10]}"
    for fixture in ("broker", "target"):
        if fixture in request.fixturenames:
            running: Broker = request.getfixturevalue(fixture)
            if running.django is not None:
                running.django.create_topic(name, f"{name}_control")
    return name


@pytest.fixture
def main_topic(broker: Broker) -> str:
    """A topic no other test uses, made on dasf-broker-django alone, without its control topic.

    As a DASF admin makes a backend's topic there (``manage.py dasf_topic TOPIC --new
    --anonymous``), knowing nothing of ``TOPIC_control``; publishing makes no topic there.
    """
    name = f"it-{uuid.uuid4().hex[:10]}"
    if broker.django is not None:
        broker.django.create_topic(name)
    return name
