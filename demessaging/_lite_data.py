"""The embedded broker's data on disk: its size, its topics, and deleting it when it is idle.

pulsar-lite (0.2) keeps, for ``--db-path pulsar-lite``, the messages in
``pulsar-lite.rocksdb/entrylog/`` and the cursors in the rest of that RocksDB database, and the
topics with their subscriptions in ``pulsar-lite.metadata.json``. See
:mod:`demessaging.embedded`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_KEEP",
    "KEEP_VARIABLE",
    "data_size",
    "delete_if_idle",
    "idle_seconds",
    "in_use",
    "keep_seconds",
    "topics",
]

log = logging.getLogger("demessaging.embedded")

#: Seconds the data of a stopped embedded broker is kept, unless ``$DEMESSAGING_EMBEDDED_KEEP``
#: says otherwise: far beyond a call's deadline (60 s by default).
DEFAULT_KEEP = 3600.0
KEEP_VARIABLE = "DEMESSAGING_EMBEDDED_KEEP"
#: What pulsar-lite keeps for ``--db-path pulsar-lite``: messages and cursors (RocksDB), the
#: topics and their subscriptions (JSON).
_DATA = ("pulsar-lite", "pulsar-lite.rocksdb", "pulsar-lite.metadata.json")
_TRASH = ".deleting-"


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


def data_size(folder: Path) -> int:
    """Bytes the embedded broker of ``folder`` keeps on disk."""
    total = 0
    for path in _files(folder):
        with contextlib.suppress(OSError):  # a file removed meanwhile
            total += path.stat().st_size
    return total


def topics(folder: Path) -> dict[str, list[str]]:
    """The persistent topics the embedded broker of ``folder`` keeps, with their subscriptions.

    Read from pulsar-lite's own list (``pulsar-lite.metadata.json``), short names (``climate``
    for ``persistent://public/default/climate``) unless outside ``public/default``. Empty if
    there is none, or it cannot be read.
    """
    path = folder / "pulsar-lite.metadata.json"
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


def idle_seconds(folder: Path) -> float:
    """Seconds since a message was last written to the data in ``folder`` (inf if none).

    Messages go to the entry logs; without any, every file of the data counts.
    """
    files = [p for p in _files(folder) if p.parent.name == "entrylog"] or _files(folder)
    stamps = []
    for path in files:
        with contextlib.suppress(OSError):
            stamps.append(path.stat().st_mtime)
    return time.time() - max(stamps) if stamps else math.inf


def in_use(folder: Path) -> bool:
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


def delete_if_idle(folder: Path, keep: float) -> int:
    """Delete the data in ``folder`` if unwritten for ``keep`` s; with ``broker.lock`` held."""
    files = _files(folder)
    if not files or in_use(folder):
        return 0
    idle = idle_seconds(folder)
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
