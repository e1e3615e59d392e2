"""Settings from arguments, environment and defaults, and what the transports make of them."""

from __future__ import annotations

from pathlib import Path

import pulsar
import pytest

from demessaging.config import Settings
from demessaging.errors import ConfigurationError, TransportError
from demessaging.transport import TransportOptions, connect
from demessaging.transport.pulsar import PulsarTransport, authentication


def test_arguments_win_over_the_environment_which_wins_over_defaults() -> None:
    env = {"DEMESSAGING_TOPIC": "from-env", "DEMESSAGING_TIMEOUT": "5", "X_TIMEOUT": "9"}
    settings = Settings.from_env(environ=env, topic="explicit")
    assert (settings.topic, settings.timeout) == ("explicit", 5.0)
    assert Settings.from_env(("X_", "DEMESSAGING_"), environ=env).timeout == 9.0
    defaults = Settings(topic="generated", broker_url="pulsar://far:6650")
    settings = Settings.from_env(environ={}, defaults=defaults)
    assert (settings.topic, settings.broker_url) == ("generated", "pulsar://far:6650")


@pytest.mark.parametrize(
    ("text", "value"), [("yes", True), ("0", False), ("FALSE", False), ("on", True)]
)
def test_yes_no_settings(text: str, value: bool) -> None:
    settings = Settings.from_env(environ={"DEMESSAGING_PERSISTENT": text})
    assert settings.transport.persistent is value


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEMESSAGING_TIMEOUT": "soon"}, "DEMESSAGING_TIMEOUT='soon' is not a number"),
        ({"DEMESSAGING_PERSISTENT": "maybe"}, "is not a yes or no"),
        ({"DEMESSAGING_TIMEOUT": "-1"}, "timeout must be positive"),
    ],
)
def test_bad_values_are_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(environ=env)


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown settings: colour"):
        Settings.from_env(environ={}, colour="blue")


def test_secrets_stay_out_of_repr() -> None:
    env = {
        "DEMESSAGING_TOKEN": "secret-jwt",
        "DEMESSAGING_OAUTH2": '{"client_secret": "s"}',
        "DEMESSAGING_TLS_KEY": "/k.pem",
        "DEMESSAGING_HEADERS": '{"authorization": "Token secret-key"}',
    }
    settings = Settings.from_env(environ=env)
    assert settings.transport.headers == {"authorization": "Token secret-key"}
    assert "secret" not in repr(settings)
    assert "/k.pem" not in repr(settings)


def test_every_transport_option_but_the_tuning_is_a_variable() -> None:
    env = {
        "DEMESSAGING_TENANT": "geo",
        "DEMESSAGING_NAMESPACE": "ocean",
        "DEMESSAGING_TLS_TRUST_CERTS": "/ca.pem",
        "DEMESSAGING_TLS_CERTIFICATE": "/c.pem",
        "DEMESSAGING_FRAME_SIZE": "65536",
        "DEMESSAGING_OPERATION_TIMEOUT": "1",
        "DEMESSAGING_MAX_PRODUCERS": "2",
    }
    options = Settings.from_env(environ=env).transport
    assert (options.tenant, options.namespace) == ("geo", "ocean")
    assert (options.tls_trust_certs, options.tls_certificate) == ("/ca.pem", "/c.pem")
    assert options.frame_size == 65536
    assert (options.operation_timeout, options.max_producers) == (30.0, 64)
    with pytest.raises(ConfigurationError, match="unknown settings: max_producers"):
        Settings.from_env(environ={}, max_producers=2)


def test_explicit_transport_options_win_over_the_environment() -> None:
    env = {"DEMESSAGING_TENANT": "geo", "DEMESSAGING_HEADERS": '{"a": "1"}'}
    settings = Settings.from_env(environ=env, tenant="lab", headers='{"b": "2"}')
    assert (settings.transport.tenant, dict(settings.transport.headers)) == ("lab", {"b": "2"})


def test_empty_transport_options_are_unset() -> None:
    env = {"DEMESSAGING_TENANT": "", "DEMESSAGING_HEADERS": " "}
    options = Settings.from_env(environ=env, namespace="").transport
    assert (options.tenant, options.namespace, options.headers) == ("public", "default", {})


