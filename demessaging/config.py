"""Settings of backends and clients, read from arguments, then the environment, then defaults.

Every setting ``name`` can be set by the environment variable ``DEMESSAGING_<NAME>``
(``DEMESSAGING_BROKER_URL``, ``DEMESSAGING_TOPIC``, ``DEMESSAGING_TOKEN``...). A generated client
package reads ``<PACKAGE>_<NAME>`` first, so that two clients in one process can point at
different backends, and takes its topic from ``<PACKAGE>_TOPIC`` only. Credentials are never
written into generated packages.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError

__all__ = ["DEFAULT_BROKER_URL", "DEFAULT_TIMEOUT", "ENV_PREFIX", "Settings"]

ENV_PREFIX = "DEMESSAGING_"
DEFAULT_BROKER_URL = "embedded://"
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Settings:
    """Where the broker is and how to talk to it.

    Attributes
    ----------
    broker_url
        The broker: ``pulsar://HOST:PORT``, ``pulsar+ssl://HOST:PORT``, ``embedded://`` (the
        pulsar-lite broker of this machine, the default) or ``memory://`` (in-process).
    topic
        The backend's request topic; a short name lives in ``tenant``/``namespace``.
    timeout
        Default deadline of a call, in seconds.
    tenant, namespace
        Where short topic names live on Pulsar.
    persistent
        Whether short topic names are persistent topics.
    token
        A JWT for Pulsar's token authentication.
    oauth2
        JSON parameters of Pulsar's OAuth2 client-credentials authentication.
    tls_trust_certs
        A CA bundle that verifies the broker (``pulsar+ssl://``).
    tls_certificate, tls_key
        A client certificate and key, for TLS authentication.
    encoding
        How clients encode requests: ``msgpack`` (numpy arrays as raw buffers; demessaging
        backends), ``json`` (what DASF backends understand), or ``auto`` (the default):
        msgpack if the backend's pong offers it, else JSON, asked once per client. Backends
        answer in the encoding of each request.
    headers
        HTTP headers for the WebSocket handshake (``ws://``, ``wss://``), as a JSON object,
        such as ``{"authorization": "Token <key>"}`` for dasf-broker-django.
    frame_size
        The largest WebSocket frame the broker takes, in bytes (``ws://``, ``wss://``);
        larger payloads go in pieces.
    admin_url
        Apache Pulsar's web service (admin REST API), for ``demessaging status`` and
        ``demessaging namespace``; the broker's host on port 8080 (8443 with TLS) if empty.
    progress
        Whether clients show a progress bar for calls whose backend reports progress (and
        that have no ``on_progress`` callback): ``auto`` (the default: in terminals and
        notebooks), ``on`` or ``off``.
    """

    broker_url: str = DEFAULT_BROKER_URL
    topic: str = ""
    timeout: float = DEFAULT_TIMEOUT
    tenant: str = "public"
    namespace: str = "default"
    persistent: bool = True
    token: str = field(default="", repr=False)
    oauth2: str = field(default="", repr=False)
    tls_trust_certs: str = ""
    tls_certificate: str = ""
    tls_key: str = field(default="", repr=False)
    headers: str = field(default="", repr=False)
    frame_size: int = 1024 * 1024
    admin_url: str = ""
    encoding: str = "auto"
    progress: str = "auto"

    def transport_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`demessaging.transport.connect`."""
        names = (
            "tenant",
            "persistent",
            "namespace",
            "token",
            "oauth2",
            "tls_trust_certs",
            "tls_certificate",
            "tls_key",
            "frame_size",
        )
        options = {name: getattr(self, name) for name in names}
        options["headers"] = self.header_dict()
        return options

    def header_dict(self) -> dict[str, str]:
        """``headers`` as a dict.

        Raises
        ------
        ConfigurationError
            If ``headers`` is not a JSON object.
        """
        if not self.headers.strip():
            return {}
        try:
            headers = json.loads(self.headers)
        except ValueError:
            headers = None
        if not isinstance(headers, dict):
            raise ConfigurationError(
                'headers must be a JSON object, such as {"authorization": "Token KEY"}'
            )
        return {str(k): str(v) for k, v in headers.items()}

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ConfigurationError(f"timeout must be positive, got {self.timeout!r}")
        if self.frame_size < 4096:
            raise ConfigurationError(f"frame_size must be at least 4096, got {self.frame_size}")
        if self.encoding not in ("auto", "msgpack", "json"):
            raise ConfigurationError(
                f"encoding must be auto, msgpack or json, got {self.encoding!r}"
            )
        if self.progress not in ("auto", "on", "off"):
            raise ConfigurationError(f"progress must be auto, on or off, got {self.progress!r}")

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
            Explicit settings (None means unset); they win over the environment.

        Raises
        ------
        ConfigurationError
            If a value has the wrong type or an unknown name.
        """
        env = os.environ if environ is None else environ
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ConfigurationError(f"unknown settings: {', '.join(sorted(unknown))}")
        chosen = dataclasses.asdict(defaults or cls())
        for name, spec in known.items():
            for prefix in prefixes:
                key = f"{prefix}{name.upper()}"
                if key in env:
                    chosen[name] = _parse(key, env[key], spec.type)
                    break
            if values.get(name) is not None:
                chosen[name] = values[name]
        return cls(**chosen)


def _parse(key: str, text: str, kind: Any) -> Any:
    if kind in (bool, "bool"):
        if text.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if text.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(f"{key}={text!r} is not a yes or no (true/false, 1/0)")
    if kind in (int, "int"):
        try:
            return int(text)
        except ValueError:
            raise ConfigurationError(f"{key}={text!r} is not a whole number") from None
    if kind in (float, "float"):
        try:
            return float(text)
        except ValueError:
            raise ConfigurationError(f"{key}={text!r} is not a number") from None
    return text
