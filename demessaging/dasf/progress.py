"""DASF's progress reports (``deprogressapi``) in the parameters of served functions.

A function of a backend module may take a report, as modules written for DASF do::

    from deprogressapi import ProgressReport

    def compute(n: int, reporter: ProgressReport = ProgressReport(step_message="compute")) -> int:
        with reporter:
            ...

DASF 0.6's generated clients send the report with every request (its ``step_message``, its
``steps``...; other callers never do, and the JSON Schema does not list it). For each call, the
backend gives the function a fresh copy of the report sent, else of the default report (or a
new one of the annotated class), whose ``submit()`` sends the whole report to the caller as a
``progress`` message: the report's JSON as payload and its ``status`` (``running``,
``success`` or ``error``) as property, as DASF backends do.

Importing this module registers such reports with :mod:`demessaging.core.reporter`; the
package does it on import. deprogressapi itself is imported only by the modules that use it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from typing import Any

from ..core.reporter import ReportType, SendProgress, register_report_type

__all__ = ["DEPROGRESSAPI", "is_dasf_report", "make_report"]


def is_dasf_report(cls: type) -> bool:
    """Whether ``cls`` is a report class of ``deprogressapi`` (based on its ``BaseReport``)."""
    return any(
        base.__name__ == "BaseReport" and base.__module__.startswith("deprogressapi")
        for base in cls.__mro__
    )


def make_report(annotation: type, default: Any, send: SendProgress | None) -> Any:
    """A fresh report for one call: a copy of ``default``, else a new ``annotation()``.

    ``default`` is the report a DASF client sent, else the parameter's default.
    """
    if default is not inspect.Parameter.empty:
        report = default.model_copy(deep=True)
    else:
        report = annotation()
    report._pulsar = _Link(send)
    report._request = {}
    return report


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
        if self._send is not None:  # None: a call without a caller to tell (``compute``, tests)
            self._send(payload, str(getattr(status, "value", status)))


#: deprogressapi's reports, as the backend recognises and makes them.
DEPROGRESSAPI = ReportType(recognises=is_dasf_report, make=make_report)
register_report_type(DEPROGRESSAPI)
