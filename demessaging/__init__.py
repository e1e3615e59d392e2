"""Remote procedure calls between research institutes over Apache Pulsar.

A typed Python module becomes a backend; partners call it through a generated client package
that mirrors the module. See the README and ``docs/`` for the whole story.
"""

from __future__ import annotations

from .core.arrays import ArraySpec
from .errors import (
    AuthenticationError,
    CallError,
    CallTimeoutError,
    ConfigurationError,
    DemessagingError,
    DemessagingWarning,
    GeneratorError,
    InvalidArgumentsError,
    ModuleLoadError,
    PayloadTooLargeError,
    ProtocolError,
    RemoteError,
    SignatureError,
    TransportError,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "ArraySpec",
    "AuthenticationError",
    "CallError",
    "CallTimeoutError",
    "ConfigurationError",
    "DemessagingError",
    "DemessagingWarning",
    "GeneratorError",
    "InvalidArgumentsError",
    "ModuleLoadError",
    "PayloadTooLargeError",
    "ProtocolError",
    "RemoteError",
    "SignatureError",
    "TransportError",
    "__version__",
]
