"""TLS on the client side: contexts, host name checks, and one-line errors, against fake brokers.

The fake brokers are Python TLS servers on 127.0.0.1 with certificates of a private CA
(tests/certs.py): one speaks Pulsar's binary protocol far enough to answer ``CONNECT``, one is
an HTTPS server. What they check is the client's side; tests/integration/test_tls.py does the
same against Apache Pulsar.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from demessaging.backend.deadletter import Unsent, permanent
from demessaging.cli import cli
from demessaging.config import Settings
from demessaging.errors import (
    AuthenticationError,
    AuthorizationError,
    ConfigurationError,
    TransportError,
)
from demessaging.message import Message
from demessaging.transport import pulsar as pulsar_transport
from demessaging.transport import tls
from demessaging.transport.admin import PulsarAdmin
from demessaging.transport.base import TransportOptions
from demessaging.transport.handshake import check_credentials
from demessaging.transport.websocket import WebSocketTransport
from tests.certs import CA, Pair
from tests.fakes import CONNECTED, error_command, fake_pulsar, http_server
from tools import pulsar as pulsar_tool

#: Every failure here is named within this many seconds.
QUICK = 5.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two CAs, a server certificate for 127.0.0.1, one for another host, client certificates."""
    folder = tmp_path_factory.mktemp("pki")
    ca, other = CA(folder / "ca"), CA(folder / "other", "other CA")
    return {
        "ca": ca.certificate,
        "other_ca": other.certificate,
        "server": ca.server("server", "127.0.0.1"),
        "elsewhere": ca.server("elsewhere", "other.example"),
        "alice": ca.client("alice"),
        "mallory": other.client("mallory"),
    }


def _server_context(pair: Pair, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pair.certificate, pair.key)
    if client_ca is not None:  # like Pulsar: a client certificate, if any, must be trusted
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _check(url: str, options: TransportOptions) -> None:
    """The transport's first-connection check (TLS context and ``CONNECT``), timed."""
    started = time.monotonic()
    try:
        asyncio.run(pulsar_transport._check(url, options))
    finally:
        assert time.monotonic() - started < QUICK


def _on_broker(
    context: ssl.SSLContext | None, options: TransportOptions, scheme: str = "pulsar+ssl"
) -> None:
    async def scenario() -> None:
        async with fake_pulsar(CONNECTED, context) as (port, _):
            await asyncio.to_thread(_check, f"{scheme}://127.0.0.1:{port}", options)

    asyncio.run(scenario())


# -- the context ---------------------------------------------------------------------------


