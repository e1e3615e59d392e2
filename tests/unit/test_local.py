"""Stopping processes by PID: SIGTERM first, SIGKILL for those that ignore it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from demessaging._local import alive, stop_process

STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def _started(code: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"  # its handlers are in place
    return process


@pytest.mark.parametrize("by_pid", [False, True], ids=["popen", "pid"])
def test_a_process_that_stops_on_sigterm_is_not_killed(by_pid: bool) -> None:
    process = _started("import time\nprint('ready', flush=True)\ntime.sleep(60)\n")
    started = time.monotonic()
    stop_process(process.pid if by_pid else process, 10)
    assert time.monotonic() - started < 5
    assert not alive(process.pid if by_pid else process)
    process.wait(5)
    if not by_pid:  # by PID, stop_process reaped it: its exit status is gone
        assert process.returncode == -signal.SIGTERM
    assert process.stdout is not None
    process.stdout.close()


@pytest.mark.parametrize("by_pid", [False, True], ids=["popen", "pid"])
def test_a_process_ignoring_sigterm_is_killed_after_the_timeout(
    by_pid: bool, caplog: pytest.LogCaptureFixture
) -> None:
    process = _started(STUBBORN)
    started = time.monotonic()
    stop_process(process.pid if by_pid else process, 0.5, name="stubborn")
    assert 0.5 <= time.monotonic() - started < 10
    assert not alive(process.pid if by_pid else process)
    process.wait(5)
    if not by_pid:
        assert process.returncode == -signal.SIGKILL
    assert "stubborn (pid" in caplog.text
    assert process.stdout is not None
    process.stdout.close()


def test_the_first_signal_can_be_sigint() -> None:
    process = _started(
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"  # even if started ignoring it
        "try:\n"
        "    print('ready', flush=True)\n"  # in the try: the signal may come before the next line
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        "    raise SystemExit(3)\n"
    )
    stop_process(process, 10, sig=signal.SIGINT)
    assert process.returncode == 3
    assert process.stdout is not None
    process.stdout.close()


def test_a_process_that_has_exited_is_left_alone() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(10)
    stop_process(process, 10)
    stop_process(process.pid, 10)  # reaped: no such process any more
    assert process.returncode == 0
