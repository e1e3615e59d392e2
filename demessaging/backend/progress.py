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
from collections.abc import Callable, Mapping
from typing import Any

from ..core.specs import FunctionSpec

__all__ = ["SendProgress", "reporters"]

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
        if self._send is None:  # a call without a caller to tell (``compute``, tests)
            return
        if isinstance(response_payload, Mapping):
            response_payload = json.dumps(response_payload)
        payload = response_payload.encode() if isinstance(response_payload, str) else b""
        if isinstance(response_payload, bytes):
            payload = response_payload
        status = (response_properties or {}).get("status", "running")
        try:
            self._send(payload, str(getattr(status, "value", status)))
        except Exception as exc:  # progress is a courtesy: the call goes on
            log.warning("could not send progress: %s", exc)


def reporters(spec: FunctionSpec, send: SendProgress | None) -> dict[str, Any]:
    """A fresh report for each reporter parameter of ``spec``, linked to ``send``."""
    made = {}
    for param in spec.reporters:
        if param.default is not inspect.Parameter.empty:
            report = param.default.model_copy(deep=True)
        else:
            report = param.annotation()
        report._pulsar = _Link(send)
        report._request = {}
        made[param.name] = report
    return made
