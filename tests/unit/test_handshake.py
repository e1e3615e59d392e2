"""The credentials handshake, JWT creation and the Apache Pulsar helper's pure parts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import struct
import time
from pathlib import Path

import pytest

from demessaging._local import free_port
from demessaging.errors import AuthenticationError, ConfigurationError
from demessaging.tokens import create_token, new_secret
from demessaging.transport.handshake import (
    _field,
    _fields,
    check_credentials,
    connect_frame,
    refusal,
)
from tests.fakes import CONNECTED, error_command, fake_pulsar
from tools import pulsar


def _decode(b64: str) -> bytes:
    return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))


# -- tokens --------------------------------------------------------------------------------


def test_a_token_is_an_hs256_jwt_signed_with_the_secret() -> None:
    secret = new_secret()
    token = create_token(secret, "partner", expires_in=60)
    header, body, signature = token.split(".")
    assert json.loads(_decode(header)) == {"alg": "HS256", "typ": "JWT"}
    claims = json.loads(_decode(body))
    assert claims["sub"] == "partner"
    assert time.time() + 50 < claims["exp"] <= time.time() + 61
    expected = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    assert _decode(signature) == expected
    assert "exp" not in json.loads(_decode(create_token(secret, "x").split(".")[1]))
    assert len(new_secret()) == 32
    assert new_secret() != new_secret()


# -- frames --------------------------------------------------------------------------------


def test_a_connect_frame_carries_the_credentials() -> None:
    frame = connect_frame("token", b"abc.def.ghi")
    total, size = struct.unpack(">II", frame[:8])
    assert total == len(frame) - 4
    assert size == len(frame) - 8
    base = _fields(frame[8:])
    assert base[1] == 2  # CONNECT
    connect = _fields(base[2])  # type: ignore[arg-type]
    assert connect[1] == b"demessaging"
    assert connect[5] == b"token"
    assert connect[3] == b"abc.def.ghi"
    assert isinstance(connect[4], int)
    assert connect[4] > 0
    anonymous = _fields(_fields(connect_frame()[8:])[2])  # type: ignore[arg-type]
    assert 5 not in anonymous
    assert 3 not in anonymous


def test_varints_above_one_byte_round_trip() -> None:
    assert _fields(_field(1, 300) + _field(2, 2**63)) == {1: 300, 2: 2**63}


@pytest.mark.parametrize("code", [3, 4])
def test_an_authentication_or_authorization_error_is_a_refusal(code: int) -> None:
    assert refusal(error_command(code, "Failed to authenticate")) == "Failed to authenticate"


@pytest.mark.parametrize(
    "command",
    [error_command(6, "ServiceNotReady"), CONNECTED, b"", b"\xff\xff\xff", _field(1, 14)],
    ids=["other-error", "connected", "empty", "garbage", "error-without-body"],
)
def test_anything_else_is_not_a_refusal(command: bytes) -> None:
    assert refusal(command) is None


# -- check_credentials against a fake broker on 127.0.0.1 -----------------------------------


async def _check(reply: bytes | None, token: str = "") -> list[bytes]:
    async with fake_pulsar(reply) as (port, received):
        auth = ("token", token.encode()) if token else ("", b"")
        await check_credentials(f"pulsar://127.0.0.1:{port}", *auth, timeout=5)
    return received


def test_a_refused_token_raises_with_the_brokers_reason() -> None:
    with pytest.raises(AuthenticationError, match="refused the token credentials: Bad sig"):
        asyncio.run(_check(error_command(3, "Bad sig"), token="t"))


def test_a_refused_anonymous_client_is_told_to_set_a_token() -> None:
    with pytest.raises(AuthenticationError, match=r"without credentials.*DEMESSAGING_TOKEN"):
        asyncio.run(_check(error_command(3, "Failed to authenticate")))


@pytest.mark.parametrize("reply", [CONNECTED, error_command(6, "not ready"), None])
def test_an_accepted_or_unclear_handshake_passes(reply: bytes | None) -> None:
    received = asyncio.run(_check(reply, token="tok"))
    assert len(received) == 1  # the fake broker did see our CONNECT
    assert _fields(_fields(received[0])[2])[3] == b"tok"  # type: ignore[arg-type]


def test_no_broker_listening_is_left_to_the_library() -> None:
    url = f"pulsar://127.0.0.1:{_closed_port()}"
    assert asyncio.run(check_credentials(url, "token", b"t", timeout=2)) is None


def _closed_port() -> int:
    return free_port()  # free now, so nothing listens on it


# -- the Apache Pulsar helper --------------------------------------------------------------


def test_configure_replaces_settings_and_appends_new_ones(tmp_path: Path) -> None:
    template = tmp_path / "standalone.conf"
    template.write_text("# bindAddress=comment\nbindAddress=0.0.0.0\nwebServicePort=8080\n")
    text = pulsar._configure(template, {"bindAddress": "127.0.0.1", "authenticationEnabled": "1"})
    assert text.splitlines() == [
        "# bindAddress=comment",
        "bindAddress=127.0.0.1",
        "webServicePort=8080",
        "authenticationEnabled=1",
    ]


def test_install_without_maven_is_a_clearerror_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigurationError, match="needs `mvn` on PATH"):
        pulsar.install("0.0.0", cache=tmp_path)


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMESSAGING_CACHE_DIR", "/somewhere")
    assert pulsar.cache_dir() == Path("/somewhere")
    monkeypatch.delenv("DEMESSAGING_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert pulsar.cache_dir() == Path("/xdg/demessaging")


@pytest.mark.parametrize("url", ["pulsar://127.0.0.1:1,127.0.0.1:2", "pulsar://[::1]:x"])
def test_urls_it_cannot_parse_are_left_to_the_library(url: str) -> None:
    assert asyncio.run(check_credentials(url, "token", b"t", timeout=2)) is None
