"""One producer socket of the Pulsar WebSocket API (see :mod:`.websocket`).

A producer sends ``{"payload": <base64>, "properties": {...}, "context": <id>}`` frames and the
broker answers each with ``{"result": "ok", "messageId": ..., "context": <id>}``; any other
``result`` is a refusal. :class:`Producer` matches the answers to the messages sent and waits
for each at most ``timeout`` seconds, so that a broker that never answers is an error, not a
hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

from ..errors import TransportError

__all__ = ["Producer"]

log = logging.getLogger("demessaging.transport")


class Producer:
    """One producer socket: frames out, the broker's answers matched to them by context."""

    def __init__(self, socket: ClientConnection, topic: str, timeout: float) -> None:
        self.socket = socket
        self.topic = topic
        self.timeout = timeout
        self._numbers = itertools.count()
        self._first = asyncio.Lock()
        self._confirmed = False
        self._waiting: OrderedDict[str, asyncio.Future[dict[str, Any]]] = OrderedDict()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        reason = "the broker closed the producer connection"
        try:
            async for frame in self.socket:
                try:
                    answer = json.loads(frame)
                    context = str(answer.get("context", ""))
                except (ValueError, AttributeError):
                    log.warning("ignoring a malformed answer on %s: %.200r", self.topic, frame)
                    continue
                # an answer without a known context (some refusals) is for the oldest message
                waiter = self._waiting.pop(context, None)
                if waiter is None and self._waiting:
                    waiter = self._waiting.popitem(last=False)[1]
                if waiter is not None and not waiter.done():
                    waiter.set_result(answer)
        except websockets.ConnectionClosed as exc:
            reason = f"the producer connection closed ({exc})"
        finally:
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(TransportError(f"publishing to {self.topic}: {reason}"))
            self._waiting.clear()

    @property
    def alive(self) -> bool:
        """Open, and not being closed by either side."""
        return not self._reader.done() and self.socket.state is State.OPEN

    async def send(self, payload: str, properties: Mapping[str, str]) -> None:
        """Send one message (its payload base64-encoded) and wait for the broker's answer.

        Until the broker has confirmed one message, messages go one at a time:
        dasf-broker-django creates a topic on its first message, and fails on others sent
        at the same time.
        """
        if self._confirmed:
            return await self._send(payload, properties)
        async with self._first:
            await self._send(payload, properties)
            self._confirmed = True

    async def _send(self, payload: str, properties: Mapping[str, str]) -> None:
        context = str(next(self._numbers))
        frame = json.dumps({"payload": payload, "properties": properties, "context": context})
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[context] = waiter
        try:  # sending counts too: a socket being closed holds send() for its close timeout
            answer = await asyncio.wait_for(self._exchange(frame, waiter), self.timeout)
        except asyncio.TimeoutError:
            raise TransportError(
                f"the broker did not confirm a message to {self.topic} within {self.timeout:g} s"
            ) from None
        except websockets.ConnectionClosed as exc:
            raise TransportError(
                f"publishing to {self.topic}: the connection closed ({exc})"
            ) from None
        finally:
            self._waiting.pop(context, None)
        if answer.get("result") != "ok":
            reason = answer.get("errorMsg") or answer.get("result") or answer
            hint = ""
            if "create topics" in str(reason) or "does not exist" in str(reason):
                hint = (  # dasf-broker-django, where publishing makes no topic as installed
                    f"; there is no topic {self.topic} there, and only its admin may make one "
                    f"(manage.py dasf_topic {self.topic} --new --anonymous; see docs/dasf.md)"
                )
            raise TransportError(
                f"the broker refused a message to {self.topic}: {reason}", hint=hint
            )

    async def _exchange(self, frame: str, waiter: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
        await self.socket.send(frame)
        return await waiter

    async def close(self) -> None:
        """Close the socket, failing the sends still waiting for an answer."""
        await self.socket.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
