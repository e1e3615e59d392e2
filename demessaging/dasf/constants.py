"""DASF's message constants, under the names DASF's progress reports import.

``deprogressapi`` (the progress reports of DASF backend modules) imports
``demessaging.PulsarMessageConstants`` when a report is submitted; that module re-exports
this one (see :mod:`demessaging.dasf.progress`).
"""

from __future__ import annotations

from ..message import MessageType, Prop

__all__ = ["MessageType", "PropertyKeys"]


class PropertyKeys:
    """DASF's names of message properties."""

    MESSAGE_TYPE = Prop.MESSAGE_TYPE
    REQUEST_CONTEXT = Prop.REQUEST_CONTEXT
    RESPONSE_TOPIC = Prop.RESPONSE_TOPIC
    SOURCE_TOPIC = Prop.SOURCE_TOPIC
    STATUS = Prop.STATUS
    FRAGMENT = Prop.FRAGMENT
    NUM_FRAGMENTS = Prop.NUM_FRAGMENTS
