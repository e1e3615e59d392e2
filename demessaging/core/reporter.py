"""Progress of a running call, told to its caller: :class:`Reporter`.

A served function asks for a reporter by annotating a parameter with it; the backend passes a
fresh one to every call, and callers never send it::

    from demessaging import Reporter

    def analyse(files: list[str], progress: Reporter) -> int:
        progress.start("reading files", total=len(files))
        for name in files:
            with progress.task(f"reading {name}", total=3) as task:
                for _ in range(3):
                    task.advance()
            progress.advance()
        return len(files)

Every change sends the whole report tree to the caller as a DASF ``progress`` message, in the
layout of DASF's ``deprogressapi`` tree reports (``step_message``, ``steps``, ``status``,
``children``...) plus ``done``, the steps finished so far, so that DASF's web front-ends show
it too. Messages about counts are sent at most every ``interval`` seconds; starts, ends and
new tasks always. The backend ends the report when the function returns (``success``) or
raises (``error``).

A reporter is also where a call learns that its caller cancelled it: :meth:`Reporter.start`,
:meth:`~Reporter.advance`, :meth:`~Reporter.task` and :meth:`~Reporter.check` raise
:class:`~demessaging.errors.CallCancelled` then, which ends the call and frees its worker.

Other report classes can take a reporter's place (DASF's ``deprogressapi`` reports do, see
:mod:`demessaging.dasf.progress`): :func:`register_report_type` tells the introspection to
leave their parameters out of requests and the backend how to make one for a call.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ..errors import CallCancelled

__all__ = [
    "ReportType",
    "Reporter",
    "SendProgress",
    "is_progress_report",
    "register_report_type",
    "report_type",
]

#: Sends one progress message to the caller: the payload (a report's JSON) and the status
#: (``running``, ``success`` or ``error``). Called from the worker thread of the call.
SendProgress = Callable[[bytes, str], None]


class Reporter:
    """A step of a running call, with a count of what is done and sub-tasks.

    Parameters
    ----------
    message
        What the step does.
    total
        How many units of work it has, if known (0: unknown).

    Attributes
    ----------
    message, total
        As given, or as :meth:`start` set them.
    done
        Units finished.
    status
        ``running``, ``success`` or ``error``.
    children
        The sub-tasks, in the order they started.
    """

    #: Seconds between two messages about counts.
    interval = 0.1

    def __init__(self, message: str = "", total: int = 0) -> None:
        self.message = message
        self.total = total
        self.done = 0
        self.status = "running"
        self.children: list[Reporter] = []
        self._root: Reporter = self
        self._id = "root"
        self._send: SendProgress | None = None
        self._cancelled: threading.Event | None = None
        self._lock = threading.RLock()
        self._sent_at = 0.0

    @classmethod
    def for_call(
        cls, message: str, send: SendProgress | None, cancelled: threading.Event | None = None
    ) -> Reporter:
        """The root reporter of a call, sending to ``send`` (None: to nobody).

        ``cancelled`` is set when the caller cancels the call.
        """
        reporter = cls(message)
        reporter._send = send
        reporter._cancelled = cancelled
        return reporter

    @property
    def cancelled(self) -> bool:
        """Whether the caller has cancelled the call."""
        event = self._root._cancelled
        return event is not None and event.is_set()

    def check(self) -> None:
        """Raise :class:`~demessaging.errors.CallCancelled` if the caller cancelled the call."""
        if self.cancelled:
            raise CallCancelled("the caller cancelled the call")

    # -- for served functions ----------------------------------------------------------------

    def start(self, message: str | None = None, total: int | None = None) -> None:
        """Say what the step does and how much of it there is."""
        self.check()
        with self._root._lock:
            if message is not None:
                self.message = message
            if total is not None:
                self.total = total
            self._root._submit(force=True)

    def advance(self, units: int = 1, message: str | None = None) -> None:
        """Count ``units`` more as done (and say what happens now, if given)."""
        self.check()
        with self._root._lock:
            self.done += units
            if message is not None:
                self.message = message
            self._root._submit(force=False)

    def task(self, message: str, total: int = 0) -> Reporter:
        """A sub-task; use it with ``with``, which ends it with ``success`` or ``error``."""
        self.check()
        child = Reporter(message, total)
        with self._root._lock:
            child._root = self._root
            child._id = f"{self._id}.{len(self.children)}"
            self.children.append(child)
            self._root._submit(force=True)
        return child

    def end(self, status: str = "success") -> None:
        """End the step (the backend ends the whole report when the function returns)."""
        with self._root._lock:
            if self.status != "running":
                return
            self.status = status
            if status == "success" and self.total:
                self.done = self.total
            self._root._submit(force=True)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.end("success" if kind is None else "error")

    # -- the report ----------------------------------------------------------------------------

    def as_report(self) -> dict[str, Any]:
        """The step in DASF's tree-report layout."""
        with self._root._lock:
            return {
                "report_type": "tree",
                "report_id": self._id,
                "status": self.status,
                "step_message": self.message,
                "steps": self.total,
                "done": self.done,
                "children": [child.as_report() for child in self.children],
            }

    def _submit(self, force: bool) -> None:
        if self._send is None:
            return
        now = time.monotonic()
        if not force and now - self._sent_at < self.interval:
            return
        self._sent_at = now
        self._send(json.dumps(self.as_report()).encode(), self.status)

    def __repr__(self) -> str:
        return f"Reporter({self.message!r}, done={self.done}, total={self.total}, {self.status})"


@dataclass(frozen=True)
class ReportType:
    """Report classes other than :class:`Reporter` that a backend fills in for a parameter.

    Attributes
    ----------
    recognises
        Whether a parameter's annotation (a class) is one of them.
    make
        A fresh report for one call: ``make(annotation, default, send)``, with the
        parameter's default (``inspect.Parameter.empty`` if none) and where its messages go
        (a function that logs its failures, never raises them; None: to nobody).
    """

    recognises: Callable[[type], bool]
    make: Callable[[type, Any, SendProgress | None], Any]


_REPORT_TYPES: list[ReportType] = []


def register_report_type(kind: ReportType) -> None:
    """Have parameters of another report class filled in by the backend, like a Reporter's."""
    if kind not in _REPORT_TYPES:
        _REPORT_TYPES.append(kind)


def report_type(annotation: Any) -> ReportType | None:
    """The registered kind of report ``annotation`` is, if any (None for a Reporter too)."""
    if not isinstance(annotation, type):
        return None
    return next((kind for kind in _REPORT_TYPES if kind.recognises(annotation)), None)


def is_progress_report(annotation: Any) -> bool:
    """Whether a parameter takes a progress report: a :class:`Reporter` or a registered kind.

    Such parameters are filled by the backend, never sent by callers.
    """
    if not isinstance(annotation, type):
        return False
    return Reporter in annotation.__mro__ or report_type(annotation) is not None
