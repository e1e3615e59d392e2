"""An attacker's raw messages on a real backend's topics, with valid calls in between.

A seeded generator (:class:`Hostile`; the seed is printed, and ``FUZZ_SEED`` replays it)
makes malformed messages: random bytes, msgpack whose lengths lie, hostile properties (huge,
negative, non-ASCII and unicode-digit numbers, topics that are not topic names or belong to
another tenant, fragment heads claiming absurd sizes). Raw pulsar-client producers publish
them on the backend's request topic, on ``<topic>_control`` and on a client's reply topic
while that client has calls pending, with a valid call every 100 messages. Afterwards: the
backend runs and never logged a traceback, the client's reply reader runs, every valid call
was answered right, cancelling still works, the backend's memory grew by less than 100 MiB,
and nothing is left unacknowledged on the request and control subscriptions (Apache Pulsar:
its admin API; pulsar-lite, which has none: a consumer taking the request subscription over
once the backend stopped receives only a sentinel published after; the control topic's
subscription goes with the backend, and cancelling still working shows it was read).

Binary-protocol brokers only: attackers use pulsar-client. The ``slow`` variant sends 10,000
messages to the request topic. Requests and cancels may name the client's reply topic with
any context: its calls' contexts are random, and a backend takes for a repeat of a request
only the same message (:func:`test_a_forged_context_does_not_silence_a_later_call`).
"""

from __future__ import annotations

import os
import random
import re
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pulsar
import pytest

from demessaging.client import Client
from demessaging.errors import CallTimeoutError
from demessaging.message import MessageType, Prop
from demessaging.serialization import msgpack
from tests.brokers import Broker
from tests.helpers import rss_bytes, unacknowledged

from .conftest import Backend

BINARY = ("pulsar-lite", "pulsar")
SUBSCRIPTION = "demessaging-backend"
MIB = 1 << 20
#: Requests in pieces larger than this are refused at once (the backend's max_payload).
MAX_PAYLOAD = 1 << 30
U64 = struct.Struct("<Q")

BACKEND = '''
import time
from pathlib import Path

from demessaging import Reporter
from demessaging.errors import CallCancelled


def double(x: int) -> int:
    """Twice x."""
    return 2 * x


def hold(seconds: float, x: int) -> int:
    """Sleep, then give x back."""
    time.sleep(seconds)
    return x


def steps(seconds: float, marker: str, progress: Reporter) -> float:
    """Work in steps of 20 ms; write into marker when it starts and when it is cancelled."""
    Path(marker).write_text("started")
    progress.start("stepping", total=int(seconds / 0.02))
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.02)
            progress.advance()
    except CallCancelled:
        Path(marker).write_text("cancelled")
        raise
    return seconds
'''

NUMBERS = [
    "0",
    "1",
    "2",
    "-1",
    "-9223372036854775808",
    str(2**31),
    str(2**63 - 1),
    str(2**63),
    str(2**64),
    "9" * 5000,
    "00000000000000000000000000000001",
    "²",
    "١٢٣",
    "٣",
    "1e9",
    "1.5",
    " 1",
    "1 ",
    "+1",
    "",
    "NaN",
    "inf",
    "0x10",
    "1_000",
]
KINDS = [kind.value for kind in MessageType] + ["", "REQUEST", "request\0", "☃", "x" * 300]


