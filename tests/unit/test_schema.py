"""JSON Schema of a module: ``module_schema`` and DASF's ``api_info`` layout, on the example."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from demessaging.backend.dispatcher import Dispatcher
from demessaging.core import ModuleModels, build_models, inspect_module
from demessaging.core.schema import api_info, module_schema, return_schema

CLIMATE = Path(__file__).resolve().parents[2] / "examples" / "climate.py"
FUNCTIONS = ["anomalies", "regional_mean", "summarize", "total"]
METHODS = ["mean", "between", "resample", "days_between"]

REGION = {"south": -10, "north": 10, "west": 0, "east": 20}
VALID = [
    {"func_name": "total", "values": [1.0, 2.0]},
    {"func_name": "total", "values": [[1, 2], [3, 4]], "axis": 0},
    {"func_name": "total", "values": [1.0], "axis": None},
    {"func_name": "anomalies", "series": [1, 2.5]},
    {"func_name": "anomalies", "series": [3, 1, 2], "baseline": "median"},
    {"func_name": "summarize", "values": [1.0, 2.0], "how": "max"},
    {
        "func_name": "regional_mean",
        "field": [[1.0, 2.0], [3.0, 4.0]],
        "latitudes": [0.0, 5.0],
        "longitudes": [10.0, 15.0],
        "region": REGION,
    },
    {
        "class_name": "TimeSeries",
        "values": [1.0, 2.0],
        "start": "2024-01-01",
        "function": {"func_name": "mean"},
    },
    {
        "class_name": "TimeSeries",
        "values": [1.0, 2.0, 3.0, 4.0],
        "start": "2024-01-01",
        "step_days": 2,
        "function": {"func_name": "resample", "factor": 2},
    },
    {
        "class_name": "TimeSeries",
        "values": [1.0],
        "start": "2024-01-01",
        "function": {"func_name": "between", "first": "2024-01-01", "last": "2024-01-02"},
    },
    {
        "class_name": "TimeSeries",
        "function": {"func_name": "days_between", "first": "2024-01-01", "last": "2024-03-01"},
    },
]
INVALID = [
    {"func_name": "total"},
    {"func_name": "total", "values": [1.0], "extra": True},
    {"func_name": "total", "values": [1.0], "axis": "rows"},
    {"func_name": "missing"},
    {"func_name": "__init__"},
    {"func_name": "os.system", "command": "true"},
    {"values": [1.0]},
    {"func_name": "anomalies", "series": [1], "baseline": "mode"},
    {"func_name": "anomalies", "series": "1, 2"},
    {"func_name": "summarize", "values": [1.0], "how": "min"},
    {
        "func_name": "regional_mean",
        "field": [[1.0]],
        "latitudes": [0.0],
        "longitudes": [0.0],
        "region": {**REGION, "south": -100},
    },
    {
        "func_name": "regional_mean",
        "field": [1.0, 2.0],
        "latitudes": [0.0],
        "longitudes": [0.0],
        "region": REGION,
    },
    {"class_name": "TimeSeries", "function": {"func_name": "mean"}},
    {"class_name": "TimeSeries", "values": [1.0], "start": "2024-01-01"},
    {
        "class_name": "TimeSeries",
        "values": [1.0],
        "start": "2024-01-01",
        "function": {"func_name": "median"},
    },
    {
        "class_name": "TimeSeries",
        "values": [1.0],
        "start": "2024-01-01",
        "function": {"func_name": "resample"},
    },
    {
        "class_name": "TimeSeries",
        "values": [1.0],
        "start": "2024-01-01",
        "function": {"func_name": "days_between", "first": "2024-01-01", "last": "2024-01-02"},
    },
    {"class_name": "Series", "function": {"func_name": "mean"}},
    [],
    "total",
    None,
]


@pytest.fixture(scope="module")
def models() -> ModuleModels:
    return build_models(inspect_module(CLIMATE))


@pytest.fixture(scope="module")
def info(models) -> dict[str, Any]:
    return api_info(models)


@pytest.fixture(scope="module")
def schema(models) -> dict[str, Any]:
    return module_schema(models)


@pytest.fixture(scope="module")
def validator(schema) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def functions(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in info["functions"]}


def methods(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (time_series,) = info["classes"]
    return {m["name"]: m for m in time_series["methods"]}


def accepted_by_models(models: ModuleModels, request: Any) -> bool:
    try:
        models.validate_python(request)
    except ValueError:  # pydantic's ValidationError
        return False
    return True


# --------------------------------------------------------------------------------------
# api_info layout
# --------------------------------------------------------------------------------------


def test_api_info_layout(info):
    assert set(info) == {"functions", "classes", "rpc_schema"}
    assert [f["name"] for f in info["functions"]] == FUNCTIONS
    for function in info["functions"]:
        assert set(function) == {"name", "rpc_schema", "return_schema"}
    assert [c["name"] for c in info["classes"]] == ["TimeSeries"]
    (time_series,) = info["classes"]
    assert set(time_series) == {"name", "rpc_schema", "methods"}
    assert [m["name"] for m in time_series["methods"]] == METHODS
    for method in time_series["methods"]:
        assert set(method) == {"name", "rpc_schema", "return_schema"}


def test_api_info_is_plain_json(info):
    assert json.loads(json.dumps(info)) == info


def test_model_titles(info):
    for name in FUNCTIONS:
        camel = "".join(part.capitalize() for part in name.split("_"))
        assert functions(info)[name]["rpc_schema"]["title"] == f"Func{camel}"
        returns = functions(info)[name]["return_schema"]["title"]
        assert returns == ("Statistics" if name == "summarize" else f"Func{camel}Returns")
    assert functions(info)["total"]["rpc_schema"]["title"] == "FuncTotal"
    assert functions(info)["total"]["return_schema"]["title"] == "FuncTotalReturns"
    assert info["classes"][0]["rpc_schema"]["title"] == "ClassTimeSeries"
    assert methods(info)["mean"]["rpc_schema"]["title"] == "MethClassTimeSeriesMean"
    assert methods(info)["days_between"]["rpc_schema"]["title"] == (
        "MethClassTimeSeriesDaysBetween"
    )


def test_func_name_and_class_name_are_constants(info):
    for name, function in functions(info).items():
        prop = function["rpc_schema"]["properties"]["func_name"]
        assert prop["const"] == name
        assert prop["type"] == "string"
        assert function["rpc_schema"]["required"][0] == "func_name"
    class_schema = info["classes"][0]["rpc_schema"]
    assert class_schema["properties"]["class_name"]["const"] == "TimeSeries"
    assert class_schema["required"][0] == "class_name"
    for name, method in methods(info).items():
        assert method["rpc_schema"]["properties"]["func_name"]["const"] == name


def test_request_models_forbid_additional_properties(info):
    schemas = [f["rpc_schema"] for f in info["functions"]]
    schemas += [m["rpc_schema"] for m in info["classes"][0]["methods"]]
    schemas.append(info["classes"][0]["rpc_schema"])
    assert all(s["additionalProperties"] is False for s in schemas)


def test_required_parameters_and_defaults(info):
    total = functions(info)["total"]["rpc_schema"]
    assert total["required"] == ["func_name", "values"]
    assert total["properties"]["axis"]["default"] is None
    anomalies = functions(info)["anomalies"]["rpc_schema"]
    assert anomalies["properties"]["baseline"]["enum"] == ["mean", "median"]
    assert anomalies["properties"]["baseline"]["default"] == "mean"
    summarize = functions(info)["summarize"]["rpc_schema"]
    assert summarize["properties"]["how"]["default"] == "mean"
    assert summarize["$defs"]["Aggregation"]["enum"] == ["mean", "median", "max"]
    class_schema = info["classes"][0]["rpc_schema"]
    assert class_schema["required"] == ["class_name", "values", "start", "function"]
    assert class_schema["properties"]["step_days"]["default"] == 1
    assert class_schema["properties"]["start"]["format"] == "date"


def test_array_parameters_carry_their_dtype(info):
    total = functions(info)["total"]["rpc_schema"]["properties"]
    assert total["values"]["type"] == "array"
    assert total["values"]["x-dtype"] == "float64"
    regional = functions(info)["regional_mean"]["rpc_schema"]["properties"]
    assert regional["field"]["x-dtype"] == "float64"
    assert regional["field"]["x-shape"] == [None, None]
    assert regional["field"]["items"]["items"]["type"] == "number"
    assert regional["latitudes"]["x-dtype"] == "float64"
    assert info["classes"][0]["rpc_schema"]["properties"]["values"]["x-dtype"] == "float64"
    assert methods(info)["between"]["return_schema"]["x-dtype"] == "float64"
    assert "x-dtype" not in functions(info)["anomalies"]["rpc_schema"]["properties"]["series"]


def test_descriptions_from_all_docstring_styles(info):
    anomalies = functions(info)["anomalies"]  # google
    assert anomalies["rpc_schema"]["description"] == (
        "Deviations of a series from its mean or median."
    )
    props = anomalies["rpc_schema"]["properties"]
    assert props["series"]["description"] == "The values, in time order."
    assert anomalies["return_schema"]["description"] == "The series minus its baseline."
    summarize = functions(info)["summarize"]  # reST
    assert summarize["rpc_schema"]["properties"]["how"]["description"] == (
        "The statistic to compute."
    )
    total = functions(info)["total"]  # numpy
    assert total["rpc_schema"]["properties"]["axis"]["description"] == (
        "The axis to sum over; None sums everything."
    )
    assert total["return_schema"]["description"] == "The sum, or the sums along ``axis``."
    class_schema = info["classes"][0]["rpc_schema"]
    assert class_schema["description"] == "A daily time series held by the backend's owner."
    assert class_schema["properties"]["values"]["description"] == "One value per time step."


def test_return_schema_of_a_dataclass(models):
    schema = return_schema(models.functions["summarize"])
    assert schema["title"] == "Statistics"
    assert schema["required"] == ["value", "count", "aggregation"]
    # the docstring's Returns section does not replace the dataclass's own description
    assert schema["description"] == "A summary of a set of values."


# --------------------------------------------------------------------------------------
# module_schema
# --------------------------------------------------------------------------------------


def test_module_schema_layout(schema, info):
    assert schema["title"] == "climate"
    assert schema["description"].startswith("Climate statistics computed next to the data.")
    refs = [variant["$ref"] for variant in schema["oneOf"]]
    assert refs == [
        "#/$defs/FuncAnomalies",
        "#/$defs/FuncRegionalMean",
        "#/$defs/FuncSummarize",
        "#/$defs/FuncTotal",
        "#/$defs/ClassTimeSeries",
        "#/$defs/ClassTimeSeriesStatic",
    ]
    static = schema["$defs"]["ClassTimeSeriesStatic"]
    assert set(static["properties"]) == {"class_name", "function"}
    assert static["properties"]["function"]["$ref"] == "#/$defs/MethClassTimeSeriesDaysBetween"
    assert info["rpc_schema"] == schema


def test_module_schema_without_docstring_has_no_description(write_module):
    path = write_module("def f(a: int) -> int:\n    return a\n")
    schema = module_schema(build_models(inspect_module(path)))
    assert schema["title"] == path.stem
    assert "description" not in schema


def test_class_with_only_static_methods_uses_the_static_model(write_module):
    path = write_module(
        "class Units:\n    @staticmethod\n    def kelvin(celsius: float) -> float:\n"
        "        return celsius + 273.15\n"
    )
    info = api_info(build_models(inspect_module(path)))
    (units,) = info["classes"]
    assert units["rpc_schema"]["title"] == "ClassUnitsStatic"
    assert set(units["rpc_schema"]["properties"]) == {"class_name", "function"}
    assert [m["name"] for m in units["methods"]] == ["kelvin"]


# --------------------------------------------------------------------------------------
# The schema against real requests
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("request_", VALID)
def test_schema_accepts_valid_requests(validator, models, request_):
    validator.validate(request_)
    assert accepted_by_models(models, request_)


@pytest.mark.parametrize("request_", INVALID)
def test_schema_refuses_invalid_requests(validator, models, request_):
    assert not validator.is_valid(request_)
    assert not accepted_by_models(models, request_)


@pytest.mark.parametrize("request_", [r for r in VALID if "func_name" in r])
def test_function_schema_accepts_its_requests(info, request_):
    schema = functions(info)[request_["func_name"]]["rpc_schema"]
    jsonschema.validate(request_, schema, cls=jsonschema.Draft202012Validator)
    other = next(name for name in FUNCTIONS if name != request_["func_name"])
    assert not jsonschema.Draft202012Validator(functions(info)[other]["rpc_schema"]).is_valid(
        request_
    )


@pytest.mark.parametrize("request_", [r for r in VALID if "class_name" in r])
def test_method_schema_accepts_its_part_of_the_request(info, request_):
    schema = methods(info)[request_["function"]["func_name"]]["rpc_schema"]
    jsonschema.validate(request_["function"], schema, cls=jsonschema.Draft202012Validator)
    broken = copy.deepcopy(request_["function"])
    broken["unexpected"] = 1
    assert not jsonschema.Draft202012Validator(schema).is_valid(broken)


@pytest.mark.parametrize("request_", VALID)
def test_replies_match_the_return_schema(info, models, request_):
    outcome = Dispatcher(models).handle(json.dumps(request_).encode())
    assert outcome.ok, outcome.error
    value = json.loads(outcome.payload)
    if "func_name" in request_:
        schema = functions(info)[request_["func_name"]]["return_schema"]
    else:
        schema = methods(info)[request_["function"]["func_name"]]["return_schema"]
    jsonschema.validate(value, schema, cls=jsonschema.Draft202012Validator)
