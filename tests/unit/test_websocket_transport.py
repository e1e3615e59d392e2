"""The WebSocket transport against a fake broker made with the ``websockets`` library.

Every test starts its own server on ``127.0.0.1`` (a free port), speaks the JSON frames of the
Pulsar WebSocket API through :class:`~demessaging.transport.websocket.WebSocketTransport`, and
stops the server at its end. No real broker is needed.

Notes
-----
Each scenario runs under :func:`run`, which bounds it as a whole; waits inside a scenario are
bounded too (:func:`until`, :func:`within`), so a transport that hangs fails a test instead of
stalling the suite.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from demessaging.errors import (
    AuthenticationError,
    AuthorizationError,
    BrokerUnreachableError,
    ConfigurationError,
    TransportError,
)
from demessaging.protocol import Message
from demessaging.transport import TransportOptions, connect
from demessaging.transport.base import DEFAULT_FRAME_SIZE
from demessaging.transport.websocket import WebSocketTransport, payload_limit

T = TypeVar("T")

#: The bound of one wait inside a scenario, in seconds.
WAIT = 3.0
#: The bound of a whole scenario, in seconds.
SCENARIO = 10.0

Frame = dict[str, Any]
Answer = Callable[[ServerConnection, Frame], Awaitable[Frame | None]]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, SCENARIO))


async def within(awaitable: Awaitable[T], seconds: float = WAIT) -> T:
    return await asyncio.wait_for(awaitable, seconds)


async def until(condition: Callable[[], bool], seconds: float = WAIT) -> None:
    """Wait until ``condition()`` holds, polling; fails after ``seconds``."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), seconds)
    except asyncio.TimeoutError:
        raise AssertionError(f"condition not met within {seconds} s") from None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def delivery(message_id: str, payload: bytes, **properties: str) -> str:
    """A frame as the broker delivers it to a consumer."""
    return json.dumps(
        {
            "messageId": message_id,
            "payload": b64(payload),
            "properties": properties,
            "publishTime": "2024-01-01T00:00:00.000Z",
        }
    )


async def confirm(ws: ServerConnection, frame: Frame) -> Frame | None:
    return {"result": "ok", "messageId": "CAEQAw==", "context": frame["context"]}


class FakeBroker:
    """A WebSocket server that records what clients do and answers as a test tells it.

    Parameters
    ----------
    answer
        The answer to each frame a producer sends, or None for no answer; the answers are
        made concurrently, so one held back does not hold back the frames after it.
    refuse
        The HTTP status to refuse a handshake with, or None to accept it.
    """

    def __init__(
        self,
        answer: Answer = confirm,
        refuse: Callable[[Request], int | None] | None = None,
    ) -> None:
        self.answer = answer
        self.refuse = refuse
        self.port = 0
        #: Every handshake request, refused ones included.
        self.requests: list[Request] = []
        #: The (path, decoded frame) of every frame clients sent, in order.
        self.frames: list[tuple[str, Frame]] = []
        #: The raw text of every frame producers sent.
        self.raw: list[str] = []
        self.consumers: asyncio.Queue[ServerConnection] = asyncio.Queue()
        #: Every connection opened, in order.
        self.connections: list[ServerConnection] = []
        #: The paths of the connections whose handler has returned.
        self.finished: list[str] = []
        self._answering: set[asyncio.Future[None]] = set()

    def url(self, path: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def frames_on(self, path: str) -> list[Frame]:
        return [f for p, f in self.frames if p == path]

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        status = self.refuse(request) if self.refuse else None
        if status is not None:
            if status == 401:  # as Apache Pulsar's Jetty does
                return connection.respond(status, JETTY_PAGE)
            return connection.respond(status, f"refused with {status}\n")
        return None

    async def handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        self.connections.append(ws)
        try:
            if _is_consumer(path):
                await self.consumers.put(ws)
                async for raw in ws:
                    self.frames.append((path, json.loads(raw)))
            else:
                async for raw in ws:
                    assert isinstance(raw, str)
                    self.raw.append(raw)
                    frame = json.loads(raw)
                    self.frames.append((path, frame))
                    task = asyncio.ensure_future(self._reply(ws, frame))
                    self._answering.add(task)
                    task.add_done_callback(self._answering.discard)
        except ConnectionClosed:
            pass
        finally:
            self.finished.append(path)

    async def _reply(self, ws: ServerConnection, frame: Frame) -> None:
        answer = await self.answer(ws, frame)
        if answer is not None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps(answer))

    async def stop(self) -> None:
        for task in list(self._answering):
            task.cancel()
        if self._answering:
            await asyncio.wait(self._answering, timeout=WAIT)