@dataclass
class Hostile:
    """Malformed messages for a backend's topics, all drawn from one seeded generator."""

    rng: random.Random
    topic: str
    reply_topic: str
    sink: str = field(init=False)

    def __post_init__(self) -> None:
        self.sink = f"{self.topic}_sink"

    def text(self) -> str:
        """Some unicode: short or long, odd characters, NUL bytes (never surrogates)."""
        rng = self.rng
        how = rng.randrange(6)
        if how == 0:
            return ""
        if how == 1:
            return "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randrange(1, 40)))
        if how == 2:
            alphabet = "\0\n\t é漢字🙂²١\u202e\ufeff/:"
            return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 20)))
        if how == 3:
            return rng.choice("ab") * rng.choice([1000, 70_000])
        return "".join(
            chr(rng.choice([rng.randrange(1, 0xD800), rng.randrange(0xE000, 0x110000)]))
            for _ in range(rng.randrange(1, 10))
        )

    def number(self) -> str:
        return self.rng.choice(NUMBERS) if self.rng.random() < 0.8 else self.text()

    def bad_topic(self) -> str:
        """A reply topic a backend must not write to, or an odd but valid one."""
        return self.rng.choice(
            [
                "pulsar://evil",
                "persistent://",
                "persistent://other-tenant/ns/replies",
                "non-persistent://public/default/x",
                "not a valid topic !!",
                "nul\0byte",
                "../../etc",
                "a/b",
                "x" * 5000,
                "",
                self.topic,  # its own request topic: the reply must not loop
                f"{self.topic}_control",
                self.sink,
                self.text(),
            ]
        )

    def payload(self) -> tuple[bytes, str | None]:
        """A payload and the content type it claims (None: no content_type property)."""
        rng = self.rng
        how = rng.randrange(7)
        if how == 0:
            return rng.randbytes(rng.randrange(0, 300)), rng.choice([None, msgpack.CONTENT_TYPE])
        if how == 1:  # msgpack framing whose lengths lie: 2**63 and more among them
            size = rng.choice([0, 8, 2**31, 2**63 - 1, 2**63, 2**64 - 1, rng.randrange(2**64)])
            body = rng.randbytes(rng.randrange(0, 40))
            table = U64.pack(rng.choice([0, 1, 2**63, 2**64 - 1])) + rng.randbytes(16)
            return U64.pack(size) + body + table, msgpack.CONTENT_TYPE
        if how == 2:  # msgpack of something, possibly cut
            value = {"func_name": rng.choice(["double", "nothing", ""]), "x": rng.randrange(-9, 9)}
            data = bytes(msgpack.encode(value))
            return data[: rng.randrange(len(data) + 1)], msgpack.CONTENT_TYPE
        if how == 3:  # JSON near a valid call
            x = rng.choice(["1", "-1", "1e400", "9" * 5000, '"a"', "null", "[]", "{}"])
            name = rng.choice(["double", "nothing", "__class__", "", "hold\0"])
            return f'{{"func_name": "{name}", "x": {x}}}'.encode(), None
        if how == 4:  # deeply nested JSON
            depth = rng.choice([10, 1000, 100_000])
            return b"[" * depth + b"]" * rng.choice([0, depth]), None
        if how == 5:
            return b"", rng.choice([None, msgpack.CONTENT_TYPE, "text/x-nothing", self.text()])
        return self.text().encode(), rng.choice([None, "application/json", self.text()])

    def junk_properties(self, props: dict[str, str]) -> None:
        for _ in range(self.rng.randrange(3)):
            props[self.rng.choice([self.text(), "deadline", "stream", "caller", "sequence"])] = (
                self.number()
            )

    def request(self) -> tuple[bytes, dict[str, str]]:
        """A message for the request topic; one in five a fragment head."""
        rng = self.rng
        payload, content_type = self.payload()
        props: dict[str, str] = {}
        if rng.random() < 0.9:
            props[Prop.MESSAGE_TYPE] = rng.choice(["request"] * 4 + KINDS)
        if rng.random() < 0.9:
            props[Prop.REQUEST_CONTEXT] = rng.choice([self.text(), str(rng.randrange(10**6))])
        if rng.random() < 0.9:
            props[Prop.RESPONSE_TOPIC] = rng.choice([self.bad_topic(), self.sink, self.reply_topic])
        if content_type is not None:
            props[Prop.CONTENT_TYPE] = content_type
        for name in (Prop.DEADLINE, Prop.STREAM, Prop.API_FINGERPRINT):
            if rng.random() < 0.2:
                props[name] = self.number()
        if rng.random() < 0.2:
            self.head(props)
        self.junk_properties(props)
        return payload, props

    def head(self, props: dict[str, str]) -> None:
        """Make the request a fragment head, claiming absurd sizes.

        A head naming a side topic of this backend with a ``payload_size`` it takes is held,
        without a worker, until its upload deadline (5 s here) or refused when the backend
        holds too many; others claim more than the backend takes, or a malformed or no size.
        """
        rng = self.rng
        props[Prop.NUM_FRAGMENTS] = rng.choice(["1000000000", "2", str(2**63), "0", *NUMBERS])
        props[Prop.FRAGMENT] = rng.choice(["0", "0", *NUMBERS])
        if rng.random() < 0.5:
            props[Prop.FRAGMENT_OFFSET] = self.number()
        own_side = rng.random() < 0.5
        props[Prop.FRAGMENTS_TOPIC] = (
            f"{self.topic}_fragments_{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
            if own_side
            else rng.choice([self.bad_topic(), f"other_fragments_{rng.randrange(99)}"])
        )
        size = rng.choice(
            [
                str(MAX_PAYLOAD + 1),
                str(rng.randrange(MAX_PAYLOAD + 1, 2**63)),
                str(2**63),
                "99999999999999999999",
                "-5",
                "²",
                "1e9",
                None,
                str(rng.randrange(1, MAX_PAYLOAD + 1)),
                str(rng.randrange(1, 1 << 20)),
            ]
        )
        if not own_side and rng.random() < 0.5:
            size = str(rng.choice([0, 1, 1 << 20, MAX_PAYLOAD]))
        if size is not None:
            props[Prop.PAYLOAD_SIZE] = size

    def control(self) -> tuple[bytes, dict[str, str]]:
        """A message for ``<topic>_control``."""
        rng = self.rng
        props: dict[str, str] = {}
        if rng.random() < 0.9:
            props[Prop.MESSAGE_TYPE] = rng.choice(["cancel", "more", "more", *KINDS])
        if rng.random() < 0.8:
            props[Prop.REQUEST_CONTEXT] = rng.choice([self.text(), str(rng.randrange(10**6))])
        if rng.random() < 0.8:
            props[Prop.CALLER] = rng.choice([self.bad_topic(), self.reply_topic])
        if rng.random() < 0.7:
            props[Prop.RECEIVED] = self.number()
        self.junk_properties(props)
        return self.payload()[0], props

    def reply(self) -> tuple[bytes, dict[str, str]]:
        """A message for a client's reply topic; never the context of one of its calls.

        (Its calls' contexts are ASCII numbers; a message that names one is a forged reply,
        which a client cannot tell from a real one.)
        """
        rng = self.rng
        payload, content_type = self.payload()
        props: dict[str, str] = {}
        if rng.random() < 0.9:
            props[Prop.MESSAGE_TYPE] = rng.choice(["response", "progress", "item", *KINDS])
        if rng.random() < 0.9:
            context = self.text()
            props[Prop.REQUEST_CONTEXT] = context if not context.isdigit() else f"x{context}"
        if rng.random() < 0.1:
            props[Prop.RESPONSE_TOPIC] = self.bad_topic()
        if content_type is not None:
            props[Prop.CONTENT_TYPE] = content_type
        for name in (
            Prop.NUM_FRAGMENTS,
            Prop.FRAGMENT,
            Prop.FRAGMENT_OFFSET,
            Prop.PAYLOAD_SIZE,
            Prop.SEQUENCE,
        ):
            if rng.random() < 0.3:
                props[name] = self.number()
        for name, values in (
            (Prop.STATUS, ["success", "error", "running", ""]),
            (Prop.STREAM, ["end", ""]),
            (Prop.ERROR, ["{}", "[", '{"type": 1}', "null"]),
            (Prop.API_FINGERPRINT, ["", "0" * 64]),
        ):
            if rng.random() < 0.2:
                props[name] = rng.choice([*values, self.text()])
        self.junk_properties(props)
        return payload, props


