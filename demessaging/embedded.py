"""The embedded broker: pulsar-lite on 127.0.0.1, for machines where no broker is configured.

One broker per data directory (``$DEMESSAGING_DATA_DIR``, else ``$XDG_DATA_HOME/demessaging``,
else ``~/.local/share/demessaging``). Its process id and port are kept in ``broker.json`` there,
so that every backend and client on the machine finds the same broker. It binds 127.0.0.1 only,
with its metrics endpoint switched off, and keeps its data in ``pulsar-lite.rocksdb/`` and
``pulsar-lite.metadata.json``.

pulsar-lite deletes nothing it was given while it runs: every message, acknowledged or not,
every topic and every subscription (even those a client unsubscribes from) stay on disk. Once no
message has come for ``$DEMESSAGING_EMBEDDED_KEEP`` seconds (an hour by default), every call it
carried has passed its deadline and the whole database goes: before a broker starts on it
(:func:`reclaim`), and while it runs, by the process that started it, which restarts it on the
same port with no data (:meth:`EmbeddedBroker.renew`). The data itself: :mod:`._lite_data`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ._lite_data import DEFAULT_KEEP, KEEP_VARIABLE, delete_if_idle, idle_seconds, keep_seconds
from ._lite_data import data_size as _data_size
from ._lite_data import topics as _topics
from ._local import free_port, locked, stop_process
from .errors import ConfigurationError, TransportError

__all__ = [
    "DEFAULT_KEEP",
    "KEEP_VARIABLE",
    "EmbeddedBroker",
    "data_dir",
    "data_size",
    "find_running",
    "keep_seconds",
    "reclaim",
    "resolve",
    "start",
    "topics",
]

log = logging.getLogger("demessaging.embedded")
#: Seconds between two looks of the process that started the embedded broker at its data.
CHECK_EVERY = 300.0
#: The shared subscription backends take requests on (the listener's DEFAULT_SUBSCRIPTION):
#: made again on a database renewed, before anyone reconnects.
SERVED = "demessaging-backend"
#: Bytes of data below which a running embedded broker is not restarted to delete them.
RENEW_ABOVE = 16 * 1024 * 1024
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
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def broker_url(self) -> str:
        """The URL demessaging reaches it by: ``pulsar-lite://``, with its work-arounds."""
        return self.url.replace("pulsar://", "pulsar-lite://", 1)

    def renew(self, keep: float | None = None, timeout: float = 15.0) -> int:
        """Restart the broker with no data if no message was written for ``keep`` seconds.

        Not for less than :data:`RENEW_ABOVE` bytes of data.

        pulsar-lite deletes nothing while it runs. When nothing was published to it for
        ``keep`` seconds (:func:`keep_seconds` by default), every call it carried has passed
        its deadline: the broker is stopped, its data deleted if that still holds, and it is
        started again on the same port (clients and backends reconnect, in well under a
        second). Only the process that started it does this.

        Returns
        -------
        int
            The bytes freed (0 if nothing was done).
        """
        keep = keep_seconds() if keep is None else keep
        if not self.owned or _data_size(self.folder) < RENEW_ABOVE:
            return 0
        if idle_seconds(self.folder) < keep:
            return 0
        port = int(self.url.rsplit(":", 1)[1])
        with self._lock, locked(self.folder / "broker.lock"):
            if self._stopping.is_set():
                return 0
            served = [t for t, subs in _topics(self.folder).items() if SERVED in subs]
            stop_process(self._process or self.pid, timeout, name="the embedded broker")
            freed = delete_if_idle(self.folder, keep)  # a message may have come meanwhile
            if freed and served:  # requests sent before their backends are back are kept
                other = free_port()  # nobody else knows of it
                aside = _launch(_binary(), self.folder, other, timeout, record=False)
                try:
                    _subscribe(other, served)
                finally:
                    stop_process(aside, timeout, name="the embedded broker")
            self._process = _launch(_binary(), self.folder, port, timeout)
            self.pid = self._process.pid
        log.info("restarted the embedded broker (pid %d) with its data deleted", self.pid)
        return freed

    def _follow(self, keep: float, every: float) -> None:
        """Call :meth:`renew` every ``every`` seconds until stopped, in a daemon thread."""

        def run() -> None:
            while not self._stopping.wait(every):
                try:
                    self.renew(keep)
                except Exception:  # the broker is stopped or will not start: said, then again
                    log.warning("renewing the embedded broker failed", exc_info=True)

        threading.Thread(target=run, name="demessaging-embedded-renew", daemon=True).start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker by its PID (SIGTERM, then SIGKILL), if this process started it."""
        if not self.owned:
            return
        self._stopping.set()
        with self._lock:  # not while it is being renewed
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


def data_size(folder: Path | None = None) -> int:
    """Bytes the embedded broker of ``folder`` (default :func:`data_dir`) keeps on disk."""
    return _data_size(folder or data_dir())


def topics(folder: Path | None = None) -> dict[str, list[str]]:
    """The persistent topics the embedded broker of ``folder`` keeps, with their subscriptions.

    Read from pulsar-lite's own list, short names (``climate`` for
    ``persistent://public/default/climate``) unless outside ``public/default``; empty if there
    is none or it cannot be read. ``folder`` is :func:`data_dir` by default.
    """
    return _topics(folder or data_dir())


def reclaim(folder: Path | None = None, *, keep: float | None = None) -> int:
    """Delete the data of a stopped embedded broker, if no broker has touched it for ``keep`` s.

    pulsar-lite deletes nothing, acknowledged or not, while it runs. Once it is stopped and
    ``keep`` seconds (default :func:`keep_seconds`) have passed since it last wrote, every call
    it carried has passed its deadline: no backend starts a request after its deadline, and
    no caller waits for a reply after it. So the whole database goes, topics and
    subscriptions with it. Nothing is deleted while a broker runs on ``folder``.
    :func:`start` does this before it starts a broker.

    Returns
    -------
    int
        The bytes freed (0 if the data was kept).
    """
    folder = folder or data_dir()
    keep = keep_seconds() if keep is None else keep
    with locked(folder / "broker.lock"):
        if find_running(folder) is not None:
            return 0
        return delete_if_idle(folder, keep)


def _binary() -> str:
    try:
        from pulsar_lite.binary_finder import find_pulsar_lite_binary
    except ImportError:
        raise ConfigurationError(
            "the embedded broker needs the pulsar-lite package, which has no build for this "
            "platform here; install it, or set DEMESSAGING_BROKER_URL to a Pulsar broker"
        ) from None
    return str(find_pulsar_lite_binary())


def start(
    folder: Path | None = None,
    *,
    port: int = 0,
    timeout: float = 15.0,
    keep: float | None = None,
    check_every: float = CHECK_EVERY,
) -> EmbeddedBroker:
    """Reuse the broker running for ``folder``, or start one (owned by this process).

    Before it starts one, the data the last broker left is deleted if no message was written
    to it for ``keep`` seconds (see :func:`reclaim`); while it runs, this process looks every
    ``check_every`` seconds whether that is so, and if it is, restarts it on the same port with
    no data (see :meth:`EmbeddedBroker.renew`).

    Parameters
    ----------
    folder
        The data directory; :func:`data_dir` by default.
    port
        The port to listen on; a free one if 0.
    timeout
        Seconds to wait for the broker to accept connections.
    keep
        Seconds the data is kept after the last message; :func:`keep_seconds` by default.
    check_every
        Seconds between two looks at the data of the broker started; 0: never.

    Raises
    ------
    ConfigurationError
        If pulsar-lite is not installed.
    TransportError
        If the broker does not start in time (its log is quoted).
    """
    folder = folder or data_dir()
    keep = keep_seconds() if keep is None else keep
    with locked(folder / "broker.lock"):
        running = find_running(folder)
        if running is not None:
            log.info("using the embedded broker at %s (pid %d)", running.url, running.pid)
            return running
        binary = _binary()
        delete_if_idle(folder, keep)
        port = port or free_port()
        process = _launch(binary, folder, port, timeout)
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
    if check_every:
        broker._follow(keep, check_every)
    return broker


def _subscribe(port: int, topics: list[str]) -> None:
    """Make the backends' shared subscription of ``topics`` on the broker at ``port``."""
    import pulsar

    client = pulsar.Client(f"pulsar://127.0.0.1:{port}", operation_timeout_seconds=10, logger=log)
    try:
        for topic in topics:
            full = f"persistent://{topic}" if topic.count("/") == 2 else topic
            consumer = client.subscribe(full, SERVED, consumer_type=pulsar.ConsumerType.Shared)
            consumer.close()
    finally:
        client.close()


def _launch(
    binary: str, folder: Path, port: int, timeout: float, *, record: bool = True
) -> subprocess.Popen[bytes]:
    """Start pulsar-lite on ``folder`` and ``port``; wait until it accepts connections.

    With ``record``, its process id and port go to ``broker.json``, where others find it.
    """
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
    if record:
        (folder / "broker.json").write_text(json.dumps({"pid": process.pid, "port": port}))
    return process
