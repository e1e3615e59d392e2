"""The embedded broker: pulsar-lite on 127.0.0.1, for machines where no broker is configured.

One broker per data directory (``$DEMESSAGING_DATA_DIR``, else ``$XDG_DATA_HOME/demessaging``,
else ``~/.local/share/demessaging``). Its process id and port are kept in ``broker.json`` there,
so that every backend and client on the machine finds the same broker. It binds 127.0.0.1 only,
with its metrics endpoint switched off, and keeps its data in ``pulsar-lite/``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ._local import free_port, locked, stop_process
from .errors import ConfigurationError, TransportError

__all__ = ["EmbeddedBroker", "data_dir", "find_running", "resolve", "start"]

log = logging.getLogger("demessaging.embedded")
#: The write-buffer high-water mark of the broker's connections, in bytes. pulsar-lite 0.2
#: holds back a message for a consumer whose connection has more bytes waiting to be written,
#: and sends it only at the subscription's next event (a publish, flow permits, a consumer
#: coming or going): with its default (64 KiB), 1 MiB pieces waited whenever the last ones were
#: held back (a 100 MiB request failed about once in 20 to 100 calls). Above what the
#: consumers of one connection let come (a backend gathering its 16 uploads at once, 16 pieces
#: of 1 MiB each: 256 MiB), while their permits still bound what the broker buffers.
WRITE_BUFFER = 512 * 1024 * 1024
CONFIG = f"""# written by demessaging: loopback only, no metrics endpoint, room for large payloads
pulsar_channel_write_buffer_high_water_mark_bytes = {WRITE_BUFFER}
pulsar_channel_write_buffer_low_water_mark_bytes = {WRITE_BUFFER // 2}

[metrics]
enabled = false
"""


def data_dir() -> Path:
    """Where the embedded broker keeps its state and data."""
    if os.environ.get("DEMESSAGING_DATA_DIR"):
        return Path(os.environ["DEMESSAGING_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "demessaging"


@dataclass
class EmbeddedBroker:
    """A running pulsar-lite broker.

    Attributes
    ----------
    url
        Its service URL, ``pulsar://127.0.0.1:<port>``.
    pid
        Its process id.
    folder
        Its data directory.
    owned
        Whether this process started it (and so stops it).
    """

    url: str
    pid: int
    folder: Path
    owned: bool = False
    _process: subprocess.Popen[bytes] | None = None

    @property
    def broker_url(self) -> str:
        """The URL demessaging reaches it by: ``pulsar-lite://``, with its work-arounds."""
        return self.url.replace("pulsar://", "pulsar-lite://", 1)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker by its PID (SIGTERM, then SIGKILL), if this process started it."""
        if not self.owned:
            return
        stop_process(self._process or self.pid, timeout, name="the embedded broker")
        with contextlib.suppress(FileNotFoundError, ValueError, OSError):
            if _read_state(self.folder).get("pid") == self.pid:
                (self.folder / "broker.json").unlink()
        log.info("stopped the embedded broker (pid %d)", self.pid)

    def __enter__(self) -> EmbeddedBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_state(folder: Path) -> dict[str, int]:
    data: dict[str, int] = json.loads((folder / "broker.json").read_text())
    return data


def _alive(pid: int, port: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def find_running(folder: Path | None = None) -> EmbeddedBroker | None:
    """The embedded broker running for ``folder`` (default :func:`data_dir`), or None."""
    folder = folder or data_dir()
    try:
        state = _read_state(folder)
        pid, port = int(state["pid"]), int(state["port"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid, port):
        return None
    return EmbeddedBroker(url=f"pulsar://127.0.0.1:{port}", pid=pid, folder=folder)


def resolve(broker_url: str, *, setting: str = "DEMESSAGING_BROKER_URL") -> str:
    """``broker_url``, with ``embedded://`` turned into the running embedded broker's URL.

    Other URLs are returned as they are. ``setting`` names the variable that changes the
    broker URL, for the error.

    Raises
    ------
    TransportError
        For ``embedded://`` when no embedded broker runs on this machine.
    """
    if urlsplit(broker_url).scheme != "embedded":
        return broker_url
    broker = find_running()
    if broker is None:
        raise TransportError(
            f"no embedded broker is running on this machine (looked in {data_dir()}); set "
            f"{setting} to the broker's URL, or start a backend here with `demessaging "
            "listen` (or the broker with `demessaging broker`)"
        )
    return broker.broker_url


def _binary() -> str:
    try:
        from pulsar_lite.binary_finder import find_pulsar_lite_binary
    except ImportError:
        raise ConfigurationError(
            "the embedded broker needs the pulsar-lite package, which has no build for this "
            "platform here; install it, or set DEMESSAGING_BROKER_URL to a Pulsar broker"
        ) from None
    return str(find_pulsar_lite_binary())


def start(folder: Path | None = None, *, port: int = 0, timeout: float = 15.0) -> EmbeddedBroker:
    """Reuse the broker running for ``folder``, or start one (owned by this process).

    Parameters
    ----------
    folder
        The data directory; :func:`data_dir` by default.
    port
        The port to listen on; a free one if 0.
    timeout
        Seconds to wait for the broker to accept connections.

    Raises
    ------
    ConfigurationError
        If pulsar-lite is not installed.
    TransportError
        If the broker does not start in time (its log is quoted).
    """
    folder = folder or data_dir()
    with locked(folder / "broker.lock"):
        running = find_running(folder)
        if running is not None:
            log.info("using the embedded broker at %s (pid %d)", running.url, running.pid)
            return running
        binary = _binary()
        port = port or free_port()
        (folder / "pulsar-lite.toml").write_text(CONFIG)
        log_path = folder / "pulsar-lite.log"
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                [
                    binary,
                    "--config",
                    str(folder / "pulsar-lite.toml"),
                    "--addr",
                    f"127.0.0.1:{port}",
                    "--db-path",
                    str(folder / "pulsar-lite"),
                    "--log-level",
                    "warn",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C meant for the backend does not hit it first
            )
        deadline = time.monotonic() + timeout
        while not _alive(process.pid, port):
            if process.poll() is not None or time.monotonic() > deadline:
                if process.poll() is None:
                    process.kill()
                process.wait(10)
                tail = log_path.read_text(errors="replace")[-2000:]
                raise TransportError(f"the embedded broker did not start; its log ends:\n{tail}")
            time.sleep(0.05)
        (folder / "broker.json").write_text(json.dumps({"pid": process.pid, "port": port}))
    broker = EmbeddedBroker(
        url=f"pulsar://127.0.0.1:{port}",
        pid=process.pid,
        folder=folder,
        owned=True,
        _process=process,
    )
    log.info(
        "started the embedded broker at %s (pid %d, data in %s)", broker.url, broker.pid, folder
    )
    return broker
