"""The embedded broker: pulsar-lite on 127.0.0.1, for machines where no broker is configured.

One broker per data directory (``$DEMESSAGING_DATA_DIR``, else ``$XDG_DATA_HOME/demessaging``,
else ``~/.local/share/demessaging``). Its process id and port are kept in ``broker.json`` there,
so that every backend and client on the machine finds the same broker. It binds 127.0.0.1 only,
with its metrics endpoint switched off, and keeps its data in ``pulsar-lite.rocksdb/`` and
``pulsar-lite.metadata.json``.

pulsar-lite deletes nothing it was given while it runs: every message, acknowledged or not,
every topic and every subscription (even those a client unsubscribes from) stay on disk. The
data goes when a broker starts on a data directory that no broker has touched for
``$DEMESSAGING_EMBEDDED_KEEP`` seconds (an hour by default, see :func:`reclaim`): by then every
call that was under way has passed its deadline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ._local import free_port, locked, stop_process
from .errors import ConfigurationError, TransportError

__all__ = [
    "DEFAULT_KEEP",
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
CONFIG = """# written by demessaging: loopback only, no metrics endpoint
[metrics]
enabled = false
"""
#: Seconds the data of a stopped embedded broker is kept, unless ``$DEMESSAGING_EMBEDDED_KEEP``
#: says otherwise: far beyond a call's deadline (60 s by default).
DEFAULT_KEEP = 3600.0
KEEP_VARIABLE = "DEMESSAGING_EMBEDDED_KEEP"
#: What pulsar-lite keeps for ``--db-path pulsar-lite``: messages and cursors (RocksDB), the
#: topics and their subscriptions (JSON).
_DATA = ("pulsar-lite", "pulsar-lite.rocksdb", "pulsar-lite.metadata.json")
_TRASH = ".deleting-"


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


def keep_seconds() -> float:
    """Seconds the data of a stopped embedded broker is kept: ``$DEMESSAGING_EMBEDDED_KEEP``.

    Raises
    ------
    ConfigurationError
        If the variable is not a number of seconds, 0 or more.
    """
    text = os.environ.get(KEEP_VARIABLE, "").strip()
    if not text:
        return DEFAULT_KEEP
    try:
        keep = float(text)
    except ValueError:
        keep = -1.0
    if not (math.isfinite(keep) and keep >= 0):
        raise ConfigurationError(f"{KEEP_VARIABLE} must be seconds (0 or more), got {text!r}")
    return keep


def _files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for name in _DATA:
        path = folder / name
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(p for p in path.rglob("*") if p.is_file())
    return found


def data_size(folder: Path | None = None) -> int:
    """Bytes the embedded broker of ``folder`` (default :func:`data_dir`) keeps on disk."""
    total = 0
    for path in _files(folder or data_dir()):
        with contextlib.suppress(OSError):  # a file removed meanwhile
            total += path.stat().st_size
    return total


def topics(folder: Path | None = None) -> dict[str, list[str]]:
    """The persistent topics the embedded broker of ``folder`` keeps, with their subscriptions.

    Read from pulsar-lite's own list (``pulsar-lite.metadata.json``), short names (``climate``
    for ``persistent://public/default/climate``) unless outside ``public/default``. Empty if
    there is none, or it cannot be read.
    """
    path = (folder or data_dir()) / "pulsar-lite.metadata.json"
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    found: dict[str, list[str]] = {}

    def walk(node: object, where: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if key == "persistent" and isinstance(value, dict) and len(where) >= 2:
                space = "/".join(where[-2:])
                for name, topic in value.items():
                    subscriptions = topic.get("subscriptions") if isinstance(topic, dict) else {}
                    short = name if space == "public/default" else f"{space}/{name}"
                    found[short] = sorted(subscriptions or {})
            else:
                walk(value, (*where, str(key)))

    walk(document, ())
    return found


def _in_use(folder: Path) -> bool:
    """Whether a process holds the broker's database open (RocksDB locks its ``LOCK`` file)."""
    lock = folder / "pulsar-lite.rocksdb" / "LOCK"
    if sys.platform == "win32" or not lock.exists():
        return False
    import fcntl

    try:
        with open(lock, "r+b") as handle:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(handle, fcntl.LOCK_UN)
    except OSError:  # held by the broker that has it open
        return True
    return False


def _reclaim(folder: Path, keep: float) -> int:
    """:func:`reclaim`, with ``broker.lock`` held and no broker running for ``folder``."""
    files = _files(folder)
    if not files or _in_use(folder):
        return 0
    stamps = []
    for path in files:
        with contextlib.suppress(OSError):
            stamps.append(path.stat().st_mtime)
    idle = time.time() - max(stamps, default=0.0)
    if idle < keep:
        return 0
    size = data_size(folder)
    # moved aside first, all or nothing (on Windows, files a process holds open cannot move):
    # a database is never left half deleted
    trash = folder / f"{_TRASH}{os.getpid()}-{time.monotonic_ns()}"
    trash.mkdir()
    moved: list[str] = []
    try:
        for name in _DATA:
            if (folder / name).exists():
                (folder / name).rename(trash / name)
                moved.append(name)
    except OSError as exc:
        for name in moved:
            with contextlib.suppress(OSError):
                (trash / name).rename(folder / name)
        with contextlib.suppress(OSError):
            trash.rmdir()
        log.warning("could not delete the embedded broker's old data in %s: %s", folder, exc)
        return 0
    for old in folder.glob(f"{_TRASH}*"):  # this one, and any an earlier run left
        shutil.rmtree(old, ignore_errors=True)
    log.info(
        "deleted the embedded broker's data (%.1f MB, untouched for %.0f s; %s=%g)",
        size / 1e6,
        idle,
        KEEP_VARIABLE,
        keep,
    )
    return size


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
        return _reclaim(folder, keep)


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
    folder: Path | None = None, *, port: int = 0, timeout: float = 15.0, keep: float | None = None
) -> EmbeddedBroker:
    """Reuse the broker running for ``folder``, or start one (owned by this process).

    Before it starts one, the data the last broker left is deleted if it has not been touched
    for ``keep`` seconds (see :func:`reclaim`).

    Parameters
    ----------
    folder
        The data directory; :func:`data_dir` by default.
    port
        The port to listen on; a free one if 0.
    timeout
        Seconds to wait for the broker to accept connections.
    keep
        Seconds the data of a stopped broker is kept; :func:`keep_seconds` by default.

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
        _reclaim(folder, keep)
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
