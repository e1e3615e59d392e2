"""The page of a running backend, from the ``api_info`` it answers with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import Settings
from ..errors import ProtocolError
from .build import page_from_api_info
from .local import client_package
from .model import Page

__all__ = ["remote_api_info", "remote_page"]


def remote_api_info(settings: Settings) -> dict[str, Any]:
    """Ask the backend on ``settings.topic`` for its ``api_info``.

    Raises
    ------
    ProtocolError
        If the backend's answer is not in DASF's ``api_info`` layout.
    DemessagingError
        If no backend answers in time, or the broker cannot be reached.
    """
    from ..client import Client

    with Client(settings=settings) as client:
        info = client.api_info()
    if not isinstance(info, dict) or not isinstance(info.get("functions"), list):
        raise ProtocolError(f"the backend on {settings.topic!r} sent no api_info layout")
    return info


def remote_page(
    info: Mapping[str, Any], *, topic: str, package: str | None = None, broker: str = ""
) -> Page:
    """The page of a backend's ``api_info``."""
    from .asyncapi import public_url

    where = f"the backend on {topic!r}" + (f" at {public_url(broker)}" if broker else "")
    return page_from_api_info(
        info, topic=topic, package=package or client_package(topic), source=where
    )
