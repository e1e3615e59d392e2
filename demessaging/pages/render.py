"""The page as HTML: jinja2 templates shipped with the package, CSS and script inlined."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

import jinja2
from markupsafe import Markup

from .model import Page

__all__ = ["render_page"]

_CODE = re.compile(r"(?::[a-z]+:)?``?([^`]+?)``?")


def inline(text: str) -> Markup:
    """Text with ``code`` (and roles such as :func:`name`) as ``<code>``, all else escaped."""
    parts = []
    last = 0
    for match in _CODE.finditer(text):
        parts.append(html.escape(text[last : match.start()]))
        parts.append(f"<code>{html.escape(match.group(1))}</code>")
        last = match.end()
    parts.append(html.escape(text[last:]))
    return Markup("".join(parts))


def doc(text: str) -> Markup:
    """A docstring's text as paragraphs; indented blocks stay preformatted."""
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    out = []
    for block in blocks:
        if all(line.startswith(("    ", ">>>")) for line in block.splitlines()):
            out.append(f"<pre>{html.escape(block)}</pre>")
        else:
            out.append(f"<p>{inline(' '.join(block.split()))}</p>")
    return Markup("\n".join(out))


def types(text: str, names: Iterable[str]) -> Markup:
    """A type's text, escaped, with the page's types linked to their sections."""
    escaped = html.escape(text)
    known = sorted(names, key=len, reverse=True)
    if not known:
        return Markup(escaped)
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in known) + r")\b")
    return Markup(pattern.sub(r'<a href="#type-\1">\1</a>', escaped))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("demessaging.pages", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(inline=inline, doc=doc, types=types)
    return env


def render_page(page: Page) -> str:
    """``index.html`` of a page: one file, no network needed to show it."""
    template = _environment().get_template("index.html.j2")
    return template.render(page=page, names=[t.name for t in page.types])
