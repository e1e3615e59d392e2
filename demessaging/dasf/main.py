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
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import cli
from ..config import Settings
from ..errors import BrokerUnreachableError, ConfigurationError, DemessagingError
from .options import (
    Options,
    defaults,
    dispatcher_of,
    module_of,
    settings_of,
    setup_logging,
    split_config,
)

__all__ = ["argparse_style", "command_line", "main"]

_F = TypeVar("_F", bound=Callable[..., Any])

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
        messaging, module_config = split_config(config)
        default_map = defaults(module_name, messaging, module_config)
        try:
            argv = argparse_style(list(args) or sys.argv[1:])
            code = command_line.main(argv, default_map=default_map, standalone_mode=False)
        except click.ClickException as exc:  # usage errors (status 2) and failed calls (1)
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort as exc:  # click's word for Ctrl-C: give Python's back
            raise exc.__cause__ or KeyboardInterrupt() from None
        if isinstance(code, int):  # --help, as argparse does
            sys.exit(code)
    except BrokerUnreachableError as exc:  # named by DASF's settings here, not ours
        where = "--websocket-url or -H/-p (DE_BACKEND_WEBSOCKET_URL, DE_BACKEND_HOST/_PORT)"
        sys.exit(f"Error: {BrokerUnreachableError(exc.url, exc.reason, where)}")
    except DemessagingError as exc:
        sys.exit(f"Error: {exc}")


# -- the command line ---------------------------------------------------------------------------


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
    setup_logging(log_level, log_file)
    fields = {f.name for f in dataclasses.fields(Options)}
    ctx.obj = Options(**{k: v for k, v in options.items() if k in fields})


@command_line.command(help="Serve the module on the topic.")
@_hidden("--dump-to", "refused_dump_to")
@_hidden("--dump-tool", "refused_dump_tool")
@_hidden("-c", "refused_c")
@_hidden("--cmd", "refused_cmd")
@click.pass_obj
def listen(options: Options, /, **refused: str | None) -> None:
    for name in ("refused_dump_to", "refused_dump_tool", "refused_c", "refused_cmd"):
        if refused[name] is not None:  # the first in this order, as DASF's argparse names it
            option = name.removeprefix("refused_").replace("_", "-")
            raise ConfigurationError(f"listen --{option} is not supported")
    config = settings_of(options)
    dispatcher = dispatcher_of(options)
    workers = options.max_workers or (os.cpu_count() or 1) * 5
    cli.serve_dispatcher(dispatcher, config, options.topic, workers)


@command_line.command(help="Print the module's JSON Schema.")
@click.option("-i", "--indent", type=int)
@click.pass_obj
def schema(options: Options, indent: int | None) -> None:
    cli.print_schema(dispatcher_of(options).models, indent)


@command_line.command(help="Print a client module.")
@click.pass_obj
def generate(options: Options) -> None:
    from ..codegen.generator import render_module

    config = settings_of(options)
    spec = dispatcher_of(options).models.spec
    module = module_of(options)
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
def test_connect(options: Options) -> None:
    config = settings_of(options)
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
def send_request(options: Options, request: Any) -> None:
    from ..client import Client

    config = dataclasses.replace(settings_of(options), encoding="json")
    with Client(options.topic, settings=config) as client:
        cli.dump_json(client.call(request), sys.stdout, None)


@command_line.command(help="Run a request here (JSON or YAML, text or file).")
@click.argument("request", callback=_load_request)
@click.pass_obj
def compute(options: Options, request: Any) -> None:
    cli.run_request(dispatcher_of(options), request)


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


async def _test_connect(config: Settings) -> None:
    from ..backend.listener import DEFAULT_SUBSCRIPTION

    transport = config.connect()
    try:
        subscription = await transport.subscribe(config.topic, DEFAULT_SUBSCRIPTION, shared=True)
        await subscription.close()
    finally:
        await transport.close()
