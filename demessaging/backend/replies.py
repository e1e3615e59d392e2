"""What a listener sends: replies from its event loop, progress messages and items from workers.

Every message goes in pieces if the broker needs it. A worker thread sends one message at a
time and waits until the broker took it, so that its messages arrive in order and a broker
that stops taking them stops the function (at its next progress report or item).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import Callable

from ..core.reporter import SendProgress
from ..errors import TransportError
from ..message import JSON, Message, MessageType, Prop
from ..observe import tracing
from ..protocol.envelope import Request
from ..protocol.fragments import send_pieces, split
from ..protocol.outgoing import reply_to
from ..transport.base import Transport
from .cancel import CallControl

__all__ = ["PROGRESS_TIMEOUT", "STREAM_IDLE", "Replies"]

#: Seconds a function waits for the broker to take one of its progress messages or items.
PROGRESS_TIMEOUT = 10.0
#: Seconds a generator waits at least for its caller to take items, before taking it for gone.
STREAM_IDLE = 30.0


class Replies:
    """Sends the messages of the backend of ``topic`` through ``transport``.

    Parameters
    ----------
    transport
        The broker connection.
    topic
        The backend's request topic (the ``source_topic`` of its replies).
    """

    def __init__(self, transport: Transport, topic: str) -> None:
        self.transport = transport
        self.topic = topic

    async def send(self, topic: str, reply: Message) -> None:
        """Publish a reply, in pieces if the broker needs it."""
        limit = self.transport.max_message_size
        size = self.transport.piece_size
        pieces = split(reply, limit, piece_size=size) if limit is not None else [reply]
        await send_pieces(functools.partial(self.transport.publish, topic), pieces)

    def progress(self, request: Request) -> SendProgress:
        """Sends progress messages about ``request``: made on the loop, called in a worker."""
        loop = asyncio.get_running_loop()
        traced = tracing.progress_event()  # an event on the request's span, if traced

        def send(payload: bytes, status: str) -> None:
            if traced is not None:
                traced(status, len(payload))
            topic, message = reply_to(
                request,
                payload,
                source_topic=self.topic,
                message_type=MessageType.PROGRESS,
                extra={Prop.STATUS: status, Prop.CONTENT_TYPE: JSON},
            )
            self._send_from_worker(loop, topic, message, "a progress message")

        return send

    def items(self, request: Request, control: CallControl, window: int) -> Callable[[bytes], None]:
        """Sends the items of a generator one by one, ``window`` at most on their way.

        Each says where the caller's ``more`` messages go when not to ``<topic>_control``
        (``control``, see :func:`~demessaging.protocol.control.control_target`).
        """
        loop = asyncio.get_running_loop()
        extra = dict(control.said)
        deadline = request.deadline
        idle = max(deadline - time.time(), STREAM_IDLE) if deadline else STREAM_IDLE
        sent = 0

        def send(payload: bytes) -> None:
            nonlocal sent
            control.wait_for_room(sent, window, idle)  # raises CallCancelled
            sent += 1
            topic, message = reply_to(
                request,
                payload,
                source_topic=self.topic,
                message_type=MessageType.ITEM,
                extra={**extra, Prop.SEQUENCE: str(sent)},
            )
            self._send_from_worker(loop, topic, message, "an item")

        return send

    def _send_from_worker(
        self, loop: asyncio.AbstractEventLoop, topic: str, message: Message, what: str
    ) -> None:
        """Send a message from a worker thread, in order: the next one goes after it."""
        sent = asyncio.run_coroutine_threadsafe(self.send(topic, message), loop)
        try:
            sent.result(PROGRESS_TIMEOUT)
        except concurrent.futures.TimeoutError:
            sent.cancel()
            raise TransportError(
                f"the broker took more than {PROGRESS_TIMEOUT:g} s to take {what}"
            ) from None
