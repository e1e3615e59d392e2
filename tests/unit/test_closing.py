"""Closing a client is bounded by its ``close_timeout``, whatever its transport does."""

from __future__ import annotations

import asyncio
import time

import pytest

from demessaging.client import Client
from demessaging.errors import CallTimeoutError, ConfigurationError
from demessaging.transport.memory import MemoryBroker, MemoryTransport


class _Frozen(MemoryTransport):
    """A broker that stops answering once the client closes (as a frozen one does)."""

    closing_cancelled = False

    async def close(self) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            type(self).closing_cancelled = True
            raise


class _FrozenSubscriptions(_Frozen):
    async def subscribe(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        sub = await super().subscribe(*args, **kwargs)  # type: ignore[arg-type]

        async def hang() -> None:
            await asyncio.sleep(3600)

        sub.unsubscribe = hang  # type: ignore[method-assign]
        return sub


@pytest.mark.parametrize("transport", [_Frozen, _FrozenSubscriptions])
def test_close_takes_close_timeout_at_most(transport: type[_Frozen]) -> None:
    transport.closing_cancelled = False
    client = Client("frozen", transport=transport(MemoryBroker()), close_timeout=0.6)
    with pytest.raises(CallTimeoutError):
        client.call({"func_name": "nobody"}, timeout=0.2)
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 1.5
    assert transport.closing_cancelled  # told to drop its connection at the deadline


def test_close_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="close_timeout"):
        Client("t", transport=MemoryTransport(MemoryBroker()), close_timeout=0)
