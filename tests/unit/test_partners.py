"""Partners isolated from each other: reply and side topics in reply namespaces, the strict
reply rule, the backend's own topics never taken as reply topics, and the grants of
``demessaging namespace`` (against a fake admin API)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from demessaging.backend import Dispatcher, Listener, ListenerThread
from demessaging.cli import cli
from demessaging.client import Client
from demessaging.config import Settings
from demessaging.errors import (
    AuthenticationError,
    AuthorizationError,
    CallTimeoutError,
    ConfigurationError,
    ProtocolError,
    TransportError,
)
from demessaging.namespaces import Grant, Partners
from demessaging.protocol import Message, Prop
from demessaging.protocol.envelope import parse_request
from demessaging.protocol.fragments import FRAGMENT_SUBSCRIPTION, side_topic, split
from demessaging.protocol.outgoing import make_request
from demessaging.protocol.pieces import check_head, side_topic_refusal
from demessaging.protocol.topics import ReplyTopics, full_name, reply_topic, split_name
from demessaging.transport.admin import PulsarAdmin
from demessaging.transport.memory import MemoryBroker, MemoryTransport
from tests.fakes import FakeAdmin

CLIMATE = Path(__file__).resolve().parents[2] / "examples" / "climate.py"
REPLIES = ["research/climate-a", "research/climate-b"]


# -- reply topics -------------------------------------------------------------------------


def test_a_client_with_a_reply_namespace_makes_unguessable_full_names_there() -> None:
    names = {reply_topic("climate", "research/climate-a") for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert re.fullmatch(r"persistent://research/climate-a/climate_[0-9a-f]{32}", name)
    full = reply_topic("persistent://research/climate/climate", "r/a", persistent=False)
    assert re.fullmatch(r"non-persistent://r/a/climate_[0-9a-f]{32}", full)
    assert re.fullmatch(r"climate_[a-z]{8}", reply_topic("climate"))  # as DASF clients do


def test_a_client_takes_its_reply_namespace_from_the_settings() -> None:
    settings = Settings.from_env(environ={"DEMESSAGING_REPLY_NAMESPACE": "research/climate-a"})
    with Client("climate", settings=settings, transport=MemoryTransport(MemoryBroker())) as c:
        assert c.response_topic.startswith("persistent://research/climate-a/climate_")
    for bad in ("research", "a/b,c/d", "a/b/c"):
        with pytest.raises(ConfigurationError, match="REPLY_NAMESPACE"):
            Settings.from_env(environ={"DEMESSAGING_REPLY_NAMESPACE": bad})


def test_replies_only_to_partners_refuses_short_names_and_the_own_namespace() -> None:
    topics = ReplyTopics.of("research", "climate", "climate", REPLIES, only_extra=True)
    assert topics.refusal("persistent://research/climate-a/climate_0123") is None
    assert "short name" in str(topics.refusal("climate_abcdefgh"))
    for outside in ("persistent://research/climate/x", "persistent://public/default/x"):
        assert "outside the backend's namespaces" in str(topics.refusal(outside))
    for extra in ([], ["research/climate"], ["research/climate-a", "research/climate"]):
        with pytest.raises(ConfigurationError, match="REPLY_NAMESPACES"):
            ReplyTopics.of("research", "climate", "climate", extra, only_extra=True)


def test_the_strict_setting_needs_reply_namespaces() -> None:
    env = {"DEMESSAGING_REPLY_NAMESPACES_ONLY": "true"}
    with pytest.raises(ConfigurationError, match="needs DEMESSAGING_REPLY_NAMESPACES:"):
        Settings.from_env(environ=env)
    env["DEMESSAGING_REPLY_NAMESPACES"] = ",".join(REPLIES)
    options = Settings.from_env(environ=env).listener_options()
    assert options["reply_namespaces_only"] is True
    assert options["reply_namespaces"] == REPLIES


@pytest.mark.parametrize(
    "name",
    [
        "climate",  # a reply to the request topic: a message for every backend instance
        "climate_control",
        "climate-DLQ",
        "persistent://public/default/climate",
        "non-persistent://public/default/climate_control",
        "persistent://public/default/climate-DLQ",
        "climate_fragments_0123",  # another caller's upload
        "persistent://research/climate-a/climate_fragments_0123",
    ],
)
def test_the_backends_own_topics_are_never_reply_topics(name: str) -> None:
    topics = ReplyTopics.of(
        "public", "default", "climate", REPLIES, dead_letter_topic="climate-DLQ"
    )
    message = make_request(b"{}", context="1", response_topic=name)
    with pytest.raises(ProtocolError, match=r"own request, control or dead-letter|side topic"):
        parse_request(message, topics)


def test_a_listener_refuses_its_own_dead_letter_topic_wherever_it_is() -> None:
    listener = Listener(
        Dispatcher.from_module(CLIMATE),
        MemoryTransport(MemoryBroker()),
        "climate",
        dead_letter_topic="persistent://x/y/dlq",
        reply_namespaces=["x/y"],
    )
    assert "dead-letter" in str(listener.reply_topics.refusal("persistent://x/y/dlq"))
    assert listener.reply_topics.refusal("persistent://x/y/replies") is None


def test_a_reply_to_the_request_topic_is_not_published(broker: MemoryBroker) -> None:
    """Before: the backend published the reply onto its own request topic."""
    transport = MemoryTransport(broker)
    served = Listener(Dispatcher.from_module(CLIMATE), transport, "loop")

    async def send() -> None:
        caller = MemoryTransport(broker)
        for target in ("loop", "loop_control", "loop-DLQ"):
            request = b'{"func_name": "total", "values": [1]}'
            await caller.publish("loop", make_request(request, context="1", response_topic=target))
        await caller.close()

    with ListenerThread(served):
        probe = MemoryTransport(broker)
        loop = asyncio.new_event_loop()
        watched = loop.run_until_complete(probe.subscribe("loop", "watch", shared=False))
        asyncio.run(send())
        seen = []
        try:
            while True:
                seen.append(loop.run_until_complete(asyncio.wait_for(watched.receive(), 1.0)))
        except asyncio.TimeoutError:
            pass
        loop.run_until_complete(probe.close())
        loop.close()
    assert len(seen) == 3  # the three requests, and no reply among them
    assert all(m.properties[Prop.MESSAGE_TYPE] == "request" for m in seen)


# -- side topics --------------------------------------------------------------------------


def head(side: str) -> Any:
    """A head naming ``side``, from a client whose reply topic is in the same namespace."""
    parts = split_name(side)
    mine = parts is not None and parts[0] in REPLIES
    message = Message(
        payload=b"{",
        properties={
            Prop.MESSAGE_TYPE: "request",
            Prop.REQUEST_CONTEXT: "1",
            Prop.RESPONSE_TOPIC: full_name(parts[0], "climate_0123") if mine else "r",
            Prop.FRAGMENT: "0",
            Prop.NUM_FRAGMENTS: "2",
            Prop.FRAGMENT_OFFSET: "0",
            Prop.PAYLOAD_SIZE: "2",
            Prop.FRAGMENTS_TOPIC: side,
        },
    )
    return parse_request(message, ReplyTopics.of("research", "climate", "climate", REPLIES))


def test_side_topics_may_be_in_a_reply_namespace_with_the_request_topics_name() -> None:
    taken = [
        side_topic("climate", "x"),
        "persistent://research/climate-a/climate_fragments_0123",
        "non-persistent://research/climate-b/climate_fragments_0123",
    ]
    refused = [
        "persistent://research/other/climate_fragments_0123",  # not a reply namespace
        "persistent://research/climate-a/weather_fragments_0123",  # another topic's
        "persistent://research/climate-a/climate_fragments_",
        "persistent://research/climate-a/climate_0123",
        "persistent://research/climate-a/x/climate_fragments_0123",
    ]
    for name in taken:
        assert side_topic_refusal(name, "climate", REPLIES) is None
        assert check_head(head(name), topic="climate", max_payload=10, namespaces=REPLIES) == 2
    for name in refused:
        refusal = side_topic_refusal(name, "climate", REPLIES)
        assert (
            refusal == f"a request in pieces must name a fragments_topic of 'climate', not {name!r}"
        )
        with pytest.raises(ProtocolError, match="fragments_topic"):
            check_head(head(name), topic="climate", max_payload=10, namespaces=REPLIES)
    full = "persistent://research/climate/climate"
    side = "persistent://research/climate-a/climate_fragments_1"
    assert side_topic_refusal(side, full, REPLIES) is None
    assert "must name a fragments_topic" in str(side_topic_refusal(side, full))


def test_a_side_topic_in_a_reply_namespace_must_be_in_that_of_the_response_topic() -> None:
    """A partner naming another's side topic (had it learned the name) with its own reply
    topic would have the backend gather the other's upload and send the result to itself."""
    topics = ReplyTopics.of("research", "climate", "climate", REPLIES)
    b_side = "persistent://research/climate-b/climate_fragments_0123"

    def size(response: str) -> int:
        message = head(b_side).message
        message = Message(message.payload, {**message.properties, Prop.RESPONSE_TOPIC: response})
        request = parse_request(message, topics)
        return check_head(request, topic="climate", max_payload=10, namespaces=REPLIES)

    for response in ("persistent://research/climate-a/climate_0123", "climate_abcdefgh"):
        with pytest.raises(ProtocolError, match="namespace of its response_topic"):
            size(response)
        assert side_topic_refusal(b_side, "climate", REPLIES, caller=response) == (
            f"the fragments_topic {b_side!r} must be in the namespace of its response_topic "
            f"{response!r}"
        )
    assert size("persistent://research/climate-b/climate_0123") == 2