def test_host_names_are_checked_by_default(pki: dict[str, Any]) -> None:
    context = tls.client_context(TransportOptions(tls_trust_certs=str(pki["ca"])), "wss://h")
    assert context.check_hostname is True
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_the_opt_out_turns_the_check_off_and_warns(
    pki: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    options = TransportOptions(
        tls_trust_certs=str(pki["ca"]), tls_insecure_skip_hostname_check=True
    )
    with caplog.at_level(logging.WARNING, "demessaging.transport.tls"):
        context = tls.client_context(options, "wss://broker:8443")
        tls.client_context(options, "wss://broker:8443")
    assert context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED  # the CA still counts
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # each time
    assert "wss://broker:8443" in warnings[0].getMessage()
    assert tls.INSECURE_SETTING in warnings[0].getMessage()


def test_the_opt_out_is_a_setting() -> None:
    env = {"DEMESSAGING_TLS_INSECURE_SKIP_HOSTNAME_CHECK": "true"}
    assert Settings.from_env(environ=env).transport.tls_insecure_skip_hostname_check is True
    assert Settings.from_env(environ={}).transport.tls_insecure_skip_hostname_check is False


@pytest.mark.parametrize(
    ("fields", "setting"),
    [
        ({"tls_trust_certs": "missing/ca.pem"}, "DEMESSAGING_TLS_TRUST_CERTS"),
        (
            {"tls_certificate": "missing/cert.pem", "tls_key": "missing/key.pem"},
            "DEMESSAGING_TLS_CERTIFICATE",
        ),
    ],
)
def test_a_missing_file_is_named_with_its_setting(
    tmp_path: Path, fields: dict[str, str], setting: str
) -> None:
    fields = {k: str(tmp_path / v) for k, v in fields.items()}
    with pytest.raises(ConfigurationError, match=f"{tmp_path}/missing.*does not exist.*{setting}"):
        tls.client_context(TransportOptions(**fields), "wss://h")


def test_a_key_not_matching_its_certificate_is_named(pki: dict[str, Any]) -> None:
    options = TransportOptions(
        tls_certificate=str(pki["alice"].certificate), tls_key=str(pki["mallory"].key)
    )
    with pytest.raises(ConfigurationError, match=r"does not match the client certificate.*_KEY"):
        tls.client_context(options, "pulsar+ssl://h:6651")


def test_a_certificate_without_its_key_is_refused(pki: dict[str, Any]) -> None:
    options = TransportOptions(tls_certificate=str(pki["alice"].certificate))
    with pytest.raises(ConfigurationError, match="without DEMESSAGING_TLS_KEY"):
        tls.client_context(options, "wss://h")


def test_a_ca_bundle_that_is_no_pem_is_named(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match="holds no PEM certificate"):
        tls.client_context(TransportOptions(tls_trust_certs=str(tmp_path / "ca.pem")), "wss://h")


# -- pulsar+ssl:// --------------------------------------------------------------------------


def test_a_trusted_broker_with_the_right_name_passes(pki: dict[str, Any]) -> None:
    _on_broker(_server_context(pki["server"]), TransportOptions(tls_trust_certs=str(pki["ca"])))


def test_a_certificate_for_another_host_is_refused_at_once(pki: dict[str, Any]) -> None:
    options = TransportOptions(tls_trust_certs=str(pki["ca"]))
    with pytest.raises(TransportError, match=r"not valid for this host name.*INSECURE_SKIP"):
        _on_broker(_server_context(pki["elsewhere"]), options)


def test_the_opt_out_takes_a_certificate_for_another_host(
    pki: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    options = TransportOptions(
        tls_trust_certs=str(pki["ca"]), tls_insecure_skip_hostname_check=True
    )
    with caplog.at_level(logging.WARNING, "demessaging.transport.tls"):
        _on_broker(_server_context(pki["elsewhere"]), options)
    assert "verification is OFF" in caplog.text


def test_the_library_is_told_to_check_host_names(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []

    class Client:
        def __init__(self, url: str, **kwargs: Any) -> None:
            made.append(kwargs)

    async def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(pulsar_transport.pulsar_asyncio, "Client", Client)
    monkeypatch.setattr(pulsar_transport, "check_reachable", nothing)
    monkeypatch.setattr(pulsar_transport, "_check", nothing)
    for skip in (False, True):
        transport = pulsar_transport.PulsarTransport(
            "pulsar+ssl://h:6651", TransportOptions(tls_insecure_skip_hostname_check=skip)
        )
        asyncio.run(transport._connect())
    plain = pulsar_transport.PulsarTransport("pulsar://h:6650")
    asyncio.run(plain._connect())
    assert [m.get("tls_validate_hostname") for m in made] == [True, False, None]


def test_a_certificate_next_to_a_token_goes_to_the_handshake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[dict[str, Any]] = []

    class Client:
        def __init__(self, url: str, **kwargs: Any) -> None:
            made.append(kwargs)

    async def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(pulsar_transport.pulsar_asyncio, "Client", Client)
    monkeypatch.setattr(pulsar_transport, "check_reachable", nothing)
    monkeypatch.setattr(pulsar_transport, "_check", nothing)
    options = TransportOptions(token="t", tls_certificate="c.pem", tls_key="k.pem")
    asyncio.run(pulsar_transport.PulsarTransport("pulsar+ssl://h:6651", options)._connect())
    assert made[0]["tls_certificate_file_path"] == "c.pem"
    assert made[0]["tls_private_key_file_path"] == "k.pem"
    assert isinstance(made[0]["authentication"], pulsar_transport.pulsar.AuthenticationToken)
    monkeypatch.setattr(pulsar_transport, "_CLIENT_PARAMETERS", frozenset())
    transport = pulsar_transport.PulsarTransport("pulsar+ssl://h:6651", options)
    with pytest.raises(ConfigurationError, match="cannot present a client certificate"):
        asyncio.run(transport._connect())


def test_an_untrusted_ca_is_named(pki: dict[str, Any]) -> None:
    options = TransportOptions(tls_trust_certs=str(pki["other_ca"]))
    with pytest.raises(TransportError, match=r"not trusted.*DEMESSAGING_TLS_TRUST_CERTS"):
        _on_broker(_server_context(pki["server"]), options)


def test_tls_to_a_plain_port_is_named(pki: dict[str, Any]) -> None:
    options = TransportOptions(tls_trust_certs=str(pki["ca"]))
    with pytest.raises(TransportError, match=r"plain port, not its TLS port: use pulsar://"):
        _on_broker(None, options)


def test_plain_to_a_tls_port_is_named(pki: dict[str, Any]) -> None:
    with pytest.raises(TransportError, match=r"is a TLS port: use pulsar\+ssl://"):
        _on_broker(_server_context(pki["server"]), TransportOptions(), scheme="pulsar")


def test_an_untrusted_client_certificate_is_named(pki: dict[str, Any]) -> None:
    mallory = pki["mallory"]
    options = TransportOptions(
        tls_trust_certs=str(pki["ca"]),
        tls_certificate=str(mallory.certificate),
        tls_key=str(mallory.key),
    )
    with pytest.raises(AuthenticationError, match=r"refused the client certificate.*CERTIFICATE"):
        _on_broker(_server_context(pki["server"], client_ca=pki["ca"]), options)


def test_a_broker_requiring_a_client_certificate_says_so(pki: dict[str, Any]) -> None:
    server = _server_context(pki["server"], client_ca=pki["ca"])
    server.verify_mode = ssl.CERT_REQUIRED  # tlsRequireTrustedClientCertOnConnect
    options = TransportOptions(tls_trust_certs=str(pki["ca"]))
    with pytest.raises(AuthenticationError, match=r"want a client certificate.*_CERTIFICATE"):
        _on_broker(server, options)


def test_a_trusted_client_certificate_passes(pki: dict[str, Any]) -> None:
    alice = pki["alice"]
    options = TransportOptions(
        tls_trust_certs=str(pki["ca"]),
        tls_certificate=str(alice.certificate),
        tls_key=str(alice.key),
    )
    _on_broker(_server_context(pki["server"], client_ca=pki["ca"]), options)


def test_an_authorization_refusal_is_not_an_authentication_error() -> None:
    async def scenario() -> None:
        async with fake_pulsar(error_command(4, "not allowed")) as (port, _):
            await check_credentials(f"pulsar://127.0.0.1:{port}", "token", b"t", timeout=5)

    with pytest.raises(AuthorizationError, match="not allowed") as info:
        asyncio.run(scenario())
    assert not isinstance(info.value, AuthenticationError)


def test_the_librarys_authorization_errors_are_authorization_errors() -> None:
    async def refused() -> None:
        raise pulsar_transport.pulsar.AuthorizationError("Pulsar error: AuthorizationError")

    with pytest.raises(AuthorizationError, match="needs a grant"):
        asyncio.run(pulsar_transport._guard(refused(), "creating a producer on t"))


def test_a_reply_the_role_may_not_publish_is_logged_as_an_authorization_refusal() -> None:
    refused = AuthorizationError("publishing to persistent://p/replies/r failed: 8 Authoriz")
    text = Unsent.why("persistent://p/replies/r", refused)
    assert "does not authorize this backend's role" in text
    assert "'persistent://p/replies/r'" in text
    assert permanent(refused)
    assert "authoriz" not in Unsent.why("t", TransportError("3 Timeout"))


# -- wss:// and https:// --------------------------------------------------------------------


@contextlib.contextmanager
def https_server(context: ssl.SSLContext, status: int = 200) -> Iterator[int]:
    """An HTTPS server answering every GET with ``status`` and ``[]``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = b"[]" if status == 200 else b"<html><body>Jetty says no</body></html>"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with http_server(Handler, context) as server:
        yield server.server_address[1]


def test_wss_refuses_a_certificate_for_another_host(pki: dict[str, Any]) -> None:
    async def scenario(port: int) -> None:
        transport = WebSocketTransport(
            f"wss://127.0.0.1:{port}", TransportOptions(tls_trust_certs=str(pki["ca"]))
        )
        try:
            await transport.publish("t", Message(payload=b"x", properties={}))
        finally:
            await transport.close()

    with https_server(_server_context(pki["elsewhere"])) as port:
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"not valid for this host name"):
            asyncio.run(scenario(port))
        assert time.monotonic() - started < QUICK


def test_wss_presents_the_client_certificate(pki: dict[str, Any]) -> None:
    alice = pki["alice"]
    options = TransportOptions(
        tls_trust_certs=str(pki["ca"]),
        tls_certificate=str(alice.certificate),
        tls_key=str(alice.key),
    )
    server = _server_context(pki["server"], client_ca=pki["ca"])
    server.verify_mode = ssl.CERT_REQUIRED  # no certificate, no HTTP
    with https_server(server, status=404) as port:
        # the server answered HTTP: the handshake with the certificate went through
        with pytest.raises(TransportError, match="HTTP 404"):
            asyncio.run(_publish(f"wss://127.0.0.1:{port}", options))
        without = TransportOptions(tls_trust_certs=str(pki["ca"]))
        with pytest.raises(TransportError) as info:
            asyncio.run(_publish(f"wss://127.0.0.1:{port}", without))
        assert "HTTP 404" not in str(info.value)


async def _publish(url: str, options: TransportOptions) -> None:
    transport = WebSocketTransport(url, options)
    try:
        await transport.publish("t", Message(payload=b"x", properties={}))
    finally:
        await transport.close()


def test_wss_with_a_missing_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    options = TransportOptions(tls_trust_certs=str(tmp_path / "ca.pem"))
    with pytest.raises(ConfigurationError, match=f"{tmp_path}/ca.pem.*TLS_TRUST_CERTS"):
        WebSocketTransport("wss://127.0.0.1:8443", options)


def test_the_admin_api_refuses_a_certificate_for_another_host(pki: dict[str, Any]) -> None:
    with https_server(_server_context(pki["elsewhere"])) as port:
        admin = PulsarAdmin(f"https://127.0.0.1:{port}", tls_trust_certs=str(pki["ca"]))
        with pytest.raises(TransportError, match=r"not valid for this host name"):
            admin.request("GET", "/admin/v2/tenants")
        skip = TransportOptions(
            tls_trust_certs=str(pki["ca"]), tls_insecure_skip_hostname_check=True
        )
        assert PulsarAdmin(f"https://127.0.0.1:{port}", options=skip).request("GET", "/x") == []


def test_the_admin_api_names_a_wanted_client_certificate(pki: dict[str, Any]) -> None:
    server = _server_context(pki["server"], client_ca=pki["ca"])
    server.verify_mode = ssl.CERT_REQUIRED
    with https_server(server) as port:
        admin = PulsarAdmin(f"https://127.0.0.1:{port}", tls_trust_certs=str(pki["ca"]))
        with pytest.raises(AuthenticationError, match=r"client certificate.*_TLS_CERTIFICATE"):
            admin.request("GET", "/admin/v2/tenants")
        alice = pki["alice"]
        options = TransportOptions(
            tls_trust_certs=str(pki["ca"]),
            tls_certificate=str(alice.certificate),
            tls_key=str(alice.key),
        )
        assert PulsarAdmin(f"https://127.0.0.1:{port}", options=options).request("GET", "/") == []


def test_the_admin_api_with_a_missing_ca_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"ca\.pem does not exist"):
        PulsarAdmin("https://127.0.0.1:8443", tls_trust_certs=str(tmp_path / "ca.pem"))


def test_status_with_a_missing_ca_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    result = CliRunner().invoke(
        cli,
        ["status", "climate", "--broker-url", "pulsar+ssl://127.0.0.1:6651"],
        env={"DEMESSAGING_TLS_TRUST_CERTS": str(missing)},
    )
    assert result.exit_code == 1
    assert f"Error: the CA bundle {missing} does not exist" in result.output
    assert "DEMESSAGING_TLS_TRUST_CERTS" in result.output
    assert "Traceback" not in result.output


# -- the test broker's switches ------------------------------------------------------------


def test_the_test_broker_needs_its_tls_files(tmp_path: Path) -> None:
    files = pulsar_tool.TLS(tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem")
    with pytest.raises(ConfigurationError, match=r"c\.pem does not exist"):
        pulsar_tool._tls_conf(files, False)
    with pytest.raises(ConfigurationError, match="need tls="):
        pulsar_tool.start(tmp_path, client_certificates=True)
    with pytest.raises(ConfigurationError, match="need a token_secret"):
        pulsar_tool.start(tmp_path, authorization=True)


def test_the_test_broker_serves_tls_on_two_more_ports(pki: dict[str, Any]) -> None:
    server = pki["server"]
    conf = pulsar_tool._tls_conf(pulsar_tool.TLS(server.certificate, server.key, pki["ca"]), True)
    assert conf["brokerServicePortTls"] != conf["webServicePortTls"]
    assert conf["tlsRequireTrustedClientCertOnConnect"] == "true"
    assert conf["tlsKeyFilePath"] == str(server.key.resolve())
