"""xarray between DASF 0.6.4 and demessaging: netCDF in base64, both directions.

``tests/data/dasf_xarray/dasf_xarray.py`` serves xarray objects with DASF's own codec
(``demessaging.serializers.xarray``, ``demessaging.validators.xarray``); it is started as its
author starts it (``python dasf_xarray.py ... listen``) under demessaging and under demessaging
0.6.4, and called by the client 0.6.4 generates for it and by demessaging's clients.
``migrated.py`` is the same module moved to demessaging (xarray annotations, no codec), which
old 0.6.4 clients keep calling.
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from demessaging.client import Client
from tests.brokers import Broker
from tests.helpers import generated_client
from tests.unit.test_netcdf import dataset, field

from .conftest import dasf_backend, old_options, wait_until_answering
from .test_dasf_modules import connection, old_client, run_old

xr = pytest.importorskip("xarray")
pd = pytest.importorskip("pandas")
pytest.importorskip("scipy", reason="netCDF 3 needs scipy (the xarray and test extras)")

FOLDER = Path(__file__).resolve().parents[1] / "data" / "dasf_xarray"


def anomaly() -> Any:
    out = field() - field().mean("t")
    out.attrs = dict(field().attrs)
    return out


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "xarray"
    shutil.copytree(FOLDER, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture(params=["demessaging", "demessaging-0.6.4"])
def python(request: pytest.FixtureRequest) -> Path:
    """The Python that runs the module: ours, or one with demessaging 0.6.4."""
    if request.param == "demessaging":
        return Path(sys.executable)
    return Path(request.getfixturevalue("old_python"))


#: What a DASF user's script does with the client 0.6.4 generated: the results as netCDF files.
#: Datasets only where the backend is demessaging: 0.6.4's validate_dataset gives a Dataset to
#: xarray's Dataset constructor, which current xarray refuses ("Passing a Dataset as
#: `data_vars`..."), in its client (so its users pass the dictionary form) and in its backend.
OLD_CALLS = """
import json

import numpy as np
import pandas as pd
import xarray as xr

import client

field = xr.DataArray(
    np.arange(12.0, dtype="float32").reshape(3, 4),
    dims=("t", "x"),
    coords={"t": pd.date_range("2024-01-01", periods=3), "x": [10, 20, 30, 40]},
    attrs={"units": "K"},
    name="temperature",
)
ds = xr.Dataset(
    {"temperature": field, "pressure": ("t", np.array([1000, 990, 980], dtype="int16"))},
    attrs={"source": "test"},
)
anomaly = client.anomaly(field)
anomaly.to_netcdf("anomaly.nc", format="NETCDF3_CLASSIC")
types = [type(anomaly).__name__]
if DATASETS:
    combined = client.combine(ds.to_dict(), 3.0)
    combined.to_netcdf("combined.nc", format="NETCDF3_CLASSIC")
    types.append(type(combined).__name__)