def test_a_partner_cannot_have_anothers_upload_gathered_for_itself(broker: MemoryBroker) -> None:
    served = Listener(
        Dispatcher.from_module(CLIMATE),
        MemoryTransport(broker),
        "climate",
        reply_namespaces=REPLIES,
        reply_namespaces_only=True,
    )
    b_side = "persistent://research/climate-b/climate_fragments_" + "0" * 32
    a_replies = "persistent://research/climate-a/climate_" + "1" * 32
    request = make_request(
        b'{"func_name": "total", "values": [1.5, 1.5, 1.5, 1.5, 1.5, 1.5]}',
        context="7",
        response_topic="persistent://research/climate-b/climate_" + "2" * 32,
    )
    pieces = split(request, 20, extra={Prop.FRAGMENTS_TOPIC: b_side})
    b, a = MemoryTransport(broker), MemoryTransport(broker)

    async def attempt() -> Message:
        holder = await b.subscribe(b_side, FRAGMENT_SUBSCRIPTION, shared=True)  # as B's client
        await holder.close()  # does: the subscription stays, and keeps the pieces
        for piece in pieces[1:]:  # B's upload; A names its side topic with A's reply topic
            await b.publish(b_side, piece)
        replies = await a.subscribe(a_replies, "a", shared=False)
        forged = {**pieces[0].properties, Prop.RESPONSE_TOPIC: a_replies}
        await a.publish("climate", Message(pieces[0].payload, forged))
        return await asyncio.wait_for(replies.receive(), 5)

    with ListenerThread(served):
        reply = asyncio.run(attempt())
    assert reply.properties[Prop.STATUS] == "error", reply.payload  # not B's total
    assert b"namespace of its response_topic" in reply.payload
    assert broker.backlog(b_side, FRAGMENT_SUBSCRIPTION) == len(pieces) - 1  # B's pieces stay


