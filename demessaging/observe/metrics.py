"""A backend's Prometheus metrics and its health check, on one small HTTP server.

``demessaging listen --metrics-port PORT`` (``DEMESSAGING_METRICS_PORT``) serves, on
``--metrics-host`` (``DEMESSAGING_METRICS_HOST``, 127.0.0.1 by default):

- ``/metrics``: Prometheus's text format (prometheus-client, the extra ``demessaging[metrics]``):

  ``demessaging_requests_total{member, status}``
      Requests answered. ``status`` is ``ok``; ``error`` (the function raised, its result did
      not match its annotation, or the backend failed); ``invalid`` (refused: the request did
      not validate, or was malformed); ``cancelled`` (its caller cancelled it); ``expired``
      (its deadline had passed before a worker was free: not run).
  ``demessaging_request_duration_seconds{member}``
      Histogram of the time a call took in a worker: validation, the call, encoding.
  ``demessaging_requests_in_flight``
      Calls running in a worker now.
  ``demessaging_payload_bytes{direction}``
      Histogram of payload sizes: ``request`` (every request handed to a worker, its pieces
      put together) and ``reply`` (every successful reply; not the items of a stream).
  ``demessaging_redeliveries_total``
      Requests that the broker delivered again (Pulsar's redelivery
      count: a backend died or gave them back before acknowledging them).

  plus the ``process_*`` metrics (CPU, memory, open files) of the process collector.

  ``member`` is the served member (``function`` or ``Class.method``) a request validated
  against, taken from the module, never from the wire: anything else is counted as
  ``(unknown)``, so a caller cannot make new series.
- ``/healthz``: 200 once the backend is subscribed and serving, 503 while it starts or drains
  (after SIGTERM it finishes the calls in flight); the body is JSON: ``{"state": "serving",
  "topic": ...}``, the state one of ``starting``, ``serving``, ``draining``.
- Any other path: 404.

prometheus-client's own ``start_http_server`` answers every path with the metrics and takes no
other routes, so the server here is wsgiref's, on a thread, with prometheus-client's
``make_wsgi_app`` behind ``/metrics`` and a small app of its own for the rest.

Without a metrics port nothing of this is imported or started, and the listener pays one
``is None`` test per message.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import click

from ..errors import ConfigurationError
from ..message import JSON, Message

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from prometheus_client import Counter, Gauge, Histogram
    from prometheus_client.registry import CollectorRegistry

    from ..backend.dispatcher import Dispatcher, Outcome
    from ..config import Settings
    from ..protocol.envelope import ErrorInfo

__all__ = [
    "STATUSES",
    "UNKNOWN",
    "Metrics",
    "MetricsServer",
    "metrics_options",
    "serving",
    "status_of",
]

log = logging.getLogger("demessaging.metrics")

#: The values of the ``status`` label of ``demessaging_requests_total``.
STATUSES = ("ok", "error", "invalid", "cancelled", "expired")
#: The ``member`` label of requests that named no member of the module.
UNKNOWN = "(unknown)"
#: Upper bounds of the duration histogram, in seconds: a millisecond to ten minutes.
DURATION_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
#: Upper bounds of the payload histogram, in bytes: 64 B to 1 GiB, by fours.
PAYLOAD_BUCKETS = tuple(float(64 * 4**n) for n in range(13))
#: The refusals of a listener (the ``type`` of its error reply) by status.
_REFUSALS = {
    "DeadlineExceeded": "expired",
    "CallCancelled": "cancelled",
    "ProtocolError": "invalid",
}


def status_of(error: ErrorInfo | None) -> str:
    """The ``status`` label of a call that ended with ``error`` (None: it succeeded)."""
    if error is None:
        return "ok"
    if error.type.rsplit(".", 1)[-1] == "CallCancelled":
        return "cancelled"
    return "invalid" if error.stage == "request" else "error"


class _Served(Protocol):
    """What :meth:`Metrics.watch` needs of a :class:`~demessaging.backend.Listener`."""

    dispatcher: Dispatcher
    topic: str
    ready: threading.Event
    metrics: Metrics | None

    @property
    def draining(self) -> bool: ...


class Metrics:
    """The metrics of one backend, in a registry of their own, and its health.

    Parameters
    ----------
    registry
        Where the metrics go; a new registry with the process collector if None.

    Raises
    ------
    ConfigurationError
        If prometheus-client is not installed.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        try:
            from prometheus_client import Counter, Gauge, Histogram, ProcessCollector
            from prometheus_client.registry import CollectorRegistry
        except ImportError:
            raise ConfigurationError(
                "metrics need prometheus-client: pip install 'demessaging[metrics]'"
            ) from None
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
        self.registry = registry
        self.requests: Counter = Counter(
            "demessaging_requests",
            "Requests answered, by member and status (ok, error, invalid, cancelled, expired).",
            ["member", "status"],
            registry=registry,
        )
        self.duration: Histogram = Histogram(
            "demessaging_request_duration_seconds",
            "Seconds a call took in a worker: validation, the call and encoding its result.",
            ["member"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.in_flight: Gauge = Gauge(
            "demessaging_requests_in_flight", "Calls running in a worker now.", registry=registry
        )
        self.payload: Histogram = Histogram(
            "demessaging_payload_bytes",
            "Payload sizes in bytes: requests handed to a worker, successful replies.",
            ["direction"],
            buckets=PAYLOAD_BUCKETS,
            registry=registry,
        )
        self.redeliveries: Counter = Counter(
            "demessaging_redeliveries",
            "Requests that the broker delivered again (Pulsar's redelivery count).",
            registry=registry,
        )
        self._requests = self.payload.labels("request")
        self._replies = self.payload.labels("reply")
        #: the series of every member (and UNKNOWN), made once: no label look-up per call
        self._durations: dict[str, Any] = {UNKNOWN: self.duration.labels(UNKNOWN)}
        self._counts: dict[tuple[str, str], Any] = {
            (UNKNOWN, status): self.requests.labels(UNKNOWN, status) for status in STATUSES
        }
        self._handle: Callable[..., Outcome] | None = None
        self._served: _Served | None = None

    def watch(self, listener: _Served) -> None:
        """Count the requests of ``listener`` and report its health from now on."""
        from ..core import versions
        from ..core.schema import api_info

        members = set(versions.shapes(api_info(listener.dispatcher.models)))
        for member in (*sorted(members), UNKNOWN):  # every series there from the start, at 0
            self._durations[member] = self.duration.labels(member)
            for status in STATUSES:
                self._counts[member, status] = self.requests.labels(member, status)
        self._handle = listener.dispatcher.handle
        self._served = listener
        listener.metrics = self

    def member(self, name: str) -> str:
        """The ``member`` label for ``name``: itself if the module has it, else ``(unknown)``."""
        return name if name in self._durations else UNKNOWN

    def handle(self, payload: bytes | bytearray, content_type: str = JSON, *rest: Any) -> Outcome:
        """The dispatcher's ``handle``, counted (runs in a worker thread)."""
        assert self._handle is not None, "watch() a listener first"
        self._requests.observe(len(payload))
        self.in_flight.inc()
        started = time.perf_counter()
        try:
            outcome = self._handle(payload, content_type, *rest)
        except BaseException:  # the dispatcher answers every error: a defect of ours
            self._counts[UNKNOWN, "error"].inc()
            raise
        finally:
            self.in_flight.dec()
        member = self.member(outcome.member)
        self._durations[member].observe(time.perf_counter() - started)
        self._counts[member, status_of(outcome.error)].inc()
        if outcome.error is None and not outcome.streamed:
            self._replies.observe(len(outcome.payload))
        return outcome

    def refused(self, kind: str) -> None:
        """Count a request the listener answered with an error of type ``kind`` without a worker."""
        self._counts[UNKNOWN, _REFUSALS.get(kind, "error")].inc()

    def received(self, message: Message) -> None:
        """Count ``message`` if the broker delivered it before."""
        if message.redelivery_count > 0:
            self.redeliveries.inc()

    @property
    def state(self) -> str:
        """``starting``, ``serving`` or ``draining``."""
        served = self._served
        if served is None:
            return "starting"
        if served.draining:
            return "draining"
        return "serving" if served.ready.is_set() else "starting"

    def health(self) -> dict[str, Any]:
        """The body of ``/healthz``."""
        found: dict[str, Any] = {"state": self.state}
        if self._served is not None:
            found["topic"] = self._served.topic
        return found


def _make_server(host: str, port: int, family: int, app: Any) -> WSGIServer:
    """The standard library's WSGI server on ``host:port``, a thread per request."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s: " + format, self.address_string(), *args)

    class Threads(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # a slow scraper never holds the backend's exit
        address_family = family

    return make_server(host, port, app, Threads, Quiet)


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` of ``metrics`` on ``host:port`` from a thread.

    ``port`` 0 takes a free port (:attr:`port` says which).

    Raises
    ------
    ConfigurationError
        If the port is in use, or the host is not an address of this machine.
    """

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 0) -> None:
        from prometheus_client import make_wsgi_app

        self.metrics = metrics
        self._scrape = make_wsgi_app(metrics.registry)
        where = f"{host}:{port}"
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            self._server = _make_server(host, port, family, self._app)
        except OSError as exc:
            why = "the port is in use" if exc.errno == errno.EADDRINUSE else str(exc)
            raise ConfigurationError(f"cannot serve metrics on {where}: {why}") from None
        self.host = host
        self.port: int = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demessaging-metrics", daemon=True
        )
        self._thread.start()
        log.info("metrics at http://%s/metrics, health at /healthz", _join(host, self.port))

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._scrape(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            health = self.metrics.health()
            status = "200 OK" if health["state"] == "serving" else "503 Service Unavailable"
            return _reply(start_response, status, json.dumps(health), "application/json")
        return _reply(start_response, "404 Not Found", "not found: /metrics or /healthz\n")

    def close(self) -> None:
        """Stop serving and close the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _reply(
    start_response: StartResponse, status: str, text: str, kind: str = "text/plain"
) -> list[bytes]:
    body = text.encode()
    start_response(
        status, [("Content-Type", f"{kind}; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[Metrics | None]:
    """The metrics server of ``settings`` (``metrics_port``, ``metrics_host``), if it has one.

    Yields the :class:`Metrics` to :meth:`~Metrics.watch` a listener with, or None (and
    imports nothing) when ``metrics_port`` is 0. The server stops on leaving.
    """
    if not settings.metrics_port:
        yield None
        return
    metrics = Metrics()
    server = MetricsServer(metrics, settings.metrics_host, settings.metrics_port)
    try:
        yield metrics
    finally:
        server.close()


def metrics_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--metrics-port`` and ``--metrics-host``, for ``demessaging listen``."""
    host = click.option(
        "--metrics-host",
        help="Where /metrics and /healthz listen [default: $DEMESSAGING_METRICS_HOST, else "
        "127.0.0.1]; 0.0.0.0 for every interface.",
    )
    port = click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        help="Serve Prometheus metrics on /metrics and a health check on /healthz on this port "
        "[default: $DEMESSAGING_METRICS_PORT, else none]. Needs demessaging[metrics].",
    )
    return port(host(command))
