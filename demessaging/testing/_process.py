"""Stopping the broker processes the testing helpers start, by PID."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable

log = logging.getLogger("demessaging.testing")


def alive(pid: int, process: subprocess.Popen[bytes] | None) -> bool:
    """Whether the process runs (``process`` if this one started it, else by ``pid``)."""
    if process is not None:
        return process.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(pid: int, process: subprocess.Popen[bytes] | None, timeout: float, name: str) -> None:
    """SIGTERM, then SIGKILL if it still runs after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid, process) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid, process):
        log.warning("%s (pid %d) ignored SIGTERM; killing it", name, pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if process is not None:
            process.wait(10)


def run_until_signal(running: Callable[[], bool]) -> None:
    """Wait until Ctrl-C or SIGTERM, or until ``running()`` is False."""
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while not stopping and running():
        time.sleep(0.2)
