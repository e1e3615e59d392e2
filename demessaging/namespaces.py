"""``demessaging namespace``: a namespace on Apache Pulsar, its policies, and partners' grants.

With ``--backend-role`` and ``--partner``, it applies the partner model of docs/deploying.md
("Partners"): the backend's namespace ``T/NS`` holds its request topics; each partner role gets
only ``produce`` on each request topic and its control topic, and a reply namespace of its
own (``T/NS-ROLE`` unless mapped), where it and the backend role produce and consume. Nothing
else is granted, and nothing is revoked unless asked (``--revoke-others``): grants only add
to what a role may do already.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from .config import BROKER_URL_HELP
from .protocol.control import control_topic
from .protocol.topics import full_name, split_name

if TYPE_CHECKING:
    from .transport.admin import PulsarAdmin

__all__ = ["Grant", "Partners", "namespace"]

#: What a partner role may do on a request topic and its control topic.
PRODUCE = ("produce",)
#: What a role may do in a namespace it uses as it likes (the backend's, a reply namespace).
PRODUCE_CONSUME = ("produce", "consume")


@dataclass(frozen=True)
class Grant:
    """``role`` may do ``actions`` on ``target``: a ``TENANT/NAMESPACE`` or a full topic name."""

    target: str
    role: str
    actions: tuple[str, ...]

    def text(self) -> str:
        """One line for people."""
        kind = "topic" if "://" in self.target else "namespace"
        return f"{self.role}: {'+'.join(self.actions)} on {kind} {self.target}"


@dataclass(frozen=True)
class Partners:
    """The grants of a backend role and its partner roles (see the module's docstring).

    Attributes
    ----------
    namespace
        The backend's ``TENANT/NAMESPACE``.
    backend_role
        The role of the backend's token.
    replies
        Each partner role's reply namespace.
    topics
        The request topics, short names in ``namespace``.
    """

    namespace: str
    backend_role: str
    replies: dict[str, str] = field(default_factory=dict)
    topics: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, namespace: str, backend_role: str, partners: list[str], topics: list[str]
    ) -> Partners:
        """The plan for ``partners`` (``ROLE`` or ``ROLE=TENANT/NAMESPACE``).

        Raises
        ------
        click.BadParameter
            If a role cannot name a namespace and has no mapping, a topic is not a short name,
            a reply namespace is the backend's or another partner's, or no topic is given.
        """
        if not backend_role.strip():
            raise click.BadParameter("partners need --backend-role", param_hint="--backend-role")
        if not topics:
            raise click.BadParameter(
                "partners need the request topics they may call (--topic NAME)",
                param_hint="--topic",
            )
        for topic in topics:
            if split_name(full_name(namespace, topic)) is None or "://" in topic:
                raise click.BadParameter(
                    f"{topic!r} is not a short topic name", param_hint="--topic"
                )
        replies: dict[str, str] = {}
        for item in partners:
            role, space = _mapping(namespace, item)
            if role == backend_role or role in replies:
                raise click.BadParameter(
                    f"the role {role!r} is given twice", param_hint="--partner"
                )
            if space == namespace or space in replies.values():
                raise click.BadParameter(
                    f"{role!r} needs a reply namespace of its own, not {space}",
                    param_hint="--partner",
                )
            replies[role] = space
        return cls(namespace, backend_role, replies, tuple(topics))

    def grants(self) -> list[Grant]:
        """Every grant, the backend role's first."""
        grants = [Grant(self.namespace, self.backend_role, PRODUCE_CONSUME)]
        for role, space in self.replies.items():
            grants += [
                Grant(space, role, PRODUCE_CONSUME),
                Grant(space, self.backend_role, PRODUCE_CONSUME),
            ]
            for topic in self.topics:
                request = full_name(self.namespace, topic)
                grants += [Grant(t, role, PRODUCE) for t in (request, control_topic(request))]
        return grants

    def settings(self) -> str:
        """The settings the backend and each partner use, as environment variables."""
        tenant, _, space = self.namespace.partition("/")
        here = f"DEMESSAGING_TENANT={tenant} DEMESSAGING_NAMESPACE={space}"
        lines = [
            f"backend (token of role {self.backend_role!r}), each topic its DEMESSAGING_TOPIC:",
            f"  {here}",
            f"  DEMESSAGING_REPLY_NAMESPACES={','.join(self.replies.values())}",
            "  DEMESSAGING_REPLY_NAMESPACES_ONLY=true",
        ]
        for role, reply in self.replies.items():
            lines += [f"partner (token of role {role!r}):", f"  {here}"]
            lines.append(f"  DEMESSAGING_REPLY_NAMESPACE={reply}")
        return "\n".join(lines)


def _mapping(namespace: str, item: str) -> tuple[str, str]:
    """``(role, reply namespace)`` of ``ROLE`` or ``ROLE=TENANT/NAMESPACE``.

    A mapping is split at the last ``=`` that leaves a ``TENANT/NAMESPACE`` on its right, so
    that roles may hold ``=`` (``CN=...``).
    """
    for at in reversed([i for i, char in enumerate(item) if char == "="]):
        role, space = item[:at], item[at + 1 :]
        if role and "/" in space and split_name(full_name(space, "x")) is not None:
            return role, space
    tenant = namespace.partition("/")[0]
    space = f"{namespace.partition('/')[2]}-{item}"
    if split_name(full_name(f"{tenant}/{space}", "x")) is None:
        raise click.BadParameter(
            f"the role {item!r} cannot be part of a namespace name (letters, digits, -_.=:); "
            f"map it to one: --partner '{item}={tenant}/NAME'",
            param_hint="--partner",
        )
    return item, f"{tenant}/{space}"


_AT_LEAST_0: dict[str, Any] = {"type": click.IntRange(min=0), "show_default": True}
_TTL = "Seconds after which requests nobody served and replies nobody read expire (0: never)."
_EXPIRY = "Minutes until a subscription without consumers (a killed process's) goes (0: never)."
_INACTIVE = "Seconds until a topic nobody uses, without subscriptions, goes (0: never)."
_REVOKE = (
    "Also take back, on these namespaces and topics, what roles may do beyond the grants of "
    "this command (a partner removed, a grant made by hand)."
)
_PARTNER = (
    "A partner role: it may call the backend's --topic(s) and gets the reply namespace "
    "TENANT/NAMESPACE-ROLE (or ROLE=TENANT/NAMESPACE). Repeat for each partner."
)


@click.command()
@click.argument("name", metavar="TENANT/NAMESPACE")
@click.option(
    "--broker-url",
    help=BROKER_URL_HELP,
)
@click.option(
    "--admin-url",
    help="Apache Pulsar's web service [default: $DEMESSAGING_ADMIN_URL, else the broker's host "
    "on port 8080].",
)
@click.option("--message-ttl", **_AT_LEAST_0, help=_TTL)
@click.option("--subscription-expiry", **_AT_LEAST_0, default=1440, help=_EXPIRY)
@click.option("--inactive-topics", **_AT_LEAST_0, default=600, help=_INACTIVE)
@click.option("--retention", **_AT_LEAST_0, default=0, help="Minutes acknowledged messages stay.")
@click.option("--backend-role", default="", help="The role of the backend's token.")
@click.option(
    "--partner", "partners", multiple=True, metavar="ROLE[=TENANT/NAMESPACE]", help=_PARTNER
)
@click.option("--topic", "topics", multiple=True, help="A request topic partners may call.")
@click.option("--revoke-others", is_flag=True, help=_REVOKE)
def namespace(
    name: str,
    broker_url: str | None,
    admin_url: str | None,
    backend_role: str,
    partners: tuple[str, ...],
    topics: tuple[str, ...],
    revoke_others: bool,
    **policy: Any,
) -> None:
    """Create TENANT/NAMESPACE on Apache Pulsar unless it exists; set its policies.

    The message TTL (if given), subscription expiry, inactive topic deletion and retention (see
    docs/deploying.md). Backends and clients use it with DEMESSAGING_TENANT/DEMESSAGING_NAMESPACE.

    With --backend-role and --partner: also each partner's reply namespace (same policies),
    the request and control topics of each --topic, and the grants that isolate partners from
    each other ("Partners" in docs/deploying.md); prints the settings each side uses.
    """
    from .cli import _admin, _errors
    from .config import Settings
    from .transport.admin import Cleanup

    if split_name(full_name(name, "x")) is None:
        raise click.BadParameter(f"expected TENANT/NAMESPACE, got {name!r}", param_hint="NAME")
    plan = None
    if partners or backend_role or topics or revoke_others:
        plan = Partners.of(name, backend_role, list(partners), list(topics))
    ttl = policy.pop("message_ttl")
    with _errors():
        admin = _admin(Settings.from_env(broker_url=broker_url, admin_url=admin_url))
        for space in [name, *(plan.replies.values() if plan else ())]:
            tenant, _, part = space.partition("/")
            created = admin.ensure_namespace(
                tenant, part, message_ttl=ttl, cleanup=Cleanup(**policy)
            )
            shown = f"{now} s" if (now := admin.message_ttl(tenant, part)) else "none"
            click.echo(
                f"namespace {space} {'created' if created else 'exists'}; message TTL: {shown}"
            )
            click.echo(admin.cleanup(tenant, part).text())
        if plan is None:
            return
        for topic in plan.topics:
            request = full_name(name, topic)
            for each in (request, control_topic(request)):
                admin.ensure_topic(each)
        _apply(admin, plan, exact=revoke_others)
        click.echo(plan.settings())


def _apply(admin: PulsarAdmin, plan: Partners, *, exact: bool) -> None:
    """Apply the grants of ``plan``; with ``exact``, take back the others on its targets."""
    grants = plan.grants()
    added = "only these" if exact else "added to what each role may do already"
    click.echo(f"grants ({added}):")
    for grant in grants:
        if "://" in grant.target:
            admin.grant_topic(grant.target, grant.role, list(grant.actions), exact=exact)
        else:
            tenant, _, part = grant.target.partition("/")
            admin.grant_namespace(tenant, part, grant.role, list(grant.actions), exact=exact)
        click.echo(f"  {grant.text()}")
    if not exact:
        return
    planned = {(grant.target, grant.role) for grant in grants}
    spaces = dict.fromkeys(grant.target for grant in grants if "://" not in grant.target)
    for space in spaces:
        tenant, _, part = space.partition("/")
        for role in admin.namespace_permissions(tenant, part):
            if (space, role) not in planned:
                admin.revoke_namespace(tenant, part, role)
                click.echo(f"  revoked: {role} on namespace {space}")
    held = admin.namespace_permissions(*plan.namespace.split("/"))  # the topics' namespace
    for topic in dict.fromkeys(grant.target for grant in grants if "://" in grant.target):
        for role in admin.topic_permissions(topic):  # those of the namespace among them
            if (topic, role) not in planned and role not in held:
                admin.revoke_topic(topic, role)
                click.echo(f"  revoked: {role} on topic {topic}")
