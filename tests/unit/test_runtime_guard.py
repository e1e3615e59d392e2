"""A generated package without its runtime (DASF's demessaging 0.x, or none) says what it needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import demessaging
from demessaging.codegen import generate
from demessaging.codegen.generator import requirement

from .conftest import unique_name

MAJOR = int(demessaging.__version__.split(".")[0])
NEEDED = requirement()  # demessaging>=1.0.0a1,<2 for 1.0.0a1
HOW = (
    "install the client package with `pip install --find-links DIR/wheels DIR`, where DIR is "
    "the folder the package was generated into"
)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a generated client, ``climate_client``."""
    folder = tmp_path_factory.mktemp("guarded")
    backend = folder / f"{unique_name('climate')}.py"
    backend.write_text("def total(a: float, b: float) -> float:\n    return a + b\n")
    generate(backend, folder / "out", name="climate-client", broker_url="pulsar://far:6650")
    return folder / "out"


def fake_runtime(folder: Path, version: str, *, client: bool, metadata: bool) -> Path:
    """A ``demessaging`` package of ``version`` in ``folder``.

    Without ``client``, it is DASF's, and importing it fails; with ``client``, importing
    ``demessaging.client`` fails (after the guard let it through).
    """
    (folder / "demessaging").mkdir(parents=True)
    (folder / "demessaging" / "__init__.py").write_text(
        f'__version__ = "{version}"\n'
        + ("" if client else 'raise RuntimeError("imported the fake demessaging")\n')
    )
    if client:
        (folder / "demessaging" / "client").mkdir()
        (folder / "demessaging" / "client" / "__init__.py").write_text(
            'raise RuntimeError("imported the fake demessaging.client")\n'
        )
    if metadata:  # what pip leaves next to an installed package
        info = folder / f"demessaging-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: demessaging\nVersion: {version}\n"
        )
        (info / "RECORD").write_text("")
    return folder


def import_isolated(path: list[Path], statement: str = "import climate_client") -> str:
    """Run ``statement`` in a Python that sees only the standard library and ``path``.

    Returns the last line of its stderr; fails the test if it succeeds.
    """
    code = f"import sys; sys.path[:0] = {[str(p) for p in path]!r}; {statement}"
    # -I: no PYTHONPATH, no user site; -S: no site-packages (so no demessaging installed)
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0, result.stdout
    return result.stderr.strip().splitlines()[-1]


def test_without_demessaging_the_import_error_says_what_to_install(package: Path) -> None:
    last = import_isolated([package])
    assert last == (f"ImportError: climate_client needs {NEEDED}, but it is not installed; {HOW}")


def test_dasf_demessaging_0x_is_recognised_without_importing_it(
    package: Path, tmp_path: Path
) -> None:
    dasf = fake_runtime(tmp_path / "site", "0.6.4", client=False, metadata=True)
    last = import_isolated([dasf, package])
    assert last == (
        f"ImportError: climate_client needs {NEEDED}, but the demessaging 0.6.4 in "
        f"{dasf / 'demessaging'} is another (DASF's 0.x); {HOW}"
    )
    # the aio face imports the package first
    assert import_isolated([dasf, package], "import climate_client.aio") == last


def test_dasf_demessaging_without_its_metadata_is_recognised(package: Path, tmp_path: Path) -> None:
    dasf = fake_runtime(tmp_path / "src", "0.6.4", client=False, metadata=False)
    last = import_isolated([dasf, package])
    assert f"but the demessaging in {dasf / 'demessaging'} is another (DASF's 0.x)" in last


@pytest.mark.parametrize(
    ("version", "accepted"),
    [
        ("0.0.1", False),
        (f"{MAJOR}.0.0.dev0", demessaging.__version__ == f"{MAJOR}.0.0.dev0"),
        (f"{MAJOR + 1}.0.0.dev0", False),
        (f"{MAJOR + 1}.0.0a1", False),
        (f"{MAJOR + 1}.0", False),
        (demessaging.__version__, True),
        (f"{demessaging.__version__}.post1", True),
        (f"{MAJOR}.99.0", True),
        (f"{MAJOR}.99.0rc2", True),
        ("not a version", False),
    ],
)
def test_a_runtime_outside_the_major_line_is_refused(
    package: Path, tmp_path: Path, version: str, accepted: bool
) -> None:
    runtime = fake_runtime(tmp_path / "site", version, client=True, metadata=False)
    last = import_isolated([runtime, package])
    if accepted:  # the guard let it through, and the fake runtime was imported
        assert last == "RuntimeError: imported the fake demessaging.client"
    else:
        assert last == (
            f"ImportError: climate_client needs {NEEDED}, but demessaging {version} is "
            f"installed ({runtime / 'demessaging'}); {HOW}"
        )
