"""Child processes of the benchmarks: started with a log file, awaited with a deadline, stopped.

Every child runs in a session of its own, so that a Ctrl-C reaches the benchmark alone, which
then stops its children by PID (SIGTERM, then SIGKILL) in ``finally`` blocks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from demessaging._local import stop_process

__all__ = [
    "ROOT",
    "BenchmarkError",
    "Child",
    "backend",
    "environment",
    "memory_status",
    "progress",
    "serving",
    "spawn",
]

#: The repository root: children import ``benchmarks`` from here.
ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "benchmarks" / "module.py"
_STARTED = time.monotonic()


class BenchmarkError(RuntimeError):
    """A benchmark could not run: a broker, backend or helper failed or timed out."""


def progress(text: str) -> None:
    """Report progress on stderr, with the seconds since the start."""
    print(f"[{time.monotonic() - _STARTED:6.1f} s] {text}", file=sys.stderr, flush=True)


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of children: this one, with the repository root importable."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ) | {"PYTHONPATH": os.pathsep.join(paths)}
    env.pop("DEMESSAGING_BROKER_URL", None)
    env.pop("DEMESSAGING_METRICS_PORT", None)  # one port, several backends: observed.py sets it
    return env | dict(extra or {})


@dataclass
class Child:
    """A running child process and its log (stdout and stderr).

    Attributes
    ----------
    name
        What it is, for messages.
    process
        The process.
    log
        Its log file.
    """

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.process.pid

    def output(self) -> str:
        """What it has written so far."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, marker: str, timeout: float = 60.0) -> None:
        """Wait until ``marker`` appears in its log.

        Raises
        ------
        BenchmarkError
            If it exits first or ``timeout`` seconds pass (its log is quoted).
        """
        deadline = time.monotonic() + timeout
        while marker not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                what = "timed out" if self.process.poll() is None else "exited"
                raise BenchmarkError(
                    f"{self.name} {what} before it said {marker!r}; its log ends:\n"
                    f"{self.output()[-2000:]}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop it by its PID: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        stop_process(self.process, timeout, name=self.name)


def spawn(
    name: str, args: Sequence[str], folder: Path, env: Mapping[str, str] | None = None
) -> Child:
    """Start ``python args...`` in ``folder``, its output going to ``folder/<name>.log``.

    ``env`` is added to its environment.
    """
    log = folder / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=folder,
            env=environment(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name, process, log)


def backend(
    name: str,
    broker_url: str,
    topic: str,
    folder: Path,
    workers: int = 8,
    env: Mapping[str, str] | None = None,
) -> Child:
    """Start ``demessaging listen benchmarks/module.py`` on ``topic``; wait until it serves.

    ``env`` is added to its environment.
    """
    return serving(
        name,
        [
            "-m",
            "demessaging",
            "--log-level",
            "info",
            "listen",
            str(MODULE),
            "--broker-url",
            broker_url,
            "--topic",
            topic,
            "--workers",
            str(workers),
        ],
        folder,
        env,
    )


def serving(
    name: str, args: Sequence[str], folder: Path, env: Mapping[str, str] | None = None
) -> Child:
    """:func:`spawn` a server and wait until it says ``serving`` (stopped if it does not)."""
    child = spawn(name, args, folder, env)
    try:
        child.wait_for("serving", timeout=60)
    except BaseException:
        child.stop()
        raise
    return child


def memory_status(pid: int | str = "self") -> dict[str, int]:
    """The ``Vm*`` lines of ``/proc/<pid>/status``, in bytes (``VmRSS``, ``VmHWM``...)."""
    status: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as lines:
        for line in lines:
            if line.startswith("Vm"):
                key, value = line.split(":", 1)
                number, *unit = value.split()
                status[key] = int(number) * (1024 if unit == ["kB"] else 1)
    return status
