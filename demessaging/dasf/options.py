"""DASF's settings, from the environment, ``main()``'s keywords and the options, made ours.

DASF reads each messaging setting from an environment variable (``DE_BACKEND_TOPIC``...),
then from the keywords of ``main()``, then from the command line; :func:`defaults` gives the
first two to the command line (:mod:`demessaging.dasf.main`) as its defaults, and
:func:`settings_of` and :func:`dispatcher_of` turn the result into our
:class:`~demessaging.config.Settings` and the module's dispatcher.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..backend.dispatcher import Dispatcher

__all__ = [
    "Options",
    "defaults",
    "dispatcher_of",
    "module_of",
    "settings_of",
    "setup_logging",
    "split_config",
]

#: DASF's messaging settings, their defaults and the keywords of ``main()`` that hold them.
_MESSAGING: dict[str, Any] = {
    "topic": "",
    "header": "",
    "host": "localhost",
    "port": "8080",
    "persistent": "non-persistent",
    "tenant": "public",
    "namespace": "default",
    "max_workers": None,
    "websocket_url": "",
    "producer_url": "",
    "consumer_url": "",
    "queue_size": None,
    "max_payload_size": None,
    "producer_keep_alive": None,
    "producer_connection_timeout": None,
}
#: The messaging settings that are options as they are.
_AS_OPTIONS = (
    *("header", "host", "port", "persistent", "tenant", "namespace"),
    *("websocket_url", "producer_url", "consumer_url"),
)
_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
_IGNORED_CONFIG = frozenset({"log_config", "json_schema_extra", "imports", "template", "registry"})


def split_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(messaging settings from the environment and ``main()``, the module settings)."""
    messaging = dict(_MESSAGING)
    for name in _MESSAGING:
        value = os.environ.get(f"DE_BACKEND_{name.upper()}")
        if value:
            messaging[name] = value
    given = dict(config)
    if "config" in given:
        raise ConfigurationError("main(config=ModuleConfig(...)) is not supported; pass keywords")
    raw = given.pop("messaging_config", None) or {}
    if hasattr(raw, "model_dump"):
        raw = raw.model_dump()
    raw = {**{k: given.pop(k) for k in list(given) if k in _MESSAGING}, **raw}
    unknown = set(raw) - set(_MESSAGING)
    if unknown:
        raise ConfigurationError(f"unknown messaging_config settings: {', '.join(sorted(unknown))}")
    messaging.update({k: v for k, v in raw.items() if v is not None})
    if isinstance(messaging["header"], Mapping):
        messaging["header"] = json.dumps(messaging["header"])
    module_config = {k: v for k, v in given.items() if k not in _IGNORED_CONFIG}
    if module_config.pop("listen_config", None):
        raise ConfigurationError("main(listen_config=...) is not supported")
    unknown = set(module_config) - {"debug", "members", "doc"}
    if unknown:
        raise ConfigurationError(f"unknown settings of main(): {', '.join(sorted(unknown))}")
    if module_config.get("members"):  # names, functions or classes
        module_config["members"] = [getattr(m, "__name__", m) for m in module_config["members"]]
    return messaging, module_config


def defaults(
    module_name: str, messaging: Mapping[str, Any], config: Mapping[str, Any]
) -> dict[str, Any]:
    """The defaults of the options (click's ``default_map``): what the command line changes."""
    found: dict[str, Any] = {name: messaging[name] for name in _AS_OPTIONS}
    found |= {"module_name": module_name, "debug": bool(config.get("debug"))}
    if messaging["topic"]:  # else --topic is required
        found["topic"] = messaging["topic"]
    if messaging["max_workers"] is not None:
        found["max_workers"] = messaging["max_workers"]
    for name in ("doc", "members"):
        if config.get(name):
            found[name] = config[name]
    return found


@dataclasses.dataclass(frozen=True)
class Options:
    """DASF's options before the command."""

    topic: str
    header: str
    module_name: str
    doc: str | None
    debug: bool
    members: tuple[str, ...]
    host: str
    port: str
    persistent: str
    tenant: str
    namespace: str
    max_workers: int | None
    websocket_url: str
    producer_url: str
    consumer_url: str


def setup_logging(log_level: str | None, log_file: str | None) -> None:
    """Log at ``log_level`` (a number or a name; INFO by default), to ``log_file`` if given."""
    level: Any = log_level or logging.INFO
    if isinstance(level, str) and level.isdigit():
        level = int(level)
    elif isinstance(level, str):
        level = level.upper()
    kwargs: dict[str, Any] = {"filename": log_file} if log_file else {}
    try:
        logging.basicConfig(level=level, format=_LOG_FORMAT, **kwargs)
    except ValueError as exc:
        raise ConfigurationError(f"--log-level: {exc}") from None


def settings_of(options: Options) -> Settings:
    """Our settings for DASF's connection options."""
    url = options.websocket_url
    for other in (options.producer_url, options.consumer_url):
        if other and other != url:
            raise ConfigurationError(
                "--producer-url and --consumer-url must equal --websocket-url: demessaging "
                "produces and consumes through one broker URL"
            )
    if options.persistent not in ("persistent", "non-persistent"):
        raise ConfigurationError(
            f"--persistent must be persistent or non-persistent, not {options.persistent!r}"
        )
    return Settings.from_env(
        broker_url=url or f"ws://{options.host}:{options.port}",
        topic=options.topic,
        tenant=options.tenant,
        namespace=options.namespace,
        persistent=options.persistent == "persistent",
        headers=options.header or None,
    )


def module_of(options: Options) -> ModuleType:
    """The module to serve: the script that called ``main()``, or the one ``-m`` names."""
    from ..core.loader import load_module

    if options.module_name == "__main__":
        return sys.modules["__main__"]
    return load_module(options.module_name)


def dispatcher_of(options: Options) -> Dispatcher:
    """The module's dispatcher, with only ``--members`` and the ``--description``."""
    from ..backend.dispatcher import Dispatcher
    from ..core.introspection import inspect_module
    from ..core.models import build_models

    spec = inspect_module(module_of(options))
    if options.members:
        wanted = set(options.members)
        missing = wanted - {m.name for m in spec.members}
        if missing:
            raise ConfigurationError(f"--members: no member named {', '.join(sorted(missing))}")
        spec = dataclasses.replace(
            spec,
            functions=tuple(f for f in spec.functions if f.name in wanted),
            classes=tuple(c for c in spec.classes if c.name in wanted),
        )
    if options.doc:
        spec = dataclasses.replace(spec, doc=options.doc)
    return Dispatcher(build_models(spec), debug=options.debug)
