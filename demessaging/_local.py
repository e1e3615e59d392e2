"""Helpers for the processes demessaging starts on this machine: ports, file locks, stopping."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["alive", "free_port", "locked", "stop_process"]

log = logging.getLogger("demessaging")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` between processes (POSIX advisory lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def alive(process: int | subprocess.Popen[Any]) -> bool:
    """Whether a process still runs: a :class:`~subprocess.Popen`, or any process by its PID.

    A PID that is a child of this process is reaped once it has exited, so that it does not
    linger as a zombie that looks alive.
    """
    if isinstance(process, subprocess.Popen):
        return process.poll() is None
    if sys.platform != "win32":
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(process, os.WNOHANG)[0] == process:
                return False
    try:
        os.kill(process, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def stop_process(
    process: int | subprocess.Popen[Any],
    timeout: float = 10.0,
    *,
    sig: int = signal.SIGTERM,
    name: str = "",
) -> None:
    """Stop a process by its PID: ``sig`` (SIGTERM), then SIGKILL after ``timeout`` seconds.

    Parameters
    ----------
    process
        The process: a :class:`~subprocess.Popen` this process started (it is waited for, so
        its exit status is set), or a process id.
    timeout
        Seconds it has to exit after ``sig``.
    sig
        The first signal: SIGTERM, or SIGINT for programs that stop cleanly on Ctrl-C.
    name
        What it is, for the warning logged when it has to be killed.

    A process that has already exited is left alone.
    """
    if not alive(process):
        return
    pid = process.pid if isinstance(process, subprocess.Popen) else process
    with contextlib.suppress(ProcessLookupError):
        if isinstance(process, subprocess.Popen):
            process.send_signal(sig)
        else:
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(process) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not alive(process):
        return
    log.warning("%s (pid %d) did not stop in %.0f s; killing it", name or "process", pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        if isinstance(process, subprocess.Popen):
            process.kill()  # TerminateProcess on Windows, where there is no SIGKILL
        else:
            os.kill(pid, signal.SIGKILL)
    if isinstance(process, subprocess.Popen):
        process.wait(10)
    else:
        deadline = time.monotonic() + 10
        while alive(process) and time.monotonic() < deadline:
            time.sleep(0.05)
