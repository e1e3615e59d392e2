"""Partners isolated from each other on Apache Pulsar with TLS, tokens and authorization.

One backend role and two partner roles, granted by ``demessaging namespace`` as an admin
would (over the admin API on ``https://``), and nothing more (see "Partners" in
docs/deploying.md). The broker's certificate comes from a private CA, for 127.0.0.1; every
client, the backend and the command trust only that CA and check the host name. Partner B's
calls work in every way a call goes (small, an upload in pieces, a result in pieces, progress,
cancellation), over ``pulsar+ssl://`` and ``wss://``; partner A tries to read, take and forge
B's calls, and to make the backend publish elsewhere: each attempt is refused, or lands nowhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from demessaging.backend.listener import DEFAULT_SUBSCRIPTION
from demessaging.client import Client, Progress
from demessaging.config import Settings
from demessaging.errors import DemessagingError
from demessaging.message import Message, Prop
from demessaging.protocol.fragments import FRAGMENT_SUBSCRIPTION, split
from demessaging.protocol.outgoing import make_request
from demessaging.protocol.topics import short_name as short
from demessaging.tokens import create_token
from demessaging.transport import TransportOptions
from demessaging.transport.admin import PulsarAdmin
from tests.brokers import secured_pulsar
from tools import pulsar

from .conftest import ROOT, Backend

WORKERS = ROOT / "tests" / "data" / "workers.py"
NAMESPACE = "research/climate"
ROLES = ("backend", "partner-a", "partner-b")
#: A refusal comes at once; the library alone would retry for 30 s.
PROMPT = 5.0
#: Arrays larger than Apache Pulsar's 5 MB messages: they go in pieces.
LARGE = 1_000_000


@dataclass
class Secured:
    """The broker, the tokens' secret, and the private CA its certificate comes from."""

    broker: pulsar.PulsarStandalone
    secret: bytes
    ca: Path


@pytest.fixture(scope="module")
def secured(request: pytest.FixtureRequest) -> Iterator[Secured]:
    """Apache Pulsar with TLS (a private CA's certificate for 127.0.0.1), token
    authentication, authorization, and its WebSocket API."""
    with secured_pulsar(
        request,
        "pulsar-partners",
        "authorization",
        authorization=True,
        settings={"webSocketServiceEnabled": "true"},
    ) as running:
        assert running.ca is not None
        yield Secured(running.broker, running.secret, running.ca.certificate)


@dataclass
class Deployment:
    """The broker, a backend of role ``backend`` on ``topic``, and the roles' tokens."""

    broker: pulsar.PulsarStandalone
    ca: Path
    topic: str
    tokens: dict[str, str]
    granted: str  # what `demessaging namespace` printed
    backend: Backend
    url: str  # the backend's broker URL: pulsar+ssl://, or the WebSocket API's wss://

    @property
    def request_topic(self) -> str:
        return f"persistent://{NAMESPACE}/{self.topic}"

    def admin(self, role: str = "") -> PulsarAdmin:
        token = self.tokens[role] if role else self.broker.admin_token
        return PulsarAdmin(self.broker.admin_tls_url, token=token, tls_trust_certs=str(self.ca))

    def settings(self, role: str) -> Settings:
        """A partner's settings, as `demessaging namespace` printed them (on the backend's API)."""
        options = TransportOptions(
            token=self.tokens[role],
            tenant="research",
            namespace="climate",
            tls_trust_certs=str(self.ca),
        )
        return Settings(
            broker_url=self.url,
            transport=options,
            reply_namespace=f"{NAMESPACE}-{role}",
        )


@pytest.fixture
def deployment(
    request: pytest.FixtureRequest,
    secured: Secured,
    launch: Callable[..., Backend],
    topic: str,
) -> Deployment:
    """The grants for ``topic`` applied with the CLI, and its backend serving over
    ``pulsar+ssl://`` (over the WebSocket API's ``wss://`` if the parameter says
    ``websocket``)."""
    broker = secured.broker
    url = broker.tls_url
    if getattr(request, "param", "binary") == "websocket":
        url = broker.wss_url
    tokens = {role: create_token(secured.secret, role) for role in ROLES}
    granted = _grant(broker, secured.ca, topic)
    backend = launch(
        WORKERS,
        topic,
        url,
        workers=2,
        env={
            "DEMESSAGING_TOKEN": tokens["backend"],
            "DEMESSAGING_TLS_TRUST_CERTS": str(secured.ca),
            "DEMESSAGING_TENANT": "research",
            "DEMESSAGING_NAMESPACE": "climate",
            "DEMESSAGING_REPLY_NAMESPACES": f"{NAMESPACE}-partner-a,{NAMESPACE}-partner-b",
            "DEMESSAGING_REPLY_NAMESPACES_ONLY": "true",
        },
    )
    return Deployment(broker, secured.ca, topic, tokens, granted, backend, url)


