"""Descriptions from docstrings in numpy, google and reST style."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import docstring_parser

__all__ = ["DocInfo", "parse_docstring"]


@dataclass(frozen=True)
class DocInfo:
    """What a docstring says about a callable.

    Attributes
    ----------
    description
        The summary line and the text after it, without the sections.
    params
        Parameter name -> description.
    returns
        Description of the return value.
    """

    description: str = ""
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    returns: str = ""

    def merged(self, other: DocInfo) -> DocInfo:
        """Return this DocInfo with blanks filled from ``other``."""
        return DocInfo(
            description=self.description or other.description,
            params=MappingProxyType({**other.params, **self.params}),
            returns=self.returns or other.returns,
        )


def parse_docstring(doc: str | None) -> DocInfo:
    """Parse a docstring of any common style.

    Parameters
    ----------
    doc
        The raw docstring, or None.

    Returns
    -------
    DocInfo
        The parsed description, parameter descriptions and return description. A docstring
        that cannot be parsed is taken whole as the description.
    """
    if not doc or not doc.strip():
        return DocInfo()
    text = inspect.cleandoc(doc)
    try:
        parsed = docstring_parser.parse(text)
    except docstring_parser.ParseError:
        return DocInfo(description=text.strip())
    parts = [p.strip() for p in (parsed.short_description, parsed.long_description) if p]
    params = {p.arg_name: (p.description or "").strip() for p in parsed.params}
    returns = (parsed.returns.description or "").strip() if parsed.returns else ""
    return DocInfo(
        description="\n\n".join(parts),
        params=MappingProxyType(params),
        returns=returns,
    )
