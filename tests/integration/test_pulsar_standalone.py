"""`python -m tools.pulsar run`: Apache Pulsar on loopback only, stopped by Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demessaging._local import free_port, stop_process
from tests.brokers import selected_brokers


def _listening(pid: int) -> list[tuple[str, int]]:
    """The (address, port) pairs process ``pid`` listens on over TCP/IPv4 and IPv6."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.append((_address(address), int(port, 16)))
    return found


def _address(hex_address: str) -> str:
    if len(hex_address) == 8:  # IPv4, little-endian
        return ".".join(str(int(hex_address[i : i + 2], 16)) for i in (6, 4, 2, 0))
    return "::1" if hex_address == "0" * 24 + "01000000" else hex_address


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_standalone_broker_listens_on_loopback_only_and_stops_on_ctrl_c(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if "pulsar" not in selected_brokers(request.config):
        pytest.skip("Apache Pulsar is not among the selected brokers")
    port, web_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.pulsar",
            "run",
            "--folder",
            str(tmp_path / "broker"),
            "--port",
            str(port),
            "--web-port",
            str(web_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parents[2],  # tools/ is imported from the repository root
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 240
        lines = []
        while not any("Ctrl-C stops it" in line for line in lines):
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            lines.append(process.stdout.readline())
        java = int((tmp_path / "broker" / "pid").read_text())
        sockets = _listening(java)
        assert ("127.0.0.1", port) in sockets
        assert ("127.0.0.1", web_port) in sockets
        assert len(sockets) >= 3  # the bookie too
        assert {address for address, _ in sockets} == {"127.0.0.1"}
        process.send_signal(signal.SIGINT)
        assert process.wait(90) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(java, 0)
    finally:  # after a failure: stop the command, and the JVM should it outlive it
        stop_process(process, 90, sig=signal.SIGINT)
        with contextlib.suppress(FileNotFoundError, ValueError):
            stop_process(int((tmp_path / "broker" / "pid").read_text()), 30)
        if process.stdout is not None:
            process.stdout.close()
