"""Waiting for Ctrl-C in the ``run`` commands of the broker installers."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable


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
