"""The ``demessaging`` command line: one subcommand per task (see ``demessaging --help``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from . import __version__
from .config import BROKER_URL_HELP, Settings
from .errors import DemessagingError, DemessagingWarning, DispatchError
from .namespaces import namespace
from .observe import logs, tracing
from .observe.metrics import Metrics, metrics_options, serving
from .pages import command as docs_command

if TYPE_CHECKING:
    from .backend.dispatcher import Dispatcher
    from .core.models import ModuleModels

__all__ = ["cli", "dump_json", "main", "print_schema", "run_request", "serve_dispatcher"]

MODULE = click.argument("module", metavar="MODULE")


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Report our errors as one line on stderr with exit status 1, and warnings briefly."""

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        click.echo(f"warning: {message}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always", DemessagingWarning)
        warnings.showwarning = show
        try:
            yield
        except DemessagingError as exc:
            raise click.ClickException(str(exc)) from exc


def dump_json(data: Any, out: TextIO, indent: int | None) -> None:
    """Write ``data`` as JSON (UTF-8 as it is, not escaped), then a newline."""
    json.dump(data, out, indent=indent, ensure_ascii=False)
    out.write("\n")


# -- the bodies of the commands, shared with DASF's command line (demessaging.dasf.main) --------


def print_schema(models: ModuleModels, indent: int | None, *, api_info: bool = False) -> None:
    """Print the JSON Schema of a module's requests, or DASF's ``api_info`` layout."""
    from .core import schema as schemas

    data = schemas.api_info(models) if api_info else schemas.module_schema(models)
    dump_json(data, sys.stdout, indent)


def serve_dispatcher(
    dispatcher: Dispatcher,
    settings: Settings,
    topic: str,
    workers: int,
    metrics: Metrics | None = None,
) -> None:
    """Serve on ``topic`` until SIGINT or SIGTERM, then finish the calls; ``metrics`` counts."""
    from .backend import Listener, serve_until_signal

    listener = Listener(
        dispatcher, settings.connect(), topic, workers=workers, **settings.listener_options()
    )
    if metrics is not None:
        metrics.watch(listener)
    asyncio.run(serve_until_signal(listener))


def run_request(dispatcher: Dispatcher, request: str | bytes | Mapping[str, Any]) -> None:
    """Run one request in this process and print its result as JSON.

    Raises
    ------
    click.ClickException
        With the error's text, if the request is invalid or the call fails.
    """
    from .serialization import json as codec

    try:
        parsed = dispatcher.parse(request)
        value = dispatcher.execute(parsed)
    except DispatchError as exc:
        raise click.ClickException(dispatcher.error_info(exc).text()) from exc
    sys.stdout.write(codec.encode(value, parsed.target.returns).decode())
    sys.stdout.write("\n")


@logs.options
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="demessaging")
def cli() -> None:
    """Serve a typed Python module to partners over a message broker, and call it.

    MODULE is a path to a .py file or the dotted name of an importable module. Its public
    functions and classes (or those in its __all__) are served.
    """


@cli.command()
@click.argument("module", metavar="MODULE", required=False)
@click.option("--api-info", is_flag=True, help="Print DASF's api_info layout instead.")
@click.option(
    "--envelope",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the JSON Schemas of the wire envelope into this directory instead.",
)
@click.option("--indent", type=int, default=2, show_default=True, help="JSON indentation.")
def schema(module: str | None, api_info: bool, envelope: Path | None, indent: int) -> None:
    """Print the JSON Schema of the requests MODULE accepts.

    \b
    Examples:
      demessaging schema examples/climate.py > climate.schema.json
      demessaging schema --api-info examples/climate.py
      demessaging schema --envelope schemas/
    """
    with _errors():
        if envelope is not None:
            from .protocol.schemas import envelope_schemas

            envelope.mkdir(parents=True, exist_ok=True)
            for name, content in envelope_schemas().items():
                with (envelope / name).open("w", encoding="utf-8") as out:
                    dump_json(content, out, indent)
            return
        if module is None:
            raise click.UsageError("give a MODULE, or --envelope DIR")
        from .core import build_models, inspect_module

        print_schema(build_models(inspect_module(module)), indent, api_info=api_info)


