"""Whole calls in one process: client -> envelope -> in-memory broker -> listener -> reply."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from demessaging.backend import ListenerThread
from demessaging.backend import listener as listener_module
from demessaging.backend.dispatcher import Dispatcher, Outcome
from demessaging.backend.listener import DEFAULT_SUBSCRIPTION, Listener
from demessaging.client import Client, connection
from demessaging.client.portal import Portal
from demessaging.config import Settings
from demessaging.core.loader import load_module
from demessaging.errors import (
    CallTimeoutError,
    PayloadTooLargeError,
    ProtocolError,
    RemoteError,
    TransportError,
)
from demessaging.protocol import Message, Prop, parse_error
from demessaging.protocol.control import CHECK
from demessaging.transport.memory import MemoryBroker, MemoryTransport

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CLIMATE = EXAMPLES / "climate.py"

SLOW = '''
import threading
import time

LOCK = threading.Lock()
RUNNING = 0
PEAK = 0
STARTED = threading.Event()
CALLS = []


def slow(seconds: float) -> float:
    """Sleep, tracking how many calls run at once."""
    global RUNNING, PEAK
    with LOCK:
        RUNNING += 1
        PEAK = max(PEAK, RUNNING)
    STARTED.set()
    CALLS.append(seconds)
    time.sleep(seconds)
    with LOCK:
        RUNNING -= 1
    return seconds


def fail(text: str) -> None:
    """Raise KeyError."""
    raise KeyError(text)
'''


@pytest.fixture
def slow_module(write_backend: Callable[[str], Path]) -> object:
    return load_module(write_backend(SLOW))


def test_function_call_with_numpy_argument(
    serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(CLIMATE)
    c = client()
    assert c.call({"func_name": "total", "values": np.arange(5.0)}) == 10.0
    assert c.call({"func_name": "total", "values": [[1, 2], [3, 4]], "axis": 0}) == [4.0, 6.0]


def test_instance_and_static_methods(
    serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(CLIMATE)
    c = client()
    request = {
        "class_name": "TimeSeries",
        "values": [1.0, 2.0, 3.0, 4.0],
        "start": "2024-01-01",
        "function": {"func_name": "resample", "factor": 2},
    }
    assert c.call(request).tolist() == [1.5, 3.5]  # an array comes back as an array
    static = {
        "class_name": "TimeSeries",
        "function": {"func_name": "days_between", "first": "2024-01-01", "last": "2024-03-01"},
    }
    assert c.call(static) == 60


def test_remote_error_carries_type_message_and_stage(
    serve: Callable[..., ListenerThread], client: Callable[..., Client], slow_module: object
) -> None:
    serve(slow_module)
    c = client()
    with pytest.raises(RemoteError) as info:
        c.call({"func_name": "fail", "text": "no such station"}, member="fail")
    assert info.value.remote_type == "KeyError"
    assert "no such station" in info.value.message
    assert info.value.stage == "execution"
    assert info.value.remote_traceback is None


def test_debug_mode_sends_the_traceback(
    serve: Callable[..., ListenerThread], client: Callable[..., Client], slow_module: object
) -> None:
    serve(slow_module, debug=True)
    with pytest.raises(RemoteError) as info:
        client().call({"func_name": "fail", "text": "x"})
    assert info.value.remote_traceback is not None
    assert "raise KeyError(text)" in info.value.remote_traceback


def test_invalid_requests_are_answered_with_request_errors(
    serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(CLIMATE)
    c = client()
    for request in (
        {"func_name": "os.system", "command": "true"},
        {"func_name": "__import__"},
        b"\x00\xffnot json",
    ):
        with pytest.raises(RemoteError) as info:
            c.call(request)
        assert info.value.stage == "request"


def test_call_to_a_topic_without_backend_times_out_within_its_deadline(
    client: Callable[..., Client],
) -> None:
    c = client("nobody-listens", timeout=30)
    start = time.monotonic()
    with pytest.raises(CallTimeoutError) as info:
        c.call({"func_name": "total", "values": [1]}, timeout=0.3, member="total")
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 3
    assert isinstance(info.value, TimeoutError)
    assert "nobody-listens" in str(info.value)
    assert "'total'" in str(info.value)


def test_a_closed_client_deletes_its_response_subscription(
    serve: Callable[..., ListenerThread], broker: MemoryBroker
) -> None:
    serve(CLIMATE)
    with Client("t", transport=MemoryTransport(broker), timeout=10) as c:
        c.ping()
        assert c.response_topic in broker.subscriptions()
    assert c.response_topic not in broker.subscriptions()
    assert list(broker.subscriptions()) == ["t", "t_control"]  # the backend's


def test_client_default_timeout_applies(client: Callable[..., Client]) -> None:
    c = client("nobody-listens", timeout=0.2)
    with pytest.raises(CallTimeoutError) as info:
        c.ping()
    assert info.value.timeout == 0.2


def test_ping_info_and_api_info(
    serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(CLIMATE)
    c = client()
    assert 0 <= c.ping() < 5
    info = c.info()
    assert info["title"] == "climate"
    assert "FuncTotal" in info["$defs"]
    api = c.api_info()
    assert [f["name"] for f in api["functions"]] == [
        "anomalies",
        "regional_mean",
        "summarize",
        "total",
    ]
    assert [m["name"] for m in api["classes"][0]["methods"]] == [
        "mean",
        "between",
        "resample",
        "days_between",
    ]


def test_many_concurrent_async_calls(
    serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(CLIMATE, workers=8)
    c = client()

    async def many() -> list[float]:
        calls = [c.acall({"func_name": "total", "values": [i, i]}) for i in range(200)]
        return await asyncio.gather(*calls)

    assert asyncio.run(many()) == [2.0 * i for i in range(200)]


def test_calls_from_many_threads_share_one_event_loop(
    serve: Callable[..., ListenerThread],
    client: Callable[..., Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    portals: list[Portal] = []

    class CountedPortal(Portal):
        def __init__(self) -> None:
            super().__init__()
            portals.append(self)

    monkeypatch.setattr(connection, "Portal", CountedPortal)
    serve(CLIMATE)
    c = client()
    results: dict[int, float] = {}
    errors: list[BaseException] = []
    together = threading.Barrier(16)

    def work(i: int) -> None:
        try:
            together.wait(10)  # every thread makes its first call at the same moment
            for j in range(5):
                results[i * 10 + j] = c.call({"func_name": "total", "values": [i, j]})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert results == {i * 10 + j: float(i + j) for i in range(16) for j in range(5)}
    assert len(portals) == 1


def test_workers_bound_the_calls_in_flight(
    serve: Callable[..., ListenerThread], client: Callable[..., Client], slow_module: object
) -> None:
    serve(slow_module, workers=2)
    c = client()

    async def burst() -> list[float]:
        return await asyncio.gather(
            *(c.acall({"func_name": "slow", "seconds": 0.1}) for _ in range(8))
        )

    assert asyncio.run(burst()) == [0.1] * 8
    assert slow_module.PEAK == 2  # type: ignore[attr-defined]


def test_request_is_acknowledged_only_after_the_reply(
    broker: MemoryBroker,
    serve: Callable[..., ListenerThread],
    client: Callable[..., Client],
    slow_module: object,
) -> None:
    serve(slow_module, topic="acks", workers=1)
    c = client("acks")

    async def watch() -> tuple[int, float, int]:
        call = asyncio.ensure_future(c.acall({"func_name": "slow", "seconds": 0.5}))
        await asyncio.get_running_loop().run_in_executor(None, slow_module.STARTED.wait, 5)  # type: ignore[attr-defined]
        during = broker.backlog("acks", DEFAULT_SUBSCRIPTION)
        result = await call
        await asyncio.sleep(0.05)
        return during, result, broker.backlog("acks", DEFAULT_SUBSCRIPTION)

    during, result, after = asyncio.run(watch())
    assert (during, result, after) == (1, 0.5, 0)


def test_a_request_whose_caller_stopped_waiting_is_not_run(
    monkeypatch: pytest.MonkeyPatch,
    serve: Callable[..., ListenerThread],
    client: Callable[..., Client],
    slow_module: object,
) -> None:
    monkeypatch.setattr(listener_module, "CLOCK_SKEW", 0.0)
    backend = serve(slow_module, topic="late", workers=1)
    c = client("late")

    async def calls() -> tuple[float, BaseException | float]:
        busy = asyncio.ensure_future(c.acall({"func_name": "slow", "seconds": 0.6}))
        await asyncio.get_running_loop().run_in_executor(None, slow_module.STARTED.wait, 5)  # type: ignore[attr-defined]
        late = c.acall({"func_name": "slow", "seconds": 0.01}, timeout=0.2)  # waits for the worker
        gave_up = await asyncio.gather(late, return_exceptions=True)
        return await busy, gave_up[0]

    first, second = asyncio.run(calls())
    assert first == 0.6
    assert isinstance(second, CallTimeoutError)
    deadline = time.monotonic() + 5
    while backend.listener.handled < 2:  # the late request is taken, answered and acknowledged
        assert time.monotonic() < deadline, "the backend never took the late request"
        time.sleep(0.02)
    assert slow_module.PEAK == 1  # type: ignore[attr-defined]
    assert slow_module.RUNNING == 0  # type: ignore[attr-defined]
    assert slow_module.CALLS == [0.6]  # type: ignore[attr-defined]
    # a caller whose clock runs far behind is still told
    request = connection.make_request
    monkeypatch.setattr(
        connection, "make_request", lambda *a, **k: request(*a, **{**k, "deadline": 1.0})
    )
    with pytest.raises(RemoteError, match="DeadlineExceeded: the call's deadline passed"):
        c.call({"func_name": "slow", "seconds": 0.01})


def test_stop_finishes_calls_in_flight(
    serve: Callable[..., ListenerThread], client: Callable[..., Client], slow_module: object
) -> None:
    backend = serve(slow_module, topic="graceful")
    c = client("graceful")
    results: list[float] = []
    caller = threading.Thread(
        target=lambda: results.append(c.call({"func_name": "slow", "seconds": 0.4}))
    )
    caller.start()
    assert slow_module.STARTED.wait(5)  # type: ignore[attr-defined]
    backend.stop()
    caller.join(10)
    assert results == [0.4]
    with pytest.raises(CallTimeoutError):
        c.call({"func_name": "slow", "seconds": 0}, timeout=0.3)


def test_malformed_messages_do_not_stop_the_backend(
    broker: MemoryBroker, serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    backend = serve(CLIMATE, topic="robust")
    raw = MemoryTransport(broker)
    junk = [
        Message(payload=os.urandom(64), properties={}),
        Message(payload=b"{}", properties={Prop.MESSAGE_TYPE: "request"}),
        Message(payload=b"", properties={Prop.MESSAGE_TYPE: "request", Prop.REQUEST_CONTEXT: "1"}),
        Message(
            payload=b"",
            properties={
                Prop.MESSAGE_TYPE: "bogus",
                Prop.REQUEST_CONTEXT: "1",
                Prop.RESPONSE_TOPIC: "x",
            },
        ),
    ]

    async def send() -> None:
        for message in junk:
            await raw.publish("robust", message)

    asyncio.run(send())
    assert client("robust").call({"func_name": "total", "values": [1, 2]}) == 3.0
    deadline = time.monotonic() + 5
    while broker.backlog("robust", DEFAULT_SUBSCRIPTION) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert broker.backlog("robust", DEFAULT_SUBSCRIPTION) == 0  # junk was acknowledged, not stuck
    assert backend.listener.ready.is_set()


class FlakyTransport(MemoryTransport):
    """Fails the first reply it publishes."""

    failed = False

    async def publish(self, topic: str, message: Message) -> None:
        if message.properties.get(Prop.MESSAGE_TYPE) == "response" and not self.failed:
            self.failed = True
            raise TransportError("broker went away")
        await super().publish(topic, message)


def test_a_reply_that_cannot_be_sent_means_redelivery(
    broker: MemoryBroker, client: Callable[..., Client]
) -> None:
    from demessaging.backend import Dispatcher, Listener

    transport = FlakyTransport(broker)
    listener = Listener(Dispatcher.from_module(CLIMATE), transport, "flaky")
    with ListenerThread(listener):
        assert client("flaky").call({"func_name": "total", "values": [2, 3]}) == 5.0
    assert transport.failed
    assert listener.handled == 2  # the ping that chose the encoding, and the call once


def test_an_internal_failure_is_reported_to_the_caller(
    broker: MemoryBroker, client: Callable[..., Client]
) -> None:
    from demessaging.backend import Dispatcher, Listener

    class BrokenDispatcher(Dispatcher):
        def handle(self, payload: bytes | bytearray, content_type: str = "", *_: object) -> Outcome:
            raise RuntimeError("dispatcher bug")

    listener = Listener(BrokenDispatcher.from_module(CLIMATE), MemoryTransport(broker), "internal")
    with ListenerThread(listener):
        with pytest.raises(RemoteError) as info:
            client("internal").call({"func_name": "total", "values": [1]})
        # the reply is sent before the ack: wait (bounded) for the ack to land
        deadline = time.monotonic() + 5
        while broker.backlog("internal", DEFAULT_SUBSCRIPTION) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert broker.backlog("internal", DEFAULT_SUBSCRIPTION) == 0
    assert info.value.remote_type == "RuntimeError"
    assert info.value.message == "internal error: dispatcher bug"


def small(broker: MemoryBroker, limit: int) -> MemoryTransport:
    transport = MemoryTransport(broker)
    transport.max_message_size = limit
    return transport


def test_requests_and_replies_travel_in_pieces(
    broker: MemoryBroker, client: Callable[..., Client]
) -> None:
    from demessaging.backend import Dispatcher, Listener

    listener = Listener(Dispatcher.from_module(CLIMATE), small(broker, 64), "pieces")
    with ListenerThread(listener), Client("pieces", transport=small(broker, 64), timeout=10) as c:
        values = np.arange(300.0)
        assert c.call({"func_name": "total", "values": values}) == values.sum()
        series = list(range(100))
        assert c.call({"func_name": "anomalies", "series": series}) == [v - 49.5 for v in series]
        info = c.info()  # a large property, not a large payload
        assert info["title"] == "climate"
        deadline = time.monotonic() + 5
        while not (spares := [t for t in broker.subscriptions() if "_fragments_" in t]):
            assert time.monotonic() < deadline, "no side topic was made ahead of need"
            time.sleep(0.01)
        assert len(spares) == 1  # the next request's, subscribed ahead
    leftovers = {t: subs for t, subs in broker.subscriptions().items() if "_fragments_" in t}
    assert leftovers == {}  # side subscriptions are deleted once answered
    assert broker.backlog("pieces", DEFAULT_SUBSCRIPTION) == 0


def test_client_refuses_requests_over_its_max_payload(
    broker: MemoryBroker, serve: Callable[..., ListenerThread]
) -> None:
    serve(CLIMATE, topic="capped")
    with Client("capped", transport=MemoryTransport(broker), max_payload=1000) as c:
        with pytest.raises(PayloadTooLargeError, match=r"request has \d+ bytes.*\(1000 bytes"):
            c.call({"func_name": "total", "values": list(range(1000))})
        assert c.call({"func_name": "total", "values": [1, 2]}) == 3.0


def test_client_bounds_the_memory_for_replies_in_pieces(
    broker: MemoryBroker,
) -> None:
    from demessaging.backend import Dispatcher, Listener

    listener = Listener(Dispatcher.from_module(CLIMATE), small(broker, 100), "big-replies")
    capped = Client("big-replies", transport=MemoryTransport(broker), max_payload=1000)
    with ListenerThread(listener), capped as c:
        with pytest.raises(ProtocolError, match="does not fit in the 1000 bytes"):
            c.call({"func_name": "anomalies", "series": list(range(200))})
        assert c.call({"func_name": "anomalies", "series": [1, 3]}) == [-1.0, 1.0]


def test_backend_refuses_requests_over_its_max_payload(
    broker: MemoryBroker,
) -> None:
    from demessaging.backend import Dispatcher, Listener

    listener = Listener(
        Dispatcher.from_module(CLIMATE), MemoryTransport(broker), "strict", max_payload=500
    )
    with ListenerThread(listener), Client("strict", transport=small(broker, 100)) as c:
        with pytest.raises(RemoteError) as info:
            c.call({"func_name": "total", "values": list(range(500))})
        assert c.call({"func_name": "total", "values": [1]}) == 1.0
    assert info.value.remote_type == "ProtocolError"
    assert "more than this backend takes (500 bytes)" in info.value.message


def raw_head(side: str, count: int = 3, size: str = "6") -> Message:
    return Message(
        payload=b"{}",
        properties={
            Prop.MESSAGE_TYPE: "request",
            Prop.REQUEST_CONTEXT: "c1",
            Prop.RESPONSE_TOPIC: "heads-replies",
            Prop.FRAGMENT: "0",
            Prop.NUM_FRAGMENTS: str(count),
            Prop.FRAGMENT_OFFSET: "0",
            Prop.PAYLOAD_SIZE: size,
            Prop.FRAGMENTS_TOPIC: side,
        },
    )


@pytest.mark.parametrize(
    ("side", "error"),
    [
        ("someone-elses-topic", "must name a fragments_topic of 'heads'"),
        ("heads_fragments_c1", "only 1 of 3 pieces of the request arrived within 0.3 s"),
    ],
)
def test_bad_requests_in_pieces_are_answered_with_errors(
    broker: MemoryBroker, side: str, error: str
) -> None:
    from demessaging.backend import Dispatcher, Listener

    async def exchange() -> Message:
        transport = MemoryTransport(broker)
        replies = await transport.subscribe("heads-replies", "me", shared=False)
        other = await transport.subscribe("someone-elses-topic", "theirs")
        await transport.publish("heads", raw_head(side))
        reply = await asyncio.wait_for(replies.receive(), 10)
        assert broker.backlog("someone-elses-topic", "theirs") == 0  # untouched
        await other.close()
        await transport.close()
        return reply

    listener = Listener(
        Dispatcher.from_module(CLIMATE), MemoryTransport(broker), "heads", upload_timeout=0.3
    )
    with ListenerThread(listener):
        reply = asyncio.run(exchange())
    assert reply.properties[Prop.STATUS] == "error"
    assert error in reply.payload.decode()
    assert [t for t in broker.subscriptions() if "_fragments_" in t] == []


@pytest.mark.parametrize("size", ["\u00b2", "", "-6", "6.0", "9" * 5000])
def test_a_head_with_a_malformed_payload_size_is_refused(broker: MemoryBroker, size: str) -> None:
    """``"\u00b2"`` passes ``str.isdigit()`` but not ``int()``: it once failed as a bug of ours."""
    from demessaging.backend import Dispatcher, Listener

    async def exchange() -> Message:
        transport = MemoryTransport(broker)
        replies = await transport.subscribe("heads-replies", "me", shared=False)
        await transport.publish("heads", raw_head("heads_fragments_c1", size=size))
        reply = await asyncio.wait_for(replies.receive(), 10)
        await transport.close()
        return reply

    listener = Listener(Dispatcher.from_module(CLIMATE), MemoryTransport(broker), "heads")
    with ListenerThread(listener):
        reply = asyncio.run(exchange())
    assert reply.properties[Prop.STATUS] == "error"
    assert "must give its payload_size" in reply.payload.decode()
    assert parse_error(reply).stage == "request"


def test_a_keyboard_interrupt_in_a_served_function_is_an_execution_error(
    serve: Callable[..., ListenerThread],
    client: Callable[..., Client],
    write_backend: Callable[[str], Path],
) -> None:
    path = write_backend(
        "def stop(x: int) -> int:\n    raise KeyboardInterrupt\n\n\n"
        "def ok(x: int) -> int:\n    return x\n"
    )
    backend = serve(load_module(path), topic="interrupted")
    c = client("interrupted")
    with pytest.raises(RemoteError) as info:
        c.call({"func_name": "stop", "x": 1})
    assert (info.value.remote_type, info.value.stage) == ("KeyboardInterrupt", "execution")
    assert c.call({"func_name": "ok", "x": 2}) == 2
    assert backend.listener.ready.is_set()


class RecordingTransport(MemoryTransport):
    """Remembers the properties of every message it publishes."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.sent: list[dict[str, str]] = []

    async def publish(self, topic: str, message: Message) -> None:
        self.sent.append(dict(message.properties))
        await super().publish(topic, message)


