"""A griffe extension for the API reference: the sync face, and Sphinx roles in docstrings.

- ``call = blocking(acall)`` (``demessaging.client.portal.blocking``) makes a method at run
  time; griffe reads source and would see an attribute without a docstring. The reference
  shows it as the method it is: the async method's parameters, and the docstring that
  ``_named`` gives it (summary, "The blocking form of ...", the rest).
- Docstrings use Sphinx roles (``:class:`~demessaging.errors.CallCancelled```), which
  Markdown does not know: they become code spans naming the object (``CallCancelled``).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import griffe

#: ``name = blocking(amethod)`` and ``name = blocking_iterator(amethod)``
SYNC_FACE = re.compile(r"^blocking(_iterator)?\((a\w+)\)$")
#: ``:role:`target``` and ``:role:`title <target>```; ``~`` shows the last part only
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj|const):`([^`]+)`")
#: ``text::`` (shown as ``text:``) or a line of ``::`` alone (dropped), before a literal block
LITERAL = re.compile(r"(?m)^::\n|(?<=\S)::$")


def shown(target: str) -> str:
    """What a Sphinx role's target reads as: ``~a.b.C`` as ``C``, ``title <a.b>`` as title."""
    titled = re.fullmatch(r"(.+?)\s*<[^>]+>", target)
    if titled:
        return titled[1]
    if target.startswith("~"):
        return target.rsplit(".", 1)[-1]
    return target.lstrip(".")


def without_roles(text: str) -> str:
    """``text`` in Markdown: Sphinx roles as code spans, and no ``::`` before literal blocks.

    The indented block after ``::`` is a code block in Markdown as well.
    """
    text = ROLE.sub(lambda match: f"``{shown(match[1])}``", text)
    return LITERAL.sub(lambda match: "" if match[0].endswith("\n") else ":", text)


def sync_docstring(source: str, name: str) -> str:
    """The docstring of the sync form of the async method ``name`` (as ``_named`` makes it)."""
    summary, _, rest = inspect.cleandoc(source).partition("\n\n")
    note = f"The blocking form of :meth:`{name}`: it waits in the calling thread."
    return without_roles("\n\n".join(part for part in (summary, note, rest) if part))


class DemessagingDocs(griffe.Extension):
    """Sync methods made by ``blocking``, and docstrings without Sphinx roles."""

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        """Replace ``call = blocking(acall)`` by a method ``call``."""
        for name, member in list(cls.members.items()):
            if member.is_alias or not member.is_attribute:
                continue
            match = SYNC_FACE.match(str(member.value or ""))
            source = cls.members.get(match[2]) if match else None
            if match is None or source is None or source.is_alias or not source.is_function:
                continue
            method = griffe.Function(
                name,
                lineno=member.lineno,
                endlineno=member.endlineno,
                parameters=source.parameters,
                returns=None if match[1] else source.returns,  # a generator: as help() shows
            )
            if source.docstring is not None:
                method.docstring = griffe.Docstring(
                    sync_docstring(source.docstring.value, source.name),
                    lineno=member.lineno,
                    parent=method,
                )
            cls.set_member(name, method)

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Replace Sphinx roles in the docstring of ``obj``."""
        if obj.docstring is not None:
            obj.docstring.value = without_roles(obj.docstring.value)
