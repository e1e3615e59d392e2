"""Apache Pulsar with TLS, tokens, client certificates and authorization, as deployed.

One broker for the module: TLS on both its protocols with a server certificate of a private CA
for 127.0.0.1 (not ``localhost``: reached as ``localhost``, its certificate is one for another
host), token and client-certificate authentication, a trusted client certificate required in
every TLS handshake (with a token as well, the token names the role), authorization on. The
backend's role and the partner roles are granted produce and consume on ``public/default``;
the role ``nobody`` is granted nothing.

Every failure must come within :data:`QUICK` seconds, in one line naming the URL, the reason
and the setting to check (the library alone would retry for its operation timeout).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from demessaging.client import Client
from demessaging.config import Settings
from demessaging.errors import (
    AuthenticationError,
    AuthorizationError,
    ConfigurationError,
    DemessagingError,
    TransportError,
)
from demessaging.protocol.outgoing import make_request
from demessaging.tokens import create_token
from demessaging.transport import TransportOptions
from demessaging.transport.admin import PulsarAdmin
from demessaging.transport.pulsar import PulsarTransport
from tests.brokers import secured_pulsar
from tests.certs import CA, Pair
from tools import pulsar

from .conftest import Backend
from .test_calls import WORKERS

QUICK = 5.0
CALL = {"func_name": "echo_sum", "values": [1, 2]}


@dataclass
class Secured:
    broker: pulsar.PulsarStandalone
    secret: bytes
    ca: Path
    other_ca: Path
    alice: Pair  # a partner's client certificate (role "alice")
    backend: Pair  # the backend's (role "backend")
    mallory: Pair  # a client certificate of another CA

    def token(self, role: str) -> str:
        return create_token(self.secret, role)

    def options(self, role: str = "partner", **fields: object) -> TransportOptions:
        """A token of ``role``, and alice's certificate for the TLS handshake."""
        base = TransportOptions(
            token=self.token(role),
            tls_trust_certs=str(self.ca),
            tls_certificate=str(self.alice.certificate),
            tls_key=str(self.alice.key),
        )
        return replace(base, **fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Secured]:
    with secured_pulsar(
        request,
        "pulsar-tls",
        "TLS",
        client_certificates=True,
        require_client_certificates=True,
        authorization=True,
    ) as running:
        broker, ca = running.broker, running.ca
        assert ca is not None
        admin = PulsarAdmin(broker.admin_url, token=broker.admin_token)
        for role in ("backend", "partner", "alice"):
            admin.request(
                "POST",
                f"/admin/v2/namespaces/public/default/permissions/{role}",
                ["produce", "consume"],
            )
        other = CA(tmp_path_factory.mktemp("other-ca"), "other CA")
        yield Secured(
            broker,
            running.secret,
            ca.certificate,
            other.certificate,
            ca.client("alice"),
            ca.client("backend"),
            other.client("mallory"),
        )


@pytest.fixture
def backend(secured: Secured, launch: Callable[..., Backend], topic: str) -> Backend:
    """A backend on ``topic`` over pulsar+ssl://, with the role ``backend``."""
    env = {
        "DEMESSAGING_TOKEN": secured.token("backend"),
        "DEMESSAGING_TLS_TRUST_CERTS": str(secured.ca),
        "DEMESSAGING_TLS_CERTIFICATE": str(secured.backend.certificate),
        "DEMESSAGING_TLS_KEY": str(secured.backend.key),
    }
    return launch(WORKERS, topic, secured.broker.tls_url, env=env)


def _call(url: str, topic: str, options: TransportOptions) -> object:
    with Client(topic, settings=Settings(broker_url=url, transport=options), timeout=30) as client:
        return client.call(CALL)


def _refused(url: str, topic: str, options: TransportOptions) -> DemessagingError:
    """The error of a call that must fail within QUICK seconds."""
    started = time.monotonic()
    with pytest.raises(DemessagingError) as info:
        _call(url, topic, options)
    assert time.monotonic() - started < QUICK, info.value
    assert "\n" not in str(info.value)
    return info.value


