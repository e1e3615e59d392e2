"""The client runtime: calls backends, from synchronous and asynchronous code alike."""

from __future__ import annotations

from .bars import Progress
from .remote import RemoteModule
from .runtime import Client

__all__ = ["Client", "Progress", "RemoteModule"]