def _is_consumer(path: str) -> bool:
    """Whether a request path is a consumer's, in either URL layout.

    Pulsar's consumer paths contain ``/consumer/``; dasf-broker-django's are
    ``/ws/TOPIC/SUBSCRIPTION`` (its producers' ``/ws/TOPIC``).
    """
    path = path.split("?", 1)[0]
    if "/v2/" in path:
        return "/consumer/" in path
    return path.count("/") >= 3


JETTY_PAGE = (
    "<html>\n<head>\n<title>Error 401 Unauthorized</title>\n</head>\n<body><h2>HTTP ERROR 401 "
    "Unauthorized</h2>\n<p>Powered by Jetty:// 9.4</p>\n</body>\n</html>\n"
)


@contextlib.asynccontextmanager
async def fake_broker(
    answer: Answer = confirm, refuse: Callable[[Request], int | None] | None = None
) -> AsyncIterator[FakeBroker]:
    broker = FakeBroker(answer, refuse)
    server = await serve(broker.handle, "127.0.0.1", 0, process_request=broker.process_request)
    broker.port = next(iter(server.sockets)).getsockname()[1]
    try:
        yield broker
    finally:
        await broker.stop()
        server.close()
        await within(server.wait_closed())


async def next_consumer(broker: FakeBroker, receiving: asyncio.Future[Any]) -> ServerConnection:
    """The next consumer connection; raises what ``receiving`` raised if it ends first."""
    getting = asyncio.ensure_future(broker.consumers.get())
    done, _ = await asyncio.wait(
        {getting, receiving}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED
    )
    if getting in done:
        return getting.result()
    getting.cancel()
    if receiving in done:
        receiving.result()
        raise AssertionError("receive() returned before subscribing again")
    raise AssertionError(f"no consumer connection within {WAIT} s")


@contextlib.asynccontextmanager
async def closing_slowly(ws: ServerConnection) -> AsyncIterator[None]:
    """While the block runs, ``ws`` is closing: its close frame is sent, its TCP is open.

    The server stops reading, so it never sees the client's answer to the close frame and
    never ends the TCP connection; a broker that is slow to hang up looks the same.
    """
    ws.transport.pause_reading()
    closing = asyncio.ensure_future(ws.close())
    try:
        await asyncio.sleep(0.1)  # the client receives the close frame and answers it
        yield
    finally:
        ws.transport.resume_reading()
        await within(closing)


def acks(broker: FakeBroker, path: str | None = None) -> list[Frame]:
    """What consumers sent but asking for messages (``permit``), on ``path`` or anywhere."""
    return [
        f for p, f in broker.frames if f.get("type") != "permit" and (path is None or p == path)
    ]


def permits(broker: FakeBroker) -> list[int]:
    """The messages asked for by each ``permit`` frame consumers sent, in order."""
    return [f["permitMessages"] for _, f in broker.frames if f.get("type") == "permit"]


def message(payload: bytes = b"hello", **properties: str) -> Message:
    return Message(payload=payload, properties=properties)


# --- URL layouts --------------------------------------------------------------------------


PULSAR_CASES = [
    pytest.param(
        "",
        {},
        "requests",
        {"prefetch": 5},
        "/ws/v2/producer/persistent/public/default/requests",
        "/ws/v2/consumer/persistent/public/default/requests/sub"
        "?subscriptionType=Shared&receiverQueueSize=5&negativeAckRedeliveryDelay=1000"
        "&pullMode=true",
        id="defaults",
    ),
    pytest.param(
        "/",
        {"tenant": "inst", "namespace": "models", "persistent": False},
        "requests",
        {"shared": False, "prefetch": 50},
        "/ws/v2/producer/non-persistent/inst/models/requests",
        "/ws/v2/consumer/non-persistent/inst/models/requests/sub"
        "?subscriptionType=Exclusive&receiverQueueSize=50&negativeAckRedeliveryDelay=1000"
        "&pullMode=true",
        id="non-persistent-exclusive",
    ),
    pytest.param(
        "/ws/v2",
        {"tenant": "ignored"},
        "persistent://t/n/full",
        {"prefetch": 0},
        "/ws/v2/producer/persistent/t/n/full",
        "/ws/v2/consumer/persistent/t/n/full/sub?subscriptionType=Shared&receiverQueueSize=1"
        "&negativeAckRedeliveryDelay=1000&pullMode=true",
        id="full-topic-name",
    ),
]


