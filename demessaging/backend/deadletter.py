"""Replies that could not be published: which failures are for good, which come again.

A reply the broker refuses for good (an invalid topic, one the backend may not write to) is
logged and its request acknowledged: it would fail again. Other failures (the broker is
unreachable, it timed out) are retried: the request is negatively acknowledged and comes
again, and its reply, kept here, is sent without running the function again. After
``retries`` failures the request goes to the dead-letter topic (``<topic>-DLQ`` by default,
Pulsar's convention) with the reason in its properties, and is acknowledged.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from ..errors import AuthenticationError, AuthorizationError, DemessagingError, TransportError
from ..message import Message
from .recent import REMEMBERED

__all__ = [
    "DEFAULT_REPLY_RETRIES",
    "DLQ_SUFFIX",
    "KEPT_BYTES",
    "Unsent",
    "dead_letter",
    "permanent",
    "unsendable",
]

log = logging.getLogger("demessaging.backend")

#: How many times a reply is tried before its request goes to the dead-letter topic.
DEFAULT_REPLY_RETRIES = 5
#: The dead-letter topic of ``<topic>`` is ``<topic>-DLQ``, unless configured.
DLQ_SUFFIX = "-DLQ"
#: Bytes of replies kept for their next attempt; beyond, the oldest are forgotten (their
#: function runs again when the request comes back).
KEPT_BYTES = 64 * 1024 * 1024
#: Properties a dead letter carries besides the request's own (the first two as Pulsar's).
REAL_TOPIC = "REAL_TOPIC"
ORIGIN_MESSAGE_ID = "ORIGIN_MESSAGE_ID"
REASON = "dead_letter_reason"
ATTEMPTS = "dead_letter_attempts"

#: Broker errors (pulsar-client's result names) that no retry mends.
_FOR_GOOD = (
    "InvalidTopicName",
    "TopicNotFound",
    "NotAllowedError",
    "AuthorizationError",
    "TopicTerminated",
    "IncompatibleSchema",
)


def permanent(exc: DemessagingError) -> bool:
    """Whether publishing failed for good: retrying cannot help."""
    if not isinstance(exc, TransportError) or isinstance(
        exc, (AuthenticationError, AuthorizationError)
    ):
        return True
    text = str(exc)
    return any(mark in text for mark in _FOR_GOOD)


def dead_letter(
    message: Message, *, topic: str, origin: str | None, reason: str, attempts: int
) -> Message:
    """The request ``message`` of ``topic`` (whole) as it goes to the dead-letter topic.

    ``origin`` is the broker's id of the request (of its head, for a request in pieces).
    """
    properties = dict(message.properties)
    properties.update(
        {
            REAL_TOPIC: topic,
            ORIGIN_MESSAGE_ID: origin or "",
            REASON: reason[:1000],
            ATTEMPTS: str(attempts),
        }
    )
    return Message(payload=message.payload, properties=properties)


class Unsent:
    """Failures and replies of requests whose reply could not be published, by call key.

    Bounded: at most ``size`` keys, and ``budget`` bytes of replies; the oldest are forgotten
    first (changed on the event loop only; looked up from any thread).
    """

    def __init__(self, size: int = REMEMBERED, budget: int = KEPT_BYTES) -> None:
        self.size = size
        self.budget = budget
        self._failures: OrderedDict[str, int] = OrderedDict()
        self._replies: OrderedDict[str, tuple[str, Message]] = OrderedDict()
        self._bytes = 0

    @staticmethod
    def why(topic: str, exc: DemessagingError) -> str:
        """Why a reply to ``topic`` is dropped, for the log: an authorization refusal says so."""
        if isinstance(exc, AuthorizationError) or "AuthorizationError" in str(exc):
            return (
                f"the broker does not authorize this backend's role to publish its reply to "
                f"{topic!r} (authorization refused: {exc})"
            )
        return f"its reply to {topic!r} cannot be published ({exc})"

    def __len__(self) -> int:
        return len(self._failures)

    def __contains__(self, key: object) -> bool:
        return key in self._failures

    def reply(self, key: str | None) -> tuple[str, Message] | None:
        """The reply kept for the request of ``key``, if any."""
        return self._replies.get(key) if key is not None else None

    def failed(self, key: str, reply: tuple[str, Message]) -> int:
        """Count a failed attempt to send ``reply`` and keep it; returns the failures so far."""
        count = self._failures.pop(key, 0) + 1
        self._failures[key] = count
        if len(self._failures) > self.size:
            old, _ = self._failures.popitem(last=False)
            self._drop_reply(old)
        size = len(reply[1].payload)
        if key not in self._replies and size <= self.budget:
            self._replies[key] = reply
            self._bytes += size
            while self._bytes > self.budget:
                self._drop_reply(next(iter(self._replies)))
        return count

    def forget(self, key: str | None) -> None:
        """The request of ``key`` is done with: answered, dead-lettered or dropped."""
        if key is not None:
            self._failures.pop(key, None)
            self._drop_reply(key)

    def _drop_reply(self, key: str) -> None:
        kept = self._replies.pop(key, None)
        if kept is not None:
            self._bytes -= len(kept[1].payload)


async def unsendable(
    unsent: Unsent,
    send: Callable[[str, Message], Awaitable[None]],
    message: Message,
    whole: Message,
    key: str | None,
    reply: tuple[str, Message],
    exc: DemessagingError,
    *,
    topic: str,
    dead_letter_topic: str,
    retries: int,
) -> bool:
    """The ``reply`` to ``message`` failed with ``exc``: whether the request is done with.

    If not, it is to come again (nack it). ``whole`` is the request, its pieces put together:
    what goes to ``dead_letter_topic`` (through ``send``) after ``retries`` failures; ``topic``
    is the request topic.
    """
    if key is None or permanent(exc):
        log.error("dropping message %s: %s", message.message_id, Unsent.why(reply[0], exc))
        return True
    failures = unsent.failed(key, reply)
    if failures < retries:
        log.warning(
            "could not reply to message %s (%s); it will be redelivered (attempt %d of %d)",
            message.message_id,
            exc,
            failures,
            retries,
        )
        return False
    reason = f"the reply to {reply[0]!r} could not be published {failures} times: {exc}"
    letter = dead_letter(
        whole, topic=topic, origin=message.message_id, reason=reason, attempts=failures
    )
    try:
        await send(dead_letter_topic, letter)
    except DemessagingError as again:
        if failures < 2 * retries:
            log.error("could not dead-letter message %s (%s)", message.message_id, again)
            return False
        log.error(
            "dropping message %s: neither its reply nor its dead letter could be published (%s)",
            message.message_id,
            again,
        )
        return True
    log.error(
        "message %s went to the dead-letter topic %r: %s",
        message.message_id,
        dead_letter_topic,
        reason,
    )
    return True