@pytest.mark.parametrize(
    ("encoding", "content_type"),
    [("msgpack", "application/vnd.demessaging.msgpack"), ("json", "application/json")],
)
def test_requests_go_in_the_clients_encoding_and_replies_come_in_kind(
    broker: MemoryBroker, encoding: str, content_type: str
) -> None:
    client_side = RecordingTransport(broker)
    backend_side = RecordingTransport(broker)
    listener = Listener(Dispatcher.from_module(CLIMATE), backend_side, "kinds")
    settings = Settings(broker_url="memory://", encoding=encoding)
    with ListenerThread(listener), Client("kinds", transport=client_side, settings=settings) as c:
        values = np.arange(12.0).reshape(3, 4)
        result = c.call({"func_name": "total", "values": values, "axis": 0})
    assert result == [12.0, 15.0, 18.0, 21.0]
    assert [p[Prop.CONTENT_TYPE] for p in client_side.sent] == [content_type]
    replies = [p for p in backend_side.sent if p[Prop.MESSAGE_TYPE] != CHECK]  # not its check
    assert [p[Prop.CONTENT_TYPE] for p in replies] == [content_type]


def test_an_unknown_content_type_is_a_request_error() -> None:
    outcome = Dispatcher.from_module(CLIMATE).handle(b"a,b", "text/csv")
    assert outcome.error is not None
    assert outcome.error.stage == "request"
    assert "unknown content type 'text/csv'" in outcome.error.message


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_nan_and_infinities_survive_both_encodings(broker: MemoryBroker, encoding: str) -> None:
    listener = Listener(Dispatcher.from_module(CLIMATE), MemoryTransport(broker), "nan")
    settings = Settings(broker_url="memory://", encoding=encoding)
    with (
        ListenerThread(listener),
        Client("nan", transport=MemoryTransport(broker), settings=settings) as c,
    ):
        columns = c.call(
            {"func_name": "total", "values": [[np.nan, 1.0], [2.0, -np.inf]], "axis": 0}
        )
        whole = c.call({"func_name": "total", "values": [1.0, np.inf]})
    assert np.isnan(columns[0])
    assert columns[1] == -np.inf
    assert whole == np.inf