@cli.command()
@MODULE
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the package into.",
)
@click.option("--name", help="Distribution name [default: <module>-client].")
@click.option("--topic", help="The backend's topic [default: the module's name].")
@click.option(
    "--broker-url",
    help="The broker the client connects to by default: pulsar://HOST:PORT, "
    "pulsar+ssl://HOST:PORT, ws://HOST:PORT[/PATH] or wss://HOST:PORT[/PATH].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Default deadline of a call, in seconds [default: 60].",
)
@click.option("--version", "package_version", default="0.1.0", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite a non-empty output directory.")
def generate(
    module: str,
    output: Path,
    name: str | None,
    topic: str | None,
    broker_url: str | None,
    timeout: float | None,
    package_version: str,
    force: bool,
) -> None:
    """Write a client package for MODULE that partners install with pip.

    The package mirrors MODULE: same functions and classes, signatures, type hints and
    docstrings. Calls run on the backend serving the topic.

    \b
    Example:
      demessaging generate examples/climate.py --output climate-client
      pip install --find-links ./climate-client/wheels ./climate-client

    The output also holds wheels/, a wheel of the demessaging runtime this
    command runs on: the second line installs the package with it.
    """
    from .codegen import generate as write
    from .codegen.generator import partner_command

    with _errors():
        package = write(
            module,
            output,
            name=name,
            topic=topic,
            broker_url=broker_url,
            timeout=timeout,
            version=package_version,
            force=force,
        )
    click.echo(
        f"wrote {package.distribution} (import {package.package}) to {output}, with the "
        f"demessaging runtime it needs in {package.wheel.parent.name}/; install it with:\n"
        f"  {partner_command(output)}"
    )


BROKER_URL = click.option(
    "--broker-url",
    help=BROKER_URL_HELP,
)


@contextlib.contextmanager
def _broker(settings: Settings, *, start: bool) -> Iterator[str]:
    """The broker URL to use; for ``embedded://`` with ``start``, start or reuse the broker."""
    if not settings.broker_url.startswith("embedded:") or not start:
        yield settings.broker_url
        return
    from . import embedded

    broker = embedded.start()  # logs where it runs
    if broker.owned:
        logging.getLogger("demessaging").info("the embedded broker stops with this backend")
    try:
        yield broker.broker_url
    finally:
        broker.stop()


@cli.command()
@MODULE
@click.option("--topic", help="The request topic [default: the module's name].")
@BROKER_URL
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Requests handled at once.",
)
@click.option("--debug", is_flag=True, help="Send tracebacks to callers with errors.")
@metrics_options
def listen(
    module: str, topic: str | None, broker_url: str | None, workers: int, debug: bool, **more: Any
) -> None:
    """Serve MODULE on a topic until interrupted (SIGINT or SIGTERM).

    With no broker configured, it starts the embedded pulsar-lite broker on 127.0.0.1 (or
    uses the one already running on this machine). On a signal the backend stops taking
    requests and finishes those in flight.
    """
    from .backend.dispatcher import Dispatcher

    with _errors():
        tracing.configure_sdk()  # from OTEL_*, if the SDK is installed
        settings = Settings.from_env(broker_url=broker_url, topic=topic or None, **more)
        with serving(settings) as metrics:  # /healthz says "starting" from now on
            dispatcher = Dispatcher.from_module(module, debug=debug)
            name = dispatcher.models.spec.name.rsplit(".", 1)[-1]
            with _broker(settings, start=True) as url:
                there = dataclasses.replace(settings, broker_url=url)
                serve_dispatcher(dispatcher, there, settings.topic or name, workers, metrics)


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="[default: a free one]")
def broker(port: int) -> None:
    """Run the embedded pulsar-lite broker in the foreground, on 127.0.0.1.

    Backends and clients with no broker configured use it. Stop it with Ctrl-C or SIGTERM.
    """
    from . import embedded

    with _errors():
        running = embedded.find_running()
        if running is not None:
            raise click.ClickException(
                f"the embedded broker already runs at {running.url} (pid {running.pid})"
            )
        handle = embedded.start(port=port)
        click.echo(f"embedded broker at {handle.url} (pid {handle.pid}, data in {handle.folder})")
        stop = asyncio.Event()

        async def wait() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()

        try:
            asyncio.run(wait())
        finally:
            handle.stop()