def test_a_partner_uploads_in_pieces_through_its_reply_namespace(broker: MemoryBroker) -> None:
    backend = MemoryTransport(broker)
    backend.max_message_size = 64
    served = Listener(
        Dispatcher.from_module(CLIMATE),
        backend,
        "climate",
        reply_namespaces=REPLIES,
        reply_namespaces_only=True,
    )
    made: list[str] = []
    caller = MemoryTransport(broker)
    caller.max_message_size = 64
    subscribe = caller.subscribe

    async def spy(topic: str, *args: Any, **kwargs: Any) -> Any:
        made.append(topic)
        return await subscribe(topic, *args, **kwargs)

    caller.subscribe = spy  # type: ignore[method-assign]
    settings = Settings(reply_namespace="research/climate-b")
    with ListenerThread(served), Client("climate", transport=caller, settings=settings) as client:
        assert client.call({"func_name": "total", "values": [1.5] * 40}) == 60.0
    assert made[0] == client.response_topic
    assert [t for t in made if "_fragments_" in t]
    for topic in made:
        assert re.fullmatch(
            r"persistent://research/climate-b/climate_(fragments_)?[0-9a-f]{32}", topic
        )


def test_a_client_without_a_reply_namespace_gets_no_reply_from_a_strict_backend(
    broker: MemoryBroker,
) -> None:
    served = Listener(
        Dispatcher.from_module(CLIMATE),
        MemoryTransport(broker),
        "climate",
        reply_namespaces=REPLIES,
        reply_namespaces_only=True,
    )
    with (
        ListenerThread(served),
        Client("climate", transport=MemoryTransport(broker), timeout=0.5) as client,
        pytest.raises(CallTimeoutError),
    ):
        client.call({"func_name": "total", "values": [1]})


# -- the grants ---------------------------------------------------------------------------


