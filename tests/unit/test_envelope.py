"""Parsing incoming messages once: typed requests, queries and control messages, or refusals."""

from __future__ import annotations

import asyncio
import contextlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demessaging.backend.cancel import Cancellations
from demessaging.backend.recent import Recent
from demessaging.errors import ProtocolError
from demessaging.message import JSON, Message, MessageType, Prop
from demessaging.protocol.control import Control, make_control, parse_control
from demessaging.protocol.envelope import (
    LARGEST,
    MAX_STREAM_WINDOW,
    Address,
    Query,
    Request,
    fragment_count,
    natural,
    parse_request,
)
from demessaging.protocol.fragments import Reassembler, split
from demessaging.protocol.outgoing import make_request
from demessaging.protocol.replies import REPLY_KINDS, parse_reply
from tests.helpers import fuzz

#: Numbers as a hostile or broken peer may write them; none is a valid natural number.
MALFORMED_NUMBERS = [
    "",
    " ",
    "²",  # str.isdigit() says yes, int() raises
    "١٢",  # Arabic-Indic digits: str.isdigit() says yes, int() reads 12
    "\uff11\uff12",  # fullwidth digits
    "-1",
    "+1",
    " 1",
    "1 ",
    "1_000",
    "1.0",
    "0x10",
    "NaN",
    "inf",
    "1e3",
]
HUGE = ["9" * 20, str(LARGEST + 1), "9" * 5000]  # the last is beyond what int() parses


def request(**properties: str) -> Message:
    base = {
        Prop.MESSAGE_TYPE: "request",
        Prop.REQUEST_CONTEXT: "c1",
        Prop.RESPONSE_TOPIC: "replies",
    }
    return Message(b"{}", {**base, **properties}, message_id="m1")


def parsed_request(**properties: str) -> Request:
    parsed = parse_request(request(**properties))
    assert isinstance(parsed, Request)
    return parsed


def test_a_request_is_parsed_into_its_fields() -> None:
    message = make_request(
        b"{}",
        context="c1",
        response_topic="replies",
        content_type="application/x-test",
        deadline=1234.5,
        fingerprint="abc",
        window=8,
    )
    parsed = parse_request(message)
    assert parsed == Request(
        context="c1",
        response_topic="replies",
        content_type="application/x-test",
        message=message,
        deadline=1234.5,
        api_fingerprint="abc",
        window=8,
    )
    assert parsed.key == "replies\0c1"
    assert parsed.payload == b"{}"
    with pytest.raises(AttributeError):
        parsed.context = "other"  # type: ignore[misc]


def test_defaults_of_a_plain_dasf_request() -> None:
    parsed = parsed_request()
    assert (parsed.content_type, parsed.deadline, parsed.api_fingerprint) == (JSON, None, None)
    assert (parsed.window, parsed.count, parsed.payload_size, parsed.fragments_topic) == (
        None,
        1,
        None,
        None,
    )
    assert parsed_request(api_fingerprint="").api_fingerprint == ""  # given, though empty


@pytest.mark.parametrize("kind", [MessageType.PING, MessageType.INFO, MessageType.API_INFO])
def test_queries_are_parsed(kind: MessageType) -> None:
    parsed = parse_request(request(messageType=kind.value))
    assert isinstance(parsed, Query)
    assert parsed.kind is kind


@pytest.mark.parametrize("kind", [None, "", "response", "cancel", "item", "REQUEST"])
def test_other_message_types_are_refused(kind: str | None) -> None:
    message = request()
    properties = {k: v for k, v in message.properties.items() if k != Prop.MESSAGE_TYPE}
    if kind is not None:
        properties[Prop.MESSAGE_TYPE] = kind
    with pytest.raises(ProtocolError, match="unexpected messageType"):
        parse_request(Message(b"", properties))


@pytest.mark.parametrize(
    ("change", "missing"),
    [
        ({Prop.REQUEST_CONTEXT: ""}, "property requestContext"),
        ({Prop.RESPONSE_TOPIC: ""}, "property response_topic"),
        ({Prop.REQUEST_CONTEXT: "", Prop.RESPONSE_TOPIC: ""}, "properties requestContext"),
    ],
)
def test_a_request_without_reply_address_is_refused(change: dict[str, str], missing: str) -> None:
    message = request(**change)
    with pytest.raises(ProtocolError, match=missing):
        parse_request(message)
    assert Address.of(message) is None


