"""`demessaging listen path/to/module.py` from another directory: the modules next to it import."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from demessaging.client import Client

from .conftest import Backend


def test_listen_serves_a_module_that_imports_its_neighbours(
    broker_url: str, topic: str, backends: Callable[..., Backend], tmp_path: Path
) -> None:
    folder = tmp_path / "backend"  # the backend runs in tmp_path, not here
    folder.mkdir()
    helper, lazy = f"helper_{uuid.uuid4().hex[:8]}", f"lazy_{uuid.uuid4().hex[:8]}"
    (folder / f"{helper}.py").write_text("def double(x: float) -> float:\n    return 2 * x\n")
    (folder / f"{lazy}.py").write_text("OFFSET = 0.5\n")
    module = folder / "neighbours.py"
    module.write_text(
        f"from {helper} import double\n\n\n"
        "def scaled(x: float) -> float:\n"
        f"    from {lazy} import OFFSET  # imported at the call\n\n"
        "    return double(x) + OFFSET\n"
    )
    backends(module, topic)
    with Client(topic, broker_url=broker_url, timeout=30) as client:
        assert client.call({"func_name": "scaled", "x": 2.0}) == 4.5