def _sorted(permissions: dict[str, list[str]]) -> dict[str, list[str]]:
    return {role: sorted(actions) for role, actions in permissions.items()}


def _grant(broker: pulsar.PulsarStandalone, ca: Path, topic: str, *extra: str) -> str:
    """Run `demessaging namespace` for ``topic`` as an admin would (the admin API on https://,
    only the private CA ``ca`` trusted); what it printed."""
    command = [sys.executable, "-m", "demessaging", "namespace", NAMESPACE, *extra]
    command += ["--admin-url", broker.admin_tls_url, "--backend-role", "backend"]
    command += ["--topic", topic, "--partner", "partner-a", "--partner", "partner-b"]
    env = os.environ | {
        "DEMESSAGING_TOKEN": broker.admin_token,
        "DEMESSAGING_TLS_TRUST_CERTS": str(ca),
    }
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_command_grants_partners_only_produce_on_the_request_and_control_topics(
    deployment: Deployment,
) -> None:
    admin = deployment.admin()
    assert _sorted(admin.namespace_permissions("research", "climate")) == {
        "backend": ["consume", "produce"]
    }
    for role in ("partner-a", "partner-b"):
        assert _sorted(admin.namespace_permissions("research", f"climate-{role}")) == {
            role: ["consume", "produce"],
            "backend": ["consume", "produce"],
        }
    for name in (deployment.request_topic, f"{deployment.request_topic}_control"):
        granted = _sorted(admin.topic_permissions(name))
        assert granted["partner-a"] == granted["partner-b"] == ["produce"]
    assert f"DEMESSAGING_REPLY_NAMESPACE={NAMESPACE}-partner-a" in deployment.granted
    assert "DEMESSAGING_REPLY_NAMESPACES_ONLY=true" in deployment.granted


def test_the_command_takes_back_other_grants_when_asked(deployment: Deployment) -> None:
    admin = deployment.admin()
    request = deployment.request_topic
    admin.grant_namespace("research", "climate", "partner-c", ["consume"])  # by hand
    admin.grant_namespace("research", "climate-partner-a", "partner-b", ["consume"])
    admin.grant_topic(request, "partner-c", ["produce"])
    admin.grant_topic(request, "partner-a", ["consume"])
    again = _grant(deployment.broker, deployment.ca, deployment.topic)  # adds only: the others stay
    assert "revoked" not in again
    assert "partner-c" in admin.namespace_permissions("research", "climate")
    printed = _grant(deployment.broker, deployment.ca, deployment.topic, "--revoke-others")
    assert "revoked: partner-c on namespace research/climate" in printed
    assert _sorted(admin.namespace_permissions("research", "climate")) == {
        "backend": ["consume", "produce"]
    }
    assert set(admin.namespace_permissions("research", "climate-partner-a")) == {
        "backend",
        "partner-a",
    }
    assert _sorted(admin.topic_permissions(request)) == {
        "backend": ["consume", "produce"],
        "partner-a": ["produce"],
        "partner-b": ["produce"],
    }


def _calls(client: Client, marker: Path, backend: Backend) -> None:
    """Ping, info, a small call, an upload and a result in pieces, progress, a stream, a
    cancelled call."""
    assert client.ping() < PROMPT
    assert "echo_sum" in str(client.info())
    assert client.call({"func_name": "echo_sum", "values": [1.0, 2.0]}) == 3.0
    assert client.call({"func_name": "echo_sum", "values": np.ones(LARGE)}) == float(LARGE)
    assert len(client.call({"func_name": "make", "n": LARGE})) == LARGE
    seen: list[Progress] = []
    request = {"func_name": "steps", "seconds": 0.3, "marker": str(marker)}
    assert client.call(request, on_progress=seen.append) == 0.3
    assert seen, "no progress arrived"
    request = {"func_name": "counting", "n": 50, "marker": str(marker.with_suffix(".n"))}
    assert list(client.stream(request, window=4)) == list(range(50))

    async def cancel() -> None:
        marker.unlink()
        request = {"func_name": "steps", "seconds": 60.0, "marker": str(marker)}
        call = asyncio.ensure_future(client.acall(request))
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline, "the call never started"
            await asyncio.sleep(0.02)
        call.cancel()

    cancelled = backend.output().count("cancelling a running call")
    asyncio.run(cancel())
    deadline = time.monotonic() + PROMPT
    while backend.output().count("cancelling a running call") == cancelled:
        assert time.monotonic() < deadline, "the backend was not told of the cancellation"
        time.sleep(0.05)


