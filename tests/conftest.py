"""Fixtures shared by all tests; the real brokers are in the plugin :mod:`tests.brokers`."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from demessaging.backend import Dispatcher, Listener, ListenerThread
from demessaging.client import Client
from demessaging.transport.memory import MemoryBroker, MemoryTransport

pytest_plugins = ["tests.brokers"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DATA = Path(__file__).resolve().parent / "data"
_topics = itertools.count()


@pytest.fixture
def broker() -> MemoryBroker:
    """A fresh in-process broker, private to the test."""
    return MemoryBroker()


@pytest.fixture
def serve(broker: MemoryBroker) -> Iterator[Callable[..., ListenerThread]]:
    """Start backends on ``broker``: ``serve(module, topic=..., workers=...)``; all are stopped."""
    started: list[ListenerThread] = []

    def start(
        module: object, topic: str = "t", workers: int = 4, debug: bool = False
    ) -> ListenerThread:
        dispatcher = Dispatcher.from_module(module, debug=debug)  # type: ignore[arg-type]
        listener = Listener(dispatcher, MemoryTransport(broker), topic, workers=workers)
        thread = ListenerThread(listener).start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stop()


@pytest.fixture
def client(broker: MemoryBroker) -> Iterator[Callable[..., Client]]:
    """Make clients on ``broker``: ``client(topic, timeout=...)``; all are closed."""
    made: list[Client] = []

    def make(topic: str = "t", timeout: float = 10.0) -> Client:
        made.append(Client(topic, transport=MemoryTransport(broker), timeout=timeout))
        return made[-1]

    yield make
    for c in made:
        c.close()


@pytest.fixture
def write_backend(tmp_path: Path) -> Callable[[str], Path]:
    """Write a backend module with a unique name into ``tmp_path``; returns its path."""

    def write(source: str) -> Path:
        path = tmp_path / f"backend_{next(_topics)}_{tmp_path.name[-8:].replace('-', '_')}.py"
        path.write_text(source, encoding="utf-8")
        return path

    return write