def _urls(secured: Secured) -> dict[str, str]:
    return {"pulsar+ssl": secured.broker.tls_url, "wss": secured.broker.wss_url}


@pytest.mark.parametrize("scheme", ["pulsar+ssl", "wss"])
@pytest.mark.parametrize("credential", ["token", "certificate"])
def test_a_call_works_over_tls_with_a_private_ca(
    secured: Secured, backend: Backend, topic: str, scheme: str, credential: str
) -> None:
    options = secured.options()
    if credential == "certificate":  # the role is the certificate's CN
        alice = secured.alice
        options = replace(
            options, token="", tls_certificate=str(alice.certificate), tls_key=str(alice.key)
        )
    assert _call(_urls(secured)[scheme], topic, options) == 3.0


@pytest.mark.parametrize("scheme", ["pulsar+ssl", "wss"])
def test_a_certificate_for_another_host_is_refused_at_once(
    secured: Secured, topic: str, scheme: str
) -> None:
    url = _urls(secured)[scheme].replace("127.0.0.1", "localhost")
    error = _refused(url, topic, secured.options())
    assert isinstance(error, TransportError)
    assert "localhost" in str(error)
    assert "not valid for this host name" in str(error)
    assert "DEMESSAGING_TLS_INSECURE_SKIP_HOSTNAME_CHECK" in str(error)


def test_the_admin_api_refuses_a_certificate_for_another_host(secured: Secured) -> None:
    url, token = secured.broker.admin_tls_url, secured.broker.admin_token
    elsewhere = url.replace("127.0.0.1", "localhost")
    admin = PulsarAdmin(elsewhere, token=token, options=secured.options())
    with pytest.raises(TransportError, match="not valid for this host name"):
        admin.request("GET", "/admin/v2/tenants")
    assert "public" in PulsarAdmin(url, token=token, options=secured.options()).request(
        "GET", "/admin/v2/tenants"
    )
    without = PulsarAdmin(url, token=token, options=secured.options(tls_certificate="", tls_key=""))
    with pytest.raises(AuthenticationError, match="wants a client certificate"):
        without.request("GET", "/admin/v2/tenants")