@pytest.mark.parametrize(
    ("url_path", "options", "topic", "sub_kwargs", "producer_path", "consumer_path"),
    PULSAR_CASES,
)
def test_pulsar_layout_paths(
    url_path: str,
    options: dict[str, Any],
    topic: str,
    sub_kwargs: dict[str, Any],
    producer_path: str,
    consumer_path: str,
) -> None:
    async def scenario() -> list[str]:
        async with fake_broker() as broker:
            transport = connect(broker.url(url_path), TransportOptions(**options))
            assert isinstance(transport, WebSocketTransport)
            assert transport.layout.pulsar
            await transport.publish(topic, message())
            await transport.subscribe(topic, "sub", **sub_kwargs)
            await transport.close()
            return broker.paths

    assert run(scenario()) == [producer_path, consumer_path]


@pytest.mark.parametrize("url_path", ["/ws", "/ws/"])
def test_dasf_broker_layout_paths(url_path: str) -> None:
    async def scenario() -> list[str]:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url(url_path))
            assert not transport.layout.pulsar
            await transport.publish("requests", message())
            await transport.subscribe("requests", "sub", prefetch=5)
            await transport.close()
            return broker.paths

    assert run(scenario()) == ["/ws/requests", "/ws/requests/sub"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "ws://", "pulsar://127.0.0.1:6650"])
def test_a_url_that_is_not_websocket_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="not a WebSocket URL"):
        WebSocketTransport(url)


# --- publishing ---------------------------------------------------------------------------


def test_publish_sends_base64_payload_properties_and_context() -> None:
    payload = bytes(range(256)) + "wärme".encode()

    async def scenario() -> Frame:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url())
            await transport.publish("t", message(payload, messageType="request", a="1"))
            await transport.publish("t", message(b"second"))
            await transport.close()
            assert len(broker.requests) == 1  # one producer socket for the topic
            frames = broker.frames_on("/ws/v2/producer/persistent/public/default/t")
            assert len(frames) == 2
            assert frames[0]["context"] != frames[1]["context"]
            return frames[0]

    frame = run(scenario())
    assert set(frame) == {"payload", "properties", "context"}
    assert base64.b64decode(frame["payload"], validate=True) == payload
    assert frame["properties"] == {"messageType": "request", "a": "1"}
    assert isinstance(frame["context"], str)


def test_publish_returns_only_once_the_broker_confirms() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def held(ws: ServerConnection, frame: Frame) -> Frame | None:
            await release.wait()
            return await confirm(ws, frame)

        async with fake_broker(held) as broker:
            transport = WebSocketTransport(broker.url())
            sending = asyncio.ensure_future(transport.publish("t", message()))
            await until(lambda: len(broker.frames) == 1)
            await asyncio.sleep(0.1)
            assert not sending.done()
            release.set()
            await within(sending)
            await transport.close()

    run(scenario())


def test_answers_are_matched_to_messages_by_context() -> None:
    """Two messages in flight, answered in reverse order: each gets its own answer."""

    async def scenario() -> tuple[BaseException | None, BaseException | None]:
        waiting: list[Frame] = []
        both = asyncio.Event()

        async def reversed_answers(ws: ServerConnection, frame: Frame) -> Frame | None:
            n = frame["properties"]["n"]
            if n == "0":
                return await confirm(ws, frame)
            waiting.append(frame)
            if len(waiting) == 2:
                both.set()
            await both.wait()
            if n == "2":
                return await confirm(ws, frame)
            await asyncio.sleep(0.05)  # after the answer to "2"
            return {"result": "send-error:1", "errorMsg": "no", "context": frame["context"]}

        async with fake_broker(reversed_answers) as broker:
            transport = WebSocketTransport(broker.url())
            await transport.publish("t", message(n="0"))
            results = await within(
                asyncio.gather(
                    transport.publish("t", message(n="1")),
                    transport.publish("t", message(n="2")),
                    return_exceptions=True,
                )
            )
            await transport.close()
            assert len(broker.frames) == 3
            first, second = results
            return first, second

    first, second = run(scenario())
    assert isinstance(first, TransportError)
    assert "no" in str(first)
    assert second is None


def test_messages_go_one_at_a_time_until_the_first_is_confirmed() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def first_held(ws: ServerConnection, frame: Frame) -> Frame | None:
            if frame["properties"]["n"] == "0":
                await release.wait()
            return await confirm(ws, frame)

        async with fake_broker(first_held) as broker:
            transport = WebSocketTransport(broker.url())
            sending = asyncio.gather(
                transport.publish("t", message(n="0")),
                transport.publish("t", message(n="1")),
            )
            await until(lambda: len(broker.frames) == 1)
            await asyncio.sleep(0.1)
            assert len(broker.frames) == 1  # the second waits for the first's answer
            release.set()
            await within(sending)
            assert [f["properties"]["n"] for _, f in broker.frames] == ["0", "1"]
            await transport.close()

    run(scenario())


