"""Streams: the items of a backend's generator function, as they come.

The backend sends at most ``window`` items ahead of what its caller took; the caller grants
more with a ``more`` message each time it has taken half a window. While the caller is busy
with an item, a ``more`` message every :data:`STREAM_KEEPALIVE` seconds tells the backend that
it is still there. Stopping early cancels the call in the backend.

Each item says where ``more`` and ``cancel`` go when not to ``<topic>_control`` (a backend that
cannot use that topic reads them on its request topic:
:func:`~demessaging.protocol.control.control_target`); a backend that hears none at all sends
the items as they are made, and its caller sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from asyncio import FIRST_COMPLETED as FIRST
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

from pydantic import TypeAdapter

from ..errors import CallTimeoutError, DemessagingError, ProtocolError
from ..message import JSON, Message, MessageType, Prop
from ..protocol.control import control_target
from ..protocol.envelope import MAX_STREAM_WINDOW
from ..protocol.replies import Reply
from ..serialization import codec_for
from .bars import Progress
from .connection import Connection, Extras

__all__ = ["STREAM_KEEPALIVE", "STREAM_WINDOW", "receive"]

#: Items of a stream on their way at most, by default.
STREAM_WINDOW = 16
#: Seconds between the messages that tell a backend a stream's caller is still there.
STREAM_KEEPALIVE = 10.0


async def receive(
    connection: Connection,
    payload: bytes | bytearray,
    content_type: str,
    *,
    returns: TypeAdapter[Any],
    idle: float,
    member: str,
    window: int,
    on_progress: Callable[[Progress], None] | None,
    fingerprint: str | None,
    check_end: Callable[[Reply], None],
    headers: Mapping[str, str] | None = None,
) -> AsyncGenerator[Any, None]:
    """Send a stream's request and yield its items, validated by ``returns``.

    Parameters
    ----------
    connection
        The client's connection.
    payload, content_type
        The encoded request.
    returns
        Validates each item.
    idle
        The longest wait for the next item, in seconds.
    member
        What is called, for error messages.
    window
        Items on their way at most (the backend grants :data:`MAX_STREAM_WINDOW` at most).
    on_progress, fingerprint
        As for :meth:`Client.acall <demessaging.client.Client.acall>`.
    check_end
        Checks the reply that ends the stream; raises what it carries.
    headers
        More properties of the request (the trace context).

    Raises
    ------
    CallTimeoutError
        If no item (and no end) arrives within ``idle`` seconds.
    """
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue[Message] = asyncio.Queue()

    def on_item(message: Message) -> None:  # in the client's loop thread
        loop.call_soon_threadsafe(arrived.put_nowait, message)

    window = min(max(1, window), MAX_STREAM_WINDOW)  # what the backend grants at most
    extras = Extras(on_progress, fingerprint, window, on_item, headers=headers)
    exchange = connection.exchange(
        MessageType.REQUEST, payload, idle, member, content_type, extras=extras
    )
    final = asyncio.ensure_future(exchange)
    taken = credited = 0
    alive: asyncio.Task[None] | None = None
    heard = True  # whether the backend hears our ``more`` messages

    async def keep_alive(context: str) -> None:  # a caller busy with an item is not gone
        while True:
            await asyncio.sleep(STREAM_KEEPALIVE)
            await connection.send_control(context, taken)

    try:
        while True:
            if arrived.empty():
                get = asyncio.ensure_future(arrived.get())
                done, _ = await asyncio.wait({get, final}, timeout=idle, return_when=FIRST)
                if get not in done:
                    get.cancel()
                    if final not in done:
                        raise CallTimeoutError(connection.topic, idle, member)
                    if arrived.empty():  # the call ended: items came before its reply
                        check_end(final.result())
                        return
                    continue
                message = get.result()
            else:
                message = arrived.get_nowait()
            sequence = message.properties.get(Prop.SEQUENCE, "")
            if sequence.isdecimal() and int(sequence) <= taken:  # delivered again: had it
                continue
            if sequence.isdecimal() and int(sequence) > taken + 1:
                raise ProtocolError(
                    f"item {taken + 1} of the stream from {connection.topic!r} was lost on the "
                    f"way (item {sequence} came next): the broker dropped it; a smaller window "
                    f"sends fewer items at once"
                )
            context = message.properties.get(Prop.REQUEST_CONTEXT, "")
            if heard and alive is None:  # the first item: where do our messages go?
                where = control_target(connection.topic, message.properties)
                heard = where is not None
                connection.control = where or connection.control
            if heard:
                alive = alive or asyncio.ensure_future(keep_alive(context))
            item_codec = codec_for(message.properties.get(Prop.CONTENT_TYPE, JSON))
            yield item_codec.decode(message.payload, returns)
            taken += 1
            if heard and taken - credited >= max(1, window // 2):
                credited = taken
                await connection.send_control(context, taken)
    finally:
        if alive is not None:
            alive.cancel()
        if not final.done():  # stopped early, or timed out: the backend stops too
            final.cancel()
            with contextlib.suppress(asyncio.CancelledError, DemessagingError):
                await final
