"""Control messages: a caller's ``cancel`` and ``more`` about a call, on ``<topic>_control``.

Or on the request topic itself, where a backend cannot use ``<topic>_control`` (not made, and
publishing makes no topic there, as on dasf-broker-django as installed): such a backend says
so in the ``control`` property of its pong and of its stream's items (:func:`control_target`),
and reads control messages on its request topic, on a subscription of its own.

Their properties are documented with the rest of the envelope in
:mod:`demessaging.protocol.envelope`; what a backend does with them, in
:mod:`demessaging.backend.cancel`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..errors import ProtocolError
from ..message import Message, MessageType, Prop
from .envelope import call_key, natural

__all__ = [
    "CHECK",
    "NO_CONTROL",
    "ON_REQUEST_TOPIC",
    "Control",
    "control_target",
    "control_topic",
    "is_control",
    "make_check",
    "make_control",
    "parse_control",
]

#: The ``messageType`` of the message a backend publishes on its control topic as it starts,
#: to learn whether it can be used there; readers of the topic drop it.
CHECK = "check"
#: The ``control`` property of a backend that reads control messages on its request topic.
ON_REQUEST_TOPIC = "topic"
#: The ``control`` property of a backend that hears no control messages at all: its callers
#: send none (no ``more``, no ``cancel``), and it waits for no credit.
NO_CONTROL = "none"


def control_topic(topic: str) -> str:
    """The topic of control messages for the backend of ``topic``."""
    return f"{topic}_control"


def control_target(topic: str, properties: Mapping[str, str]) -> str | None:
    """Where control messages go for the backend of ``topic``.

    By the ``properties`` of its pong or items: ``topic`` itself if their ``control`` says
    ``topic``, None if it says ``none`` (the backend hears none), else ``<topic>_control``.
    """
    said = properties.get(Prop.CONTROL)
    if said == NO_CONTROL:
        return None
    return topic if said == ON_REQUEST_TOPIC else control_topic(topic)


_CONTROLS = (MessageType.CANCEL.value, MessageType.MORE.value)


def is_control(message: Message) -> bool:
    """Whether ``message`` is a ``cancel`` or ``more`` (a request topic may carry them)."""
    return message.properties.get(Prop.MESSAGE_TYPE) in _CONTROLS


def make_check(topic: str) -> Message:
    """The message the backend of ``topic`` publishes on its control topic as it starts."""
    return Message(payload=b"", properties={Prop.MESSAGE_TYPE: CHECK, Prop.SOURCE_TOPIC: topic})


def make_control(*, context: str, response_topic: str, received: int | None = None) -> Message:
    """A control message about the call of ``context`` answered on ``response_topic``.

    ``cancel``; or, with ``received``, ``more``: the caller has taken that many items.
    """
    properties = {
        Prop.MESSAGE_TYPE: MessageType.CANCEL.value,
        Prop.REQUEST_CONTEXT: context,
        Prop.CALLER: response_topic,
    }
    if received is not None:
        properties[Prop.MESSAGE_TYPE] = MessageType.MORE.value
        properties[Prop.RECEIVED] = str(received)
    return Message(payload=b"", properties=properties)


@dataclass(frozen=True, kw_only=True)
class Control:
    """A parsed control message.

    Attributes
    ----------
    kind
        ``cancel``: the caller gave up; ``more``: it has taken ``received`` items.
    context
        The call's ``requestContext``.
    caller
        The call's ``response_topic``.
    received
        For ``more``: how many items the caller has taken; None for ``cancel``.
    """

    kind: Literal[MessageType.CANCEL, MessageType.MORE]
    context: str
    caller: str
    received: int | None = None

    @property
    def key(self) -> str:
        """The name of the call, as :attr:`demessaging.protocol.envelope.Address.key` has it."""
        return call_key(self.caller, self.context)


def parse_control(message: Message) -> Control:
    """Parse a message of the control topic, or refuse it.

    Raises
    ------
    ProtocolError
        If it is neither ``cancel`` nor ``more``, lacks ``requestContext`` or ``caller``, or
        is a ``more`` whose ``received`` is not a number.
    """
    props = message.properties
    kind = props.get(Prop.MESSAGE_TYPE)
    context, caller = props.get(Prop.REQUEST_CONTEXT), props.get(Prop.CALLER)
    if kind not in (MessageType.CANCEL.value, MessageType.MORE.value):
        raise ProtocolError(f"unexpected messageType {kind!r} on a control topic")
    if not context or not caller:
        raise ProtocolError(f"a {kind} message must name its requestContext and caller")
    if kind == MessageType.CANCEL.value:
        return Control(kind=MessageType.CANCEL, context=context, caller=caller)
    received = natural(props.get(Prop.RECEIVED, ""), Prop.RECEIVED)
    return Control(kind=MessageType.MORE, context=context, caller=caller, received=received)
