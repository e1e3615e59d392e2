"""Codecs: bytes <-> values, validated by a pydantic ``TypeAdapter``. One module per codec."""

from __future__ import annotations

from . import json

__all__ = ["json"]
