"""Remote procedure calls between research institutes over Apache Pulsar.

A typed Python module becomes a backend; partners call it through a generated client package
that mirrors the module. See the README and ``docs/`` for the whole story.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core.arrays import ArraySpec
from .core.configure import configure
from .core.reporter import Reporter
from .dasf import progress as _dasf_progress  # noqa: F401  (DASF's reports join Reporter)
from .errors import (
    APIChangedError,
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
    "APIChangedError",
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
    "Reporter",
    "SignatureError",
    "TransportError",
    "__version__",
    "configure",
    "main",
]

if TYPE_CHECKING:
    from .dasf.main import main


def __getattr__(name: str) -> Any:
    if name == "main":  # DASF's entry point of backend modules; loaded when asked for
        from .dasf.main import main

        return main
    raise AttributeError(f"module 'demessaging' has no attribute {name!r}")
