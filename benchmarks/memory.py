"""Peak resident memory of a backend and of a client during one large call.

Both are fresh processes, so that earlier work does not inflate their peaks:

- a new backend (``demessaging listen``) on a topic of its own; once it has answered a ping,
  its resident memory is its idle baseline and its peak (``VmHWM``) is reset
  (``/proc/<pid>/clear_refs``); after the call, ``VmHWM`` is its peak;
- a probe client (``python -m benchmarks.memory probe URL TOPIC BYTES``) that imports
  demessaging and numpy, pings the backend, takes its resident memory as baseline and resets its
  peak, *then* creates the array and calls ``total``, and prints its ``VmHWM`` as JSON.

The array itself is part of the client's peak above baseline (it is created after the
baseline), as the reassembled request and the decoded array are part of the backend's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from .procs import BenchmarkError, backend, memory_status, spawn

__all__ = ["measure", "probe", "reset_peak"]

MIB = 1024 * 1024


def reset_peak(pid: int | str = "self") -> bool:
    """Reset the peak resident memory (``VmHWM``) of a process; False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as control:
            control.write("5")
    except OSError:
        return False
    return True


def probe(url: str, topic: str, nbytes: int) -> dict[str, Any]:
    """Call ``total`` once with an array of ``nbytes`` bytes; this process's memory, in bytes."""
    from .calls import DemessagingPeer, array_of

    peer = DemessagingPeer(url, topic)
    with peer:
        peer.client.ping()
        array_of(MIB)  # numpy's random generator, loaded before the baseline
        baseline = memory_status()["VmRSS"]
        reset = reset_peak()
        values = array_of(nbytes)
        seconds = peer.transfer(values)
        peak = memory_status()["VmHWM"]
    return {"baseline": baseline, "peak": peak, "seconds": seconds, "peak_reset": reset}


def measure(url: str, folder: Path, nbytes: int, timeout: float) -> dict[str, Any]:
    """Peak memory of a fresh backend and a fresh client during one call of ``nbytes``.

    Returns
    -------
    dict
        ``client`` and ``backend``, each with ``baseline`` and ``peak`` in bytes, and
        ``payload`` (``nbytes``).

    Raises
    ------
    BenchmarkError
        If the probe fails or takes more than ``timeout`` seconds.
    """
    from demessaging.client import Client

    topic = f"bench-memory-{uuid.uuid4().hex[:10]}"
    server = backend("backend-memory", url, topic, folder)
    child = None
    try:
        with Client(topic, broker_url=url, timeout=60) as client:
            client.ping()
        time.sleep(0.5)  # let the backend settle after the reply
        base = memory_status(server.pid)["VmRSS"]
        reset = reset_peak(server.pid)
        child = spawn(
            "client-memory", ["-m", "benchmarks.memory", "probe", url, topic, str(nbytes)], folder
        )
        try:
            child.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise BenchmarkError(f"the memory probe took more than {timeout:g} s") from exc
        peak = memory_status(server.pid)["VmHWM"]
        lines = [line for line in child.output().splitlines() if line.startswith("{")]
        if child.process.returncode != 0 or not lines:
            raise BenchmarkError(f"the memory probe failed:\n{child.output()[-2000:]}")
        client_side = json.loads(lines[-1])
    finally:
        if child is not None:
            child.stop()
        server.stop()
    return {
        "payload": nbytes,
        "client": client_side,
        "backend": {"baseline": base, "peak": peak, "peak_reset": reset},
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.memory probe URL TOPIC BYTES``: prints the probe's JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("probe", help="make one call; print this process's memory")
    run.add_argument("url")
    run.add_argument("topic")
    run.add_argument("nbytes", type=int)
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):
        result = probe(args.url, args.topic, args.nbytes)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