@pytest.mark.parametrize("deployment", ["binary", "websocket"], indirect=True)
def test_a_partner_calls_with_only_the_granted_rights(
    deployment: Deployment, tmp_path: Path
) -> None:
    assert deployment.url.startswith(("pulsar+ssl://", "wss://"))
    with Client(deployment.topic, settings=deployment.settings("partner-b")) as client:
        assert client.response_topic.startswith(f"persistent://{NAMESPACE}-partner-b/")
        _calls(client, tmp_path / "marker", deployment.backend)


async def _refused(attempt: Callable[[], object]) -> str:
    """Run ``attempt`` (a coroutine function); it must be refused at once: the reason."""
    started = time.monotonic()
    with pytest.raises(DemessagingError) as info:
        await attempt()  # type: ignore[misc]
    assert time.monotonic() - started < PROMPT
    return str(info.value)


def test_a_partner_cannot_read_take_or_inject_into_anothers_calls(
    deployment: Deployment, tmp_path: Path
) -> None:
    a = deployment.settings("partner-a")
    with Client(deployment.topic, settings=deployment.settings("partner-b")) as b:
        assert b.call({"func_name": "echo_sum", "values": [1.0]}) == 1.0  # B's reply topic exists
        b_replies = b.response_topic
        side = f"persistent://{NAMESPACE}-partner-b/{deployment.topic}_fragments_0123"

        async def attempts() -> list[str]:
            transport = a.connect()
            request, control = deployment.request_topic, f"{deployment.request_topic}_control"
            try:
                return [
                    # read B's requests, or take B's calls from the backend
                    await _refused(lambda: transport.subscribe(request, "spy", shared=True)),
                    await _refused(
                        lambda: transport.subscribe(request, DEFAULT_SUBSCRIPTION, shared=True)
                    ),
                    await _refused(lambda: transport.subscribe(control, "spy", shared=True)),
                    # read B's replies (had A learned the name), or inject pieces into B's upload
                    await _refused(lambda: transport.subscribe(b_replies, "spy", shared=True)),
                    await _refused(lambda: transport.publish(b_replies, Message(b"666.0"))),
                    await _refused(lambda: transport.publish(side, Message(b"piece"))),
                ]
            finally:
                await transport.close()

        reasons = asyncio.run(attempts())
        assert len(reasons) == 6
        for namespace in ("climate", "climate-partner-b"):  # list B's topics
            with pytest.raises(DemessagingError, match="403"):
                deployment.admin("partner-a").topics("research", namespace)
        _calls(b, tmp_path / "marker", deployment.backend)  # B's calls still work


