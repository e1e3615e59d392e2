"""Backend functions for the integration tests."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from demessaging import Reporter


def whoami(call_id: int, log_dir: str) -> int:
    """Record the call in this process's log; return the process id."""
    with open(Path(log_dir) / f"{os.getpid()}.log", "a") as log:
        log.write(f"{call_id}\n")
    time.sleep(0.005)
    return os.getpid()


def record(tag: str, log_dir: str) -> str:
    """Record ``tag`` in this process's log; return it."""
    with open(Path(log_dir) / f"{os.getpid()}.log", "a") as log:
        log.write(f"{tag}\n")
    return tag


def slow(seconds: float, marker: str) -> int:
    """Write the process id into ``marker``, sleep, return the process id."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def echo_sum(values: npt.NDArray[np.float64]) -> float:
    """The sum of the values."""
    return float(values.sum())


def make(n: int) -> npt.NDArray[np.float64]:
    """An array of ``n`` ones."""
    return np.ones(n)


def steps(seconds: float, marker: str, progress: Reporter) -> float:
    """Write ``marker``, then work in steps of 20 ms (each a cancellation point)."""
    Path(marker).write_text(str(os.getpid()))
    progress.start("stepping", total=int(seconds / 0.02))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.02)
        progress.advance()
    return seconds


def quick() -> str:
    """Answer at once."""
    return "free"


def counting(n: int, marker: str) -> Iterator[int]:
    """Yield 0 to n - 1, writing into ``marker`` how many have been made."""
    for i in range(n):
        Path(marker).write_text(str(i + 1))
        yield i