@pytest.mark.parametrize(
    "refusal",
    [
        {"result": "send-error:3", "errorMsg": "Topic is fenced"},
        {"result": "send-error:3", "errorMsg": "Topic is fenced", "context": "unknown"},
    ],
    ids=["with-context", "without-known-context"],
)
def test_a_refusal_raises_transport_error_with_the_broker_reason(refusal: Frame) -> None:
    async def scenario() -> TransportError:
        async def refuse(ws: ServerConnection, frame: Frame) -> Frame | None:
            if "context" not in refusal:
                return {**refusal, "context": frame["context"]}
            return refusal

        async with fake_broker(refuse) as broker:
            transport = WebSocketTransport(broker.url())
            with pytest.raises(TransportError) as info:
                await within(transport.publish("topic-x", message()))
            await transport.close()
            return info.value

    error = run(scenario())
    assert not isinstance(error, AuthenticationError)
    assert "refused" in str(error)
    assert "topic-x" in str(error)
    assert "Topic is fenced" in str(error)


def test_a_broker_that_never_answers_times_out_within_operation_timeout() -> None:
    async def silent(ws: ServerConnection, frame: Frame) -> Frame | None:
        return None

    async def scenario() -> tuple[TransportError, float]:
        async with fake_broker(silent) as broker:
            transport = WebSocketTransport(broker.url(), TransportOptions(operation_timeout=0.3))
            start = time.monotonic()
            with pytest.raises(TransportError) as info:
                await within(transport.publish("t", message()))
            elapsed = time.monotonic() - start
            await within(transport.close())
            return info.value, elapsed

    error, elapsed = run(scenario())
    assert "did not confirm" in str(error)
    assert "0.3 s" in str(error)
    assert 0.25 <= elapsed < 2


def test_a_connection_closed_while_waiting_for_the_answer_fails_the_publish() -> None:
    async def hang_up(ws: ServerConnection, frame: Frame) -> Frame | None:
        await ws.close()
        return None

    async def scenario() -> TransportError:
        async with fake_broker(hang_up) as broker:
            transport = WebSocketTransport(broker.url())
            with pytest.raises(TransportError) as info:
                await within(transport.publish("t", message()))
            await within(transport.close())
            return info.value

    assert "closed" in str(run(scenario()))


def test_a_producer_closed_by_the_broker_while_idle_is_made_again() -> None:
    async def scenario() -> list[str]:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url())
            await transport.publish("t", message(n="0"))
            (idle,) = broker.connections
            await within(idle.close())  # the broker drops the idle producer connection
            await until(lambda: len(broker.finished) == 1)
            await asyncio.sleep(0.05)  # the client sees the connection closed
            await within(transport.publish("t", message(n="1")))
            await transport.close()
            assert len(broker.connections) == 2
            return [f["properties"]["n"] for _, f in broker.frames]

    assert run(scenario()) == ["0", "1"]


def test_publish_while_the_broker_closes_the_producer_is_bounded() -> None:
    async def scenario() -> bool:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url(), TransportOptions(operation_timeout=0.3))
            await transport.publish("t", message(n="0"))
            (ws,) = broker.connections
            async with closing_slowly(ws):
                sending = asyncio.ensure_future(transport.publish("t", message(n="1")))
                done, _ = await asyncio.wait({sending}, timeout=1.0)
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError, TransportError):
                    await sending
            await within(transport.close())
            return sending in done

    assert run(scenario()), "publish did not end within 1 s (operation_timeout 0.3 s)"


def test_a_producer_the_broker_is_closing_is_made_again() -> None:
    async def scenario() -> tuple[bool, int]:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url(), TransportOptions(operation_timeout=0.3))
            await transport.publish("t", message(n="0"))
            (ws,) = broker.connections
            async with closing_slowly(ws):
                try:
                    await within(transport.publish("t", message(n="1")), 1.0)
                    sent = True
                except (asyncio.TimeoutError, TransportError):
                    sent = False
            await within(transport.close())
            return sent, len(broker.connections)

    assert run(scenario()) == (True, 2)


def test_prepare_opens_a_producer_and_release_closes_it() -> None:
    async def scenario() -> None:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url())
            await within(transport.prepare("t"))
            assert broker.paths == ["/ws/v2/producer/persistent/public/default/t"]
            assert broker.frames == []
            await within(transport.release("t"))
            await until(lambda: len(broker.finished) == 1)
            await transport.close()

    run(scenario())


def test_producers_beyond_max_producers_are_closed() -> None:
    async def scenario() -> None:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url(), TransportOptions(max_producers=1))
            await transport.publish("a", message())
            await transport.publish("b", message())
            await until(lambda: broker.finished == ["/ws/v2/producer/persistent/public/default/a"])
            await transport.close()
            await until(lambda: len(broker.finished) == 2)

    run(scenario())