def test_a_partner_cannot_have_anothers_upload_gathered_for_itself(
    deployment: Deployment,
) -> None:
    """Had A learned the side topic of B's upload, a head naming it with A's own reply topic
    is refused: the backend neither gathers B's pieces for A nor deletes them."""
    topic, b_space = deployment.topic, f"{NAMESPACE}-partner-b"
    side = f"persistent://{b_space}/{topic}_fragments_{secrets.token_hex(16)}"
    a_replies = f"persistent://{NAMESPACE}-partner-a/{topic}_{secrets.token_hex(16)}"
    request = make_request(
        b'{"func_name": "echo_sum", "values": [1.5, 1.5, 1.5, 1.5, 1.5, 1.5]}',
        context="7",
        response_topic=f"persistent://{b_space}/{topic}_{secrets.token_hex(16)}",
    )
    pieces = split(request, 20, extra={Prop.FRAGMENTS_TOPIC: side})

    async def attempt() -> Message:
        b = deployment.settings("partner-b").connect()
        a = deployment.settings("partner-a").connect()
        try:
            holder = await b.subscribe(side, FRAGMENT_SUBSCRIPTION, shared=True)  # as B's client
            await holder.close()  # does: the subscription keeps the pieces
            for piece in pieces[1:]:
                await b.publish(side, piece)
            replies = await a.subscribe(a_replies, "a", shared=False)
            forged = {**pieces[0].properties, Prop.RESPONSE_TOPIC: a_replies}
            await a.publish(deployment.request_topic, Message(pieces[0].payload, forged))
            return await asyncio.wait_for(replies.receive(), 10)
        finally:
            await asyncio.gather(a.close(), b.close())

    reply = asyncio.run(attempt())
    assert reply.properties[Prop.STATUS] == "error", reply.payload  # not B's sum, 9.0
    assert b"namespace of its response_topic" in reply.payload
    stats = deployment.admin().request("GET", f"/admin/v2/persistent/{b_space}/{short(side)}/stats")
    assert stats["subscriptions"][FRAGMENT_SUBSCRIPTION]["msgBacklog"] == len(pieces) - 1


def test_forged_requests_land_nowhere_and_the_backend_publishes_nowhere_else(
    deployment: Deployment, tmp_path: Path
) -> None:
    a = deployment.settings("partner-a")
    request_topic = deployment.request_topic
    outside = [
        "climate_abcdefgh",  # a short name: the backend's own namespace
        f"persistent://{NAMESPACE}/stolen",
        request_topic,  # the backend's own topics: a reply loop, or noise for its readers
        f"{request_topic}_control",
        f"{request_topic}-DLQ",
        f"persistent://{NAMESPACE}/{deployment.topic}_fragments_x",
        "persistent://public/default/stolen",
        "persistent://other/space/stolen",
    ]
    admin = deployment.admin()
    control_stats = f"/admin/v2/persistent/{NAMESPACE}/{deployment.topic}_control/stats"
    with Client(deployment.topic, settings=deployment.settings("partner-b")) as b:
        b.ping()  # the backend serves: it has sent its check to its control topic
        control_before = admin.request("GET", control_stats)["msgInCounter"]

        async def scenario() -> float:
            pending = asyncio.ensure_future(
                b.acall({"func_name": "steps", "seconds": 2.0, "marker": str(tmp_path / "m")})
            )
            transport = a.connect()
            try:
                forged = b'{"func_name": "echo_sum", "values": [666.0]}'
                guesses = [b.response_topic] * 50  # had A learned B's reply topic
                guesses += [
                    f"persistent://{NAMESPACE}-partner-b/{deployment.topic}_{i:032x}"
                    for i in range(5)
                ]  # or guessed one
                for i, target in enumerate(guesses + outside):
                    message = make_request(forged, context=str(i + 1), response_topic=target)
                    await transport.publish(request_topic, message)
            finally:
                await transport.close()
            return float(await pending)

        assert asyncio.run(scenario()) == 2.0  # B's pending call got its own result, not 666.0
        with Client(deployment.topic, settings=a) as client:  # the backend has read them all
            assert client.call({"func_name": "echo_sum", "values": [2.0]}) == 2.0
        assert b.call({"func_name": "echo_sum", "values": [3.0]}) == 3.0
    names = {t.rsplit("/", 1)[-1] for t in admin.topics("research", "climate")}
    assert {n for n in names if n.startswith(deployment.topic) or "stolen" in n} == {
        deployment.topic,
        f"{deployment.topic}_control",
    }
    assert not [t for t in admin.topics("public", "default") if "stolen" in t]
    # nobody cancelled anything, and no forged request got a reply onto the control topic
    assert admin.request("GET", control_stats)["msgInCounter"] == control_before
    log = deployment.backend.output()
    # in the backend's own namespace too: in this mode it replies only to partners
    assert log.count("outside the backend's namespaces") == len(outside) - 1
    assert "is a short name" in log


def test_a_partner_without_its_reply_namespace_is_told_at_once(deployment: Deployment) -> None:
    settings = dataclasses.replace(deployment.settings("partner-a"), reply_namespace="")
    with Client(deployment.topic, settings=settings, timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(DemessagingError) as info:
            client.call({"func_name": "echo_sum", "values": [1.0]})
        assert time.monotonic() - started < PROMPT
    assert "DEMESSAGING_REPLY_NAMESPACE" in str(info.value)
