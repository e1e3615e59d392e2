"""Pages partners read: a module's API page (one self-contained HTML file) and AsyncAPI.

``demessaging docs MODULE --output DIR`` (or ``--remote TOPIC``) writes ``DIR/index.html``
and ``DIR/asyncapi.json``; generated client packages carry the same page. The page is made
from DASF's ``api_info`` (:mod:`.build`), which a local module enriches with what its source
says (:mod:`.local`), and rendered with jinja2 templates shipped in ``templates/``
(:mod:`.render`). :mod:`.asyncapi` writes the AsyncAPI 3.0 document.
"""

from __future__ import annotations

from typing import Any

__all__ = ["asyncapi_document", "page_from_module", "render_page", "write_docs"]


def __getattr__(name: str) -> Any:
    # the command line imports .command at start: the rest loads when used
    if name == "asyncapi_document":
        from .asyncapi import asyncapi_document

        return asyncapi_document
    if name == "page_from_module":
        from .local import page_from_module

        return page_from_module
    if name == "render_page":
        from .render import render_page

        return render_page
    if name == "write_docs":
        from .command import write_docs

        return write_docs
    raise AttributeError(name)