class SlowSideTransport(MemoryTransport):
    """Publishes pieces to side topics slowly, as over a congested link."""

    async def publish(self, topic: str, message: Message) -> None:
        if "_fragments_" in topic:
            await asyncio.sleep(0.2)
        await super().publish(topic, message)


def test_an_abandoned_upload_neither_blocks_a_backend_nor_leaves_its_pieces(
    broker: MemoryBroker,
) -> None:
    listener = Listener(Dispatcher.from_module(CLIMATE), small(broker, 64), "abandoned", workers=1)
    slow = SlowSideTransport(broker)
    slow.max_message_size = 64
    with ListenerThread(listener), Client("abandoned", transport=slow, timeout=0.5) as c:
        with pytest.raises(CallTimeoutError):
            c.call({"func_name": "total", "values": np.arange(1000.0)})
        start = time.monotonic()
        assert c.call({"func_name": "total", "values": [1.0, 2.0]}, timeout=5) == 3.0
        assert time.monotonic() - start < 2  # the only worker was not waiting for pieces
    deadline = time.monotonic() + 5
    while any("_fragments_" in t for t in broker.subscriptions()):
        assert time.monotonic() < deadline, broker.subscriptions()
        time.sleep(0.02)


class FailingHeadTransport(MemoryTransport):
    """Sends pieces to side topics but cannot publish to the request topic."""

    async def publish(self, topic: str, message: Message) -> None:
        if "_fragments_" not in topic:
            raise TransportError("the request topic is unreachable")
        await super().publish(topic, message)


