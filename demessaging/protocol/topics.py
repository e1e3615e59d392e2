"""Which reply topics a backend publishes to.

A request names the topic its replies go to (``response_topic``). A backend on a shared broker
must not write wherever a message says, so it takes only:

- a short name (``climate_abcdefgh``, what demessaging and DASF clients send): it lives in the
  backend's own tenant and namespace;
- a full name ``persistent://TENANT/NAMESPACE/NAME`` (or ``non-persistent://``) whose
  ``TENANT/NAMESPACE`` is the backend's own or one configured as allowed
  (``DEMESSAGING_REPLY_NAMESPACES``).

With ``DEMESSAGING_REPLY_NAMESPACES_ONLY`` (partners isolated from each other, see the
"Partners" section of docs/deploying.md) it takes only full names in the configured namespaces:
no short names, nothing in its own namespace. Whatever the settings, it never replies to its
own request, control or dead-letter topic, nor to a side topic of requests in pieces.

Names, tenants and namespaces are ASCII letters, digits and ``-_.=:`` (Pulsar's characters
for names), at most :data:`MAX_NAME` characters in all. Anything else (spaces, NUL bytes,
``!``, ``pulsar://host``, another tenant) is refused with a reason.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = [
    "DEFAULT_NAMESPACE",
    "MAX_NAME",
    "ReplyTopics",
    "full_name",
    "parse_namespaces",
    "reply_topic",
    "short_name",
    "split_name",
]

#: The longest reply topic taken, in characters (its full name, if given as one).
MAX_NAME = 255
#: Where short names live unless the transport says otherwise (as Pulsar's default).
DEFAULT_NAMESPACE = "public/default"

_NAME = re.compile(r"[A-Za-z0-9_.=:-]+")
_KINDS = ("persistent", "non-persistent")


def _valid(part: str) -> bool:
    return _NAME.fullmatch(part) is not None


def split_name(topic: str) -> tuple[str, str] | None:
    """``(TENANT/NAMESPACE, NAME)`` of a full topic name, or None if ``topic`` is not one."""
    kind, sep, rest = topic.partition("://")
    parts = rest.split("/")
    if not sep or kind not in _KINDS or len(parts) != 3 or not all(map(_valid, parts)):
        return None
    return f"{parts[0]}/{parts[1]}", parts[2]


def short_name(topic: str) -> str:
    """The last part of a topic name: ``climate`` of ``persistent://t/n/climate``."""
    return topic.rsplit("/", 1)[-1] if "://" in topic else topic


def full_name(namespace: str, name: str, *, persistent: bool = True) -> str:
    """``persistent://NAMESPACE/NAME`` (``non-persistent://`` unless ``persistent``)."""
    return f"{'persistent' if persistent else 'non-persistent'}://{namespace}/{name}"


def reply_topic(topic: str, namespace: str = "", *, persistent: bool = True) -> str:
    """A new reply topic of a client of the backend on ``topic``.

    ``<topic>_<8 random letters>`` next to it, as DASF clients make them; or, given the
    client's reply ``namespace``, ``persistent://NAMESPACE/<short topic>_<32 hex digits>``:
    128 random bits nobody guesses.
    """
    if namespace:
        name = f"{short_name(topic)}_{secrets.token_hex(16)}"
        return full_name(namespace, name, persistent=persistent)
    return f"{topic}_{''.join(secrets.choice(string.ascii_lowercase) for _ in range(8))}"


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
    home
        Where short names live.
    short_names
        Whether short names are taken (not when replies go only to reply namespaces).
    own
        ``TENANT/NAMESPACE/NAME`` of the topics the backend itself reads or writes (request,
        control, dead-letter): never reply topics, whatever the namespace allows.
    side_prefix
        The start of the names of its side topics (``<topic>_fragments_``): never reply
        topics either.
    """

    namespaces: frozenset[str] = frozenset({DEFAULT_NAMESPACE})
    home: str = DEFAULT_NAMESPACE
    short_names: bool = True
    own: frozenset[str] = frozenset()
    side_prefix: str = ""

    @classmethod
    def of(
        cls,
        tenant: str,
        namespace: str,
        topic: str = "",
        extra: Iterable[str] = (),
        *,
        only_extra: bool = False,
        dead_letter_topic: str = "",
    ) -> ReplyTopics:
        """The backend's own namespace, its request ``topic``'s (if a full name), and ``extra``.

        With ``only_extra``, ``extra`` alone, without short names.

        Raises
        ------
        ConfigurationError
            With ``only_extra``: if ``extra`` is empty or holds the backend's own namespace.
        """
        home = f"{tenant}/{namespace}"
        topic_home, name = split_name(topic) or (home, topic)
        allowed = set(extra)
        if only_extra:
            mine = sorted(allowed & {home, topic_home})
            if not allowed or mine:
                raise ConfigurationError(
                    "DEMESSAGING_REPLY_NAMESPACES_ONLY needs DEMESSAGING_REPLY_NAMESPACES, the "
                    "partners' reply namespaces, without the backend's own"
                    + (f" ({', '.join(mine)})" if mine else "")
                )
        else:
            allowed |= {home, topic_home}
        own = {f"{topic_home}/{name}", f"{topic_home}/{name}_control"} if name else set()
        if dead_letter_topic:
            own.add("/".join(split_name(dead_letter_topic) or (home, dead_letter_topic)))
        return cls(
            frozenset(allowed),
            home=home,
            short_names=not only_extra,
            own=frozenset(own),
            side_prefix=f"{name}_fragments_" if name else "",
        )

    def refusal(self, topic: str) -> str | None:
        """Why replies may not go to ``topic``, or None if they may."""
        if len(topic) > MAX_NAME:
            return f"the reply topic is longer than {MAX_NAME} characters"
        if "://" not in topic:
            if not _valid(topic):
                return (
                    f"the reply topic {_shown(topic)} is not a topic name (letters, digits, -_.=:)"
                )
            if not self.short_names:
                return (
                    f"the reply topic {_shown(topic)} is a short name; this backend replies only "
                    "to full names in its reply namespaces (DEMESSAGING_REPLY_NAMESPACES_ONLY)"
                )
            space, name = self.home, topic
        else:
            parts = split_name(topic)
            if parts is None:
                return f"the reply topic {_shown(topic)} is not a topic name"
            space, name = parts
            if space not in self.namespaces:
                return f"the reply topic {_shown(topic)} is outside the backend's namespaces"
        if f"{space}/{name}" in self.own:
            return (
                f"the reply topic {_shown(topic)} is the backend's own request, control or "
                "dead-letter topic"
            )
        if self.side_prefix and name.startswith(self.side_prefix):
            return f"the reply topic {_shown(topic)} is a side topic of requests in pieces"
        return None


def _shown(topic: str) -> str:
    """A topic name in an error, cut to 60 characters."""
    return repr(topic if len(topic) <= 60 else topic[:57] + "...")