# --- connecting and authentication --------------------------------------------------------


def test_token_and_headers_go_in_every_handshake() -> None:
    async def scenario() -> list[Request]:
        async with fake_broker() as broker:
            options = TransportOptions(token="s3cret", headers={"X-Backend": "climate"})
            transport = WebSocketTransport(broker.url(), options)
            await transport.publish("t", message())
            await transport.subscribe("t", "sub")
            await transport.close()
            return broker.requests

    requests = run(scenario())
    assert len(requests) == 2
    for request in requests:
        assert request.headers.get_all("Authorization") == ["Bearer s3cret"]
        assert request.headers.get_all("X-Backend") == ["climate"]


def test_without_a_token_no_authorization_header_is_sent() -> None:
    async def scenario() -> list[Request]:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url("/ws"))
            await transport.publish("t", message())
            await transport.close()
            return broker.requests

    (request,) = run(scenario())
    assert "Authorization" not in request.headers


@pytest.mark.parametrize(
    ("status", "error"), [(401, AuthenticationError), (403, AuthorizationError)]
)
@pytest.mark.parametrize("action", ["publish", "subscribe"])
def test_a_refused_handshake_is_an_authentication_or_authorization_error(
    status: int, error: type[TransportError], action: str
) -> None:
    async def scenario() -> TransportError:
        async with fake_broker(refuse=lambda request: status) as broker:
            transport = WebSocketTransport(broker.url(), TransportOptions(token="wrong"))
            attempt: Awaitable[object] = (
                transport.publish("t", message())
                if action == "publish"
                else transport.subscribe("t", "sub")
            )
            with pytest.raises(error) as info:
                await within(attempt)
            await transport.close()
            assert broker.frames == []
            return info.value

    text = str(run(scenario()))
    assert f"HTTP {status}" in text
    assert "<" not in text  # no HTML page quoted
    assert "Jetty" not in text
    if status == 401:
        assert "DEMESSAGING_TOKEN" in text
    else:
        assert "refused with 403" in text  # the broker's body
        assert "the role may not do this" in text


def test_other_handshake_refusals_are_transport_errors() -> None:
    async def scenario() -> TransportError:
        async with fake_broker(refuse=lambda request: 500) as broker:
            transport = WebSocketTransport(broker.url())
            with pytest.raises(TransportError) as info:
                await within(transport.subscribe("t", "sub"))
            await transport.close()
            return info.value

    error = run(scenario())
    assert not isinstance(error, AuthenticationError)
    assert "HTTP 500" in str(error)


def test_a_broker_that_never_completes_the_handshake_times_out() -> None:
    async def scenario() -> tuple[TransportError, float]:
        writers: list[asyncio.StreamWriter] = []

        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)  # accept, read the request, never answer

        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            options = TransportOptions(operation_timeout=0.3)
            transport = WebSocketTransport(f"ws://127.0.0.1:{port}", options)
            start = time.monotonic()
            with pytest.raises(TransportError) as info:
                await within(transport.subscribe("t", "sub"))
            elapsed = time.monotonic() - start
            await transport.close()
        finally:
            for writer in writers:
                writer.close()
            server.close()
            await within(server.wait_closed())
        return info.value, elapsed

    error, elapsed = run(scenario())
    assert "cannot reach" in str(error)
    assert elapsed < 2


def test_a_broker_that_is_not_there_is_a_transport_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def scenario() -> TransportError:
        transport = WebSocketTransport(f"ws://127.0.0.1:{port}/ws")
        with pytest.raises(BrokerUnreachableError) as info:
            await within(transport.publish("t", message()))
        await transport.close()
        return info.value

    error = run(scenario())
    assert str(error).startswith(
        f"cannot reach the broker at ws://127.0.0.1:{port}/ws: connection refused; "
    )
    assert "DEMESSAGING_BROKER_URL" in str(error)


# --- consuming ----------------------------------------------------------------------------


def test_deliveries_become_messages_and_ack_sends_their_id() -> None:
    async def scenario() -> tuple[list[Message], list[Frame]]:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url())
            sub = await transport.subscribe("t", "sub")
            ws = await within(broker.consumers.get())
            await ws.send(delivery("CAEQAA==", b"\x00\x01binary", messageType="request"))
            await ws.send(json.dumps({"messageId": "CAEQAQ==", "payload": ""}))
            got = [await within(sub.receive()), await within(sub.receive())]
            for m in got:
                await sub.ack(m)
            await until(lambda: len(acks(broker)) == 2)
            await transport.close()
            return got, acks(broker)

    got, frames = run(scenario())
    assert got[0].payload == b"\x00\x01binary"
    assert dict(got[0].properties) == {"messageType": "request"}
    assert got[0].message_id == "CAEQAA=="
    assert got[1].payload == b""
    assert dict(got[1].properties) == {}
    assert frames == [{"messageId": "CAEQAA=="}, {"messageId": "CAEQAQ=="}]