def test_partners_get_produce_on_the_request_and_control_topics_and_a_reply_namespace() -> None:
    plan = Partners.of("research/climate", "backend", ["a", "b=other/b-replies"], ["climate"])
    assert plan.replies == {"a": "research/climate-a", "b": "other/b-replies"}
    both = ("produce", "consume")
    request = "persistent://research/climate/climate"
    assert plan.grants() == [
        Grant("research/climate", "backend", both),
        Grant("research/climate-a", "a", both),
        Grant("research/climate-a", "backend", both),
        Grant(request, "a", ("produce",)),
        Grant(f"{request}_control", "a", ("produce",)),
        Grant("other/b-replies", "b", both),
        Grant("other/b-replies", "backend", both),
        Grant(request, "b", ("produce",)),
        Grant(f"{request}_control", "b", ("produce",)),
    ]
    text = plan.settings()
    assert "DEMESSAGING_REPLY_NAMESPACES=research/climate-a,other/b-replies" in text
    assert "DEMESSAGING_REPLY_NAMESPACE=other/b-replies" in text


def test_roles_with_any_characters_are_mapped_to_a_namespace() -> None:
    plan = Partners.of("t/ns", "backend", ["CN=a b@inst=t/a-replies"], ["climate"])
    assert plan.replies == {"CN=a b@inst": "t/a-replies"}


@pytest.mark.parametrize(
    ("backend", "partners", "topics", "error"),
    [
        ("backend", ["a b@inst"], ["climate"], "cannot be part of a namespace name"),
        ("backend", ["a", "a"], ["climate"], "given twice"),
        ("backend", ["backend"], ["climate"], "given twice"),
        ("backend", ["a=t/ns"], ["climate"], "reply namespace of its own"),
        ("backend", ["a=t/x", "b=t/x"], ["climate"], "reply namespace of its own"),
        ("", ["a"], ["climate"], "--backend-role"),
        ("backend", ["a"], [], "--topic"),
        ("backend", ["a"], ["persistent://t/ns/climate"], "not a short topic name"),
    ],
)
def test_bad_partner_options_are_refused(
    backend: str, partners: list[str], topics: list[str], error: str
) -> None:
    with pytest.raises(click.BadParameter, match=error):
        Partners.of("t/ns", backend, partners, topics)


def test_grants_add_to_what_a_role_may_do(fake: FakeAdmin) -> None:
    base = "/admin/v2/namespaces/research/climate-a/permissions"
    topic = "/admin/v2/persistent/research/climate/climate"
    fake.routes |= {
        ("GET", base): (200, {"a": ["consume"], "other": ["produce"]}),
        ("POST", f"{base}/a"): (204, None),
        ("PUT", topic): (409, {"reason": "exists"}),
        ("POST", f"{topic}/inactiveTopicPolicies"): (204, None),
        ("GET", f"{topic}/permissions"): (200, {}),
        ("POST", f"{topic}/permissions/CN%3Da%20b"): (204, None),
    }
    admin = PulsarAdmin(fake.url)
    admin.grant_namespace("research", "climate-a", "a", ["produce"])
    assert admin.ensure_topic("persistent://research/climate/climate") is False
    admin.grant_topic("persistent://research/climate/climate", "CN=a b", ["produce"])
    writes = [(m, p, body) for m, p, _, body in fake.seen if m != "GET"]
    assert writes == [
        ("POST", f"{base}/a", ["consume", "produce"]),  # what it had stays
        ("PUT", topic, None),
        (
            "POST",
            f"{topic}/inactiveTopicPolicies",  # kept: Apache Pulsar forgets grants with a topic
            {
                "inactiveTopicDeleteMode": "delete_when_no_subscriptions",
                "maxInactiveDurationSeconds": 60,
                "deleteWhileInactive": False,
            },
        ),
        ("POST", f"{topic}/permissions/CN%3Da%20b", ["produce"]),
    ]


