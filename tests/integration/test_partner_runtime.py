"""A generated client next to DASF's demessaging 0.6.4 (what PyPI has under that name)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from demessaging.codegen import generate
from demessaging.codegen.generator import requirement

ROOT = Path(__file__).resolve().parents[2]


def test_dasf_demessaging_gives_a_clear_import_error(old_python: Path, tmp_path: Path) -> None:
    package = generate(
        ROOT / "examples" / "climate.py", tmp_path / "client", broker_url="pulsar://far:6650"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [
            str(old_python),
            "-c",
            f"import sys; sys.path.insert(0, {str(package.root)!r}); import climate_client",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    site = old_python.parent.parent / "lib"
    assert last.startswith(
        f"ImportError: climate_client needs {requirement()}, but the demessaging 0.6.4 in {site}"
    )
    assert last.endswith(
        "/site-packages/demessaging is another (DASF's 0.x); install the client package with "
        "`pip install --find-links DIR/wheels DIR`, where DIR is the folder the package was "
        "generated into"
    )