@dataclass
class Attack:
    """The state of one fuzz run: the backend, a client, the generator, what was checked."""

    broker: Broker
    topic: str
    backend: Backend
    client: Client
    hostile: Hostile
    tmp_path: Path
    sent: dict[str, int] = field(default_factory=dict)
    valid: int = 0

    def healthy(self) -> None:
        """No crash: the backend process and the client's reply reader run."""
        assert self.backend.process.poll() is None, f"the backend died:\n{self.tail()}"
        reader = self.client._connection._reader
        assert reader is not None
        assert not reader.done(), "the client's reply reader stopped"

    def tail(self) -> str:
        return self.backend.output()[-6000:]

    def valid_call(self) -> None:
        x = self.valid * 7 - 1000
        self.valid += 1
        try:
            assert self.client.call({"func_name": "double", "x": x}, timeout=30) == 2 * x
        except CallTimeoutError:
            pytest.fail(f"valid call {self.valid} was not answered:\n{self.tail()}")

    def send(
        self, target: str, make: Callable[[], tuple[bytes, dict[str, str]]], count: int
    ) -> None:
        """Publish ``count`` messages made by ``make`` on ``target``; a valid call every 100."""
        raw = pulsar.Client(binary_url(self.broker), operation_timeout_seconds=30)
        try:
            producer = raw.create_producer(target, batching_enabled=False)
            for n in range(1, count + 1):
                payload, props = make()
                producer.send(payload, properties=props)
                if n % 100 == 0:
                    self.valid_call()
                    self.healthy()
            producer.close()
        finally:
            raw.close()
        self.sent[target] = self.sent.get(target, 0) + count

    def cancelling_works(self) -> None:
        """A call whose caller gives up is cancelled: the control topic is still read."""
        marker = self.tmp_path / f"steps-{self.valid}"
        request = {"func_name": "steps", "seconds": 30.0, "marker": str(marker)}
        with pytest.raises(CallTimeoutError):
            self.client.call(request, timeout=3)
        deadline = time.monotonic() + 10
        while not (marker.exists() and marker.read_text() == "cancelled"):
            assert time.monotonic() < deadline, f"the call was not cancelled:\n{self.tail()}"
            time.sleep(0.05)