def test_a_request_whose_head_fails_leaves_no_pieces(broker: MemoryBroker) -> None:
    failing = FailingHeadTransport(broker)
    failing.max_message_size = 64
    with Client("headless", transport=failing, timeout=5) as c:
        with pytest.raises(TransportError, match="unreachable"):
            c.call({"func_name": "total", "values": np.arange(100.0)})
        deadline = time.monotonic() + 5
        while len([t for t in broker.subscriptions() if "_fragments_" in t]) > 1:  # the spare
            assert time.monotonic() < deadline, broker.subscriptions()
            time.sleep(0.02)
    assert [t for t in broker.subscriptions() if "_fragments_" in t] == []


class CountingTransport(MemoryTransport):
    """Counts the messages published to each kind of topic."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.sent: dict[str, int] = {"side": 0, "other": 0}

    async def publish(self, topic: str, message: Message) -> None:
        self.sent["side" if "_fragments_" in topic else "other"] += 1
        await super().publish(topic, message)


def test_requests_go_whole_up_to_the_message_size_and_in_pieces_above(
    broker: MemoryBroker,
) -> None:
    listener = Listener(Dispatcher.from_module(CLIMATE), small(broker, 4096), "sizes")
    counting = CountingTransport(broker)
    counting.max_message_size, counting.piece_size = 4096, 1024
    msgpack = Settings(broker_url="memory://", encoding="msgpack")
    with (
        ListenerThread(listener),
        Client("sizes", transport=counting, timeout=10, settings=msgpack) as c,
    ):
        assert c.call({"func_name": "total", "values": np.ones(300)}) == 300.0  # ~2.5 kB
        assert counting.sent == {"side": 0, "other": 1}
        assert c.call({"func_name": "total", "values": np.ones(1000)}) == 1000.0  # ~8 kB
    assert counting.sent["other"] == 3  # a ping (does the backend read pieces?), one head
    assert counting.sent["side"] == 7  # 8 kB in pieces of 1 kB (less 1 byte, for base64)


class SlowHeadReceiptTransport(SlowSideTransport):
    """Slow pieces, and the head of a request reaches the broker at once, its receipt late."""

    async def publish(self, topic: str, message: Message) -> None:
        await super().publish(topic, message)
        if "_fragments_" not in topic and Prop.NUM_FRAGMENTS in message.properties:
            await asyncio.sleep(1.0)


def test_a_call_that_times_out_waiting_for_its_head_stops_the_backend_waiting(
    broker: MemoryBroker,
) -> None:
    backend = small(broker, 64)
    listener = Listener(Dispatcher.from_module(CLIMATE), backend, "late", workers=1)
    slow = SlowHeadReceiptTransport(broker)
    slow.max_message_size = 64
    with ListenerThread(listener), Client("late", transport=slow, timeout=0.3) as c:
        with pytest.raises(CallTimeoutError):
            c.call({"func_name": "total", "values": np.arange(100.0)})
        start = time.monotonic()  # the head was sent: the backend took it, then the abort
        with Client("late", transport=MemoryTransport(broker), timeout=10) as other:
            assert other.call({"func_name": "total", "values": [1.0, 2.0]}) == 3.0
        assert time.monotonic() - start < 3  # not the 60 s of upload_timeout
    deadline = time.monotonic() + 5
    while any("_fragments_" in t for t in broker.subscriptions()):
        assert time.monotonic() < deadline, broker.subscriptions()
        time.sleep(0.02)


class ContentTypes(MemoryTransport):
    """Records the content type of every request, and can hide what a pong offers (DASF)."""

    def __init__(self, broker: MemoryBroker, *, dasf: bool = False) -> None:
        super().__init__(broker)
        self.dasf = dasf
        self.requests: list[str] = []

    async def publish(self, topic: str, message: Message) -> None:
        props = dict(message.properties)
        if props.get(Prop.MESSAGE_TYPE) == "request":
            self.requests.append(props.get(Prop.CONTENT_TYPE, "none"))
        if self.dasf:
            props.pop(Prop.CONTENT_TYPES, None)
        await super().publish(topic, Message(message.payload, props, message.message_id))


@pytest.mark.parametrize("dasf", [False, True])
def test_auto_encoding_is_msgpack_for_backends_that_offer_it_and_json_otherwise(
    broker: MemoryBroker, dasf: bool
) -> None:
    backend = ContentTypes(broker, dasf=dasf)
    client = ContentTypes(broker)
    listener = Listener(Dispatcher.from_module(CLIMATE), backend, "auto")
    with ListenerThread(listener), Client("auto", transport=client, timeout=10) as c:
        assert c.settings.encoding == "auto"
        for _ in range(3):
            assert c.call({"func_name": "total", "values": np.arange(4.0)}) == 6.0
    expected = "application/json" if dasf else "application/vnd.demessaging.msgpack"
    assert client.requests == [expected] * 3
    assert listener.handled == 4  # one ping, asked once


def test_a_request_on_the_reply_topic_is_not_taken_for_a_reply(broker: MemoryBroker) -> None:
    # dasf-broker-django sends an api_info probe to every consumer that connects, reply
    # topics included, with requestContext 1 and response_topic "status-ping"
    settings = Settings(broker_url="memory://", encoding="json")
    with Client("probed", transport=MemoryTransport(broker), settings=settings) as c:

        async def answer_after_a_probe() -> None:
            transport = MemoryTransport(broker)
            subscription = await transport.subscribe("probed", "backend")
            subscribed.set()
            request = await subscription.receive()
            context = request.properties[Prop.REQUEST_CONTEXT]
            probe = {"messageType": "api_info", "requestContext": context}
            await transport.publish(
                c.response_topic, Message(b"", probe | {"response_topic": "status-ping"})
            )
            reply = {"messageType": "response", "requestContext": context, "status": "success"}
            await transport.publish(c.response_topic, Message(b"42", reply))
            await transport.close()

        subscribed = threading.Event()
        thread = threading.Thread(target=asyncio.run, args=(answer_after_a_probe(),))
        thread.start()
        assert subscribed.wait(5)
        assert c.call({"func_name": "anything"}, timeout=5) == 42
        thread.join(5)