def test_the_namespace_command_applies_the_grants_and_prints_the_settings(
    fake: FakeAdmin,
) -> None:
    answer: dict[tuple[str, str], tuple[int, Any]] = {}

    def route(method: str, path: str) -> tuple[int, Any]:
        if method == "GET" and path == "/admin/v2/tenants":
            return 200, ["research"]
        if method == "GET" and path == "/admin/v2/namespaces/research":
            return 200, []
        if method == "GET" and (path.endswith("/permissions") or path.endswith("messageTTL")):
            return 200, {} if path.endswith("/permissions") else None
        if method == "GET":
            return 200, {}
        return 204, None

    class Routes(dict):  # type: ignore[type-arg]
        def get(self, key: tuple[str, str], default: Any = None) -> Any:
            return answer.get(key) or route(*key)

    fake.routes = Routes()
    args = ["namespace", "research/climate", "--admin-url", fake.url, "--backend-role", "be"]
    args += ["--partner", "a", "--topic", "climate"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    puts = [p for m, p, _, _ in fake.seen if m == "PUT"]
    assert puts == [
        "/admin/v2/namespaces/research/climate",
        "/admin/v2/namespaces/research/climate-a",
        "/admin/v2/persistent/research/climate/climate",
        "/admin/v2/persistent/research/climate/climate_control",
    ]
    grants = {p: body for m, p, _, body in fake.seen if m == "POST" and "/permissions/" in p}
    assert grants == {
        "/admin/v2/namespaces/research/climate/permissions/be": ["consume", "produce"],
        "/admin/v2/namespaces/research/climate-a/permissions/a": ["consume", "produce"],
        "/admin/v2/namespaces/research/climate-a/permissions/be": ["consume", "produce"],
        "/admin/v2/persistent/research/climate/climate/permissions/a": ["produce"],
        "/admin/v2/persistent/research/climate/climate_control/permissions/a": ["produce"],
    }
    assert "DEMESSAGING_REPLY_NAMESPACE=research/climate-a" in result.output
    assert "DEMESSAGING_REPLY_NAMESPACES_ONLY=true" in result.output
    bad = CliRunner().invoke(cli, [*args[:6], "--partner", "a b", "--topic", "climate"])
    assert bad.exit_code == 2
    assert "map it to one" in bad.output


@pytest.mark.parametrize(
    ("refusal", "error", "hinted"),
    [
        ("8 AuthorizationError: Client is not authorized", AuthorizationError, True),
        ("bad token", AuthenticationError, False),
    ],
)
def test_a_refused_reply_topic_names_the_reply_namespace_setting(
    broker: MemoryBroker, refusal: str, error: type[TransportError], hinted: bool
) -> None:
    class Refusing(MemoryTransport):
        async def subscribe(self, topic: str, *args: Any, **kwargs: Any) -> Any:
            raise error(f"subscribing to {topic} failed: {refusal}")

    with (
        Client("climate", transport=Refusing(broker), timeout=5) as client,
        pytest.raises(error) as info,
    ):
        client.call({"func_name": "total", "values": [1]})
    assert refusal in str(info.value)
    assert ("DEMESSAGING_REPLY_NAMESPACE," in str(info.value)) is hinted


def test_revoke_others_takes_back_only_what_the_plan_does_not_give(fake: FakeAdmin) -> None:
    spaces = "/admin/v2/namespaces/research"
    topic = "/admin/v2/persistent/research/climate/climate"
    held = {
        f"{spaces}/climate/permissions": {"be": ["produce", "consume"], "c": ["consume"]},
        f"{spaces}/climate-a/permissions": {"a": ["produce", "consume"], "be": ["consume"]},
        f"{topic}/permissions": {"be": ["produce", "consume"], "a": ["consume"], "c": ["produce"]},
        f"{topic}_control/permissions": {"be": ["produce", "consume"], "a": ["produce"]},
    }

    class Routes(dict):  # type: ignore[type-arg]
        def get(self, key: tuple[str, str], default: Any = None) -> Any:
            method, path = key
            if method == "DELETE":  # the broker forgets it
                where, _, role = path.rpartition("/")
                held.get(where, {}).pop(role, None)
            if method != "GET":
                return 204, None
            if path.endswith(("/tenants", "/namespaces/research")):
                return 200, ["research", "research/climate", "research/climate-a"]
            return 200, held.get(path, None if path.endswith("messageTTL") else {})

    fake.routes = Routes()
    plan = Partners.of("research/climate", "be", ["a"], ["climate"])
    args = ["namespace", "research/climate", "--admin-url", fake.url, "--backend-role", "be"]
    args += ["--partner", "a", "--topic", "climate", "--revoke-others"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    deleted = [p for m, p, _, _ in fake.seen if m == "DELETE"]
    assert deleted == [f"{spaces}/climate/permissions/c", f"{topic}/permissions/c"]
    exact = {p: body for m, p, _, body in fake.seen if m == "POST" and "/permissions/" in p}
    assert exact[f"{topic}/permissions/a"] == ["produce"]  # its consume is taken back
    assert exact[f"{spaces}/climate-a/permissions/be"] == ["consume", "produce"]
    assert len(exact) == len(plan.grants())
    assert "revoked: c on namespace research/climate" in result.output
