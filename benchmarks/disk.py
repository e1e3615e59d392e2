"""``python -m benchmarks.disk``: what calls leave on the embedded broker's disk.

Starts the embedded pulsar-lite broker in a fresh data directory, serves
``examples/climate.py`` and makes ``--small`` small calls (``--per-client`` per client), then
``--large`` calls with a ``--mib`` MiB array (a client each). Prints, as JSON, the size of the
broker's data before, after the small calls and after all; the topics and subscriptions it
keeps; and the size once a broker starts on that data again after ``DEMESSAGING_EMBEDDED_KEEP``
seconds. See docs/deploying.md, "Disk".
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from demessaging import Client, embedded, serve

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def measure(folder: Path, small: int, large: int, mib: int, per_client: int) -> dict[str, object]:
    """Make the calls on an embedded broker keeping its data in ``folder``; the figures."""
    figures: dict[str, object] = {"small": small, "large": large, "mib": mib}
    started = time.monotonic()
    with embedded.start(folder) as broker:
        url = broker.broker_url
        figures["bytes_before"] = embedded.data_size(folder)
        with serve(str(ROOT / "examples" / "climate.py"), broker_url=url):
            done = 0
            while done < small:
                with Client("climate", broker_url=url) as client:
                    for _ in range(min(per_client, small - done)):
                        client.call({"func_name": "total", "values": [1.0, 2.0]})
                        done += 1
            figures["bytes_after_small"] = embedded.data_size(folder)
            values = np.zeros(mib * MIB // 8)
            for _ in range(large):
                with Client("climate", broker_url=url, timeout=600) as client:
                    client.call({"func_name": "total", "values": values})
        figures["bytes_after"] = embedded.data_size(folder)
    figures["seconds"] = round(time.monotonic() - started, 1)
    kept = embedded.topics(folder)
    figures["topics"] = len(kept)
    figures["subscriptions"] = sum(len(subscriptions) for subscriptions in kept.values())
    with embedded.start(folder, keep=0):  # as after DEMESSAGING_EMBEDDED_KEEP seconds
        figures["bytes_after_restart"] = embedded.data_size(folder)
        figures["topics_after_restart"] = len(embedded.topics(folder))
    return figures


def main() -> None:
    """Measure, and print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--per-client", type=int, default=100)
    parser.add_argument("--large", type=int, default=3)
    parser.add_argument("--mib", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        figures = measure(Path(folder), args.small, args.large, args.mib, args.per_client)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
