"""Cancellation: a caller that gives up frees the backend's worker, running or not yet started."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from demessaging.backend import ListenerThread
from demessaging.backend.cancel import CallControl, Cancellations
from demessaging.client import Client
from demessaging.core.loader import load_module
from demessaging.core.reporter import Reporter
from demessaging.errors import CallCancelled, CallTimeoutError

MODULE = '''
import threading
import time

from demessaging import Reporter
from demessaging.errors import CallCancelled

STARTED = threading.Event()
RAN = []
CANCELLED = []


def work(seconds: float, progress: Reporter) -> float:
    """Work in small steps, each a cancellation point."""
    RAN.append(seconds)
    STARTED.set()
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            time.sleep(0.02)
            progress.advance()
    except CallCancelled:
        CANCELLED.append(seconds)
        raise
    return seconds


def quick() -> str:
    """Answer at once."""
    return "free"
'''


@pytest.fixture
def module(write_backend: Callable[[str], Path]) -> object:
    return load_module(write_backend(MODULE))


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


def test_a_cancelled_call_frees_its_worker_within_a_second(
    module: object, serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(module, workers=1)
    c = client()

    async def scenario() -> float:
        call = asyncio.ensure_future(c.acall({"func_name": "work", "seconds": 30.0}))
        await _until(module.STARTED.is_set)  # type: ignore[attr-defined]
        call.cancel()
        started = time.monotonic()
        assert await c.acall({"func_name": "quick"}) == "free"  # the one worker is free again
        with pytest.raises(asyncio.CancelledError):
            await call
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1.0
    assert module.CANCELLED == [30.0]  # type: ignore[attr-defined]


def test_a_deadline_that_passes_cancels_the_call(
    module: object, serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(module, workers=1)
    c = client()
    with pytest.raises(CallTimeoutError):
        c.call({"func_name": "work", "seconds": 30.0}, timeout=0.3)
    started = time.monotonic()
    assert c.call({"func_name": "quick"}) == "free"
    assert time.monotonic() - started < 1.0
    assert module.CANCELLED == [30.0]  # type: ignore[attr-defined]


def test_a_call_cancelled_before_it_starts_never_runs(
    module: object, serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    backend = serve(module, workers=1)
    c = client()

    async def scenario() -> None:
        busy = asyncio.ensure_future(c.acall({"func_name": "work", "seconds": 0.5}))
        await _until(module.STARTED.is_set)  # type: ignore[attr-defined]
        waiting = asyncio.ensure_future(c.acall({"func_name": "work", "seconds": 7.0}))
        await asyncio.sleep(0.1)  # sent, and waiting for the worker
        waiting.cancel()
        assert await busy == 0.5
        await _until(lambda: backend.listener.handled >= 2)  # taken, skipped, acknowledged

    asyncio.run(scenario())
    assert module.RAN == [0.5]  # type: ignore[attr-defined]
    assert module.CANCELLED == []  # type: ignore[attr-defined]


def test_cancellations_are_remembered_until_their_call_comes() -> None:
    cancellations = Cancellations()
    cancellations.cancel("topic\x001")
    assert cancellations.start("topic\x001") is None  # skipped
    control = cancellations.start("topic\x001")  # a later redelivery runs
    assert control is not None
    assert not control.cancelled.is_set()
    cancellations.credit("topic\x001", 5)
    assert control.received == 5
    cancellations.cancel("topic\x001")
    assert control.cancelled.is_set()
    cancellations.done("topic\x001")
    unnamed = cancellations.start(None)
    assert unnamed is not None


def test_a_reporter_is_a_cancellation_point() -> None:
    import threading

    cancelled = threading.Event()
    reporter = Reporter.for_call("work", None, cancelled)
    reporter.advance()
    assert not reporter.cancelled
    cancelled.set()
    assert reporter.cancelled
    with pytest.raises(CallCancelled):
        reporter.advance()
    with pytest.raises(CallCancelled):
        reporter.task("more")
    child_of_root = Reporter.for_call("work", None, cancelled)
    with pytest.raises(CallCancelled):
        child_of_root.check()
    reporter.end("error")  # ending is never refused
    assert reporter.status == "error"


def test_a_stream_waits_for_room_and_gives_up_on_a_silent_caller() -> None:
    import threading

    control = CallControl()
    control.wait_for_room(sent=3, window=4, idle=0.1)  # room: returns at once
    threading.Timer(0.05, control.credit, args=(2,)).start()
    started = time.monotonic()
    control.wait_for_room(sent=4, window=4, idle=5)  # waits for the credit
    assert time.monotonic() - started < 2
    with pytest.raises(CallCancelled, match=r"took no item for 0\.1 s"):
        control.wait_for_room(sent=6, window=4, idle=0.1)
    control.cancel()
    with pytest.raises(CallCancelled, match="cancelled"):
        control.wait_for_room(sent=0, window=4, idle=5)


def test_ctrl_c_in_a_sync_call_cancels_it_in_the_backend(
    module: object, serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    import os
    import signal
    import threading

    serve(module, workers=1)
    c = client()

    def interrupt_when_started() -> None:
        if module.STARTED.wait(5):  # type: ignore[attr-defined]
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, as the terminal sends it

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        c.call({"func_name": "work", "seconds": 30.0})
    started = time.monotonic()
    assert c.call({"func_name": "quick"}) == "free"  # the one worker is free again
    assert time.monotonic() - started < 1.0
    assert module.CANCELLED == [30.0]  # type: ignore[attr-defined]
