"""A backend's answers to ``ping``, ``info`` and ``api_info``, and its members' fingerprints."""

from __future__ import annotations

import json
from functools import cached_property

from ..core import versions
from ..core.models import ModuleModels
from ..core.schema import api_info, module_schema
from ..message import Message, MessageType, Prop
from ..protocol.envelope import Query
from ..protocol.outgoing import reply_to
from ..serialization import CODECS
from .cancel import Cancellations

__all__ = ["Queries"]


class Queries:
    """Answers the queries about the module of ``models`` served on ``topic``.

    Parameters
    ----------
    models
        The served module's models.
    topic
        The backend's request topic (the ``source_topic`` of the answers).
    cancellations
        The backend's cancellations: the pong says where callers send them.
    """

    def __init__(self, models: ModuleModels, topic: str, cancellations: Cancellations) -> None:
        self.models = models
        self.topic = topic
        self.cancellations = cancellations

    @cached_property
    def info(self) -> str:
        """The module's JSON Schema, as JSON."""
        return json.dumps(module_schema(self.models))

    @cached_property
    def api_info(self) -> str:
        """DASF's ``api_info`` of the module, as JSON."""
        return json.dumps(api_info(self.models))

    @cached_property
    def fingerprints(self) -> dict[str, str]:
        """The API fingerprint of every member, by member name."""
        return versions.fingerprints(versions.shapes(api_info(self.models)))

    def answer(self, query: Query) -> tuple[str, Message]:
        """The answer to a ``ping``, ``info`` or ``api_info``."""
        if query.kind is MessageType.PING:  # the pong says which encodings requests may use
            return reply_to(
                query,
                b"",
                source_topic=self.topic,
                message_type=MessageType.PONG,
                extra={Prop.CONTENT_TYPES: ",".join(CODECS), **self.cancellations.said},
            )
        # as DASF answers: a response whose property named like the request holds the schema
        schema = self.info if query.kind is MessageType.INFO else self.api_info
        return reply_to(query, b"", source_topic=self.topic, extra={query.kind.value: schema})