@pytest.mark.parametrize(
    ("env", "values", "message"),
    [
        ({"DEMESSAGING_HEADERS": "Token k"}, {}, "DEMESSAGING_HEADERS must be a JSON object"),
        ({}, {"headers": '["a"]'}, "headers must be a JSON object"),
        ({"DEMESSAGING_FRAME_SIZE": "100"}, {}, "frame_size must be at least 4096, got 100"),
    ],
)
def test_bad_transport_options_are_clear_errors(
    env: dict[str, str], values: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        Settings.from_env(environ=env, headers=values.get("headers"))
    assert "Token k" not in str(info.value)  # headers hold credentials


def transport(url: str, options: TransportOptions | None = None) -> PulsarTransport:
    made = connect(url, options)
    assert isinstance(made, PulsarTransport)
    return made


def test_short_topic_names_live_in_the_configured_namespace() -> None:
    options = TransportOptions(tenant="geo", namespace="ocean", persistent=False)
    made = transport("pulsar://127.0.0.1:6650", options)
    assert made.topic("climate") == "non-persistent://geo/ocean/climate"
    assert made.topic("persistent://a/b/c") == "persistent://a/b/c"
    assert transport("pulsar://h:1").topic("t") == "persistent://public/default/t"


@pytest.mark.parametrize(
    ("options", "kind"),
    [
        (TransportOptions(token="jwt"), pulsar.AuthenticationToken),
        (
            TransportOptions(
                oauth2='{"issuer_url": "https://id.example", "private_key": "/k.json"}'
            ),
            pulsar.AuthenticationOauth2,
        ),
        (TransportOptions(tls_certificate="/c.pem", tls_key="/k.pem"), pulsar.AuthenticationTLS),
    ],
)
def test_credentials_become_pulsar_authentication(options: TransportOptions, kind: type) -> None:
    assert isinstance(authentication(transport("pulsar+ssl://broker:6651", options).options), kind)


def test_no_credentials_no_authentication() -> None:
    assert authentication(transport("pulsar://h:1").options) is None


def test_pulsar_lite_urls_switch_on_its_work_arounds() -> None:
    lite = transport("pulsar-lite://127.0.0.1:6650")
    assert lite.url == "pulsar://127.0.0.1:6650"
    assert lite.pulsar_lite
    assert not transport("pulsar://127.0.0.1:6650").pulsar_lite


def test_settings_resolve_embedded_urls_and_pass_their_transport_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DEMESSAGING_DATA_DIR", str(tmp_path))
    embedded = Settings(broker_url="embedded://")
    with pytest.raises(TransportError, match="no embedded broker is running on this machine"):
        embedded.connect()
    with pytest.raises(ConfigurationError, match=r"Settings\.connect"):
        connect("embedded://")
    options = TransportOptions(tenant="geo")
    made = Settings(broker_url="pulsar-lite://127.0.0.1:1", transport=options).connect()
    assert isinstance(made, PulsarTransport)
    assert made.pulsar_lite
    assert made.options is options


@pytest.mark.parametrize("error", [pulsar.PulsarException, "asyncio"])
def test_library_errors_of_both_pulsar_apis_become_ours(error: object) -> None:
    import asyncio

    import pulsar.asyncio as pulsar_asyncio

    from demessaging.transport.pulsar import _guard

    async def failing() -> None:
        if error == "asyncio":
            raise pulsar_asyncio.PulsarException(pulsar.Result.Timeout)
        raise pulsar.Timeout("timed out")

    with pytest.raises(TransportError, match="publishing to t failed"):
        asyncio.run(_guard(failing(), "publishing to t"))


def test_the_generic_topic_variable_does_not_redirect_generated_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from demessaging.client import RemoteModule

    monkeypatch.setenv("DEMESSAGING_TOPIC", "some-other-backend")
    monkeypatch.setenv("DEMESSAGING_TIMEOUT", "3")
    remote = RemoteModule("unused", topic="climate", env_prefix="CLIMATE_CLIENT_")
    assert (remote.settings.topic, remote.settings.timeout) == ("climate", 3.0)
    monkeypatch.setenv("CLIMATE_CLIENT_TOPIC", "climate-v2")
    assert (
        RemoteModule("unused", topic="climate", env_prefix="CLIMATE_CLIENT_").settings.topic
        == "climate-v2"
    )
