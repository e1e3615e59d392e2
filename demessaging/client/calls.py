"""The calls of a client waiting for replies, and the routing of replies to them.

A call is known by its request context, drawn at random (:data:`CONTEXTS`). Calls are opened
on any event loop and from any thread: the reader of the response topic hands each reply to
its call's loop (:func:`~demessaging.transport.bridge.settle`), puts replies in pieces
together, hands progress messages to the call's ``on_progress`` and stream items to the
stream. A message that is not a reply, or is malformed, is dropped alone (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable, Mapping

from ..errors import ProtocolError, TransportError
from ..message import Message, MessageType, Prop, Status
from ..protocol.fragments import Reassembler
from ..protocol.recent import Recent
from ..protocol.replies import Reply, parse_reply
from ..transport import bridge
from .bars import Progress

__all__ = ["CONTEXTS", "USED_CONTEXTS", "Calls", "Extras", "Sent", "UnsentError"]

log = logging.getLogger("demessaging.client")
#: Request contexts are drawn at random from 1 to this, anew for each call: digits, as
#: dasf-broker-django stores them in an integer column (of 32 bits on PostgreSQL), and not to
#: be guessed by others on the broker, who could otherwise cancel calls before they are made.
CONTEXTS = 2**31 - 1
#: How many of its latest contexts a client does not draw again (a backend remembers as many
#: requests it answered, by context among others, to spot their repeats).
USED_CONTEXTS = 10_000


@dataclasses.dataclass(frozen=True)
class Extras:
    """What a call may add to its request and reply handling."""

    on_progress: Callable[[Progress], None] | None = None
    fingerprint: str | None = None
    window: int | None = None  # a stream: this many items on their way at most
    on_item: Callable[[Message], None] | None = None
    reads_pieces: Callable[[], Awaitable[bool]] | None = None  # asked of a large request
    headers: Mapping[str, str] | None = None  # more properties (the trace context)


class Calls:
    """The calls waiting for replies on one response topic; thread-safe.

    Parameters
    ----------
    response_topic
        Where the replies come, for log messages.
    max_payload
        The most memory held for replies arriving in pieces, in bytes.
    """

    def __init__(self, response_topic: str, max_payload: int) -> None:
        self.response_topic = response_topic
        self._futures: dict[str, asyncio.Future[Reply]] = {}
        self._watchers: dict[str, Callable[[Progress], None]] = {}
        self._streams: dict[str, Callable[[Message], None]] = {}
        self._reassembler = Reassembler(max_payload)
        #: The latest request contexts (see :data:`USED_CONTEXTS`).
        self.used = Recent(USED_CONTEXTS)
        self._lock = threading.Lock()
        #: Why the reader stopped, until a new one starts: calls are not opened meanwhile.
        self.broken: BaseException | None = None

    def new_context(self) -> str:
        """The context of a new call: random, and none of the latest :data:`USED_CONTEXTS`."""
        context = str(secrets.randbelow(CONTEXTS) + 1)
        while context in self.used or context in self._futures:
            context = str(secrets.randbelow(CONTEXTS) + 1)
        self.used.add(context)
        return context

    def open(self, extras: Extras) -> tuple[str, asyncio.Future[Reply]] | None:
        """A new call of the running loop: its context and the future of its reply.

        None while the reader is stopped (:attr:`broken`): its reply would never come.
        """
        future: asyncio.Future[Reply] = bridge.prepare()
        with self._lock:
            if self.broken is not None:
                return None
            context = self.new_context()
            self._futures[context] = future
            if extras.on_progress is not None:
                self._watchers[context] = extras.on_progress
            if extras.on_item is not None:
                self._streams[context] = extras.on_item
        return context, future

    def again(self, context: str) -> asyncio.Future[Reply]:
        """A new future for the reply of an open call (its first one failed)."""
        future: asyncio.Future[Reply] = bridge.prepare()
        with self._lock:
            self._futures[context] = future
        return future

    def end(self, context: str) -> None:
        """Forget a call: what comes for it later is dropped."""
        with self._lock:
            self._futures.pop(context, None)
            self._watchers.pop(context, None)
            self._streams.pop(context, None)
            self._reassembler.discard(context)

    def fail_all(self, error: BaseException) -> None:
        """Fail every open call with ``error``; none is opened until :meth:`resume`."""
        with self._lock:
            self.broken = error
            futures = list(self._futures.values())
        for future in futures:
            if not future.done():
                bridge.settle(future, error=error)

    def resume(self) -> None:
        """A new reader runs: calls may be opened again."""
        self.broken = None

    def route(self, message: Message, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Hand one message of the response topic to its call, or drop it (logged).

        Called from a thread of its own, ``loop`` is the client's: progress messages, and the
        messages of a call that watches its progress, are handled there. Never raises.
        """
        try:
            reply = parse_reply(message)
        except ProtocolError as exc:  # not a reply, or a malformed one: dropped alone
            level = logging.DEBUG if Prop.RESPONSE_TOPIC in message.properties else logging.WARNING
            log.log(level, "dropping a message on %s: %s", self.response_topic, exc)
            return
        except Exception:  # one message, however odd, never stops the reader
            log.warning("dropping a reply that could not be read", exc_info=True)
            return
        if loop is not None and (
            reply.kind is MessageType.PROGRESS or reply.context in self._watchers
        ):
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self._deliver, reply)
            return
        self._deliver(reply)

    def _deliver(self, reply: Reply) -> None:
        try:
            self._hand(reply)
        except Exception:  # one message, however odd, never stops the reader
            log.warning("dropping a reply that could not be handled", exc_info=True)

    def _hand(self, reply: Reply) -> None:
        context = reply.context
        future = self._futures.get(context)
        if future is None or future.done():
            log.debug("dropping a reply for no pending call (context %r)", context)
        elif reply.kind is MessageType.PROGRESS:
            self._tell(reply)
        elif reply.kind is MessageType.LOG:
            log.debug("ignoring a log message for call %s", context)
        else:
            try:
                with self._lock:  # not while the call ends in another thread
                    if self._futures.get(context) is not future:
                        return
                    whole = self._reassembler.add(context, reply.message)
            except ProtocolError as exc:  # well-formed pieces that do not fit: the call fails
                bridge.settle(future, error=exc)
                return
            if whole is None:
                return
            on_item = self._streams.get(context)
            if reply.kind is not MessageType.ITEM:
                bridge.settle(future, reply.whole(whole))
            elif on_item is not None:
                on_item(whole)
            else:
                log.debug("dropping a stream item for call %s, not a stream", context)

    def _tell(self, reply: Reply) -> None:
        """Hand a progress message to the call's ``on_progress``."""
        watcher = self._watchers.get(reply.context)
        if watcher is None:
            return
        try:
            watcher(Progress(reply.status or Status.RUNNING.value, bytes(reply.payload)))
        except Exception:  # the caller's bug: the call goes on
            log.exception("on_progress raised")


class UnsentError(TransportError):
    """A request sent from the caller's thread that the transport could not send."""


class Sent:
    """Whether a call's request has reached the broker (set from any thread)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def receipt(self, reply: asyncio.Future[Reply]) -> Callable[[BaseException | None], None]:
        """The callback of ``publish_soon``: sent, or ``reply`` fails with :class:`UnsentError`."""

        def received(error: BaseException | None) -> None:
            if error is None:
                self.done = True
            else:
                bridge.settle(reply, error=UnsentError(str(error)))

        return received
