"""A client package left at the default broker (embedded://) warns; its errors name its setting."""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from demessaging.cli import cli
from demessaging.codegen import generate
from demessaging.config import Settings, setting_names
from demessaging.errors import BrokerUnreachableError, DemessagingWarning, TransportError
from tests.helpers import forget_package, generated_client

ROOT = Path(__file__).resolve().parents[2]
CLIMATE = ROOT / "examples" / "climate.py"
KITCHEN = ROOT / "tests" / "data" / "kitchen_sink.py"
WARNING = (
    "climate-client connects to embedded://, a broker of this machine only; partners "
    "elsewhere would have to set CLIMATE_CLIENT_BROKER_URL: pass the URL they reach as "
    "broker_url (--broker-url)"
)


def test_generating_without_a_broker_url_warns(tmp_path: Path) -> None:
    with pytest.warns(DemessagingWarning) as caught:
        generate(CLIMATE, tmp_path / "default")
    assert [str(w.message) for w in caught] == [WARNING]
    assert caught[0].filename == __file__  # points at the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generate(CLIMATE, tmp_path / "given", broker_url="pulsar://broker.example.org:6650")
        generate(CLIMATE, tmp_path / "local", broker_url="embedded://")  # chosen, not left


def test_the_command_line_shows_the_warning_as_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["generate", str(CLIMATE), "--output", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert result.stderr == f"warning: {WARNING}\n"
    quiet = CliRunner().invoke(
        cli, ["generate", str(CLIMATE), "-o", str(tmp_path / "q"), "--broker-url", "ws://x:1"]
    )
    assert quiet.exit_code == 0
    assert quiet.stderr == ""


def test_a_client_without_a_broker_names_its_own_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMESSAGING_DATA_DIR", str(tmp_path / "no-broker-here"))
    monkeypatch.delenv("CLIMATE_CLIENT_BROKER_URL", raising=False)
    monkeypatch.delenv("DEMESSAGING_BROKER_URL", raising=False)
    with pytest.warns(DemessagingWarning):
        package = generate(CLIMATE, tmp_path / "client")
    sys.path.insert(0, str(package.root))
    try:
        import climate_client

        with pytest.raises(TransportError) as error:
            climate_client.total([1.0, 2.0])
    finally:
        forget_package(package.package, package.root)
    assert str(error.value) == (
        f"no embedded broker is running on this machine (looked in {tmp_path / 'no-broker-here'})"
        "; set CLIMATE_CLIENT_BROKER_URL (or DEMESSAGING_BROKER_URL) to the broker's URL, or "
        "start a backend here with `demessaging listen` (or the broker with `demessaging broker`)"
    )


def test_the_command_line_names_demessaging_broker_url(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.endswith("BROKER_URL")},
        "DEMESSAGING_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "demessaging", "ping", "climate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "; set DEMESSAGING_BROKER_URL to the broker's URL, or start" in result.stderr


def test_settings_know_the_variables_they_were_read_from() -> None:
    own = Settings.from_env(("CLIMATE_CLIENT_", "DEMESSAGING_"), environ={})
    assert own.prefixes == ("CLIMATE_CLIENT_", "DEMESSAGING_")
    assert own.variable("timeout") == "CLIMATE_CLIENT_TIMEOUT (or DEMESSAGING_TIMEOUT)"
    assert Settings.from_env(environ={}).variable("broker_url") == "DEMESSAGING_BROKER_URL"
    assert Settings().variable("token") == "DEMESSAGING_TOKEN"
    assert "prefixes" not in setting_names()


def test_an_unreachable_broker_is_named_by_the_package_variable(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"pulsar://127.0.0.1:{port}"
    named = (
        f"cannot reach the broker at {url}: connection refused; start the broker, or set its "
        "URL in KS_FAR_BROKER_URL (or DEMESSAGING_BROKER_URL)"
    )
    with generated_client(KITCHEN, tmp_path / "ks", name="ks-far", broker_url=url) as ks:
        with pytest.raises(BrokerUnreachableError) as called:
            ks.root(4.0)
        assert str(called.value) == named
        with pytest.raises(BrokerUnreachableError) as streamed:
            list(ks.countdown(3))
        assert str(streamed.value) == named
        aio = importlib.import_module(f"{ks.__name__}.aio")
        with pytest.raises(BrokerUnreachableError) as awaited:
            asyncio.run(aio.root(4.0))
        assert str(awaited.value) == named
