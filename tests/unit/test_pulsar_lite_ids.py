"""pulsar-lite consumer ids: a refused consumer is tried again on another id, at once.

pulsar-lite refuses a consumer of a shared subscription whose id another connection's
consumer of it has (a live one, or one a SIGKILLed process left), and pulsar-client tries
again with the same id until its operation timeout. These tests give the transport a stand-in
for pulsar-client's client that numbers consumers as it does and refuses the ids given.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pulsar
import pulsar.asyncio as pulsar_asyncio
import pytest

from demessaging.errors import TransportError
from demessaging.transport import lite
from demessaging.transport.base import TransportOptions
from demessaging.transport.pulsar import PulsarTransport


class _Consumer:
    def __init__(self, consumer_id: int) -> None:
        self.consumer_id = consumer_id

    async def close(self) -> None:
        pass


class _Every:
    def __contains__(self, item: object) -> bool:
        return True


class _Client:
    """Numbers consumers from 0, as pulsar-client does; ``refused`` ids time out."""

    def __init__(self, refused: set[int] | _Every | None = None, error: Any = None) -> None:
        self.next_id = 0
        self.refused = refused or set()
        self.error = error
        self.tried: list[int] = []  # the ids of the consumers asked for (not the skipped)

    async def subscribe(self, topic: str, name: str, **options: Any) -> _Consumer:
        consumer_id, self.next_id = self.next_id, self.next_id + 1
        if topic.endswith("/demessaging-consumer-ids"):
            return _Consumer(consumer_id)
        self.tried.append(consumer_id)
        if self.error is not None:
            raise pulsar_asyncio.PulsarException(self.error)
        if consumer_id in self.refused:
            raise pulsar_asyncio.PulsarException(pulsar.Result.Timeout)
        return _Consumer(consumer_id)

    async def create_producer(self, topic: str, **options: Any) -> None:
        self.tried.append(-1)
        raise pulsar_asyncio.PulsarException(pulsar.Result.Timeout)

    async def close(self) -> None:
        pass


@pytest.fixture
def skips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The numbers of ids the transport skips, in turn (then 1 each time)."""
    wanted: list[int] = []
    monkeypatch.setattr(lite, "skipped", lambda: wanted.pop(0) if wanted else 1)
    return wanted


def _transport(client: _Client, *, lite: bool = True, timeout: float = 30) -> PulsarTransport:
    transport = PulsarTransport(
        "pulsar://127.0.0.1:6650", TransportOptions(operation_timeout=timeout), pulsar_lite=lite
    )
    transport._client = client  # type: ignore[assignment]
    return transport


def _consumer_id(transport: PulsarTransport, **kwargs: Any) -> int:
    async def run() -> int:
        sub = await transport.subscribe("t", "work", **kwargs)
        return sub._consumer.consumer_id  # type: ignore[attr-defined,no-any-return]

    return asyncio.run(run())


def test_a_refused_consumer_is_tried_again_on_another_id(skips: list[int]) -> None:
    skips.extend([2, 5])
    client = _Client(refused={2})  # a killed backend's consumer still has id 2
    assert _consumer_id(_transport(client)) == 8  # 2 skipped, 2 refused, 5 skipped
    assert client.tried == [2, 8]


def test_ids_are_skipped_once_before_the_first_shared_subscription(skips: list[int]) -> None:
    skips.extend([3, 40])
    client = _Client()
    transport = _transport(client)
    assert _consumer_id(transport) == 3
    assert _consumer_id(transport) == 4
    assert _consumer_id(_transport(_Client()), shared=False) == 0  # exclusive: cannot clash


def test_other_errors_are_not_tried_again(skips: list[int]) -> None:
    client = _Client(error=pulsar.Result.AuthorizationError)
    with pytest.raises(TransportError, match="subscribing to"):
        _consumer_id(_transport(client))
    assert client.tried == [1]


def test_refusals_are_tried_again_until_the_operation_timeout(skips: list[int]) -> None:
    client = _Client(refused=_Every())
    with pytest.raises(TransportError, match="Timeout"):
        _consumer_id(_transport(client, timeout=0.05))
    assert len(client.tried) >= 2


def test_apache_pulsar_skips_no_ids_and_tries_once(skips: list[int]) -> None:
    client = _Client(refused={0})
    with pytest.raises(TransportError):
        _consumer_id(_transport(client, lite=False))
    assert client.tried == [0]


def test_the_operation_timeout_on_pulsar_lite_is_short() -> None:
    """A refused consumer is retried by pulsar-client until then: seconds, not 30 s."""
    assert lite.OPERATION_TIMEOUT <= 5
    client = _Client(refused=_Every())
    with pytest.raises(TransportError, match="creating a producer"):
        asyncio.run(_transport(client, timeout=0.05)._new_producer("t"))


def test_skipped_ids_are_random_and_few() -> None:
    drawn = {lite.skipped() for _ in range(2000)}
    assert drawn <= set(range(lite.SPREAD))
    assert len(drawn) > lite.SPREAD // 2


def test_no_files_are_held_for_consumer_ids(skips: list[int]) -> None:
    folder = Path(tempfile.gettempdir()) / "demessaging-consumer-slots"
    before = set(folder.iterdir()) if folder.exists() else set()
    _consumer_id(_transport(_Client()))
    after = set(folder.iterdir()) if folder.exists() else set()
    assert after == before
