"""Control messages: a caller's ``cancel`` and ``more`` about a call, on ``<topic>_control``.

Their properties are documented with the rest of the envelope in
:mod:`demessaging.protocol.envelope`; what a backend does with them, in
:mod:`demessaging.backend.cancel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ProtocolError
from ..message import Message, MessageType, Prop
from .envelope import call_key, natural

__all__ = ["Control", "control_topic", "make_control", "parse_control"]


def control_topic(topic: str) -> str:
    """The topic of control messages for the backend of ``topic``."""
    return f"{topic}_control"


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
