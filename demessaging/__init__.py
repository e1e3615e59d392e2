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
    AuthorizationError,
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

__version__ = "1.0.0a1"

__all__ = [
    "APIChangedError",
    "ArraySpec",
    "AuthenticationError",
    "AuthorizationError",
    "Client",
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
    "generate",
    "main",
    "serve",
]

if TYPE_CHECKING:
    from .backend import serve
    from .client import Client
    from .codegen import generate
    from .dasf.main import main

#: What is loaded when first asked for: the client, the backend and the generator import
#: transports and broker libraries, which ``import demessaging`` alone does not.
_LAZY = {
    "Client": ".client",
    "serve": ".backend",
    "generate": ".codegen",
    "main": ".dasf.main",  # DASF's entry point of backend modules
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'demessaging' has no attribute {name!r}")