@pytest.mark.parametrize("scheme", ["pulsar+ssl", "wss"])
def test_the_opt_out_takes_it_and_warns(
    secured: Secured, backend: Backend, topic: str, scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = _urls(secured)[scheme].replace("127.0.0.1", "localhost")
    options = secured.options(tls_insecure_skip_hostname_check=True)
    with caplog.at_level(logging.WARNING, "demessaging.transport.tls"):
        assert _call(url, topic, options) == 3.0
    assert f"verification is OFF for {url}" in caplog.text


@pytest.mark.parametrize("scheme", ["pulsar+ssl", "wss"])
def test_a_wrong_ca_is_named(secured: Secured, topic: str, scheme: str) -> None:
    error = _refused(
        _urls(secured)[scheme], topic, secured.options(tls_trust_certs=str(secured.other_ca))
    )
    assert isinstance(error, TransportError)
    assert "not trusted" in str(error)
    assert "DEMESSAGING_TLS_TRUST_CERTS" in str(error)


def test_a_scheme_that_does_not_fit_the_port_is_named(secured: Secured, topic: str) -> None:
    broker = secured.broker
    plain_to_tls = broker.tls_url.replace("pulsar+ssl://", "pulsar://")
    error = _refused(plain_to_tls, topic, secured.options())
    assert "is a TLS port: use pulsar+ssl://" in str(error)
    tls_to_plain = broker.broker_url.replace("pulsar://", "pulsar+ssl://")
    error = _refused(tls_to_plain, topic, secured.options())
    assert "plain port, not its TLS port" in str(error)
    wss_to_plain = f"wss://127.0.0.1:{broker.web_port}"
    error = _refused(wss_to_plain, topic, secured.options())
    assert "TLS port" in str(error)


@pytest.mark.parametrize("scheme", ["pulsar+ssl", "wss"])
@pytest.mark.parametrize("token", [True, False])
def test_an_untrusted_client_certificate_is_named(
    secured: Secured, topic: str, scheme: str, token: bool
) -> None:
    mallory = secured.mallory
    options = secured.options(tls_certificate=str(mallory.certificate), tls_key=str(mallory.key))
    if not token:
        options = replace(options, token="")
    error = _refused(_urls(secured)[scheme], topic, options)
    assert isinstance(error, AuthenticationError)
    assert "refused the client certificate" in str(error)
    assert "DEMESSAGING_TLS_CERTIFICATE" in str(error)


@pytest.mark.parametrize("scheme", ["pulsar+ssl", "wss"])
def test_a_client_without_a_certificate_is_told_one_is_wanted(
    secured: Secured, topic: str, scheme: str
) -> None:
    options = secured.options(tls_certificate="", tls_key="")
    error = _refused(_urls(secured)[scheme], topic, options)
    assert isinstance(error, AuthenticationError)
    assert "DEMESSAGING_TLS_CERTIFICATE" in str(error)


def test_a_key_not_matching_its_certificate_is_named(secured: Secured, topic: str) -> None:
    options = secured.options(
        tls_certificate=str(secured.alice.certificate), tls_key=str(secured.mallory.key)
    )
    for url in _urls(secured).values():
        error = _refused(url, topic, options)
        assert isinstance(error, ConfigurationError)
        assert "does not match the client certificate" in str(error)


def test_a_missing_ca_file_is_named(secured: Secured, topic: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    for url in _urls(secured).values():
        error = _refused(url, topic, secured.options(tls_trust_certs=str(missing)))
        assert isinstance(error, ConfigurationError)
        assert str(missing) in str(error)
        assert "DEMESSAGING_TLS_TRUST_CERTS" in str(error)


@pytest.mark.parametrize("scheme", ["pulsar", "pulsar+ssl", "wss"])
def test_a_role_without_grants_gets_an_authorization_error(
    secured: Secured, topic: str, scheme: str
) -> None:
    url = {"pulsar": secured.broker.broker_url, **_urls(secured)}[scheme]
    error = _refused(url, topic, secured.options("nobody"))
    assert isinstance(error, AuthorizationError)
    assert not isinstance(error, AuthenticationError)


def test_a_backend_that_may_not_reply_logs_an_authorization_refusal(
    secured: Secured, launch: Callable[..., Backend], topic: str
) -> None:
    """A reply topic in a namespace where only the partner may publish."""
    admin = PulsarAdmin(secured.broker.admin_url, token=secured.broker.admin_token)
    admin.ensure_namespace("public", "partner-only")
    admin.request(
        "POST",
        "/admin/v2/namespaces/public/partner-only/permissions/partner",
        ["produce", "consume"],
    )
    env = {
        "DEMESSAGING_TOKEN": secured.token("backend"),
        "DEMESSAGING_TLS_TRUST_CERTS": str(secured.ca),
        "DEMESSAGING_TLS_CERTIFICATE": str(secured.backend.certificate),
        "DEMESSAGING_TLS_KEY": str(secured.backend.key),
        "DEMESSAGING_REPLY_NAMESPACES": "public/partner-only",
    }
    backend = launch(WORKERS, topic, secured.broker.tls_url, env=env)
    reply_topic = f"persistent://public/partner-only/reply-{topic}"
    request = make_request(json.dumps(CALL).encode(), context="1", response_topic=reply_topic)

    async def send() -> None:
        transport = PulsarTransport(secured.broker.tls_url, secured.options())
        try:
            await transport.publish(topic, request)
        finally:
            await transport.close()

    asyncio.run(send())
    deadline = time.monotonic() + 10
    while "authorization refused" not in backend.output() and time.monotonic() < deadline:
        time.sleep(0.2)
    line = next(line for line in backend.output().splitlines() if "authorization refused" in line)
    assert reply_topic in line
    assert "does not authorize this backend's role to publish its reply" in line
