"""The wheels of demessaging: the one the build makes, and the one ``generate`` ships.

The wheel partners install holds the package only: no tests, benchmarks or broker
installers. ``generate`` writes a wheel of the running runtime next to each client package;
it holds what the build's wheel holds.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import demessaging
from demessaging.codegen import wheel as runtime
from demessaging.errors import GeneratorError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the build backend makes of the source tree."""
    out = tmp_path_factory.mktemp("built")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = out.glob("demessaging-*.whl")
    return wheel


def entries(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def metadata_fields(text: bytes, *fields: str) -> list[str]:
    headers = text.decode().partition("\n\n")[0].splitlines()
    return sorted(line for line in headers if line.split(":")[0] in fields)


def without_extras(text: bytes, *fields: str) -> list[str]:
    return [line for line in metadata_fields(text, *fields) if "extra ==" not in line]


def test_the_wheel_holds_the_package_only(built: Path) -> None:
    names = list(entries(built))
    tops = {name.split("/")[0] for name in names}
    assert tops == {"demessaging", built.name.split("-py3")[0] + ".dist-info"}
    assert "demessaging/tokens.py" in names  # documented for deployments, so in the package
    assert "demessaging/py.typed" in names
    assert not [name for name in names if "/testing/" in name]


def test_the_runtime_wheel_holds_what_the_build_makes(built: Path, tmp_path: Path) -> None:
    made = runtime.runtime_wheel(tmp_path)
    assert made.name == built.name == f"demessaging-{demessaging.__version__}-py3-none-any.whl"
    ours, theirs = entries(made), entries(built)
    package = {n: d for n, d in theirs.items() if n.startswith("demessaging/")}
    assert {n: d for n, d in ours.items() if n.startswith("demessaging/")} == package
    assert not [n for n in ours if "__pycache__" in n or n.endswith(".pyc")]
    info = made.name.split("-py3")[0] + ".dist-info"
    assert sorted(n for n in ours if not n.startswith("demessaging/")) == [
        f"{info}/METADATA",
        f"{info}/RECORD",
        f"{info}/WHEEL",
        f"{info}/entry_points.txt",
        f"{info}/licenses/LICENSE",
    ]
    for name in ("entry_points.txt", "licenses/LICENSE"):
        assert ours[f"{info}/{name}"] == theirs[f"{info}/{name}"]
    # what a partner's pip reads; the extras are the installed metadata's (an editable
    # install's may be older than the source tree's)
    needs = ("Name", "Version", "Requires-Python", "Requires-Dist")
    assert without_extras(ours[f"{info}/METADATA"], *needs) == without_extras(
        theirs[f"{info}/METADATA"], *needs
    )
    installed = importlib.metadata.distribution("demessaging").read_text("METADATA") or ""
    fields = ("Requires-Dist", "Provides-Extra")
    assert metadata_fields(ours[f"{info}/METADATA"], *fields) == metadata_fields(
        installed.encode(), *fields
    )
    assert b"\nRoot-Is-Purelib: true\nTag: py3-none-any\n" in ours[f"{info}/WHEEL"]


def test_the_runtime_wheel_records_every_file_with_its_hash(tmp_path: Path) -> None:
    made = entries(runtime.runtime_wheel(tmp_path))
    (record_name,) = [n for n in made if n.endswith(".dist-info/RECORD")]
    rows = list(csv.reader(made[record_name].decode().splitlines()))
    assert [row[0] for row in rows] == list(made)  # every entry, RECORD last
    assert rows[-1] == [record_name, "", ""]
    for name, digest, size in rows[:-1]:
        expected = base64.urlsafe_b64encode(hashlib.sha256(made[name]).digest()).rstrip(b"=")
        assert (digest, int(size)) == (f"sha256={expected.decode()}", len(made[name])), name


def test_the_runtime_wheel_is_the_same_bytes_each_time(tmp_path: Path) -> None:
    first = runtime.runtime_wheel(tmp_path / "a").read_bytes()
    assert runtime.runtime_wheel(tmp_path / "b").read_bytes() == first


def test_without_distribution_metadata_the_error_says_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(GeneratorError, match=r"without distribution metadata.*pip install -e \."):
        runtime.runtime_wheel(tmp_path)
    assert list(tmp_path.iterdir()) == []


class FakeDistribution(importlib.metadata.Distribution):
    def __init__(self, files: dict[str, str]) -> None:
        self.files_ = files

    def read_text(self, filename: str) -> str | None:
        return self.files_.get(filename)

    def locate_file(self, path: str | os.PathLike[str]) -> Path:
        raise NotImplementedError


def test_metadata_takes_the_running_version_and_the_licences_it_finds() -> None:
    metadata = (
        "Metadata-Version: 2.4\nName: demessaging\nVersion: 0.0.1\n"
        "License-File: LICENSE\nLicense-File: NOTICE\nLicense-File: ../etc/passwd\n"
        "Requires-Dist: numpy>=1.24\n\n# demessaging\n\nVersion: in the body stays.\n"
    )
    fake = FakeDistribution(
        {"METADATA": metadata, "licenses/LICENSE": "Apache", "../etc/passwd": "x"}
    )
    text, licences = runtime._metadata(fake)
    assert text == (
        f"Metadata-Version: 2.4\nName: demessaging\nVersion: {demessaging.__version__}\n"
        "License-File: LICENSE\n"
        "Requires-Dist: numpy>=1.24\n\n# demessaging\n\nVersion: in the body stays.\n"
    )
    assert licences == [("LICENSE", "Apache")]
    assert (
        runtime._metadata(FakeDistribution({"PKG-INFO": "Name: demessaging\nVersion: 1"}))[0]
        == f"Name: demessaging\nVersion: {demessaging.__version__}\n"
    )
    with pytest.raises(GeneratorError, match="no METADATA"):
        runtime._metadata(FakeDistribution({}))
