"""Progress reports of a running call: made fresh for each call, ended when it returns.

A served function takes a report by annotating a parameter with
:class:`~demessaging.core.reporter.Reporter`, or with a registered report class (DASF's
``deprogressapi`` reports, :mod:`demessaging.dasf.progress`). Requests carry no such
parameters (:attr:`~demessaging.core.specs.FunctionSpec.reporters`), except DASF 0.6
clients, which send their report: the dispatcher gives the function a fresh report for each
call (a copy of the one sent, if any), whose messages go to the caller.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from ..core.reporter import Reporter, SendProgress, report_type
from ..core.specs import FunctionSpec

__all__ = ["finish", "reporters"]

log = logging.getLogger("demessaging.backend")


def _courteous(send: SendProgress) -> SendProgress:
    """``send``, with a failure logged, never raised into the function."""

    def deliver(payload: bytes, status: str) -> None:
        try:
            send(payload, status)
        except Exception as exc:  # progress is a courtesy: the call goes on
            log.warning("could not send progress: %s", exc)

    return deliver


def reporters(
    spec: FunctionSpec,
    send: SendProgress | None,
    cancelled: threading.Event | None = None,
    given: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A fresh report for each reporter parameter of ``spec``, linked to ``send``.

    ``cancelled`` is the call's cancellation event: a :class:`Reporter` raises
    :class:`~demessaging.errors.CallCancelled` once it is set. ``given`` holds the reports
    the request carried (DASF 0.6 clients send theirs): a copy of one takes the place of the
    parameter's default.
    """
    courteous = _courteous(send) if send is not None else None
    made: dict[str, Any] = {}
    for param in spec.reporters:
        if isinstance(param.annotation, type) and issubclass(param.annotation, Reporter):
            summary = spec.info.description.split("\n", 1)[0].strip() or spec.qualname
            made[param.name] = param.annotation.for_call(summary, courteous, cancelled)
            continue
        kind = report_type(param.annotation)
        assert kind is not None, "introspection took only Reporters and registered reports"
        sent = (given or {}).get(param.name)
        default = param.default if sent is None else sent
        made[param.name] = kind.make(param.annotation, default, courteous)
    return made


def finish(made: dict[str, Any], ok: bool) -> None:
    """End the :class:`Reporter` of a call that returned (``ok``) or raised.

    Other reports (DASF's) are left as the function left them.
    """
    for report in made.values():
        if isinstance(report, Reporter):
            report.end("success" if ok else "error")
