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

The command line is a click group whose commands run the bodies of ``demessaging``'s own
commands (:mod:`demessaging.cli`). DASF's is argparse's, though: two of its habits, which
click has not, are translated before click reads the arguments (:func:`argparse_style`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import click

from .. import cli
from ..config import Settings
from ..errors import ConfigurationError, DemessagingError

__all__ = ["argparse_style", "command_line", "main"]

_F = TypeVar("_F", bound=Callable[..., Any])

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
_AS_GIVEN = ("header", "host", "port", "persistent", "tenant", "namespace")
_AS_GIVEN_URLS = ("websocket_url", "producer_url", "consumer_url")
_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
_IGNORED_CONFIG = frozenset({"log_config", "json_schema_extra", "imports", "template", "registry"})
#: What argparse takes for a negative number, a value rather than an option.
_NEGATIVE = re.compile(r"^-\d+$|^-\d*\.\d+$")


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
        defaults = _defaults(module_name, messaging, module_config)
        try:
            argv = argparse_style(list(args) or sys.argv[1:])
            code = command_line.main(argv, default_map=defaults, standalone_mode=False)
        except click.ClickException as exc:  # usage errors (status 2) and failed calls (1)
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort as exc:  # click's word for Ctrl-C: give Python's back
            raise exc.__cause__ or KeyboardInterrupt() from None
        if isinstance(code, int):  # --help, as argparse does
            sys.exit(code)
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


def _defaults(
    module_name: str, messaging: Mapping[str, Any], config: Mapping[str, Any]
) -> dict[str, Any]:
    """The defaults of the options (click's ``default_map``): what the command line changes."""
    defaults: dict[str, Any] = {name: messaging[name] for name in _AS_GIVEN + _AS_GIVEN_URLS}
    defaults |= {"module_name": module_name, "debug": bool(config.get("debug"))}
    if messaging["topic"]:  # else --topic is required
        defaults["topic"] = messaging["topic"]
    if messaging["max_workers"] is not None:
        defaults["max_workers"] = messaging["max_workers"]
    for name in ("doc", "members"):
        if config.get(name):
            defaults[name] = config[name]
    return defaults


# -- the command line ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Options:
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


def _hidden(*decls: str, flag: bool = False) -> Callable[[_F], _F]:
    """An option DASF has and demessaging accepts without effect."""
    return click.option(*decls, hidden=True, is_flag=flag)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=False,
    help="Serve, describe or call this backend module.",
)
@click.option("-t", "--topic", required=True)
@click.option("--header", help="Handshake headers, a JSON object.")
@click.option("-m", "--module", "module_name")
@click.option("-d", "--description", "doc")
@click.option("--debug", is_flag=True)
@click.option("--members", multiple=True, metavar="NAME [NAME ...]")
@click.option("-H", "--host")
@click.option("-p", "--port")
@click.option("--persistent")
@click.option("--tenant")
@click.option("--namespace")
@click.option("--max-workers", type=int)
@click.option("--websocket-url")
@click.option("--producer-url")
@click.option("--consumer-url")
@click.option("--log-level")
@click.option("--log-file")
@_hidden("--queue_size")
@_hidden("--max_payload_size")
@_hidden("--producer-keep-alive")
@_hidden("--producer-connection-timeout")
@_hidden("--log-config")
@_hidden("--log-overrides")
@_hidden("--merge-log-config", flag=True)
@click.pass_context
def command_line(
    ctx: click.Context, /, log_level: str | None, log_file: str | None, **options: Any
) -> None:
    """DASF's options: set up logging, keep the others for the command."""
    _logging(log_level, log_file)
    fields = {f.name for f in dataclasses.fields(_Options)}
    ctx.obj = _Options(**{k: v for k, v in options.items() if k in fields})


@command_line.command(help="Serve the module on the topic.")
@_hidden("--dump-to", "refused_dump_to")
@_hidden("--dump-tool", "refused_dump_tool")
@_hidden("-c", "refused_c")
@_hidden("--cmd", "refused_cmd")
@click.pass_obj
def listen(options: _Options, /, **refused: str | None) -> None:
    for name in ("refused_dump_to", "refused_dump_tool", "refused_c", "refused_cmd"):
        if refused[name] is not None:  # the first in this order, as DASF's argparse names it
            option = name.removeprefix("refused_").replace("_", "-")
            raise ConfigurationError(f"listen --{option} is not supported")
    config = _settings(options)
    dispatcher = _dispatcher(options)
    workers = options.max_workers or (os.cpu_count() or 1) * 5
    cli.serve_dispatcher(dispatcher, config.broker_url, config, options.topic, workers)


