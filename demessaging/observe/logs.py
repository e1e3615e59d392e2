"""Log lines on stderr: text for people, or one JSON object a line for log aggregators.

``demessaging --log-format json`` (or ``DEMESSAGING_LOG_FORMAT=json``) writes every line as a
JSON object with ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``; a backend's
line about each request (logger ``demessaging.calls``) adds ``member``, ``context`` (the
request's ``requestContext``), ``duration`` (seconds), ``status``, ``error`` on errors and,
while tracing is on, ``trace_id`` and ``span_id``; a line with an exception adds
``exception``. pulsar-client's own lines then go through the same handler (logger
``pulsar``), at the same level. ``--log-level`` (or ``DEMESSAGING_LOG_LEVEL``) sets the level,
before or after the subcommand.

The JSON formatter is a few lines on :class:`logging.Formatter`: no library needed for it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import click

C = TypeVar("C", bound="click.Command")

__all__ = ["FIELDS", "FORMATS", "LEVELS", "JsonFormatter", "configure", "options"]

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: What a record may carry beyond the message (``extra=``), in this order.
FIELDS = ("member", "context", "duration", "status", "error", "trace_id", "span_id")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the :data:`FIELDS` given."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        when = datetime.fromtimestamp(record.created, timezone.utc)
        line: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure` installs (and replaces when called again)."""


def configure(level: str | None = None, form: str | None = None) -> tuple[str, str]:
    """Log on stderr at ``level`` in ``form``; each defaults to its variable, then info/text.

    The variables are ``DEMESSAGING_LOG_LEVEL`` and ``DEMESSAGING_LOG_FORMAT``. Returns the
    level and format chosen.

    Raises
    ------
    ValueError
        If the level or the format is not one of :data:`LEVELS` or :data:`FORMATS`.
    """
    level = (level or os.environ.get("DEMESSAGING_LOG_LEVEL") or "info").strip().lower()
    form = (form or os.environ.get("DEMESSAGING_LOG_FORMAT") or "text").strip().lower()
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: choose one of {', '.join(LEVELS)}")
    if form not in FORMATS:
        raise ValueError(f"log format {form!r}: choose one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(TEXT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # pulsar-client's info lines are chatty (a few per consumer): shown at our debug level
    chosen = logging.getLevelName(level.upper())
    logging.getLogger("pulsar").setLevel(logging.INFO if level == "debug" else max(chosen, 30))
    _route_pulsar(form == "json")
    return level, form


def _route_pulsar(through_ours: bool) -> None:
    """pulsar-client's lines through our handler (JSON), or straight to stderr (text).

    Through a pipe that its file logger writes to and a thread of ours reads: given a Python
    logger instead, pulsar-client calls it from its own threads, also while the interpreter
    shuts down, which aborts some processes as they exit.
    """
    module: Any = sys.modules.get("demessaging.transport.pulsar_setup")
    if module is None and through_ours:
        try:
            from ..transport import pulsar_setup as module
        except ImportError:  # no pulsar-client: nothing to route
            return
    if module is not None:
        module.LIBRARY_LOG = _pipe() if through_ours else None


#: pulsar-client's lines: ``2026-01-31 12:00:00.000 INFO  [140...] Where:12 | what``
_LIBRARY_LINE = re.compile(r"\S+ \S+ ([A-Z]+) +\[\d+\] (.*)")
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING}
_PIPES: list[str] = []


def _pipe() -> str | None:
    """The path pulsar-client's file logger writes to; a thread logs what comes (made once).

    None where there is no ``/dev/fd`` (its lines then go to stderr as they are).
    """
    if not _PIPES:
        if not os.path.isdir("/dev/fd"):
            return None
        reading, writing = os.pipe()
        threading.Thread(target=_pump, args=(reading,), name="pulsar-log", daemon=True).start()
        _PIPES.append(f"/dev/fd/{writing}")  # open as long as the process lives
    return _PIPES[0]


def _pump(reading: int) -> None:
    """Log each line of pulsar-client's as logger ``pulsar``, at its level."""
    library = logging.getLogger("pulsar")
    with open(reading, "rb") as lines:
        for raw in lines:
            text = raw.decode("utf-8", "replace").rstrip()
            match = _LIBRARY_LINE.fullmatch(text)
            level = _LEVELS.get(match[1], logging.ERROR) if match else logging.INFO
            library.log(level, match[2] if match else text)


def options(command: C) -> C:
    """Add ``--log-level`` and ``--log-format`` to a click command (after its name too)."""
    import click

    command.params += [
        click.Option(
            ["--log-level"],
            type=click.Choice(LEVELS, case_sensitive=False),
            help="How much to log on stderr [env DEMESSAGING_LOG_LEVEL; default: info].",
        ),
        click.Option(
            ["--log-format"],
            type=click.Choice(FORMATS, case_sensitive=False),
            help="text, or one JSON object a line [env DEMESSAGING_LOG_FORMAT; default: text].",
        ),
    ]
    run: Callable[..., Any] | None = command.callback

    def callback(*args: Any, log_level: str | None, log_format: str | None, **kwargs: Any) -> Any:
        if click.get_current_context().parent is None:  # the command line's first command
            _chosen[:] = ["", ""]
        try:  # this command's own options, over those given before its name
            _chosen[:] = configure(log_level or _chosen[0], log_format or _chosen[1])
        except ValueError as exc:  # from the environment
            raise click.UsageError(str(exc)) from None
        return None if run is None else run(*args, **kwargs)

    command.callback = functools.update_wrapper(callback, run) if run else callback
    return command


#: The level and format configured last: what a subcommand's own options start from.
_chosen = ["", ""]