def _client(topic: str, broker_url: str | None, timeout: float | None) -> Any:
    from .client import Client

    settings = Settings.from_env(broker_url=broker_url, topic=topic, timeout=timeout)
    return Client(settings=settings)


TOPIC = click.argument("topic")
TIMEOUT = click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds to wait [default: 60]."
)


@cli.command()
@TOPIC
@BROKER_URL
@TIMEOUT
def ping(topic: str, broker_url: str | None, timeout: float | None) -> None:
    """Check that a backend serves TOPIC; prints the round trip in milliseconds."""
    with _errors(), _client(topic, broker_url, timeout) as client:
        click.echo(f"pong from {topic!r} in {client.ping() * 1000:.1f} ms")


@cli.command()
@TOPIC
@BROKER_URL
@TIMEOUT
@click.option("--api-info", is_flag=True, help="Print DASF's api_info layout instead.")
@click.option("--indent", type=int, default=2, show_default=True, help="JSON indentation.")
def info(
    topic: str, broker_url: str | None, timeout: float | None, api_info: bool, indent: int
) -> None:
    """Print the JSON Schema of the module a backend serves on TOPIC."""
    with _errors(), _client(topic, broker_url, timeout) as client:
        dump_json(client.api_info() if api_info else client.info(), sys.stdout, indent)


ADMIN_URL = click.option(
    "--admin-url",
    help="Apache Pulsar's web service [default: $DEMESSAGING_ADMIN_URL, else the broker's host "
    "on port 8080].",
)


def _admin(settings: Settings) -> Any:
    from .transport.admin import PulsarAdmin, admin_url_for

    url = settings.admin_url or admin_url_for(settings.broker_url)
    options = settings.transport
    return PulsarAdmin(url, token=options.token, options=options)


@cli.command()
@TOPIC
@BROKER_URL
@ADMIN_URL
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def status(topic: str, broker_url: str | None, admin_url: str | None, as_json: bool) -> None:
    """Show the backends serving TOPIC and the requests waiting (Apache Pulsar only).

    Reads the broker's admin REST API: one line per backend process connected to the topic's
    shared subscription, with the requests it is working on, then the requests waiting.
    """
    from .backend.listener import DEFAULT_SUBSCRIPTION
    from .transport.pulsar import full_topic

    with _errors():
        settings = Settings.from_env(broker_url=broker_url, admin_url=admin_url)
        options = settings.transport
        name = full_topic(topic, options.tenant, options.namespace, persistent=options.persistent)
        found = _admin(settings).topic_status(name, DEFAULT_SUBSCRIPTION)
        if as_json:
            dump_json(dataclasses.asdict(found), sys.stdout, 2)
        else:
            click.echo(found.text())


@cli.command()
@MODULE
@click.argument("request", type=click.File("r", encoding="utf-8"))
@click.option("--debug", is_flag=True, help="Print the traceback of a failing call.")
@click.option(
    "--remote", is_flag=True, help="MODULE is the topic of a running backend: call it there."
)
@BROKER_URL
@TIMEOUT
def call(
    module: str,
    request: TextIO,
    debug: bool,
    remote: bool,
    broker_url: str | None,
    timeout: float | None,
) -> None:
    """Run one REQUEST (a JSON file, or - for stdin) against MODULE in this process.

    Prints the result as JSON; a failing call prints its error and exits with status 1.
    With --remote, MODULE names the topic of a running backend, which runs the request.

    \b
    Example:
      echo '{"func_name": "total", "values": [1, 2, 3]}' | demessaging call examples/climate.py -
    """
    from .backend.dispatcher import Dispatcher

    if remote:
        with _errors(), _client(module, broker_url, timeout) as client:
            dump_json(client.call(request.read().encode()), sys.stdout, None)
        return
    with _errors():
        run_request(Dispatcher.from_module(module, debug=debug), request.read())


@cli.command()
@docs_command.options
def docs(**given: Any) -> None:
    """Write the API page (index.html) and AsyncAPI document of MODULE or --remote TOPIC."""
    with _errors():
        docs_command.run(**given)


cli.add_command(namespace)
for _command in cli.commands.values():  # --log-level and --log-format after the name too
    logs.options(_command)


def main(argv: list[str] | None = None) -> None:
    """Run the command line."""
    cli.main(args=argv, prog_name="demessaging")
