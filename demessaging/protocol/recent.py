"""A bounded memory of keys, oldest forgotten first.

Backends remember the requests they answered and the calls cancelled before they came
(:mod:`demessaging.backend.recent`); clients, the contexts they drew lately.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["REMEMBERED", "Recent"]

#: How many keys a :class:`Recent` holds by default; the oldest are forgotten first.
REMEMBERED = 10_000


class Recent:
    """The last ``size`` keys added, oldest forgotten first (thread-safe).

    Parameters
    ----------
    size
        How many keys are remembered.
    """

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> None:
        """Remember ``key`` (a key already remembered keeps its place)."""
        with self._lock:
            self._keys[key] = None
            if len(self._keys) > self.size:
                self._keys.popitem(last=False)

    def take(self, key: str) -> bool:
        """Forget ``key``; returns whether it was remembered."""
        with self._lock:
            return self._keys.pop(key, 0) is None