def test_the_address_of_a_refused_message_is_known() -> None:
    message = request(messageType="nonsense", num_fragments="x", content_type="text/x")
    assert Address.of(message) == Address(
        context="c1", response_topic="replies", content_type="text/x"
    )


@pytest.mark.parametrize("text", [*MALFORMED_NUMBERS, *HUGE, "0"])
def test_a_malformed_num_fragments_refuses_the_message(text: str) -> None:
    with pytest.raises(ProtocolError, match="num_fragments"):
        parse_request(request(num_fragments=text))


@pytest.mark.parametrize("text", [*MALFORMED_NUMBERS, *HUGE])
def test_a_malformed_payload_size_is_none(text: str) -> None:
    assert parsed_request(payload_size=text).payload_size is None


@pytest.mark.parametrize("text", [*MALFORMED_NUMBERS, "0", "00"])
def test_a_malformed_or_zero_window_means_no_stream(text: str) -> None:
    assert parsed_request(stream=text).window is None


@pytest.mark.parametrize(
    ("text", "window"), [("1", 1), ("0007", 7), ("1000", 1000), *[(h, 1000) for h in HUGE]]
)
def test_a_window_is_cut_to_the_limit(text: str, window: int) -> None:
    assert parsed_request(stream=text).window == min(window, MAX_STREAM_WINDOW)


@pytest.mark.parametrize(
    "text", ["", "soon", "nan", "NaN", "inf", "-inf", "1e400", "١٢", "²", "9" * 5000 + ".0e999"]
)
def test_a_malformed_deadline_is_ignored(text: str) -> None:
    assert parsed_request(deadline=text).deadline is None


@pytest.mark.parametrize(("text", "value"), [("12.5", 12.5), ("-1", -1.0), ("1e3", 1000.0)])
def test_a_deadline_is_any_finite_number(text: str, value: float) -> None:
    assert parsed_request(deadline=text).deadline == value


def test_natural_numbers() -> None:
    assert natural("0", "n") == 0
    assert natural("000123", "n") == 123
    assert natural(str(LARGEST), "n") == LARGEST
    assert natural("5", "n", cap=3) == 3
    assert natural("9" * 5000, "n", cap=3) == 3
    with pytest.raises(ProtocolError, match="too large"):
        natural(str(LARGEST + 1), "n")
    with pytest.raises(ProtocolError, match=r"n='999.*\.\.\. is too large"):  # shortened
        natural("9" * 5000, "n")
    for text in MALFORMED_NUMBERS:
        with pytest.raises(ProtocolError, match="not a number"):
            natural(text, "n")


@pytest.mark.parametrize("prop", [Prop.FRAGMENT, Prop.FRAGMENT_OFFSET, Prop.NUM_FRAGMENTS])
@pytest.mark.parametrize("text", [*MALFORMED_NUMBERS, *HUGE])
def test_malformed_piece_numbers_are_refused_by_reassembly(prop: str, text: str) -> None:
    piece = split(Message(bytes(300), {"requestContext": "x"}), 100)[1]
    bad = Message(piece.payload, {**piece.properties, prop: text})
    reassembler = Reassembler(max_bytes=1000)
    with pytest.raises(ProtocolError):
        reassembler.add("k", bad)
    assert reassembler.held == 0


def test_fragment_count() -> None:
    assert fragment_count(Message(b"")) == 1
    assert fragment_count(Message(b"", {Prop.NUM_FRAGMENTS: "3"})) == 3
    with pytest.raises(ProtocolError, match="not positive"):
        fragment_count(Message(b"", {Prop.NUM_FRAGMENTS: "0"}))


def test_control_messages_are_parsed() -> None:
    cancel = parse_control(make_control(context="c1", response_topic="replies"))
    assert cancel == Control(kind=MessageType.CANCEL, context="c1", caller="replies")
    more = parse_control(make_control(context="c1", response_topic="replies", received=7))
    assert (more.kind, more.received) == (MessageType.MORE, 7)
    assert cancel.key == more.key == parsed_request().key  # names the same call


