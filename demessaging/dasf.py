"""Backend modules written for DASF's demessaging 0.6 run unchanged: its ``main()``.

Such a module ends with::

    if __name__ == "__main__":
        main(messaging_config=dict(topic="hello-world"))

and runs as ``python module.py [OPTIONS] COMMAND``, with DASF's options before the command:

- connection: ``-t/--topic``, ``--header`` (a JSON object of handshake headers),
  ``-H/--host`` and ``-p/--port`` of Apache Pulsar's WebSocket API (``localhost:8080``),
  ``--persistent`` (``persistent`` or ``non-persistent``, the default), ``--tenant``,
  ``--namespace``, ``--websocket-url`` (a WebSocket broker such as dasf-broker-django:
  topics are ``URL/TOPIC``), ``--max-workers``;
- the module: ``-m/--module``, ``-d/--description``, ``--members``, ``--debug``;
- logging: ``--log-level`` (a number or a name) and ``--log-file``.

Each option also comes from the environment variable DASF reads (``DE_BACKEND_TOPIC``,
``DE_BACKEND_HOST``, ``DE_BACKEND_WEBSOCKET_URL``...); then the keywords of ``main()`` win,
then the command line. The commands: ``listen``, ``schema [-i N]``, ``generate`` (prints a
client module), ``test-connect``, ``send-request REQUEST`` and ``compute REQUEST`` (a JSON
text or file, or YAML when PyYAML is installed).

Not supported, with a clear error: ``shell``, ``listen --dump-to/--dump-tool/--cmd``, and
``--producer-url``/``--consumer-url`` that differ from ``--websocket-url``. Accepted and
without effect: ``--queue_size``, ``--max_payload_size``, ``--producer-keep-alive``,
``--producer-connection-timeout`` and the other logging options. ``main()`` returns None, not
DASF's model class.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from .config import Settings
from .errors import ConfigurationError, DemessagingError, DispatchError

__all__ = ["main"]

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
_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
_IGNORED_CONFIG = frozenset({"log_config", "json_schema_extra", "imports", "template", "registry"})


def main(module_name: str = "__main__", *args: str, **config: Any) -> None:
    """Run the command line of a backend module, as DASF's ``main()`` does.

    Parameters
    ----------
    module_name
        The module to serve: ``"__main__"`` (the script that calls ``main()``), a dotted
        name or a file path.
    *args
        The command line; ``sys.argv[1:]`` if empty.
    **config
        DASF's module settings: ``messaging_config`` (a dict of the messaging settings
        above), ``debug``, ``members``, ``doc``. Messaging settings given directly
        (``main(topic=...)``, deprecated in DASF) are taken too.
    """
    try:
        messaging, module_config = _split_config(config)
        options = _parser(module_name, messaging, module_config).parse_args(list(args) or None)
        _logging(options)
        _run(options)
    except DemessagingError as exc:
        sys.exit(f"Error: {exc}")


def _split_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
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


def _parser(
    module_name: str, messaging: Mapping[str, Any], config: Mapping[str, Any]
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Serve, describe or call this backend module.")
    add = parser.add_argument
    add("-t", "--topic", default=messaging["topic"], required=not messaging["topic"])
    add("--header", default=messaging["header"], help="handshake headers, a JSON object")
    add("-m", "--module", dest="module_name", default=module_name)
    add("-d", "--description", dest="doc", default=config.get("doc"))
    add("--debug", action="store_true", default=bool(config.get("debug")))
    add("--members", nargs="+", default=config.get("members"))
    add("-H", "--host", default=messaging["host"])
    add("-p", "--port", default=str(messaging["port"]))
    add("--persistent", default=messaging["persistent"])
    add("--tenant", default=messaging["tenant"])
    add("--namespace", default=messaging["namespace"])
    add("--max-workers", type=int, default=messaging["max_workers"])
    add("--websocket-url", default=messaging["websocket_url"])
    add("--producer-url", default=messaging["producer_url"])
    add("--consumer-url", default=messaging["consumer_url"])
    add("--log-level", default=None)
    add("--log-file", default=None)
    for ignored in ("--queue_size", "--max_payload_size", "--producer-keep-alive"):
        add(ignored, help=argparse.SUPPRESS)
    for ignored in ("--producer-connection-timeout", "--log-config", "--log-overrides"):
        add(ignored, help=argparse.SUPPRESS)
    add("--merge-log-config", action="store_true", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listen = commands.add_parser("listen", help="serve the module on the topic")
    for refused in ("--dump-to", "--dump-tool", "-c", "--cmd"):
        listen.add_argument(refused, dest=f"refused_{refused.lstrip('-')}", help=argparse.SUPPRESS)
    schema = commands.add_parser("schema", help="print the module's JSON Schema")
    schema.add_argument("-i", "--indent", type=int, default=None)
    commands.add_parser("generate", help="print a client module")
    commands.add_parser("test-connect", help="check that the broker takes the subscription")
    for name, text in (("send-request", "send"), ("compute", "run here")):
        sub = commands.add_parser(name, help=f"{text} a request (JSON or YAML, text or file)")
        sub.add_argument("request", type=_load_request)
    commands.add_parser("shell", help="not supported")
    return parser


def _load_request(text: str) -> Any:
    path = Path(text)
    if len(text) < 4096 and path.is_file():
        text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml
    except ImportError:
        raise argparse.ArgumentTypeError(
            "the request is not JSON (install PyYAML for YAML)"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"the request is neither JSON nor YAML: {exc}") from exc


def _logging(options: argparse.Namespace) -> None:
    level: Any = options.log_level or logging.INFO
    if isinstance(level, str) and level.isdigit():
        level = int(level)
    elif isinstance(level, str):
        level = level.upper()
    kwargs: dict[str, Any] = {"filename": options.log_file} if options.log_file else {}
    try:
        logging.basicConfig(
            level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", **kwargs
        )
    except ValueError as exc:
        raise ConfigurationError(f"--log-level: {exc}") from None


def _settings(options: argparse.Namespace) -> Settings:
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


def _module(options: argparse.Namespace) -> ModuleType:
    from .core.loader import load_module

    if options.module_name == "__main__":
        return sys.modules["__main__"]
    return load_module(options.module_name)


def _dispatcher(options: argparse.Namespace) -> Any:
    from .backend.dispatcher import Dispatcher
    from .core.models import build_models
    from .core.specs import inspect_module

    spec = inspect_module(_module(options))
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


def _run(options: argparse.Namespace) -> None:
    command = options.command
    if command == "shell":
        raise ConfigurationError("the shell command is not supported; use python -i module.py")
    if command == "listen":
        refused = [k for k, v in vars(options).items() if k.startswith("refused_") and v]
        if refused:
            option = refused[0].removeprefix("refused_").replace("_", "-")
            raise ConfigurationError(f"listen --{option} is not supported")
        _listen(options)
    elif command == "schema":
        from .core.schema import module_schema

        _print(module_schema(_dispatcher(options).models), options.indent)
    elif command == "generate":
        _generate(options)
    elif command == "test-connect":
        config = _settings(options)
        asyncio.run(_test_connect(config))
        print(f"connected to {config.broker_url}, topic {options.topic!r}")
    elif command == "send-request":
        from .client.runtime import Client

        config = dataclasses.replace(_settings(options), encoding="json")
        with Client(options.topic, settings=config) as client:
            _print(client.call(options.request), None)
    elif command == "compute":
        _compute(options)


def _compute(options: argparse.Namespace) -> None:
    from .serialization import json as codec

    dispatcher = _dispatcher(options)
    try:
        call = dispatcher.parse(options.request)
        value = dispatcher.execute(call)
    except DispatchError as exc:
        raise ConfigurationError(dispatcher.error_info(exc).text()) from exc
    sys.stdout.write(codec.encode(value, call.target.returns).decode() + "\n")


def _listen(options: argparse.Namespace) -> None:
    from .backend import Listener, serve_until_signal

    config = _settings(options)
    dispatcher = _dispatcher(options)
    workers = options.max_workers or (os.cpu_count() or 1) * 5
    transport = config.connect()
    listener = Listener(dispatcher, transport, options.topic, workers=workers)
    asyncio.run(serve_until_signal(listener))


def _generate(options: argparse.Namespace) -> None:
    from .codegen.generator import render_module

    config = _settings(options)
    spec = _dispatcher(options).models.spec
    module = _module(options)
    stem = Path(getattr(module, "__file__", None) or spec.name).stem
    source, _ = render_module(
        spec,
        topic=options.topic,
        broker_url=config.broker_url,
        timeout=config.timeout,
        env_prefix=f"{stem.upper()}_",
    )
    sys.stdout.write(source)


async def _test_connect(config: Settings) -> None:
    from .backend.listener import DEFAULT_SUBSCRIPTION

    transport = config.connect()
    try:
        subscription = await transport.subscribe(config.topic, DEFAULT_SUBSCRIPTION, shared=True)
        await subscription.close()
    finally:
        await transport.close()


def _print(value: Any, indent: int | None) -> None:
    json.dump(value, sys.stdout, indent=indent, ensure_ascii=False)
    sys.stdout.write("\n")
