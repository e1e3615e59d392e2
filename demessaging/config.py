"""Settings of backends and clients, read from arguments, then the environment, then defaults.

Every setting ``name`` can be set by the environment variable ``DEMESSAGING_<NAME>``
(``DEMESSAGING_BROKER_URL``, ``DEMESSAGING_TOPIC``, ``DEMESSAGING_TOKEN``...). A generated client
package reads ``<PACKAGE>_<NAME>`` first, so that two clients in one process can point at
different backends, and takes its topic from ``<PACKAGE>_TOPIC`` only. Credentials are never
written into generated packages.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .embedded import resolve
from .errors import ConfigurationError
from .protocol.fragments import DEFAULT_MAX_PAYLOAD
from .protocol.topics import parse_namespaces
from .transport import Transport, TransportOptions
from .transport import connect as connect_transport

__all__ = [
    "BROKER_URL_HELP",
    "DEFAULT_BROKER_URL",
    "DEFAULT_TIMEOUT",
    "ENV_PREFIX",
    "Settings",
    "setting_names",
]

ENV_PREFIX = "DEMESSAGING_"
DEFAULT_BROKER_URL = "embedded://"
#: The help text of every command's ``--broker-url``: the URLs a broker is reached by.
BROKER_URL_HELP = (
    "The broker: pulsar://HOST:PORT, pulsar+ssl://HOST:PORT, ws://HOST:PORT[/PATH], "
    "wss://HOST:PORT[/PATH], embedded:// or memory:// [default: $DEMESSAGING_BROKER_URL, else "
    "the embedded pulsar-lite broker]. Credentials come from $DEMESSAGING_TOKEN, "
    "$DEMESSAGING_OAUTH2, $DEMESSAGING_TLS_*."
)
DEFAULT_TIMEOUT = 60.0
#: Transport options that only code sets (``TransportOptions(...)``), no environment variable.
_CODE_ONLY = frozenset({"operation_timeout", "max_producers"})


@dataclass(frozen=True)
class Settings:
    """Where the broker is and how to talk to it.

    Attributes
    ----------
    broker_url
        The broker: ``pulsar://HOST:PORT``, ``pulsar+ssl://HOST:PORT``, ``ws://HOST:PORT[/PATH]``,
        ``embedded://`` (the pulsar-lite broker of this machine, the default) or ``memory://``
        (in-process); see :func:`demessaging.transport.connect`.
    topic
        The backend's request topic; a short name lives in the transport's ``tenant`` and
        ``namespace``.
    timeout
        Default deadline of a call, in seconds.
    transport
        Topics, credentials and limits of the transport. Its fields are settings too
        (``DEMESSAGING_TOKEN``, ``DEMESSAGING_TENANT``...; ``DEMESSAGING_HEADERS`` as a JSON
        object), except ``operation_timeout`` and ``max_producers``, which only code sets.
    admin_url
        Apache Pulsar's web service (admin REST API), for ``demessaging status`` and
        ``demessaging namespace``; the broker's host on port 8080 (8443 with TLS) if empty.
    encoding
        How clients encode requests: ``msgpack`` (numpy arrays as raw buffers; demessaging
        backends), ``json`` (what DASF backends understand), or ``auto`` (the default):
        msgpack if the backend's pong offers it, else JSON, asked once per client. Backends
        answer in the encoding of each request.
    progress
        Whether clients show a progress bar for calls whose backend reports progress (and
        that have no ``on_progress`` callback): ``auto`` (the default: in terminals and
        notebooks), ``on`` or ``off``.
    reply_namespaces
        Backends: comma-separated ``tenant/namespace`` names whose topics replies may go to,
        besides the backend's own (short reply topic names always live there). Reply topics
        elsewhere are refused: the request is logged, acknowledged and not run. Side topics of
        requests in pieces may be there too.
    reply_namespaces_only
        Backends: reply only to full topic names in ``reply_namespaces`` (partners isolated
        from each other, see docs/deploying.md): short names and the backend's own namespace
        are refused.
    reply_namespace
        Clients: the ``tenant/namespace`` where the client's reply topic and the side topics
        of its uploads are made (its partner role's own, see docs/deploying.md), with names
        nobody can guess; if empty, next to the backend's topic, as DASF clients do.
    reply_retries
        Backends: failed attempts to publish a reply (the broker unreachable, a timeout)
        before the request goes to the dead-letter topic; the function runs once.
    dead_letter_topic
        Backends: where such requests go, with the reason in their properties;
        ``<topic>-DLQ`` if empty.
    max_payload
        Backends: the largest request taken, in bytes (1 GiB); a request in pieces claiming
        more is refused at once.
    upload_memory
        Backends: the bytes that requests in pieces may claim together while they are
        received and until they are answered; ``2 * max_payload`` if 0. A request that does
        not fit waits until its upload deadline, then is refused.
    upload_timeout
        Backends: seconds for the whole upload of a request in pieces, from when its first
        piece is taken (60).
    prefetch
        Backends: requests the broker pushes ahead to an instance, beyond those it runs; one
        per worker if 0. More (two to four per worker) carry more short calls a second, as the
        broker and the backend handle fewer flow permits, but a busy instance then holds
        requests another one could run (see docs/deploying.md).
    metrics_port
        Backends: serve Prometheus metrics on ``/metrics`` and a health check on ``/healthz``
        on this port (:mod:`demessaging.observe.metrics`); none if 0, the default.
    metrics_host
        Backends: the address that server listens on: 127.0.0.1 by default, ``0.0.0.0`` for
        every interface.
    prefixes
        The environment prefixes the settings were read with (:meth:`from_env`), the first
        one winning; errors name the variables to change by them (:meth:`variable`). Not a
        setting.
    """

    broker_url: str = DEFAULT_BROKER_URL
    topic: str = ""
    timeout: float = DEFAULT_TIMEOUT
    transport: TransportOptions = field(default_factory=TransportOptions)
    admin_url: str = ""
    encoding: str = "auto"
    progress: str = "auto"
    reply_namespaces: str = ""
    reply_namespaces_only: bool = False
    reply_namespace: str = ""
    reply_retries: int = 5
    dead_letter_topic: str = ""
    max_payload: int = DEFAULT_MAX_PAYLOAD
    upload_memory: int = 0
    upload_timeout: float = 60.0
    prefetch: int = 0
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    prefixes: tuple[str, ...] = (ENV_PREFIX,)

    def variable(self, name: str) -> str:
        """The environment variables that change the setting ``name``, for error messages.

        Examples
        --------
        >>> Settings(prefixes=("CLIMATE_CLIENT_", "DEMESSAGING_")).variable("broker_url")
        'CLIMATE_CLIENT_BROKER_URL (or DEMESSAGING_BROKER_URL)'
        """
        first, *others = [f"{prefix}{name.upper()}" for prefix in self.prefixes or (ENV_PREFIX,)]
        return f"{first} (or {', '.join(others)})" if others else first

    def connect(self) -> Transport:
        """A transport to the broker; ``embedded://`` is the embedded broker running here.

        Raises
        ------
        ConfigurationError
            If the broker URL's scheme names no known transport.
        TransportError
            For ``embedded://`` when no embedded broker runs on this machine.
        """
        broker_url = resolve(self.broker_url, setting=self.variable("broker_url"))
        return connect_transport(broker_url, self.transport)

    def listener_options(self) -> dict[str, Any]:
        """The backend's settings, as :class:`~demessaging.backend.Listener` takes them."""
        return {
            "reply_namespaces": parse_namespaces(self.reply_namespaces),
            "reply_namespaces_only": self.reply_namespaces_only,
            "reply_retries": self.reply_retries,
            "dead_letter_topic": self.dead_letter_topic,
            "max_payload": self.max_payload,
            "upload_memory": self.upload_memory or 2 * self.max_payload,
            "upload_timeout": self.upload_timeout,
            "prefetch": self.prefetch or None,
        }

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ConfigurationError(f"timeout must be positive, got {self.timeout!r}")
        if self.encoding not in ("auto", "msgpack", "json"):
            raise ConfigurationError(
                f"encoding must be auto, msgpack or json, got {self.encoding!r}"
            )
        if self.progress not in ("auto", "on", "off"):
            raise ConfigurationError(f"progress must be auto, on or off, got {self.progress!r}")
        if self.reply_retries < 1:
            raise ConfigurationError(
                f"reply_retries must be at least 1, got {self.reply_retries!r}"
            )
        parse_namespaces(self.reply_namespaces, setting=self.variable("reply_namespaces"))
        if self.reply_namespaces_only and not self.reply_namespaces.strip(" ,"):
            raise ConfigurationError(
                f"{self.variable('reply_namespaces_only')} needs "
                f"{self.variable('reply_namespaces')}: the partners' reply namespaces"
            )
        if (
            len(parse_namespaces(self.reply_namespace, setting=self.variable("reply_namespace")))
            > 1
        ):
            raise ConfigurationError(
                f"{self.variable('reply_namespace')} is one TENANT/NAMESPACE, got "
                f"{self.reply_namespace!r}"
            )
        if self.max_payload < 1:
            raise ConfigurationError(f"max_payload must be at least 1, got {self.max_payload!r}")
        if self.upload_memory and self.upload_memory < self.max_payload:
            raise ConfigurationError(
                f"upload_memory must be at least max_payload ({self.max_payload}) or 0, got "
                f"{self.upload_memory!r}"
            )
        if not self.upload_timeout > 0:
            raise ConfigurationError(
                f"upload_timeout must be positive, got {self.upload_timeout!r}"
            )
        if self.prefetch < 0:
            raise ConfigurationError(
                f"{self.variable('prefetch')} must be at least 1 (0: one per worker), got "
                f"{self.prefetch!r}"
            )
        if not 0 <= self.metrics_port <= 65535 or not self.metrics_host.strip():
            raise ConfigurationError(
                f"{self.variable('metrics_port')} must be a port (0 for none) and "
                f"{self.variable('metrics_host')} an address, got {self.metrics_port!r} and "
                f"{self.metrics_host!r}"
            )

    @classmethod
    def from_env(
        cls,
        prefixes: Sequence[str] = (ENV_PREFIX,),
        environ: Mapping[str, str] | None = None,
        defaults: Settings | None = None,
        **values: Any,
    ) -> Settings:
        """Settings from ``values``, else the environment, else ``defaults``.

        Parameters
        ----------
        prefixes
            Environment prefixes, the first found wins.
        environ
            The environment; ``os.environ`` by default.
        defaults
            What unset settings fall back to; the class defaults if None.
        **values
            Explicit settings by the names of :func:`setting_names`, transport options among
            them (None means unset); they win over the environment.

        Raises
        ------
        ConfigurationError
            If a value has the wrong type or an unknown name.
        """
        env = os.environ if environ is None else environ
        kinds = _kinds()
        unknown = set(values) - set(kinds)
        if unknown:
            raise ConfigurationError(f"unknown settings: {', '.join(sorted(unknown))}")
        base = defaults or cls()
        own = {f.name: getattr(base, f.name) for f in dataclasses.fields(cls)}
        transport = {
            f.name: getattr(base.transport, f.name) for f in dataclasses.fields(TransportOptions)
        }
        for name, kind in kinds.items():
            target = transport if name in transport else own
            # an empty transport option is unset: the transports always took an empty one for
            # their default
            unset = (None, "") if target is transport else (None,)
            for prefix in prefixes:
                key = f"{prefix}{name.upper()}"
                if key in env:
                    value = _parse(key, env[key], kind)
                    if value not in unset:
                        target[name] = value
                    break
            explicit: Any = values.get(name)
            if explicit not in unset:
                target[name] = _headers(name, explicit) if kind == _HEADERS else explicit
        own["transport"] = TransportOptions(**transport)
        own["prefixes"] = tuple(prefixes)
        return cls(**own)


def setting_names() -> tuple[str, ...]:
    """The name of every setting: ``DEMESSAGING_<NAME>`` (``<PREFIX>_<NAME>``) sets it."""
    return tuple(_kinds())


_HEADERS = Mapping[str, str]


@functools.cache
def _kinds() -> dict[str, Any]:
    """Every setting's type, by name: those of :class:`Settings`, then transport options."""
    kinds = typing.get_type_hints(Settings)
    del kinds["transport"], kinds["prefixes"]
    options = typing.get_type_hints(TransportOptions)
    kinds.update((name, kind) for name, kind in options.items() if name not in _CODE_ONLY)
    return kinds


def _parse(key: str, text: Any, kind: Any) -> Any:
    """``text``, a variable's value, as a setting of type ``kind``."""
    if kind == _HEADERS:
        return _headers(key, text)
    if kind is bool:
        if text.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if text.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(f"{key}={text!r} is not a yes or no (true/false, 1/0)")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigurationError(f"{key}={text!r} is not a whole number") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigurationError(f"{key}={text!r} is not a number") from None
    return text


def _headers(key: str, value: str | Mapping[str, str]) -> dict[str, str]:
    """HTTP headers from a JSON object (or a mapping already); blank text is none."""
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if not value.strip():
        return {}
    try:
        headers = json.loads(value)
    except ValueError:
        headers = None
    if not isinstance(headers, dict):
        # not the value itself: headers hold credentials
        raise ConfigurationError(
            f'{key} must be a JSON object, such as {{"authorization": "Token KEY"}}'
        )
    return {str(k): str(v) for k, v in headers.items()}
