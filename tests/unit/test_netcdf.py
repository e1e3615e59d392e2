"""xarray values as DASF 0.6 sends them: netCDF 3 in base64 (demessaging.core.netcdf).

Decoded for xarray parameters, by DASF's ``demessaging.validators.xarray`` and written by its
``demessaging.serializers.xarray``, which DASF modules import; malformed values are clear
validation errors, whatever the bytes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from demessaging.backend import serve
from demessaging.backend.dispatcher import Dispatcher
from demessaging.client import Client
from demessaging.core.arrays import prepare_annotation
from demessaging.core.netcdf import NetCDFError, decode, encode
from demessaging.core.schema import module_schema

xr = pytest.importorskip("xarray")
pd = pytest.importorskip("pandas")
pytest.importorskip("scipy", reason="netCDF 3 needs scipy (the xarray and test extras)")

DATA = Path(__file__).resolve().parents[1] / "data"
DASF_XARRAY = DATA / "dasf_xarray" / "dasf_xarray.py"
MIGRATED = DATA / "dasf_xarray" / "migrated.py"
JSON = "application/json"


def field() -> Any:
    return xr.DataArray(
        np.arange(12.0, dtype="float32").reshape(3, 4),
        dims=("t", "x"),
        coords={"t": pd.date_range("2024-01-01", periods=3), "x": [10, 20, 30, 40]},
        attrs={"units": "K"},
        name="temperature",
    )


def dataset() -> Any:
    return xr.Dataset(
        {"temperature": field(), "pressure": ("t", np.array([1000, 990, 980], dtype="int16"))},
        attrs={"source": "test"},
    )


def dasf_wire(value: Any) -> str:
    """What a DASF 0.6 client sends: base64 of the object's NETCDF3_CLASSIC bytes."""
    return base64.b64encode(bytes(value.to_netcdf(format="NETCDF3_CLASSIC"))).decode("ascii")


@pytest.mark.parametrize("make", [field, dataset], ids=["DataArray", "Dataset"])
def test_netcdf_in_base64_round_trips_identically(make: Any) -> None:
    value = make()
    text = encode(value)
    assert base64.b64decode(text).startswith(b"CDF\x01")  # netCDF 3 classic, as DASF writes
    back = decode(text, type(value).__name__)
    assert back.identical(value)
    assert back["t"].dtype.kind == "M"
    assert decode(dasf_wire(value), type(value).__name__).identical(value)
    assert decode(base64.b64decode(text), type(value).__name__).identical(value)  # bytes too


def test_an_xarray_parameter_takes_what_a_dasf_client_sends() -> None:
    adapter = TypeAdapter(prepare_annotation(xr.DataArray))
    assert adapter.validate_python(dasf_wire(field())).identical(field())
    datasets = TypeAdapter(prepare_annotation(xr.Dataset))
    assert datasets.validate_python(dasf_wire(dataset())).identical(dataset())
    # a module moved to demessaging (xarray annotations, no codec) takes it over the wire
    dispatcher = Dispatcher.from_module(MIGRATED)
    request = json.dumps({"func_name": "total", "field": dasf_wire(field())})
    outcome = dispatcher.handle(request, JSON)
    assert outcome.ok, outcome
    assert json.loads(outcome.payload) == 66.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64!", "not netCDF in base64: the text is not valid base64"),
        ("ünïcode", "not netCDF in base64: the text is not valid base64"),
        (base64.b64encode(b"hello world").decode(), r"not netCDF: the bytes begin with b'hello w"),
        (base64.b64encode(b"CDF\x01\x00\x00").decode(), "not a valid netCDF DataArray"),
        (base64.b64encode(b"\x89HDF\r\n\x1a\n....").decode(), r"netCDF 4 \(HDF5\)"),
        (b"CDF\x02" + bytes(40), "not a valid netCDF DataArray"),
        ("", "not netCDF: the bytes begin with b''"),
    ],
)
def test_malformed_netcdf_is_a_clear_validation_error(value: Any, message: str) -> None:
    adapter = TypeAdapter(prepare_annotation(xr.DataArray))
    with pytest.raises(ValidationError, match=message):
        adapter.validate_python(value)


def test_a_dataset_of_two_variables_is_no_data_array() -> None:
    with pytest.raises(NetCDFError, match=r"not a valid netCDF DataArray.*more than one data var"):
        decode(dasf_wire(dataset()), "DataArray")


def test_what_netcdf_3_cannot_hold_is_a_clear_error() -> None:
    with pytest.raises(NetCDFError, match="cannot be written as NETCDF3_CLASSIC"):
        encode(xr.DataArray(np.array([2**40])))


