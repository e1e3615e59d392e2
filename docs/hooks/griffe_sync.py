"""A griffe extension for the API reference: the sync face, and Sphinx roles in docstrings.

- ``call = blocking(acall)`` (``demessaging.client.portal.blocking``) makes a method at run
  time; griffe reads source and would see an attribute without a docstring. The reference
  shows it as the method it is: the async method's parameters, and the docstring that
  ``_named`` gives it (summary, "The blocking form of ...", the rest).
- Docstrings use Sphinx roles (``:class:`~demessaging.errors.CallCancelled```), which
  Markdown does not know: they become code spans naming the object (``CallCancelled``).
- Parameters described together (``topic, broker_url, timeout``) get an entry each: griffe
  would give all of them the type and default of the first.
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
#: a section's title, underlined
HEADING = re.compile(r"^(\w[\w ]*)\n-{3,}$")
#: an entry of a Parameters section naming several parameters: ``a, b`` or ``a, b : int``
NAMES = re.compile(r"^(\*{0,2}\w+(?:, \*{0,2}\w+)+)((?: : .*)?)$")


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


def one_per_name(text: str) -> str:
    """``text`` with each entry of its Parameters sections that names several split in one each.

    ``a, b`` and its description become ``a`` and ``b``, each with the description.
    """
    lines = text.split("\n")
    out: list[str] = []
    section = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        heading = HEADING.match("\n".join(lines[index : index + 2]))
        if heading:
            section = heading[1]
            out += lines[index : index + 2]
            index += 2
            continue
        match = NAMES.match(line) if section in ("Parameters", "Other Parameters") else None
        if match is None:
            out.append(line)
            index += 1
            continue
        end = index + 1
        while end < len(lines) and (not lines[end] or lines[end][0].isspace()):
            end += 1
        description = lines[index + 1 : end]
        while description and not description[-1]:  # blank lines stay after the last one
            description.pop()
            end -= 1
        for name in match[1].split(", "):
            out += [name + match[2], *description]
        index = end
    return "\n".join(out)


def for_site(text: str) -> str:
    """A docstring as the site shows it: Markdown, one entry per parameter."""
    return one_per_name(without_roles(text))


def sync_docstring(source: str, name: str) -> str:
    """The docstring of the sync form of the async method ``name`` (as ``_named`` makes it)."""
    summary, _, rest = inspect.cleandoc(source).partition("\n\n")
    note = f"The blocking form of :meth:`{name}`: it waits in the calling thread."
    return for_site("\n\n".join(part for part in (summary, note, rest) if part))


class DemessagingDocs(griffe.Extension):
    """Sync methods made by ``blocking``, and docstrings without Sphinx roles."""

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        """Replace ``call = blocking(acall)`` by a method ``call``."""
        for name, member in list(cls.members.items()):
            if not isinstance(member, griffe.Attribute):  # nor an alias
                continue
            match = SYNC_FACE.match(str(member.value or ""))
            source = cls.members.get(match[2]) if match else None
            if match is None or not isinstance(source, griffe.Function):
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
                    parser=source.docstring.parser,  # numpy, as the site's options say
                    parser_options=source.docstring.parser_options,
                )
            cls.set_member(name, method)

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """The docstring of ``obj`` as the site shows it (:func:`for_site`)."""
        if obj.docstring is not None:
            obj.docstring.value = for_site(obj.docstring.value)