def test_nack_on_pulsar_sends_a_negative_acknowledgement() -> None:
    async def scenario() -> list[Frame]:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url())
            sub = await transport.subscribe("t", "sub")
            ws = await within(broker.consumers.get())
            await ws.send(delivery("id-1", b"x"))
            await sub.nack(await within(sub.receive()))
            await until(lambda: len(acks(broker)) == 1)
            await sub.unsubscribe()
            await until(lambda: len(broker.finished) == 1)
            await transport.close()
            return acks(broker)

    assert run(scenario()) == [
        {"type": "negativeAcknowledge", "messageId": "id-1"},
        {"type": "unsubscribe"},
    ]


def test_nack_and_unsubscribe_on_dasf_broker_send_nothing() -> None:
    async def scenario() -> list[Frame]:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url("/ws"))
            sub = await transport.subscribe("t", "sub")
            ws = await within(broker.consumers.get())
            await ws.send(delivery("1", b"x"))
            await ws.send(delivery("2", b"y"))
            await sub.nack(await within(sub.receive()))
            await sub.ack(await within(sub.receive()))
            await until(lambda: len(broker.frames) >= 1)
            await sub.unsubscribe()
            await until(lambda: len(broker.finished) == 1)
            await transport.close()
            return [f for _, f in broker.frames]

    assert run(scenario()) == [{"messageId": "2"}]


def test_malformed_frames_are_skipped() -> None:
    bad: list[str | bytes] = [
        "not json",
        b"\xff\xfe",
        json.dumps({"messageId": "1", "payload": "***not base64***"}),
        json.dumps({"messageId": "2", "payload": "aGk"}),  # bad padding
        json.dumps({"messageId": "2b", "payload": "aGVs!bG8="}),  # not the base64 alphabet
        json.dumps({"payload": b64(b"no id")}),
        json.dumps(["a", "list"]),
        json.dumps("a string"),
        json.dumps({"messageId": "3", "payload": b64(b"x"), "properties": ["a"]}),
        json.dumps({"messageId": "4", "payload": 12}),
    ]

    async def scenario() -> Message:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url())
            sub = await transport.subscribe("t", "sub")
            ws = await within(broker.consumers.get())
            for frame in bad:
                await ws.send(frame)
            await ws.send(delivery("good", b"payload", k="v"))
            got = await within(sub.receive())
            await transport.close()
            return got

    got = run(scenario())
    assert got.message_id == "good"
    assert got.payload == b"payload"
    assert dict(got.properties) == {"k": "v"}


def test_closing_a_subscription_ends_a_pending_receive() -> None:
    async def scenario() -> None:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url())
            sub = await transport.subscribe("t", "sub")
            receiving = asyncio.ensure_future(sub.receive())
            await asyncio.sleep(0.05)
            await within(sub.close())
            with pytest.raises(TransportError, match="closed"):
                await within(receiving)
            await until(lambda: len(broker.finished) == 1)
            await transport.close()

    run(scenario())


def test_close_closes_every_producer_and_consumer() -> None:
    async def scenario() -> None:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url())
            await transport.publish("a", message())
            await transport.publish("b", message())
            await transport.subscribe("c", "sub")
            await transport.subscribe("c", "other")
            await within(broker.consumers.get())
            await within(broker.consumers.get())
            assert broker.finished == []
            await within(transport.close())
            await until(lambda: len(broker.finished) == 4)

    run(scenario())


# --- pull mode: permits -------------------------------------------------------------------


def test_with_prefetch_one_each_receive_asks_for_one_message_however_many_are_unacked() -> None:
    async def scenario() -> tuple[list[int], list[int], list[int]]:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url())
            sub = await transport.subscribe("t", "sub", prefetch=1)
            ws = await within(broker.consumers.get())
            await asyncio.sleep(0.1)
            before = permits(broker)  # subscribing asks for nothing
            got = []
            for n in range(3):  # none acknowledged: a backend holding heads that gather
                receiving = asyncio.ensure_future(sub.receive())
                await until(lambda n=n: len(permits(broker)) == n + 1)
                await ws.send(delivery(f"id-{n}", b"x"))
                got.append(await within(receiving))
            await asyncio.sleep(0.1)
            after = permits(broker)  # nothing asked for while nobody receives
            for m in got:
                await sub.ack(m)
            await until(lambda: len(acks(broker)) == 3)
            await transport.close()
            return before, after, permits(broker)

    before, after, total = run(scenario())
    assert before == []
    assert after == [1, 1, 1]
    assert total == [1, 1, 1]  # acknowledging asks for nothing either