@pytest.mark.parametrize(
    "properties",
    [
        {},
        {Prop.MESSAGE_TYPE: "request", Prop.REQUEST_CONTEXT: "c1", Prop.CALLER: "r"},
        {Prop.MESSAGE_TYPE: "cancel", Prop.REQUEST_CONTEXT: "c1"},
        {Prop.MESSAGE_TYPE: "cancel", Prop.CALLER: "r"},
        {Prop.MESSAGE_TYPE: "more", Prop.REQUEST_CONTEXT: "c1", Prop.CALLER: "r"},
        *(
            {Prop.MESSAGE_TYPE: "more", Prop.REQUEST_CONTEXT: "c1", Prop.CALLER: "r", "received": t}
            for t in [*MALFORMED_NUMBERS, *HUGE]
        ),
    ],
)
def test_malformed_control_messages_are_refused(properties: dict[str, str]) -> None:
    with pytest.raises(ProtocolError):
        parse_control(Message(b"", properties))


class _Feed:
    """A subscription that hands out given messages, then waits forever."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        self.acked: list[Message] = []

    async def receive(self) -> Message:
        if not self.messages:
            await asyncio.Event().wait()
        return self.messages.pop(0)

    async def ack(self, message: Message) -> None:
        self.acked.append(message)


def test_a_hostile_control_message_does_not_stop_the_cancellations() -> None:
    """``received="²"`` passes ``str.isdigit()`` and used to crash the watch on ``int()``."""
    cancellations = Cancellations()
    control = cancellations.start("replies\0c1")
    assert control is not None
    hostile = Message(
        b"",
        {
            Prop.MESSAGE_TYPE: "more",
            Prop.REQUEST_CONTEXT: "c1",
            Prop.CALLER: "replies",
            Prop.RECEIVED: "²",
        },
    )
    feed = _Feed([hostile, make_control(context="c1", response_topic="replies")])

    async def watch() -> None:
        task = asyncio.ensure_future(cancellations.watch(feed))  # type: ignore[arg-type]
        while len(feed.acked) < 2 and not task.done():
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(watch(), 5))
    assert len(feed.acked) == 2  # both taken off the topic
    assert control.cancelled.is_set()  # and the cancel after the hostile message was heard


def test_recent_keys_are_bounded() -> None:
    recent = Recent(size=2)
    for key in "abc":
        recent.add(key)
    assert ("a" in recent, "b" in recent, "c" in recent, len(recent)) == (False, True, True, 2)
    assert recent.take("b")
    assert not recent.take("b")


_NAMES = st.sampled_from(
    [v for k, v in vars(Prop).items() if not k.startswith("_")] + ["other", ""]
)
_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            *MALFORMED_NUMBERS,
            *HUGE,
            "0",
            "1",
            "3",
            "request",
            "ping",
            "info",
            "api_info",
            "cancel",
            "more",
            "response",
        ]
    ),
    st.integers().map(str),
    st.floats().map(str),
)
_PROPERTIES = st.dictionaries(_NAMES, _VALUES, max_size=12)


def check_any_message(properties: dict[str, str], payload: bytes) -> None:
    """Every parser takes the message or refuses it with a ProtocolError, and nothing else."""
    message = Message(payload, properties)
    try:
        parsed = parse_request(message)
    except ProtocolError:
        pass
    else:
        assert parsed.count >= 1
        if isinstance(parsed, Request):
            assert parsed.window is None or 1 <= parsed.window <= MAX_STREAM_WINDOW
            assert parsed.deadline is None or math.isfinite(parsed.deadline)
    with contextlib.suppress(ProtocolError):
        parse_control(message)
    try:
        reply = parse_reply(message)
    except ProtocolError:
        pass
    else:
        assert reply.context
        assert 0 <= reply.fragment < reply.count
        assert reply.kind in REPLY_KINDS
        assert Prop.RESPONSE_TOPIC not in properties
    reassembler = Reassembler(max_bytes=1000)
    with contextlib.suppress(ProtocolError):
        reassembler.add("k", message)
    assert reassembler.held <= 1000


_PAYLOADS = st.binary(max_size=16)


@fuzz(1500)
@given(_PROPERTIES, _PAYLOADS)
def test_any_properties_parse_or_raise_protocol_error(
    properties: dict[str, str], payload: bytes
) -> None:
    check_any_message(properties, payload)


@pytest.mark.slow
@fuzz(10_000)
@given(_PROPERTIES, _PAYLOADS)
def test_any_properties_at_length(properties: dict[str, str], payload: bytes) -> None:
    check_any_message(properties, payload)
