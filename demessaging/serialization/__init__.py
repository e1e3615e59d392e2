"""Codecs: bytes <-> values, validated by a pydantic ``TypeAdapter``. One module per codec.

Each has ``CONTENT_TYPE``, ``encode(value, adapter)`` and ``decode(data, adapter)``. A
message's ``content_type`` property names the codec of its payload (:func:`codec_for`).
``decode`` refuses a malformed payload with :class:`.errors.MalformedPayloadError`, and
only with it (or a ``pydantic.ValidationError`` for a value that does not validate).
"""

from __future__ import annotations

from types import ModuleType

from . import json, msgpack
from .errors import MalformedPayloadError

__all__ = ["CODECS", "ENCODINGS", "MalformedPayloadError", "codec_for", "json", "msgpack"]

#: Content type -> codec module.
CODECS: dict[str, ModuleType] = {json.CONTENT_TYPE: json, msgpack.CONTENT_TYPE: msgpack}
#: Names of the encodings, as settings give them.
ENCODINGS = {"json": json, "msgpack": msgpack}


def codec_for(content_type: str) -> ModuleType:
    """The codec of ``content_type``.

    Raises
    ------
    ValueError
        If no codec has that content type.
    """
    try:
        return CODECS[content_type]
    except KeyError:
        known = ", ".join(sorted(CODECS))
        raise ValueError(f"unknown content type {content_type!r}; known: {known}") from None