print("RESULT", json.dumps({"types": types, "total": client.total(field)}))
"""


def result_of(stdout: str) -> dict[str, Any]:
    """What ``OLD_CALLS`` printed (0.6.4 logs to the same stream)."""
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, stdout[-3000:]
    return dict(json.loads(lines[-1].removeprefix("RESULT ")))


def generate_old_client(old_python: Path, folder: Path, broker: Broker, topic: str) -> None:
    source = old_client(old_python, folder, "dasf_xarray.py", broker, topic)
    # 0.6.4 writes xarray's annotations without importing xarray; its users add the lines
    imports = "import xarray.core.dataarray\nimport xarray.core.dataset\n"
    (folder / "client.py").write_text(imports + source)


def test_a_dasf_064_client_sends_and_reads_xarray_under_both_versions(
    ws_broker: Broker, topic: str, folder: Path, old_python: Path, python: Path
) -> None:
    generate_old_client(old_python, folder, ws_broker, topic)
    command = [str(python), "dasf_xarray.py", *old_options(ws_broker, topic), "listen"]
    with (
        dasf_backend(command, folder) as backend,
        Client(topic, broker_url=ws_broker.url, timeout=60) as client,
    ):
        wait_until_answering(client, backend)
        datasets = python == Path(sys.executable)
        ran = run_old(old_python, folder, f"DATASETS = {datasets}\n" + OLD_CALLS)
    types = ["DataArray", "Dataset"] if datasets else ["DataArray"]
    assert result_of(ran.stdout) == {"types": types, "total": 66.0}  # decoded, as under 0.6.4
    with xr.open_dataarray(folder / "anomaly.nc", engine="scipy") as got:
        assert got.load().identical(anomaly())
    if datasets:
        with xr.open_dataset(folder / "combined.nc", engine="scipy") as got:
            assert got.load().identical(dataset() * 3.0)


def test_a_dasf_064_client_keeps_calling_the_module_moved_to_demessaging(
    ws_broker: Broker, topic: str, folder: Path, old_python: Path
) -> None:
    """``migrated.py`` drops the codec; the old client's requests still decode, and it reads the
    replies (xarray's dictionary form, which DASF's validators take)."""
    generate_old_client(old_python, folder, ws_broker, topic)
    command = [sys.executable, "migrated.py", *old_options(ws_broker, topic), "listen"]
    with (
        dasf_backend(command, folder) as backend,
        Client(topic, broker_url=ws_broker.url, timeout=60) as client,
    ):
        wait_until_answering(client, backend)
        ran = run_old(old_python, folder, "DATASETS = True\n" + OLD_CALLS)
    assert result_of(ran.stdout) == {"types": ["DataArray", "Dataset"], "total": 66.0}
    with xr.open_dataarray(folder / "anomaly.nc", engine="scipy") as got:
        got.load()
    np.testing.assert_array_equal(got.values, anomaly().values)
    assert got.attrs["units"] == "K"
    assert got.dims == ("t", "x")


def test_demessaging_clients_send_and_read_xarray_under_both_versions(
    broker: Broker, topic: str, folder: Path, python: Path, tmp_path: Path
) -> None:
    """A demessaging client, plain and generated, against the DASF module under both versions.

    To a 0.6.4 backend requests go in JSON (xarray's dictionary form, which DASF's validators
    take) and its replies are DASF's netCDF in base64; between demessaging peers, msgpack.
    Datasets only to demessaging (see ``OLD_CALLS``). On every broker (``--websocket-url``
    takes any URL under demessaging); 0.6.4 on the WebSocket API only.
    """
    ours = python == Path(sys.executable)
    if not ours and not broker.url.startswith("ws"):
        pytest.skip("demessaging 0.6.4 speaks only the WebSocket API")
    command = [str(python), "dasf_xarray.py", *connection(broker, topic), "listen"]
    with (
        dasf_backend(command, folder) as backend,
        Client(topic, broker_url=broker.url, timeout=60) as client,
    ):
        wait_until_answering(client, backend)
        wire = base64.b64encode(bytes(field().to_netcdf(format="NETCDF3_CLASSIC"))).decode()
        assert client.call({"func_name": "total", "field": wire}) == 66.0
        assert client.call({"func_name": "total", "field": field()}) == 66.0
        with generated_client(
            FOLDER / "dasf_xarray.py", tmp_path / "gen", broker_url=broker.url, topic=topic
        ) as generated:
            result = generated.anomaly(field())
            combined = generated.combine(dataset(), factor=3.0) if ours else None
    assert isinstance(result, xr.DataArray)  # decoded from 0.6.4's netCDF, too
    np.testing.assert_array_equal(result.values, anomaly().values)
    assert result.attrs["units"] == "K"
    if ours:  # msgpack between demessaging peers: all of it intact
        assert result.identical(anomaly())
        assert combined is not None
        assert combined.identical(dataset() * 3.0)
