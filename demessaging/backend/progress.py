"""Progress of a running call: DASF's progress reports (``deprogressapi``) sent to the caller.

A function of a backend module may take a report, as modules written for DASF do::

    from deprogressapi import ProgressReport

    def compute(n: int, reporter: ProgressReport = ProgressReport(step_message="compute")) -> int:
        with reporter:
            ...

Requests never carry such parameters (:attr:`FunctionSpec.reporters`). For each call, the
dispatcher gives the function a fresh copy of the default report (or a new one of the
annotated class) whose ``submit()`` sends the whole report to the caller as a ``progress``
message: the report's JSON as payload and its ``status`` (``running``, ``success`` or
``error``) as property, as DASF backends do.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..core.specs import FunctionSpec
from ..progress import Reporter

__all__ = ["SendProgress", "finish", "reporters"]

log = logging.getLogger("demessaging.backend")

#: Sends one progress message: the payload and the status. Called from the worker thread.
SendProgress = Callable[[bytes, str], None]


class _Link:
    """Takes the place of DASF's consumer in a report: ``report.submit()`` calls it."""

    def __init__(self, send: SendProgress | None) -> None:
        self._send = send

    def send_response(
        self,
        request: Any = None,
        response_payload: str | bytes | Mapping[str, Any] | None = None,
        msg_type: Any = "progress",
        response_properties: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(response_payload, Mapping):
            response_payload = json.dumps(response_payload)
        payload = response_payload.encode() if isinstance(response_payload, str) else b""
        if isinstance(response_payload, bytes):
            payload = response_payload
        status = (response_properties or {}).get("status", "running")
        self.send(payload, str(getattr(status, "value", status)))

    def send(self, payload: bytes, status: str) -> None:
        """Send one progress message; a failure is logged, never raised into the function."""
        if self._send is None:  # a call without a caller to tell (``compute``, tests)
            return
        try:
            self._send(payload, status)
        except Exception as exc:  # progress is a courtesy: the call goes on
            log.warning("could not send progress: %s", exc)


def reporters(
    spec: FunctionSpec, send: SendProgress | None, cancelled: threading.Event | None = None
) -> dict[str, Any]:
    """A fresh report for each reporter parameter of ``spec``, linked to ``send``.

    ``cancelled`` is the call's cancellation event: a :class:`Reporter` raises
    :class:`~demessaging.errors.CallCancelled` once it is set.
    """
    made: dict[str, Any] = {}
    for param in spec.reporters:
        if isinstance(param.annotation, type) and issubclass(param.annotation, Reporter):
            courteous = _Link(send).send if send is not None else None
            summary = spec.info.description.split("\n", 1)[0].strip() or spec.qualname
            made[param.name] = param.annotation.for_call(summary, courteous, cancelled)
            continue
        if param.default is not inspect.Parameter.empty:
            report = param.default.model_copy(deep=True)
        else:
            report = param.annotation()
        report._pulsar = _Link(send)
        report._request = {}
        made[param.name] = report
    return made


def finish(made: dict[str, Any], ok: bool) -> None:
    """End the :class:`Reporter` of a call that returned (``ok``) or raised.

    DASF's reports are left as the function left them.
    """
    for report in made.values():
        if isinstance(report, Reporter):
            report.end("success" if ok else "error")