@command_line.command(help="Print the module's JSON Schema.")
@click.option("-i", "--indent", type=int)
@click.pass_obj
def schema(options: _Options, indent: int | None) -> None:
    cli.print_schema(_dispatcher(options).models, indent)


@command_line.command(help="Print a client module.")
@click.pass_obj
def generate(options: _Options) -> None:
    from ..client.generator import render_module

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


@command_line.command("test-connect", help="Check that the broker takes the subscription.")
@click.pass_obj
def test_connect(options: _Options) -> None:
    config = _settings(options)
    asyncio.run(_test_connect(config))
    print(f"connected to {config.broker_url}, topic {options.topic!r}")


def _load_request(ctx: click.Context, param: click.Parameter, text: str) -> Any:
    """A request: JSON or YAML, a text or a file."""
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
        raise click.BadParameter("the request is not JSON (install PyYAML for YAML)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"the request is neither JSON nor YAML: {exc}") from exc


@command_line.command("send-request", help="Send a request (JSON or YAML, text or file).")
@click.argument("request", callback=_load_request)
@click.pass_obj
def send_request(options: _Options, request: Any) -> None:
    from ..client import Client

    config = dataclasses.replace(_settings(options), encoding="json")
    with Client(options.topic, settings=config) as client:
        cli.dump_json(client.call(request), sys.stdout, None)


@command_line.command(help="Run a request here (JSON or YAML, text or file).")
@click.argument("request", callback=_load_request)
@click.pass_obj
def compute(options: _Options, request: Any) -> None:
    cli.run_request(_dispatcher(options), request)


@command_line.command(help="Not supported.")
def shell() -> None:
    raise ConfigurationError("the shell command is not supported; use python -i module.py")


# -- argparse's habits ----------------------------------------------------------------------------


def argparse_style(args: list[str]) -> list[str]:
    """DASF's arguments, as argparse reads them, in the form click reads the same way.

    Two habits of argparse that click has not: ``--members A B`` takes every value up to the
    next option (click's options take a fixed number: ``--members A --members B``), and a
    long option may be shortened to any unique prefix (``--websocket`` for
    ``--websocket-url``). Everything else passes unchanged.
    """
    out: list[str] = []
    level: click.Command = command_line  # until the command's name, then the command
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            out += args[i - 1 :]
            break
        if not _is_option(arg):
            out.append(arg)
            if level is command_line:
                level = command_line.commands.get(arg, level)
            continue
        name, equals, value = arg.partition("=")
        if name.startswith("--"):
            name = _spelled_out(level, name)
        option = next(
            (p for p in level.params if isinstance(p, click.Option) and name in p.opts), None
        )
        if option is None:
            out.append(arg)
        elif option.is_flag:
            out.append(name + equals + value)
        elif name == "--members" and not equals:
            start = i
            while i < len(args) and not _is_option(args[i]):
                i += 1
            if i == start:
                raise click.UsageError("argument --members: expected at least one argument")
            for member in args[start:i]:
                out += [name, member]
        elif equals:  # argparse reads -t=x as x, click as =x
            out += [name, value]
        else:
            out += [name, *args[i : i + 1]]
            i += 1
    return out


def _is_option(arg: str) -> bool:
    return arg.startswith("-") and arg != "-" and not _NEGATIVE.match(arg)


def _spelled_out(command: click.Command, name: str) -> str:
    """``name`` as given, or the one long option of ``command`` it is a prefix of."""
    known = ["--help"]
    known += [o for p in command.params for o in p.opts if o.startswith("--")]
    if name in known:
        return name
    matches = [o for o in known if o.startswith(name)]
    return matches[0] if len(matches) == 1 else name


# -- what the commands share ------------------------------------------------------------------


def _logging(log_level: str | None, log_file: str | None) -> None:
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


def _settings(options: _Options) -> Settings:
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


def _module(options: _Options) -> ModuleType:
    from ..core.loader import load_module

    if options.module_name == "__main__":
        return sys.modules["__main__"]
    return load_module(options.module_name)


def _dispatcher(options: _Options) -> Any:
    from ..backend.dispatcher import Dispatcher
    from ..core.introspection import inspect_module
    from ..core.models import build_models

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


async def _test_connect(config: Settings) -> None:
    from ..backend.listener import DEFAULT_SUBSCRIPTION
    from ..transport import connect

    transport = connect(config.broker_url, **config.transport_options())
    try:
        subscription = await transport.subscribe(config.topic, DEFAULT_SUBSCRIPTION, shared=True)
        await subscription.close()
    finally:
        await transport.close()
