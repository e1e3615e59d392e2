"""The admin REST API client against a small fake web service on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from demessaging.cli import cli
from demessaging.errors import (
    AuthenticationError,
    AuthorizationError,
    ConfigurationError,
    TransportError,
)
from demessaging.transport.admin import RECOMMENDED, Cleanup, PulsarAdmin, admin_url_for
from tests.fakes import FakeAdmin

TOPIC = "persistent://public/default/climate"
STATS = {
    "msgRateIn": 1.5,
    "subscriptions": {
        "demessaging-backend": {
            "msgBacklog": 5,
            "msgRateOut": 1.25,
            "consumers": [
                {
                    "consumerName": "a",
                    "address": "/127.0.0.1:1",
                    "connectedSince": "t",
                    "unackedMessages": 2,
                },
                {"consumerName": "b", "address": "/127.0.0.1:2", "unackedMessages": 1},
            ],
        },
        "someone-else": {"msgBacklog": 100, "consumers": [{"unackedMessages": 9}]},
    },
}


def test_topic_status_counts_backends_and_requests_not_yet_delivered(fake: FakeAdmin) -> None:
    fake.routes["GET", "/admin/v2/persistent/public/default/climate/stats"] = (200, STATS)
    status = PulsarAdmin(fake.url, token="tok").topic_status(TOPIC, "demessaging-backend")
    assert [(b.name, b.holding) for b in status.backends] == [("a", 2), ("b", 1)]
    assert status.waiting == 2  # 5 unacknowledged, 3 of them held by backends
    assert (status.rate_in, status.rate_out) == (1.5, 1.25)
    assert fake.seen[0][2] == "Bearer tok"
    text = status.text()
    assert "backends: 2 on subscription 'demessaging-backend'" in text
    assert "/127.0.0.1:1  since t  holding 2  (a)" in text
    assert "waiting requests: 2" in text


def test_a_topic_without_subscription_has_no_backends(fake: FakeAdmin) -> None:
    fake.routes["GET", "/admin/v2/persistent/public/default/climate/stats"] = (200, {})
    status = PulsarAdmin(fake.url).topic_status(TOPIC, "demessaging-backend")
    assert (status.backends, status.waiting) == ([], 0)


def test_an_unknown_topic_is_explained(fake: FakeAdmin) -> None:
    with pytest.raises(TransportError, match="no backend has listened on it yet"):
        PulsarAdmin(fake.url).topic_status(TOPIC, "demessaging-backend")


def test_refused_credentials_are_an_authentication_error(fake: FakeAdmin) -> None:
    fake.routes["GET", "/admin/v2/tenants"] = (401, {"reason": "Unauthorized"})
    with pytest.raises(AuthenticationError, match=r"refused the credentials \(401\): Unauth"):
        PulsarAdmin(fake.url).request("GET", "/admin/v2/tenants")


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (403, "Forbidden"),
        # what Apache Pulsar answers a known role without the right
        (401, "Unauthorized to validateSuperUser for clientAppId [bob] about operation [X]"),
    ],
)
def test_a_role_without_the_right_is_an_authorization_error(
    fake: FakeAdmin, code: int, reason: str
) -> None:
    fake.routes["GET", "/admin/v2/tenants"] = (code, {"reason": reason})
    with pytest.raises(AuthorizationError, match=f"refused GET /admin/v2/tenants \\({code}\\)"):
        PulsarAdmin(fake.url).request("GET", "/admin/v2/tenants")


def test_other_errors_carry_the_brokers_reason(fake: FakeAdmin) -> None:
    fake.routes["PUT", "/admin/v2/tenants/x"] = (409, {"reason": "Tenant already exists"})
    with pytest.raises(TransportError, match=r"PUT /admin/v2/tenants/x failed \(409\): Tenant"):
        PulsarAdmin(fake.url).request("PUT", "/admin/v2/tenants/x", {})


def test_an_unreachable_api_names_the_url_and_the_setting() -> None:
    with pytest.raises(TransportError, match=r"http://127.0.0.1:9.*DEMESSAGING_ADMIN_URL"):
        PulsarAdmin("http://127.0.0.1:9", timeout=2).request("GET", "/admin/v2/clusters")


def test_ensure_namespace_creates_the_tenant_then_the_namespace(fake: FakeAdmin) -> None:
    fake.routes |= {
        ("GET", "/admin/v2/tenants"): (200, ["public"]),
        ("GET", "/admin/v2/clusters"): (200, ["standalone"]),
        ("PUT", "/admin/v2/tenants/research"): (204, None),
        ("GET", "/admin/v2/namespaces/research"): (200, []),
        ("PUT", "/admin/v2/namespaces/research/climate"): (204, None),
        ("POST", "/admin/v2/namespaces/research/climate/messageTTL"): (204, None),
    }
    admin = PulsarAdmin(fake.url)
    assert admin.ensure_namespace("research", "climate", message_ttl=60) is True
    writes = [(m, p, body) for m, p, _, body in fake.seen if m != "GET"]
    assert writes == [
        ("PUT", "/admin/v2/tenants/research", {"allowedClusters": ["standalone"]}),
        ("PUT", "/admin/v2/namespaces/research/climate", None),
        ("POST", "/admin/v2/namespaces/research/climate/messageTTL", 60),
    ]


def test_ensure_namespace_leaves_an_existing_one_alone(fake: FakeAdmin) -> None:
    fake.routes |= {
        ("GET", "/admin/v2/tenants"): (200, ["public"]),
        ("GET", "/admin/v2/namespaces/public"): (200, ["public/default"]),
    }
    assert PulsarAdmin(fake.url).ensure_namespace("public", "default") is False
    assert all(method == "GET" for method, *_ in fake.seen)


@pytest.mark.parametrize(
    ("broker", "admin"),
    [
        ("pulsar://broker.example.org:6650", "http://broker.example.org:8080"),
        ("pulsar+ssl://broker.example.org:6651", "https://broker.example.org:8443"),
    ],
)
def test_the_admin_url_defaults_to_the_brokers_host(broker: str, admin: str) -> None:
    assert admin_url_for(broker) == admin


@pytest.mark.parametrize("broker", ["embedded://", "pulsar-lite://127.0.0.1:1", "memory://"])
def test_brokers_without_admin_api_are_named(broker: str) -> None:
    with pytest.raises(ConfigurationError, match="has no admin REST API"):
        admin_url_for(broker)


def test_the_status_command_reports_in_text_and_json(fake: FakeAdmin) -> None:
    fake.routes["GET", "/admin/v2/persistent/public/default/climate/stats"] = (200, STATS)
    runner = CliRunner()
    text = runner.invoke(cli, ["status", "climate", "--admin-url", fake.url])
    assert text.exit_code == 0, text.output
    assert text.output.splitlines()[0] == f"topic {TOPIC}"
    data = runner.invoke(cli, ["status", "climate", "--admin-url", fake.url, "--json"])
    assert json.loads(data.output)["waiting"] == 2


def test_the_namespace_command_wants_tenant_and_namespace() -> None:
    result = CliRunner().invoke(cli, ["namespace", "research", "--admin-url", "http://x"])
    assert result.exit_code == 2
    assert "expected TENANT/NAMESPACE, got 'research'" in result.output


NAMESPACE = "/admin/v2/namespaces/research/climate"


def _policy_routes(fake: FakeAdmin, policies: dict[str, Any]) -> None:
    fake.routes |= {
        ("GET", "/admin/v2/tenants"): (200, ["research"]),
        ("GET", "/admin/v2/namespaces/research"): (200, ["research/climate"]),
        ("POST", f"{NAMESPACE}/subscriptionExpirationTime"): (204, None),
        ("POST", f"{NAMESPACE}/inactiveTopicPolicies"): (204, None),
        ("POST", f"{NAMESPACE}/retention"): (204, None),
        ("GET", f"{NAMESPACE}/messageTTL"): (200, 3600),
        ("GET", NAMESPACE): (200, policies),
    }


def test_cleanup_sets_expiry_inactive_topic_deletion_and_retention(fake: FakeAdmin) -> None:
    _policy_routes(fake, {})
    PulsarAdmin(fake.url).set_cleanup("research", "climate", RECOMMENDED)
    writes = [(p, body) for m, p, _, body in fake.seen if m == "POST"]
    assert writes == [
        (f"{NAMESPACE}/subscriptionExpirationTime", 1440),
        (
            f"{NAMESPACE}/inactiveTopicPolicies",
            {
                "inactiveTopicDeleteMode": "delete_when_no_subscriptions",
                "maxInactiveDurationSeconds": 600,
                "deleteWhileInactive": True,
            },
        ),
        (f"{NAMESPACE}/retention", {"retentionTimeInMinutes": 0, "retentionSizeInMB": 0}),
    ]


def test_cleanup_of_zero_means_never_and_none_leaves_the_broker_default(fake: FakeAdmin) -> None:
    _policy_routes(fake, {})
    admin = PulsarAdmin(fake.url)
    admin.set_cleanup("research", "climate", Cleanup(inactive_topics=0, retention=30))
    writes = [(p, body) for m, p, _, body in fake.seen if m == "POST"]
    assert writes == [
        (
            f"{NAMESPACE}/inactiveTopicPolicies",
            {
                "inactiveTopicDeleteMode": "delete_when_no_subscriptions",
                "maxInactiveDurationSeconds": 60,
                "deleteWhileInactive": False,
            },
        ),
        (f"{NAMESPACE}/retention", {"retentionTimeInMinutes": 30, "retentionSizeInMB": -1}),
    ]
    with pytest.raises(ConfigurationError, match="0 or more"):
        admin.set_cleanup("research", "climate", Cleanup(subscription_expiry=-1))


def test_cleanup_is_read_from_the_namespace_policies(fake: FakeAdmin) -> None:
    _policy_routes(
        fake,
        {
            "subscription_expiration_time_minutes": 1440,
            "inactive_topic_policies": {
                "inactiveTopicDeleteMode": "delete_when_no_subscriptions",
                "maxInactiveDurationSeconds": 600,
                "deleteWhileInactive": True,
            },
            "retention_policies": {"retentionTimeInMinutes": 0, "retentionSizeInMB": 0},
        },
    )
    assert PulsarAdmin(fake.url).cleanup("research", "climate") == RECOMMENDED
    fake.routes["GET", NAMESPACE] = (200, {"inactive_topic_policies": {"deleteWhileInactive": 0}})
    assert PulsarAdmin(fake.url).cleanup("research", "climate") == Cleanup(inactive_topics=0)
    assert "the broker's default" in Cleanup().text()


def test_the_namespace_command_sets_the_cleanup_policies(fake: FakeAdmin) -> None:
    _policy_routes(fake, {"subscription_expiration_time_minutes": 1440})
    result = CliRunner().invoke(cli, ["namespace", "research/climate", "--admin-url", fake.url])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "namespace research/climate exists; message TTL: 3600 s",
        "subscriptions without consumers expire after 1440 min; topics without subscriptions "
        "are deleted after the broker's default; acknowledged messages are kept the broker's "
        "default",
    ]
    sent = {p.rsplit("/", 1)[1]: body for m, p, _, body in fake.seen if m == "POST"}
    assert sent["subscriptionExpirationTime"] == 1440
    assert sent["inactiveTopicPolicies"]["maxInactiveDurationSeconds"] == 600
    assert sent["retention"]["retentionTimeInMinutes"] == 0
    args = ["--subscription-expiry", "0", "--inactive-topics", "5", "--retention", "7"]
    fake.seen.clear()
    result = CliRunner().invoke(
        cli, ["namespace", "research/climate", "--admin-url", fake.url, *args]
    )
    assert result.exit_code == 0, result.output
    sent = {p.rsplit("/", 1)[1]: body for m, p, _, body in fake.seen if m == "POST"}
    assert sent["subscriptionExpirationTime"] == 0
    assert sent["inactiveTopicPolicies"]["maxInactiveDurationSeconds"] == 5
    assert sent["retention"]["retentionTimeInMinutes"] == 7
