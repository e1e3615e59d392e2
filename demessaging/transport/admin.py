"""Apache Pulsar's admin REST API: who serves a topic, what waits, and namespace policies.

pulsar-lite has no admin API; Apache Pulsar serves it on its web port (8080, or 8443 with TLS,
where the broker is verified as by every transport: :mod:`.tls`). Errors are ours:
:class:`~demessaging.errors.AuthenticationError` for 401, ``AuthorizationError`` for 403,
:class:`~demessaging.errors.TransportError` for everything else, with the broker's reason.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from ..errors import AuthenticationError, AuthorizationError, ConfigurationError, TransportError
from . import tls
from .base import TransportOptions

__all__ = ["RECOMMENDED", "Backend", "Cleanup", "PulsarAdmin", "TopicStatus", "admin_url_for"]


def admin_url_for(broker_url: str) -> str:
    """The admin API's usual URL for a broker URL: the same host on port 8080 (8443 for TLS).

    Raises
    ------
    ConfigurationError
        For brokers without an admin API (pulsar-lite, the embedded broker, in-process).
    """
    parts = urlsplit(broker_url.split(",", 1)[0])
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    if parts.scheme == "pulsar":
        return f"http://{host}:8080"
    if parts.scheme == "pulsar+ssl":
        return f"https://{host}:8443"
    raise ConfigurationError(
        f"{broker_url} has no admin REST API (pulsar-lite and the in-process broker have none); "
        "it is Apache Pulsar's"
    )


@dataclass(frozen=True)
class Backend:
    """One consumer on a backend's shared subscription: one backend process.

    Attributes
    ----------
    holding
        Requests delivered to it and not yet answered: those it works on, and the one it
        has fetched ahead.
    """

    name: str
    address: str
    connected_since: str
    holding: int


@dataclass(frozen=True)
class TopicStatus:
    """What the broker knows of a request topic.

    Attributes
    ----------
    waiting
        Requests no backend has received yet.
    rate_in, rate_out
        Requests per second arriving, and delivered to backends.
    """

    topic: str
    subscription: str
    backends: list[Backend] = field(default_factory=list)
    waiting: int = 0
    rate_in: float = 0.0
    rate_out: float = 0.0

    def text(self) -> str:
        """A few lines for people."""
        lines = [
            f"topic {self.topic}",
            f"backends: {len(self.backends)} on subscription {self.subscription!r}",
            *(
                f"  {b.address}  since {b.connected_since}  holding {b.holding}  ({b.name})"
                for b in self.backends
            ),
            f"waiting requests: {self.waiting}",
            f"requests in: {self.rate_in:.2f}/s, out: {self.rate_out:.2f}/s",
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class Cleanup:
    """How a namespace gets rid of what nobody uses any more (Apache Pulsar's policies).

    None leaves a policy to the broker's configuration.

    Attributes
    ----------
    subscription_expiry
        Minutes after which a subscription without consumers is deleted: a killed backend's
        subscription of ``<topic>_control``, a killed client's reply subscription. 0: never.
    inactive_topics
        Seconds after which a topic without subscriptions, producers and consumers is deleted
        (``delete_when_no_subscriptions``): closed clients' reply topics, the side topics of
        finished uploads. 0: never.
    retention
        Minutes messages every subscription has acknowledged are kept. 0: they are deleted
        (with the ledger holding them).
    """

    subscription_expiry: int | None = None
    inactive_topics: int | None = None
    retention: int | None = None

    def text(self) -> str:
        """One line for people."""

        def show(value: int | None, unit: str, zero: str) -> str:
            if value is None:
                return "the broker's default"
            return zero if value == 0 else f"{value} {unit}"

        kept = "deleted" if self.retention == 0 else f"kept {show(self.retention, 'min', '')}"
        return (
            "subscriptions without consumers expire after "
            f"{show(self.subscription_expiry, 'min', 'never')}; topics without subscriptions "
            f"are deleted after {show(self.inactive_topics, 's', 'never')}; acknowledged "
            f"messages are {kept}"
        )


#: What ``demessaging namespace`` sets unless told otherwise (see docs/deploying.md): a day for
#: a subscription nobody reads (a backend down for longer starts afresh), ten minutes for a
#: topic nobody uses, no retention of acknowledged messages.
RECOMMENDED = Cleanup(subscription_expiry=1440, inactive_topics=600, retention=0)


class PulsarAdmin:
    """A client of the admin REST API (``/admin/v2``).

    Parameters
    ----------
    url
        The broker's web service, e.g. ``http://127.0.0.1:8080``.
    token
        A JWT, sent as ``Authorization: Bearer``.
    tls_trust_certs
        A CA bundle that verifies an ``https://`` web service.
    timeout
        Seconds per request.
    options
        An ``https://`` web service's client certificate and host name check (its ``tls_*``);
        a missing or unusable TLS file is a ``ConfigurationError`` naming it.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str = "",
        tls_trust_certs: str = "",
        timeout: float = 10.0,
        options: TransportOptions | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._options = options or TransportOptions()
        if tls_trust_certs:
            self._options = dataclasses.replace(self._options, tls_trust_certs=tls_trust_certs)
        https = self.url.startswith("https://")
        self._tls = tls.client_context(self._options, self.url) if https else None

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; the decoded JSON answer (None if empty).

        Raises
        ------
        AuthenticationError
            If the API refuses the credentials (401).
        AuthorizationError
            If the role may not do this (403, or a 401 naming the check that failed).
        TransportError
            If it cannot be reached or answers with another error.
        """
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._tls) as answer:
                content = answer.read()
        except urllib.error.HTTPError as exc:
            reason = _reason(exc)
            # Pulsar answers some refusals of a known role with 401 "Unauthorized to <check>"
            if exc.code == 403 or (exc.code == 401 and reason.startswith("Unauthorized to")):
                raise AuthorizationError(
                    f"the admin API at {self.url} refused {method} {path} ({exc.code}): "
                    f"{reason}; the role may not do this (admin roles: superUserRoles, the "
                    "tenant's adminRoles)"
                ) from None
            if exc.code == 401:
                raise AuthenticationError(
                    f"the admin API at {self.url} refused the credentials (401): {reason}; "
                    f"check {tls.credentials(self._options)}"
                ) from None
            raise _HTTPError(exc.code, f"{method} {path} failed ({exc.code}): {reason}") from exc
        except (OSError, ValueError) as exc:  # URLError too, with the cause as its reason
            cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if self._tls and isinstance(cause, (ssl.SSLEOFError, ConnectionError)):
                refused = tls.handshakes(self.url)  # then it closed after the handshake
                raise tls.failure(self.url, cause, self._options, refused=refused) from None
            if isinstance(cause, ssl.SSLError):
                raise tls.failure(self.url, cause, self._options) from None
            raise TransportError(
                f"could not reach the admin REST API at {self.url}: {cause}; set --admin-url "
                "(DEMESSAGING_ADMIN_URL) to the broker's web service"
            ) from None
        try:
            return json.loads(content) if content.strip() else None
        except ValueError as exc:  # a proxy's error page, say
            raise TransportError(f"{method} {path} did not answer JSON: {content[:200]!r}") from exc

    def topic_status(self, topic: str, subscription: str) -> TopicStatus:
        """Backends and waiting requests of the full topic name ``topic``.

        Raises
        ------
        TransportError
            If the topic does not exist (no backend or client has used it).
        """
        try:
            stats = self.request("GET", f"/admin/v2/{_topic_path(topic)}/stats")
        except _HTTPError as exc:
            if exc.status == 404:
                raise TransportError(
                    f"the broker has no topic {topic}: no backend has listened on it yet"
                ) from exc
            raise
        sub = stats.get("subscriptions", {}).get(subscription, {})
        backends = [
            Backend(
                name=c.get("consumerName", ""),
                address=c.get("address", ""),
                connected_since=c.get("connectedSince", ""),
                holding=int(c.get("unackedMessages", 0)),
            )
            for c in sub.get("consumers", [])
        ]
        return TopicStatus(
            topic=topic,
            subscription=subscription,
            backends=backends,
            # the backlog counts every unacknowledged request, delivered ones too
            waiting=max(0, int(sub.get("msgBacklog", 0)) - sum(b.holding for b in backends)),
            rate_in=float(stats.get("msgRateIn", 0.0)),
            rate_out=float(sub.get("msgRateOut", 0.0)),
        )

    def ensure_namespace(
        self,
        tenant: str,
        namespace: str,
        *,
        message_ttl: int | None = None,
        cleanup: Cleanup | None = None,
    ) -> bool:
        """Create ``tenant/namespace`` (and the tenant) unless they exist; set its policies.

        Parameters
        ----------
        message_ttl
            Seconds after which unconsumed messages expire (requests nobody served, replies
            nobody read); 0 means never.
        cleanup
            Subscription expiry, inactive topic deletion and retention (those not None).

        Returns
        -------
        bool
            Whether the namespace was created.
        """
        if tenant not in self.request("GET", "/admin/v2/tenants"):
            clusters = self.request("GET", "/admin/v2/clusters")
            self.request("PUT", f"/admin/v2/tenants/{quote(tenant)}", {"allowedClusters": clusters})
        name = f"{quote(tenant)}/{quote(namespace)}"
        created = f"{tenant}/{namespace}" not in self.request(
            "GET", f"/admin/v2/namespaces/{quote(tenant)}"
        )
        if created:
            self.request("PUT", f"/admin/v2/namespaces/{name}")
        if message_ttl is not None:
            self.request("POST", f"/admin/v2/namespaces/{name}/messageTTL", message_ttl)
        if cleanup is not None:
            self.set_cleanup(tenant, namespace, cleanup)
        return created

    def set_cleanup(self, tenant: str, namespace: str, cleanup: Cleanup) -> None:
        """Set the policies of ``cleanup`` that are not None on ``tenant/namespace``.

        Raises
        ------
        ConfigurationError
            For a negative value.
        """
        values = (cleanup.subscription_expiry, cleanup.inactive_topics, cleanup.retention)
        if any(value is not None and value < 0 for value in values):
            raise ConfigurationError(f"namespace policies must be 0 or more, got {cleanup}")
        base = f"/admin/v2/namespaces/{quote(tenant)}/{quote(namespace)}"
        if cleanup.subscription_expiry is not None:
            self.request("POST", f"{base}/subscriptionExpirationTime", cleanup.subscription_expiry)
        if cleanup.inactive_topics is not None:
            policy = {
                "inactiveTopicDeleteMode": "delete_when_no_subscriptions",
                "maxInactiveDurationSeconds": cleanup.inactive_topics or 60,
                "deleteWhileInactive": cleanup.inactive_topics > 0,
            }
            self.request("POST", f"{base}/inactiveTopicPolicies", policy)
        if cleanup.retention is not None:
            policy = {"retentionTimeInMinutes": cleanup.retention, "retentionSizeInMB": 0}
            if cleanup.retention:
                policy["retentionSizeInMB"] = -1  # the time alone bounds it
            self.request("POST", f"{base}/retention", policy)

    def cleanup(self, tenant: str, namespace: str) -> Cleanup:
        """The namespace's subscription expiry, inactive topic deletion and retention."""
        policies = self.request("GET", f"/admin/v2/namespaces/{quote(tenant)}/{quote(namespace)}")
        policies = policies if isinstance(policies, dict) else {}
        expiry = policies.get("subscription_expiration_time_minutes")
        inactive = policies.get("inactive_topic_policies") or {}
        retention = policies.get("retention_policies") or {}
        topics = None
        if inactive:
            delete = inactive.get("deleteWhileInactive")
            topics = int(inactive.get("maxInactiveDurationSeconds", 0)) if delete else 0
        minutes = retention.get("retentionTimeInMinutes")
        return Cleanup(
            subscription_expiry=None if expiry is None else int(expiry),
            inactive_topics=topics,
            retention=None if minutes is None else int(minutes),
        )

    def grant_namespace(
        self, tenant: str, namespace: str, role: str, actions: list[str], *, exact: bool = False
    ) -> None:
        """Let ``role`` do ``actions`` (``produce``, ``consume``) on every topic of the namespace.

        What the role may do there already is kept (the grant only adds), unless ``exact``.
        """
        path = f"/admin/v2/namespaces/{quote(tenant)}/{quote(namespace)}/permissions"
        held = {} if exact else self.request("GET", path) or {}
        wanted = sorted({*held.get(role, []), *actions})
        self.request("POST", f"{path}/{quote(role, safe='')}", wanted)

    def revoke_namespace(self, tenant: str, namespace: str, role: str) -> None:
        """Take back what ``role`` may do on every topic of ``tenant/namespace``."""
        path = f"/admin/v2/namespaces/{quote(tenant)}/{quote(namespace)}/permissions"
        self.request("DELETE", f"{path}/{quote(role, safe='')}")

    def namespace_permissions(self, tenant: str, namespace: str) -> dict[str, list[str]]:
        """What each role may do on every topic of ``tenant/namespace``."""
        path = f"/admin/v2/namespaces/{quote(tenant)}/{quote(namespace)}/permissions"
        return dict(self.request("GET", path) or {})

    def ensure_topic(self, topic: str) -> bool:
        """Create the full, non-partitioned topic ``topic`` unless it exists; whether it was.

        It is kept when unused, whatever the namespace's inactive-topic policy, so that the
        grants on it stay (Apache Pulsar forgets them with the topic).
        """
        path = f"/admin/v2/{_topic_path(topic)}"
        try:
            self.request("PUT", path)
            created = True
        except _HTTPError as exc:
            if exc.status != 409:  # 409: it exists
                raise
            created = False
        policy = {
            "inactiveTopicDeleteMode": "delete_when_no_subscriptions",
            "maxInactiveDurationSeconds": 60,
            "deleteWhileInactive": False,
        }
        self.request("POST", f"{path}/inactiveTopicPolicies", policy)
        return created

    def grant_topic(
        self, topic: str, role: str, actions: list[str], *, exact: bool = False
    ) -> None:
        """Let ``role`` do ``actions`` on the existing topic ``topic`` (a full name).

        Only adds to what it may do there, unless ``exact``.
        """
        path = f"/admin/v2/{_topic_path(topic)}/permissions"
        held = {} if exact else self.request("GET", path) or {}
        wanted = sorted({*held.get(role, []), *actions})
        self.request("POST", f"{path}/{quote(role, safe='')}", wanted)

    def revoke_topic(self, topic: str, role: str) -> None:
        """Take back what ``role`` was granted on ``topic`` itself (not on its namespace)."""
        self.request("DELETE", f"/admin/v2/{_topic_path(topic)}/permissions/{quote(role, safe='')}")

    def topic_permissions(self, topic: str) -> dict[str, list[str]]:
        """What each role may do on ``topic``: its own grants and its namespace's."""
        return dict(self.request("GET", f"/admin/v2/{_topic_path(topic)}/permissions") or {})

    def topics(self, tenant: str, namespace: str) -> list[str]:
        """The full names of the topics of ``tenant/namespace``."""
        path = f"/admin/v2/namespaces/{quote(tenant)}/{quote(namespace)}/topics"
        return list(self.request("GET", path) or [])

    def message_ttl(self, tenant: str, namespace: str) -> int | None:
        """The namespace's message TTL in seconds (None if unset)."""
        name = f"{quote(tenant)}/{quote(namespace)}"
        ttl = self.request("GET", f"/admin/v2/namespaces/{name}/messageTTL")
        return None if ttl is None else int(ttl)


class _HTTPError(TransportError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        return str(exc.reason)
    return str(body.get("reason") or exc.reason) if isinstance(body, dict) else str(exc.reason)


def _topic_path(topic: str) -> str:
    """``persistent://t/n/x`` -> ``persistent/t/n/x`` (each part quoted)."""
    kind, _, rest = topic.partition("://")
    if kind not in ("persistent", "non-persistent") or rest.count("/") != 2:
        raise ConfigurationError(f"not a full topic name: {topic!r}")
    return "/".join([kind, *(quote(part, safe="") for part in rest.split("/"))])
