"""Build-time code: writes the client package that mirrors a backend module.

Nothing here runs in a generated package; those import only :mod:`demessaging.client`.
"""

from __future__ import annotations

from .generator import GeneratedPackage, generate

__all__ = ["GeneratedPackage", "generate"]