def test_permits_are_topped_up_to_prefetch_once_half_have_come() -> None:
    async def scenario() -> list[list[int]]:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url())
            sub = await transport.subscribe("t", "sub", prefetch=4)
            ws = await within(broker.consumers.get())
            seen = []
            for n in range(5):
                receiving = asyncio.ensure_future(sub.receive())
                await asyncio.sleep(0.05)
                seen.append(permits(broker))
                await ws.send(delivery(f"id-{n}", b"x"))
                await within(receiving)
            await transport.close()
            return seen

    # 4 asked for; with 3 on their way, nothing more; with 2 (half), 2 more make 4 again
    assert run(scenario()) == [[4], [4], [4, 2], [4, 2], [4, 2, 2]]


def test_a_malformed_frame_uses_a_permit_and_another_is_asked_for() -> None:
    async def scenario() -> tuple[Message, list[int]]:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url())
            sub = await transport.subscribe("t", "sub", prefetch=1)
            ws = await within(broker.consumers.get())
            receiving = asyncio.ensure_future(sub.receive())
            await until(lambda: permits(broker) == [1])
            await ws.send("not json")
            await until(lambda: permits(broker) == [1, 1])
            await ws.send(delivery("good", b"x"))
            got = await within(receiving)
            await transport.close()
            return got, permits(broker)

    got, asked = run(scenario())
    assert got.message_id == "good"
    assert asked == [1, 1]


def test_a_receive_given_up_leaves_its_permit_for_the_next() -> None:
    async def scenario() -> tuple[Message, list[int]]:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url())
            sub = await transport.subscribe("t", "sub", prefetch=1)
            ws = await within(broker.consumers.get())
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(sub.receive(), 0.2)
            receiving = asyncio.ensure_future(sub.receive())
            await asyncio.sleep(0.1)
            await ws.send(delivery("late", b"x"))
            got = await within(receiving)
            await transport.close()
            return got, permits(broker)

    got, asked = run(scenario())
    assert got.message_id == "late"
    assert asked == [1]  # the message asked for first is the one received: no second ask


def test_a_new_consumer_socket_is_asked_for_messages_again() -> None:
    async def scenario() -> tuple[Message, list[int]]:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url(), TransportOptions(operation_timeout=2))
            sub = await transport.subscribe("t", "sub", prefetch=3)
            first = await within(broker.consumers.get())
            receiving = asyncio.ensure_future(sub.receive())
            await until(lambda: permits(broker) == [3])
            await within(first.close())  # the permits went with it
            second = await next_consumer(broker, receiving)
            await until(lambda: len(permits(broker)) == 2)
            await second.send(delivery("after", b"again"))
            got = await within(receiving)
            await transport.close()
            return got, permits(broker)

    got, asked = run(scenario())
    assert got.message_id == "after"
    assert asked == [3, 3]  # the first socket's 3, then 3 on the new one


def test_dasf_broker_consumers_are_asked_for_nothing() -> None:
    async def scenario() -> tuple[Message, list[int]]:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url("/ws"))
            sub = await transport.subscribe("t", "sub", prefetch=1)
            ws = await within(broker.consumers.get())
            receiving = asyncio.ensure_future(sub.receive())
            await asyncio.sleep(0.1)
            await ws.send(delivery("1", b"x"))
            got = await within(receiving)
            await transport.close()
            return got, permits(broker)

    got, asked = run(scenario())
    assert got.message_id == "1"
    assert asked == []


# --- reconnecting -------------------------------------------------------------------------


def test_a_consumer_closed_by_the_broker_subscribes_again() -> None:
    async def scenario() -> tuple[Message, list[str], list[Frame]]:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url(), TransportOptions(operation_timeout=2))
            sub = await transport.subscribe("t", "sub", prefetch=3)
            first = await within(broker.consumers.get())
            await within(first.close())  # a broker restart, say
            receiving = asyncio.ensure_future(sub.receive())
            second = await next_consumer(broker, receiving)
            await second.send(delivery("after", b"again"))
            got = await within(receiving)
            await sub.ack(got)
            await until(lambda: len(acks(broker)) == 1)
            await transport.close()
            return got, broker.paths, acks(broker, broker.paths[1])

    got, paths, frames = run(scenario())
    assert got.payload == b"again"
    expected = (
        "/ws/v2/consumer/persistent/public/default/t/sub"
        "?subscriptionType=Shared&receiverQueueSize=3&negativeAckRedeliveryDelay=1000"
        "&pullMode=true"
    )
    assert paths == [expected, expected]
    assert frames == [{"messageId": "after"}]  # acknowledged on the new connection


