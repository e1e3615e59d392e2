"""Which reply topics a backend publishes to.

A request names the topic its replies go to (``response_topic``). A backend on a shared broker
must not write wherever a message says, so it takes only:

- a short name (``climate_abcdefgh``, what demessaging and DASF clients send): it lives in the
  backend's own tenant and namespace;
- a full name ``persistent://TENANT/NAMESPACE/NAME`` (or ``non-persistent://``) whose
  ``TENANT/NAMESPACE`` is the backend's own or one configured as allowed
  (``DEMESSAGING_REPLY_NAMESPACES``).

Names, tenants and namespaces are ASCII letters, digits and ``-_.=:`` (Pulsar's characters
for names), at most :data:`MAX_NAME` characters in all. Anything else (spaces, NUL bytes,
``!``, ``pulsar://host``, another tenant) is refused with a reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = ["DEFAULT_NAMESPACE", "MAX_NAME", "ReplyTopics", "parse_namespaces"]

#: The longest reply topic taken, in characters (its full name, if given as one).
MAX_NAME = 255
#: Where short names live unless the transport says otherwise (as Pulsar's default).
DEFAULT_NAMESPACE = "public/default"

_NAME = re.compile(r"[A-Za-z0-9_.=:-]+")
_KINDS = ("persistent", "non-persistent")


def _valid(part: str) -> bool:
    return _NAME.fullmatch(part) is not None


def parse_namespaces(text: str | Iterable[str], *, setting: str = "reply_namespaces") -> list[str]:
    """``tenant/namespace`` names from a comma-separated text (or a list); blanks are skipped.

    Raises
    ------
    ConfigurationError
        If one of them is not ``TENANT/NAMESPACE`` of valid names.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    names = []
    for item in (item.strip() for item in items):
        if not item:
            continue
        tenant, _, space = item.partition("/")
        if not (_valid(tenant) and _valid(space)):
            raise ConfigurationError(
                f"{setting}: {item!r} is not TENANT/NAMESPACE (letters, digits, -_.=:)"
            )
        names.append(item)
    return names


@dataclass(frozen=True)
class ReplyTopics:
    """The reply topics a backend takes: short names, and full names in ``namespaces``.

    Attributes
    ----------
    namespaces
        The ``tenant/namespace`` names whose topics replies may go to.
    """

    namespaces: frozenset[str] = frozenset({DEFAULT_NAMESPACE})

    @classmethod
    def of(
        cls, tenant: str, namespace: str, topic: str = "", extra: Iterable[str] = ()
    ) -> ReplyTopics:
        """The backend's own namespace, its request ``topic``'s (if a full name), and ``extra``."""
        allowed = {f"{tenant}/{namespace}", *extra}
        kind, sep, rest = topic.partition("://")
        if sep and kind in _KINDS and rest.count("/") == 2:
            allowed.add(rest.rsplit("/", 1)[0])
        return cls(frozenset(allowed))

    def refusal(self, topic: str) -> str | None:
        """Why replies may not go to ``topic``, or None if they may."""
        if len(topic) > MAX_NAME:
            return f"the reply topic is longer than {MAX_NAME} characters"
        shown = repr(topic if len(topic) <= 60 else topic[:57] + "...")
        kind, sep, rest = topic.partition("://")
        if not sep:
            if _valid(topic):
                return None
            return f"the reply topic {shown} is not a topic name (letters, digits, -_.=:)"
        parts = rest.split("/")
        if kind not in _KINDS or len(parts) != 3 or not all(map(_valid, parts)):
            return f"the reply topic {shown} is not a topic name"
        if f"{parts[0]}/{parts[1]}" not in self.namespaces:
            return f"the reply topic {shown} is outside the backend's namespaces"
        return None