def binary_url(broker: Broker) -> str:
    """The broker's URL as pulsar-client takes it (``pulsar-lite://`` is ``pulsar://``)."""
    return broker.url.replace("pulsar-lite://", "pulsar://", 1)


@pytest.fixture
def binary_broker(broker: Broker) -> Broker:
    if broker.name not in BINARY:
        pytest.skip("the attacker's client speaks the binary protocol")
    return broker


@pytest.fixture
def attack(
    binary_broker: Broker, topic: str, launch: Callable[..., Backend], tmp_path: Path
) -> Iterator[Attack]:
    module = tmp_path / f"fuzzed_{topic[3:]}.py"
    module.write_text(BACKEND)
    # heads whose pieces never come are held this long
    backend = launch(
        module, topic, binary_broker.url, workers=4, env={"DEMESSAGING_UPLOAD_TIMEOUT": "5"}
    )
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(2**32)))
    print(f"FUZZ_SEED={seed}")
    with Client(topic, broker_url=binary_broker.url, timeout=30) as client:
        hostile = Hostile(random.Random(seed), topic, client.response_topic)
        yield Attack(binary_broker, topic, backend, client, hostile, tmp_path)


def run(attack: Attack, on_requests: int, on_others: int) -> None:
    for _ in range(5):  # warm: the backend's memory before is that of a serving backend
        attack.valid_call()
    before = rss_bytes(attack.backend.pid)
    started = time.monotonic()

    attack.send(attack.topic, attack.hostile.request, on_requests)
    attack.send(f"{attack.topic}_control", attack.hostile.control, on_others)
    attack.cancelling_works()

    # the reply topic, while the client has calls pending all the time
    stop, held = threading.Event(), list[bool]()

    def pending() -> None:
        while not stop.is_set():
            k = len(held)
            held.append(attack.client.call({"func_name": "hold", "seconds": 0.3, "x": k}) == k)

    holder = threading.Thread(target=pending)
    holder.start()
    try:
        attack.send(attack.client.response_topic, attack.hostile.reply, on_others)
    finally:
        stop.set()
        holder.join(60)
    assert held, "no call was pending during the attack"
    assert all(held), f"calls pending during the attack failed: {held}"
    attack.valid_call()
    attack.healthy()

    grown = rss_bytes(attack.backend.pid) - before
    print(
        f"{sum(attack.sent.values())} hostile messages {attack.sent}, {attack.valid} valid calls"
        f" and {len(held)} held calls in {time.monotonic() - started:.1f} s;"
        f" backend memory grew by {grown / MIB:.1f} MiB"
    )
    assert grown < 100 * MIB
    assert not failures(attack.backend.output())
    nothing_left(attack)


def failures(log: str) -> list[str]:
    """The log records of a backend telling of a bug: a traceback (but for a cancelled call),
    an internal error."""
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log)
    return [
        record
        for record in records
        if any(sign in record for sign in ("Traceback", "internal error", "failed to handle"))
        and "CallCancelled: the caller cancelled the call" not in record.split("\n", 1)[0]
    ]


