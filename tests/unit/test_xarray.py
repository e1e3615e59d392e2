"""xarray DataArray and Dataset: in the codecs, as served parameters, in schemas and clients."""

from __future__ import annotations

import json as stdjson
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from demessaging.backend import serve
from demessaging.backend.dispatcher import Dispatcher
from demessaging.client import Client
from demessaging.core import build_models, inspect_module
from demessaging.core.arrays import prepare_annotation
from demessaging.core.schema import module_schema
from demessaging.serialization import json, msgpack
from tests.helpers import generated_client

xr = pytest.importorskip("xarray")
pd = pytest.importorskip("pandas")

MODULE = Path(__file__).resolve().parents[1] / "data" / "xarray_module.py"


def field() -> Any:
    return xr.DataArray(
        np.arange(12.0, dtype="float32").reshape(3, 4),
        dims=("t", "x"),
        coords={
            "t": pd.date_range("2024-01-01", periods=3),
            "x": [10, 20, 30, 40],
            "lat": ("x", np.array([1.5, 2.5, 3.5, 4.5])),
        },
        attrs={"units": "K", "valid_range": np.array([0.0, 400.0])},
        name="temperature",
    )


def dataset() -> Any:
    return xr.Dataset(
        {"temperature": field(), "pressure": ("t", np.array([1000, 990, 980], dtype="int16"))},
        attrs={"source": "test"},
    )


@pytest.mark.parametrize("make", [field, dataset], ids=["DataArray", "Dataset"])
def test_xarray_objects_round_trip_identically_in_msgpack(make: Any) -> None:
    value = make()
    back = msgpack.decode(msgpack.encode({"value": value, "list": [value]}))
    assert back["value"].identical(value)
    assert back["list"][0].identical(value)
    assert back["value"]["t"].dtype.kind == "M"  # datetimes stay datetimes


def test_xarray_variables_travel_as_buffers() -> None:
    value = xr.DataArray(np.zeros(1 << 16), dims=("x",))
    assert len(msgpack.encode(value)) < value.nbytes + 512


def test_a_served_function_takes_and_returns_a_data_array() -> None:
    with (
        serve(MODULE, broker_url="memory://xarray"),
        Client("xarray_module", broker_url="memory://xarray") as c,
    ):
        result = c.call({"func_name": "anomaly", "field": field()})
        scaled = c.call({"func_name": "combine", "ds": dataset(), "factor": 3.0})
    expected = field() - field().mean("t")
    expected.attrs = dict(field().attrs)
    assert result.identical(expected)
    assert scaled.identical(dataset() * 3.0)


def test_json_carries_the_values_and_a_typed_adapter_rebuilds_the_object() -> None:
    dispatcher = Dispatcher.from_module(MODULE)
    request = json.encode({"func_name": "anomaly", "field": field()})
    outcome = dispatcher.handle(request, "application/json")
    assert outcome.error is None
    adapter = TypeAdapter(prepare_annotation(xr.DataArray))
    result = json.decode(outcome.payload, adapter)
    assert isinstance(result, xr.DataArray)
    assert result.attrs["units"] == "K"
    assert np.allclose(result.values, (field() - field().mean("t")).values)


def test_invalid_xarray_input_is_a_validation_error() -> None:
    adapter = TypeAdapter(prepare_annotation(xr.DataArray))
    with pytest.raises(ValidationError, match="not a valid DataArray dictionary"):
        adapter.validate_python({"data": [1, 2], "dims": ["a", "b", "c"]})
    with pytest.raises(ValidationError, match=r"expected an xarray\.DataArray"):
        adapter.validate_python(3)


def test_xarray_kind_names_the_two_classes_only() -> None:
    from demessaging.core.xarrays import xarray_kind

    assert xarray_kind(xr.DataArray) == "DataArray"
    assert xarray_kind(type(xr.Dataset())) == "Dataset"
    assert xarray_kind(xr.Variable) is None
    impostor = type("DataArray", (), {"__module__": "xarray_extras.core"})
    assert xarray_kind(impostor) is None
    assert xarray_kind(dict) is None
    # the codecs ask about a value's class, never about a class as a value
    with pytest.raises(TypeError, match="cannot encode a type"):
        json.encode(xr.DataArray)


def test_the_schema_describes_xarray_parameters() -> None:
    schema = module_schema(build_models(inspect_module(MODULE)))
    text = stdjson.dumps(schema)
    assert '"x-xarray": "DataArray"' in text
    assert '"x-xarray": "Dataset"' in text


def test_a_generated_client_keeps_the_xarray_annotations(tmp_path: Path) -> None:
    with generated_client(
        MODULE, tmp_path / "client", broker_url="memory://xarray-client"
    ) as client:
        assert "xarray" in (tmp_path / "client" / "pyproject.toml").read_text()
        assert client.anomaly.__annotations__["field"] in ("xarray.DataArray", xr.DataArray)
        with serve(MODULE, broker_url="memory://xarray-client"):
            result = client.anomaly(field())
        assert isinstance(result, xr.DataArray)
        assert result["t"].dtype.kind == "M"