def test_reconnecting_retries_while_the_broker_refuses() -> None:
    async def scenario() -> Message:
        def refuse(request: Request) -> int | None:
            return 503 if 2 <= len(broker.requests) <= 3 else None

        async with fake_broker(refuse=refuse) as broker:
            transport = WebSocketTransport(broker.url(), TransportOptions(operation_timeout=3))
            sub = await transport.subscribe("t", "sub")
            first = await within(broker.consumers.get())
            await within(first.close())
            receiving = asyncio.ensure_future(sub.receive())
            ws = await next_consumer(broker, receiving)
            assert len(broker.requests) == 4  # two refused, then accepted
            await ws.send(delivery("m", b"back"))
            got = await within(receiving)
            await transport.close()
            return got

    assert run(scenario()).payload == b"back"


def test_reconnecting_gives_up_after_operation_timeout() -> None:
    async def scenario() -> tuple[TransportError, float]:
        def refuse(request: Request) -> int | None:
            return 503 if len(broker.requests) > 1 else None

        async with fake_broker(refuse=refuse) as broker:
            transport = WebSocketTransport(broker.url(), TransportOptions(operation_timeout=0.5))
            sub = await transport.subscribe("t", "sub")
            first = await within(broker.consumers.get())
            await within(first.close())
            start = time.monotonic()
            with pytest.raises(TransportError) as info:
                await within(sub.receive())
            elapsed = time.monotonic() - start
            await transport.close()
            return info.value, elapsed

    error, elapsed = run(scenario())
    assert not isinstance(error, AuthenticationError)
    assert "HTTP 503" in str(error)
    assert elapsed < 2


def test_reconnecting_with_refused_credentials_raises_at_once() -> None:
    async def scenario() -> float:
        def refuse(request: Request) -> int | None:
            return 401 if len(broker.requests) > 1 else None

        async with fake_broker(refuse=refuse) as broker:
            transport = WebSocketTransport(broker.url(), TransportOptions(operation_timeout=3))
            sub = await transport.subscribe("t", "sub")
            first = await within(broker.consumers.get())
            await within(first.close())
            start = time.monotonic()
            with pytest.raises(AuthenticationError):
                await within(sub.receive())
            elapsed = time.monotonic() - start
            assert len(broker.requests) == 2  # no retries
            await transport.close()
            return elapsed

    assert run(scenario()) < 1


# --- frame size ---------------------------------------------------------------------------


@pytest.mark.parametrize("frame_size", [4096, 65536, 200_000, DEFAULT_FRAME_SIZE, 16 * 2**20])
def test_max_message_size_fits_a_frame(frame_size: int) -> None:
    transport = WebSocketTransport("ws://127.0.0.1:1", TransportOptions(frame_size=frame_size))
    limit = transport.max_message_size
    assert limit == payload_limit(frame_size)
    assert limit % 3 == 0  # base64 without padding
    encoded = 4 * limit // 3
    assert encoded <= frame_size - min(frame_size // 2, 64 * 1024)  # room for properties
    assert encoded > frame_size // 3  # and not needlessly small


def test_a_payload_of_max_message_size_is_sent_and_its_frame_fits() -> None:
    frame_size = 4096

    async def scenario() -> str:
        async with fake_broker() as broker:
            options = TransportOptions(frame_size=frame_size)
            transport = WebSocketTransport(broker.url(), options)
            assert transport.max_message_size is not None
            payload = b"\xff" * transport.max_message_size
            await within(transport.publish("t", message(payload, messageType="request")))
            await transport.close()
            (raw,) = broker.raw
            return raw

    assert len(run(scenario()).encode()) <= frame_size


@pytest.mark.parametrize(
    ("payload_size", "properties"),
    [(4096, {}), (100, {"big": "p" * 4096})],
    ids=["large-payload", "large-properties"],
)
def test_a_message_over_frame_size_is_refused_before_sending(
    payload_size: int, properties: dict[str, str]
) -> None:
    async def scenario() -> TransportError:
        async with fake_broker() as broker:
            transport = WebSocketTransport(broker.url(), TransportOptions(frame_size=4096))
            with pytest.raises(TransportError) as info:
                await within(transport.publish("t", message(b"x" * payload_size, **properties)))
            await transport.close()
            assert broker.requests == []  # not even a producer was made
            return info.value

    text = str(run(scenario()))
    assert "exceeds the frame size of 4096 bytes" in text
    assert "frame_size" in text
