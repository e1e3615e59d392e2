"""Settings from arguments, environment and defaults, and what the transports make of them."""

from __future__ import annotations

import pulsar
import pytest

from demessaging.config import Settings
from demessaging.errors import ConfigurationError
from demessaging.transport import connect
from demessaging.transport.pulsar import PulsarTransport


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
    assert Settings.from_env(environ={"DEMESSAGING_PERSISTENT": text}).persistent is value


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
    settings = Settings(token="secret-jwt", oauth2='{"client_secret": "s"}', tls_key="/k.pem")
    assert "secret" not in repr(settings)
    assert "/k.pem" not in repr(settings)


def transport(url: str, settings: Settings) -> PulsarTransport:
    made = connect(url, **settings.transport_options())
    assert isinstance(made, PulsarTransport)
    return made


def test_short_topic_names_live_in_the_configured_namespace() -> None:
    made = transport(
        "pulsar://127.0.0.1:6650", Settings(tenant="geo", namespace="ocean", persistent=False)
    )
    assert made.topic("climate") == "non-persistent://geo/ocean/climate"
    assert made.topic("persistent://a/b/c") == "persistent://a/b/c"
    assert transport("pulsar://h:1", Settings()).topic("t") == "persistent://public/default/t"


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        (Settings(token="jwt"), pulsar.AuthenticationToken),
        (
            Settings(oauth2='{"issuer_url": "https://id.example", "private_key": "/k.json"}'),
            pulsar.AuthenticationOauth2,
        ),
        (Settings(tls_certificate="/c.pem", tls_key="/k.pem"), pulsar.AuthenticationTLS),
    ],
)
def test_credentials_become_pulsar_authentication(settings: Settings, kind: type) -> None:
    assert isinstance(
        transport("pulsar+ssl://broker:6651", settings).options.authentication(), kind
    )


def test_no_credentials_no_authentication() -> None:
    assert transport("pulsar://h:1", Settings()).options.authentication() is None


def test_pulsar_lite_urls_switch_on_its_work_arounds() -> None:
    lite = transport("pulsar-lite://127.0.0.1:6650", Settings())
    assert lite.url == "pulsar://127.0.0.1:6650"
    assert lite.options.pulsar_lite
    assert not transport("pulsar://127.0.0.1:6650", Settings()).options.pulsar_lite


@pytest.mark.parametrize("error", [pulsar.PulsarException, "asyncio"])
def test_library_errors_of_both_pulsar_apis_become_ours(error: object) -> None:
    import asyncio

    import pulsar.asyncio as pulsar_asyncio

    from demessaging.errors import TransportError
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
