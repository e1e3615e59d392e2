"""Serve the climate backend and call it through its generated client, in one process.

Run it with ``python examples/quickstart.py``. It uses the in-process broker (``memory://``),
so backend and client share this process; with a real broker they run on different machines
and the calls look just the same.
"""

from __future__ import annotations

import datetime
import sys
import tempfile
from pathlib import Path

import numpy as np

from demessaging.backend import serve
from demessaging.codegen import generate

HERE = Path(__file__).resolve().parent


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        # What the backend's owner runs once, and gives to partners to `pip install`:
        package = generate(HERE / "climate.py", folder, broker_url="memory://")
        sys.path.insert(0, folder)  # stands in for `pip install` here
        import climate_client as climate

        # What the backend's owner runs next to the data:
        with serve(HERE / "climate.py", broker_url="memory://"):
            # What a partner writes: plain calls, with the backend's signatures and docs.
            print("total:", climate.total(np.arange(10.0)))
            summary = climate.summarize(np.array([3.0, 1.0, 7.0]), how=climate.Aggregation.MAX)
            print("summary:", summary)
            series = climate.TimeSeries(np.arange(30.0), start=datetime.date(2024, 1, 1))
            print("weekly means:", series.resample(7))
            region = climate.Region(south=-10, north=10, west=0, east=40)
            grid = np.ones((3, 4))
            print(
                "regional mean:",
                climate.regional_mean(grid, np.array([-5.0, 0, 5]), np.arange(4.0) * 10, region),
            )
        print(f"the client package was {package.distribution}, imported as {package.package}")


if __name__ == "__main__":
    main()
