"""The wheel partners install holds the package only: no tests, benchmarks or broker installers."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_package_only(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("demessaging-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"demessaging", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "demessaging/tokens.py" in names  # documented for deployments, so in the package
    assert "demessaging/py.typed" in names
    assert not [name for name in names if "/testing/" in name]
