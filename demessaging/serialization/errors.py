"""The error of every codec's ``decode`` for a payload that is not of its content type."""

from __future__ import annotations

from ..errors import ProtocolError

__all__ = ["MalformedPayloadError"]


class MalformedPayloadError(ProtocolError, ValueError):
    """A payload cannot be decoded: truncated, of wrong types, too deeply nested, too large.

    A :class:`~demessaging.errors.ProtocolError` (the sender broke the protocol), and a
    ``ValueError`` as before. A backend answers it at stage ``request``.
    """
