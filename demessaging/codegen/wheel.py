"""A wheel of the demessaging runtime that runs this code, for generated packages to ship.

Partners install a generated package with ``pip install --find-links DIR/wheels DIR``: the
wheel in ``DIR/wheels`` is the runtime the package was generated with, so pip never takes
another distribution of the same name from the package index.

The wheel is built from what is running, the same way from a regular and from an editable
install: the files of the imported package directory (without ``__pycache__``), and the
distribution's metadata as :mod:`importlib.metadata` finds it (``METADATA`` with its
requirements and extras, ``entry_points.txt``, the licence files). ``WHEEL`` and ``RECORD``
are written as the wheel specification says
(https://packaging.python.org/en/latest/specifications/binary-distribution-format/).
Neither the source tree nor the installed ``RECORD`` is needed. Entries carry a fixed date,
so the same runtime gives the same bytes.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import re
import zipfile
from pathlib import Path

from .. import __version__
from ..errors import GeneratorError

__all__ = ["NAME", "runtime_wheel", "wheel_name"]

#: The distribution, and the import name, of the runtime.
NAME = "demessaging"
#: Where the runtime's modules are: the imported package's directory.
PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: Every entry's date: the earliest a zip file holds, so that builds are reproducible.
DATE = (1980, 1, 1, 0, 0, 0)


def wheel_name(version: str = __version__) -> str:
    """The file name of the runtime's wheel, ``demessaging-<version>-py3-none-any.whl``."""
    return f"{NAME}-{version.replace('-', '_')}-py3-none-any.whl"


def runtime_wheel(directory: str | Path) -> Path:
    """Write the wheel of the running demessaging into ``directory``; return its path.

    Raises
    ------
    GeneratorError
        If demessaging's distribution metadata cannot be found (it runs from a source tree
        that pip never installed).
    """
    try:
        distribution = importlib.metadata.distribution(NAME)
    except importlib.metadata.PackageNotFoundError:
        raise GeneratorError(
            f"{NAME} {__version__} runs from {PACKAGE_DIR.parent} without distribution "
            f"metadata, so its wheel cannot be built: install it with pip (from a checkout: "
            f"pip install -e .)"
        ) from None
    dist_info = f"{NAME}-{__version__.replace('-', '_')}.dist-info"
    files = [
        (f"{NAME}/{path.relative_to(PACKAGE_DIR).as_posix()}", path.read_bytes())
        for path in sorted(PACKAGE_DIR.rglob("*"))
        if path.is_file() and _shipped(path.relative_to(PACKAGE_DIR))
    ]
    metadata, licences = _metadata(distribution)
    files.append((f"{dist_info}/METADATA", metadata.encode()))
    files.extend((f"{dist_info}/licenses/{name}", text.encode()) for name, text in licences)
    entry_points = distribution.read_text("entry_points.txt")
    if entry_points:
        files.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    files.append((f"{dist_info}/WHEEL", _wheel_file().encode()))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        writer.writerow([name, f"sha256={digest.decode()}", len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    files.append((f"{dist_info}/RECORD", record.getvalue().encode()))

    target = Path(directory) / wheel_name()
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            entry = zipfile.ZipInfo(name, date_time=DATE)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return target


def _shipped(relative: Path) -> bool:
    """Whether a file of the package directory belongs in the wheel."""
    if any(part == "__pycache__" or part.startswith(".") for part in relative.parts):
        return False
    return relative.suffix not in {".pyc", ".pyo"}


def _metadata(distribution: importlib.metadata.Distribution) -> tuple[str, list[tuple[str, str]]]:
    """``METADATA`` with the running version, and the licence files it names.

    The version is the running code's (an editable install's metadata keeps the version it
    was installed with). A ``License-File`` whose text is not found is left out.
    """
    text = distribution.read_text("METADATA") or distribution.read_text("PKG-INFO")
    if not text:
        raise GeneratorError(f"the installed {NAME} has no METADATA; reinstall it with pip")
    headers, separator, body = text.partition("\n\n")
    kept: list[str] = []
    licences: list[tuple[str, str]] = []
    for line in headers.splitlines():
        field, _, value = line.partition(":")
        if field == "Version":
            line = f"Version: {__version__}"
        elif field == "License-File":
            name = value.strip()
            safe = re.fullmatch(r"[\w.-]+(/[\w.-]+)*", name) and ".." not in name.split("/")
            licence = distribution.read_text(f"licenses/{name}") if safe else None
            if licence is None:
                continue
            licences.append((name, licence))
        kept.append(line)
    return "\n".join(kept) + (separator or "\n") + body, licences


def _wheel_file() -> str:
    return (
        "Wheel-Version: 1.0\n"
        f"Generator: {NAME} {__version__}\n"
        "Root-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    )