def nothing_left(attack: Attack) -> None:
    """No message of the attack is left unacknowledged on the backend's subscriptions."""
    if attack.broker.admin_url:
        for topic in (attack.topic, f"{attack.topic}_control"):
            left = unacknowledged(attack.broker.admin_url, topic)
            assert left, f"{topic} has no subscription"
            assert not any(left.values()), f"{topic}: {left}"
        return
    # pulsar-lite has no admin API: once the backend stopped, a consumer of its subscription
    # gets what it left unacknowledged, then a sentinel published now
    assert attack.backend.stop() == 0, attack.tail()
    raw = pulsar.Client(binary_url(attack.broker), operation_timeout_seconds=30)
    try:
        consumer = raw.subscribe(
            attack.topic, SUBSCRIPTION, consumer_type=pulsar.ConsumerType.Shared
        )
        raw.create_producer(attack.topic).send(b"sentinel", properties={"sentinel": "1"})
        got = []
        while True:
            try:
                message = consumer.receive(timeout_millis=3000)
            except pulsar.Timeout:
                break
            got.append(message.properties())
            consumer.acknowledge(message)
        assert got == [{"sentinel": "1"}]
    finally:
        raw.close()


def test_hostile_messages_on_every_topic_crash_nothing(attack: Attack) -> None:
    run(attack, on_requests=400, on_others=300)


@pytest.mark.slow
def test_ten_thousand_hostile_requests_crash_nothing(attack: Attack) -> None:
    run(attack, on_requests=10_000, on_others=1000)


def test_fragment_heads_claiming_sizes_they_never_send_do_not_stall_the_backend(
    attack: Attack,
) -> None:
    attack.valid_call()
    before = rss_bytes(attack.backend.pid)
    raw = pulsar.Client(binary_url(attack.broker), operation_timeout_seconds=30)
    try:
        producer = raw.create_producer(attack.topic, batching_enabled=False)
        for n in range(4):  # as many as the backend has workers
            producer.send(
                b"x" * 100,
                properties={
                    Prop.MESSAGE_TYPE: "request",
                    Prop.REQUEST_CONTEXT: f"head-{n}",
                    Prop.RESPONSE_TOPIC: attack.hostile.sink,
                    Prop.FRAGMENT: "0",
                    Prop.NUM_FRAGMENTS: "1000000000",
                    Prop.FRAGMENT_OFFSET: "0",
                    Prop.PAYLOAD_SIZE: str(MAX_PAYLOAD // 4),
                    Prop.FRAGMENTS_TOPIC: f"{attack.topic}_fragments_head{n}",
                },
            )
    finally:
        raw.close()
    # a backend that is not stalled answers at once, having allocated nothing much
    assert attack.client.call({"func_name": "double", "x": 1}, timeout=10) == 2
    assert rss_bytes(attack.backend.pid) - before < 100 * MIB
    attack.healthy()


@pytest.mark.parametrize("forged", ["api_info", "cancel"])
def test_a_forged_context_does_not_silence_a_later_call(
    attack: Attack, forged: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queries or cancels naming the client's reply topic, with the contexts a counting client
    would use next, then a call: it is answered. A query even with the very context of the call
    (as if the forger could guess it) is not taken for a repeat of the call."""
    attack.valid_call()
    known = "4242"
    target = f"{attack.topic}_control" if forged == "cancel" else attack.topic
    raw = pulsar.Client(binary_url(attack.broker), operation_timeout_seconds=30)
    try:
        producer = raw.create_producer(target, batching_enabled=False)
        for context in [*range(1, 21), int(known)] if forged == "api_info" else range(1, 21):
            producer.send(
                b"",
                properties={
                    Prop.MESSAGE_TYPE: forged,
                    Prop.REQUEST_CONTEXT: str(context),
                    Prop.RESPONSE_TOPIC: attack.client.response_topic,
                    Prop.CALLER: attack.client.response_topic,
                },
            )
    finally:
        raw.close()
    time.sleep(1)  # the backend has read them
    for _ in range(3):
        assert attack.client.call({"func_name": "double", "x": 4}, timeout=10) == 8
    if forged == "api_info":
        monkeypatch.setattr(attack.client._connection._calls, "new_context", lambda: known)
        assert attack.client.call({"func_name": "double", "x": 5}, timeout=10) == 10
