"""``demessaging docs``: a module's or a running backend's API page and AsyncAPI document."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..config import BROKER_URL_HELP, Settings

if TYPE_CHECKING:
    from .model import Page

__all__ = ["Written", "options", "run", "write_docs", "write_page"]

F = TypeVar("F", bound=Callable[..., Any])


def options(command: F) -> F:
    """The arguments and options of ``demessaging docs``."""
    decorators = [
        click.argument("module", metavar="[MODULE]", required=False),
        click.option(
            "--remote",
            metavar="TOPIC",
            help="Read the api_info of the backend serving TOPIC instead of a MODULE.",
        ),
        click.option(
            "-o",
            "--output",
            required=True,
            type=click.Path(file_okay=False, path_type=Path),
            help="Directory to write index.html and asyncapi.json into.",
        ),
        click.option("--topic", help="The backend's topic [default: the module's name]."),
        click.option("--package", help="The client's import name [default: <module>_client]."),
        click.option("--broker-url", help=BROKER_URL_HELP),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            help="Seconds to wait for the backend (--remote) [default: 60].",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


@dataclass(frozen=True)
class Written:
    """What :func:`write_docs` wrote: the page and the AsyncAPI document."""

    page: Path
    asyncapi: Path


def write_page(
    output: Path,
    page: Page,
    api_info: Mapping[str, Any],
    broker_url: str,
    items: Mapping[str, Any] | None = None,
) -> Written:
    """Write ``index.html`` and ``asyncapi.json`` of a page into ``output``."""
    from .asyncapi import asyncapi_document, dumps
    from .render import render_page

    output.mkdir(parents=True, exist_ok=True)
    written = Written(output / "index.html", output / "asyncapi.json")
    written.page.write_text(render_page(page), encoding="utf-8")
    document = asyncapi_document(api_info, topic=page.topic, broker_url=broker_url, items=items)
    written.asyncapi.write_text(dumps(document), encoding="utf-8")
    return written


def write_docs(
    output: str | Path,
    module: str | None = None,
    *,
    remote: str | None = None,
    topic: str | None = None,
    package: str | None = None,
    broker_url: str | None = None,
    timeout: float | None = None,
) -> Written:
    """Write the API page and the AsyncAPI document of a module, or of a running backend.

    Parameters
    ----------
    output
        The directory; made if missing, its ``index.html`` and ``asyncapi.json`` replaced.
    module
        A module's file path or dotted name.
    remote
        Instead of ``module``: the topic of a running backend, whose ``api_info`` is read.
    topic
        The request topic the page names; the module's name (or ``remote``) by default.
    package
        The generated client's import name, for the Python examples.
    broker_url
        The broker (for ``remote``), and the server of the AsyncAPI document.
    timeout
        How long to wait for the backend's ``api_info``, in seconds.

    Raises
    ------
    click.UsageError
        Unless exactly one of ``module`` and ``remote`` is given.
    DemessagingError
        If the module cannot be read, or the backend does not answer.
    """
    if (module is None) == (remote is None):
        raise click.UsageError("give a MODULE, or --remote TOPIC (not both)")
    settings = Settings.from_env(broker_url=broker_url, topic=remote, timeout=timeout)
    if remote is not None:
        from .remote import remote_api_info, remote_page

        info = remote_api_info(settings)
        page = remote_page(info, topic=topic or remote, package=package, broker=settings.broker_url)
        return write_page(Path(output), page, info, settings.broker_url)
    assert module is not None
    from .local import module_docs

    page, info, items = module_docs(module, topic=topic, package=package)
    return write_page(Path(output), page, info, settings.broker_url, items)


def run(**given: Any) -> None:
    """The body of ``demessaging docs``: write the files, then say where they went."""
    written = write_docs(**given)
    size = written.page.stat().st_size
    click.echo(f"wrote {written.page} ({size / 1024:.1f} kB) and {written.asyncapi}")
