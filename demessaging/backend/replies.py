"""What a listener sends: replies, progress messages and items.

Every message goes in pieces if the broker needs it. A worker thread sends one message at a
time and waits until the broker took it, so that its messages arrive in order and a broker
that stops taking them stops the function (at its next progress report or item).

A call's reply is sent by the worker that ran it, where the transport can send from any
thread (:meth:`~demessaging.transport.base.Transport.publish_soon`) and the reply fits one
message; the request is acknowledged when the broker has the reply, from the send receipt,
and the event loop hears of the call once, when both are done (:meth:`Replies.run`).
Otherwise the reply goes back to the loop, which sends it and acknowledges.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections.abc import Callable, Mapping

from ..core.reporter import SendProgress
from ..errors import TransportError
from ..message import JSON, Message, MessageType, Prop
from ..observe import tracing
from ..protocol.envelope import Request
from ..protocol.fragments import send_pieces, split
from ..protocol.outgoing import error_reply, reply_to
from ..transport import bridge
from ..transport.base import Transport
from .cancel import CallControl
from .dispatcher import Outcome
from .workers import Workers

__all__ = ["PROGRESS_TIMEOUT", "STREAM_IDLE", "Replies"]

log = logging.getLogger("demessaging.backend")
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
        if limit is None or len(reply.payload) <= limit:  # one message: no task to send it
            await self.transport.publish(topic, reply)
            return
        pieces = split(reply, limit, piece_size=size)
        await send_pieces(functools.partial(self.transport.publish, topic), pieces)

    async def run(
        self,
        workers: Workers,
        call: Callable[[], Outcome],
        reply_of: Callable[[Outcome], tuple[str, Message]],
        ack: Callable[[], bool],
        handed: asyncio.Future[None] | None = None,
    ) -> tuple[tuple[str, Message], bool, bool]:
        """Run ``call`` on a worker, which sends its reply if it can.

        Returns the reply, whether it was sent, and whether the request was acknowledged
        (``ack``, called once the broker has the reply); what is not done is the caller's.
        ``handed``, if given, is set as soon as the worker has started sending the reply
        (the broker's receipt may take milliseconds more); it is not set if it did not.
        """
        finished = bridge.prepare()
        workers.start(self._run, finished, call, reply_of, ack, handed)
        result: tuple[tuple[str, Message], bool, bool] = await finished
        return result

    def _run(
        self,
        finished: asyncio.Future[tuple[tuple[str, Message], bool, bool]],
        call: Callable[[], Outcome],
        reply_of: Callable[[Outcome], tuple[str, Message]],
        ack: Callable[[], bool],
        handed: asyncio.Future[None] | None,
    ) -> None:
        """On a worker: run the call, send its reply if it can, tell ``finished``."""
        try:
            reply = reply_of(call())
        except BaseException as exc:  # handed to the caller, as an executor would
            bridge.settle(finished, error=exc)
            return

        def done(sent: bool, acked: bool) -> None:  # on the transport's thread
            bridge.settle(finished, (reply, sent, acked))

        started = self.send_soon(reply, ack, done)
        if not started:
            bridge.settle(finished, (reply, False, False))
        elif handed is not None:
            bridge.settle(handed, None)

    def send_soon(
        self,
        reply: tuple[str, Message],
        ack: Callable[[], bool],
        done: Callable[[bool, bool], None],
    ) -> bool:
        """From a worker: start sending ``reply``, if one message and this thread can do it.

        Once the broker has the reply, ``ack()`` acknowledges its request; then
        ``done(sent, acked)`` says, from the transport's thread, whether the broker took the
        reply and whether the request is acknowledged. False if nothing was started (then
        neither is called): the loop sends the reply, in pieces if it needs them.
        """
        limit = self.transport.max_message_size
        if limit is not None and len(reply[1].payload) > limit:
            return False

        def sent(error: BaseException | None) -> None:  # on the transport's thread
            acked = False
            if error is None:
                try:
                    acked = ack()
                except Exception:  # the loop acknowledges
                    log.debug("acknowledging from the send receipt failed", exc_info=True)
            done(error is None, acked)

        try:
            return self.transport.publish_soon(*reply, sent)
        except Exception:  # the loop sends it
            log.debug("sending a reply from a worker failed", exc_info=True)
            return False

    def reply_of(
        self, request: Request, fingerprints: Mapping[str, str], outcome: Outcome
    ) -> tuple[str, Message]:
        """The reply carrying ``outcome``; ``fingerprints`` are the API's, by member."""
        extra = {}
        if request.api_fingerprint is not None and outcome.member:
            extra[Prop.API_FINGERPRINT] = fingerprints.get(outcome.member, "")
        if outcome.error is not None:
            return error_reply(request, outcome.error, source_topic=self.topic, extra=extra)
        if outcome.streamed:
            extra[Prop.STREAM] = "end"
        return reply_to(request, outcome.payload, source_topic=self.topic, extra=extra)

    def progress(
        self, request: Request, loop: asyncio.AbstractEventLoop | None = None
    ) -> SendProgress:
        """Sends progress messages about ``request`` from a worker, through ``loop``.

        Made on the loop (``loop`` is then the running one) or on a worker, given ``loop``.
        """
        loop = loop or asyncio.get_running_loop()
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