NETCDF3_HEADERS = st.sampled_from([b"", b"CDF\x01", b"CDF\x02"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(head=NETCDF3_HEADERS, body=st.binary(max_size=400), as_text=st.booleans())
def test_random_bytes_are_refused_cleanly(head: bytes, body: bytes, as_text: bool) -> None:
    raw = head + body
    value: Any = base64.b64encode(raw).decode() if as_text else raw
    for kind in ("DataArray", "Dataset"):
        with contextlib.suppress(NetCDFError):  # ours, a ValueError; never another exception
            decode(value, kind)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_random_text_is_refused_cleanly(text: str) -> None:
    adapter = TypeAdapter(prepare_annotation(xr.Dataset))
    try:
        adapter.validate_python(text)
    except ValidationError as exc:
        message = str(exc)
    else:
        return  # netCDF in base64 by chance
    assert "netCDF" in message


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0, max_value=10_000), flip=st.integers(0, 255))
def test_damaged_real_files_are_refused_cleanly(cut: int, flip: int) -> None:
    raw = bytearray(base64.b64decode(encode(dataset())))
    position = cut % len(raw)
    raw[position] ^= flip
    for damaged in (bytes(raw), bytes(raw[:position])):
        try:
            result = decode(damaged, "Dataset")
        except NetCDFError:
            continue
        assert isinstance(result, xr.Dataset)  # a harmless flip still gives a dataset


# -- DASF's demessaging.serializers.xarray and demessaging.validators.xarray ----------------------


def test_dasf_s_xarray_codec_modules_decode_and_encode() -> None:
    from demessaging.serializers.xarray import encode_xarray
    from demessaging.validators.xarray import validate_dataarray, validate_dataset

    text = encode_xarray(field())
    assert validate_dataarray(None, text).identical(field())
    assert validate_dataarray(None, field()) is not None
    assert validate_dataarray(None, field().to_dict()).identical(field())
    assert validate_dataarray(None, [1.0, 2.0]).values.tolist() == [1.0, 2.0]  # as DASF 0.6
    assert validate_dataset(None, encode_xarray(dataset())).identical(dataset())
    with pytest.raises(ValueError, match="not netCDF in base64"):
        validate_dataset(None, "%%%")
    with pytest.raises(ValueError, match="not a valid Dataset dictionary"):
        validate_dataset(None, {"data_vars": 3})
    with pytest.raises(ValueError, match=r"expected an xarray\.Dataset.*got int"):
        validate_dataset(None, 3)


def test_a_dasf_module_with_xarray_answers_a_dasf_client_in_netcdf() -> None:
    dispatcher = Dispatcher.from_module(DASF_XARRAY)
    request = json.dumps({"func_name": "anomaly", "field": dasf_wire(field())})
    outcome = dispatcher.handle(request, JSON)
    assert outcome.ok, outcome
    expected = field() - field().mean("t")
    expected.attrs = dict(field().attrs)
    reply = json.loads(outcome.payload)  # the text a DASF 0.6 client reads, netCDF in base64
    assert decode(reply, "DataArray").identical(expected)
    outcome = dispatcher.handle(json.dumps({"func_name": "total", "field": "@@"}), JSON)
    assert outcome.error is not None
    assert outcome.error.type == "ValidationError"
    assert "field: not netCDF in base64" in outcome.error.message
    outcome = dispatcher.handle(json.dumps({"func_name": "combine", "ds": 3}), JSON)
    assert outcome.error is not None
    assert "expected an xarray.Dataset" in outcome.error.message
    schema = module_schema(dispatcher.models)["$defs"]["FuncTotal"]["properties"]["field"]
    assert schema["x-xarray"] == "DataArray"  # DASF's codec: the parameter keeps its type


def test_a_demessaging_client_sends_xarray_objects_to_a_dasf_xarray_module() -> None:
    with (
        serve(DASF_XARRAY, broker_url="memory://dasf-xarray", topic="dasf-xarray"),
        Client("dasf-xarray", broker_url="memory://dasf-xarray") as client,
    ):
        assert client.call({"func_name": "total", "field": field()}) == 66.0
        assert client.call({"func_name": "total", "field": dasf_wire(field())}) == 66.0
        scaled = client.call({"func_name": "combine", "ds": dataset(), "factor": 3.0})
    assert scaled.identical(dataset() * 3.0)  # msgpack: the object itself


def test_a_generated_client_of_a_dasf_xarray_module_keeps_the_xarray_types(
    tmp_path: Path,
) -> None:
    from tests.helpers import generated_client

    broker_url = "memory://dasf-xarray-client"
    with generated_client(DASF_XARRAY, tmp_path, broker_url=broker_url) as client:
        source = Path(client.__file__).read_text()
        assert "    field: xarray.DataArray,\n" in source  # not typing.Any: DASF's codec is known
        assert "def total(field: xarray.DataArray) -> float:" in source
        with serve(DASF_XARRAY, broker_url=broker_url, topic="dasf_xarray"):
            assert client.anomaly(field())["t"].dtype.kind == "M"
            assert client.combine(dataset(), factor=3.0).identical(dataset() * 3.0)


def test_a_module_without_xarray_imports_neither_xarray_nor_scipy() -> None:
    import subprocess

    code = (
        "import sys\n"
        "from demessaging.backend.dispatcher import Dispatcher\n"
        f"Dispatcher.from_module({str(DATA / 'kitchen_sink.py')!r})\n"
        "print(sorted(m for m in ('xarray', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_without_scipy_netcdf_is_refused_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    text = encode(field())
    monkeypatch.setitem(sys.modules, "scipy", None)  # import scipy: ImportError
    adapter = TypeAdapter(prepare_annotation(xr.DataArray))
    with pytest.raises(ValidationError, match=r"needs scipy: pip install scipy \(or demessaging"):
        adapter.validate_python(text)
    with pytest.raises(NetCDFError, match="needs scipy"):
        encode(field())
