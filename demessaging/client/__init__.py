"""The client: the runtime that calls backends, and the generator of client packages."""

from __future__ import annotations

from .remote import RemoteModule
from .runtime import Client, Progress

__all__ = ["Client", "Progress", "RemoteModule"]
