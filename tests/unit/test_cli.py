"""The demessaging command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from demessaging._local import stop_process
from demessaging.cli import cli

ROOT = Path(__file__).resolve().parents[2]
CLIMATE = str(ROOT / "examples" / "climate.py")


@pytest.fixture
def run() -> Callable[..., object]:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> object:
        return runner.invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.mark.parametrize("command", ["schema", "generate", "listen", "call"])
def test_every_command_has_help(run: Callable[..., object], command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0  # type: ignore[attr-defined]
    assert "MODULE" in result.output  # type: ignore[attr-defined]


def test_schema_prints_the_module_schema(run: Callable[..., object]) -> None:
    result = run("schema", CLIMATE)
    schema = json.loads(result.output)  # type: ignore[attr-defined]
    assert schema["title"] == "climate"
    assert {"FuncTotal", "ClassTimeSeries", "MethClassTimeSeriesMean"} <= set(schema["$defs"])


def test_schema_api_info_layout(run: Callable[..., object]) -> None:
    info = json.loads(run("schema", "--api-info", CLIMATE).output)  # type: ignore[attr-defined]
    assert set(info) == {"functions", "classes", "rpc_schema"}
    assert info["functions"][0].keys() == {"name", "rpc_schema", "return_schema"}


def test_committed_envelope_schemas_are_fresh(run: Callable[..., object], tmp_path: Path) -> None:
    """schemas/ is written by `demessaging schema --envelope schemas/`; rerun it if this fails."""
    assert run("schema", "--envelope", str(tmp_path)).exit_code == 0  # type: ignore[attr-defined]
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_text() for p in (ROOT / "schemas").iterdir()}
    assert fresh == committed


def test_schema_needs_a_module(run: Callable[..., object]) -> None:
    result = run("schema")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "give a MODULE" in result.output  # type: ignore[attr-defined]


def test_generate_writes_a_package_and_refuses_to_overwrite(
    run: Callable[..., object], tmp_path: Path
) -> None:
    out = tmp_path / "client"
    first = run(
        "generate", CLIMATE, "--output", str(out), "--name", "climate-partner", "--timeout", "5"
    )
    assert first.exit_code == 0  # type: ignore[attr-defined]
    assert "climate_partner" in first.output  # type: ignore[attr-defined]
    printed = first.output.splitlines()  # type: ignore[attr-defined]
    assert printed[-1] == f"  pip install --find-links {out}/wheels {out}"
    assert (out / "wheels").is_dir()
    assert "timeout=5.0" in (out / "climate_partner" / "__init__.py").read_text()
    again = run("generate", CLIMATE, "--output", str(out))
    assert again.exit_code == 1  # type: ignore[attr-defined]
    assert "not empty" in again.output  # type: ignore[attr-defined]
    assert run("generate", CLIMATE, "-o", str(out), "--force").exit_code == 0  # type: ignore[attr-defined]


def test_call_runs_a_request_locally(run: Callable[..., object], tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"func_name": "total", "values": [1, 2, 3.5]}))
    result = run("call", CLIMATE, str(request))
    assert result.exit_code == 0  # type: ignore[attr-defined]
    assert json.loads(result.output) == 6.5  # type: ignore[attr-defined]
    method = json.dumps(
        {
            "class_name": "TimeSeries",
            "values": [1, 3],
            "start": "2024-01-01",
            "function": {"func_name": "mean"},
        }
    )
    assert json.loads(run("call", CLIMATE, "-", input=method).output) == 2.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("request_text", "message"),
    [
        ('{"func_name": "nope"}', "error validating request"),
        ("not json", "Invalid JSON"),
        (
            json.dumps(
                {
                    "class_name": "TimeSeries",
                    "values": [1],
                    "start": "2024-01-01",
                    "function": {"func_name": "resample", "factor": 0},
                }
            ),
            "error executing request: ValueError: factor must be at least 1",
        ),
    ],
)
def test_call_reports_errors_with_exit_status_1(
    run: Callable[..., object], request_text: str, message: str
) -> None:
    result = run("call", CLIMATE, "-", input=request_text)
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert message in result.output  # type: ignore[attr-defined]


def test_missing_module_is_a_clear_error(run: Callable[..., object]) -> None:
    result = run("schema", "no/such/module.py")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "no such file: 'no/such/module.py'" in result.output  # type: ignore[attr-defined]


def test_signature_errors_name_member_and_parameter(
    run: Callable[..., object], write_backend: Callable[[str], Path]
) -> None:
    path = write_backend("def f(*values: float) -> float:\n    return sum(values)\n")
    result = run("schema", str(path))
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "parameter 'values' of 'f'" in result.output  # type: ignore[attr-defined]


def test_warnings_are_shown_briefly(write_backend: Callable[[str], Path]) -> None:
    path = write_backend("def f(x) -> int:\n    return 1\n")
    result = CliRunner().invoke(cli, ["schema", str(path)])
    assert result.exit_code == 0
    assert "warning: parameter 'x' of 'f' has no annotation" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_listen_serves_until_signalled_then_stops_cleanly(sig: signal.Signals) -> None:
    env = {**os.environ, "DEMESSAGING_BROKER_URL": "memory://"}
    process = subprocess.Popen(
        [sys.executable, "-m", "demessaging", "listen", CLIMATE, "--workers", "2"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 30
        line = ""
        while "serving" not in line and time.monotonic() < deadline:
            line = process.stderr.readline()
        assert "serving climate on topic 'climate'" in line
        process.send_signal(sig)
        _, rest = process.communicate(timeout=30)
        assert process.returncode == 0
        assert "stopped serving topic 'climate'" in rest
    finally:
        stop_process(process, 10)


def test_every_broker_url_option_names_each_scheme() -> None:
    commands = [(name, command) for name, command in cli.commands.items()]
    checked = 0
    for name, command in commands:
        for option in command.params:
            if "--broker-url" in getattr(option, "opts", ()):
                text = option.help or ""
                for scheme in ("pulsar://", "pulsar+ssl://", "ws://", "wss://"):
                    assert scheme in text, f"{name} --broker-url: {scheme} missing"
                checked += 1
    assert checked >= 5
