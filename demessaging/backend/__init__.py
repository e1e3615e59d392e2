"""The backend: the dispatcher (no I/O) and the listener that feeds it from a transport."""

from __future__ import annotations

from .dispatcher import Dispatcher, Outcome

__all__ = ["Dispatcher", "Outcome"]
