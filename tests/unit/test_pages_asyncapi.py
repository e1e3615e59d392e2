"""The AsyncAPI document validates against the official AsyncAPI 3.0.0 JSON Schema.

The schema is tests/data/asyncapi/3.0.0.json from the npm package @asyncapi/specs 6.11.1
(Apache-2.0; its LICENSE and NOTICE lie next to it). Its definitions carry their own ``$id``:
they are registered locally, and any other reference fails instead of being downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT7

from demessaging.core import build_models, inspect_module
from demessaging.message import Prop
from demessaging.pages.asyncapi import asyncapi_document, dumps, server_of
from demessaging.pages.local import module_docs
from demessaging.protocol.schemas import RequestProperties, ResponseProperties

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "data" / "asyncapi" / "3.0.0.json"
MODULES = [
    ROOT / "examples" / "climate.py",
    ROOT / "tests" / "data" / "kitchen_sink.py",
    ROOT / "tests" / "data" / "workers.py",
    ROOT / "tests" / "data" / "xarray_module.py",
]


def offline(uri: str) -> Any:
    raise NoSuchResource(ref=uri)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    assert spec["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    resources = [(uri, DRAFT7.create_resource(d)) for uri, d in spec["definitions"].items()]
    registry: Registry[Any] = Registry(retrieve=offline).with_resources(resources)  # type: ignore[call-arg]
    return jsonschema.Draft7Validator(spec, registry=registry)


def document(module: Path) -> dict[str, Any]:
    _, info, items = module_docs(module)
    made = asyncapi_document(info, topic="climate", broker_url="pulsar://broker:6650", items=items)
    return json.loads(dumps(made))  # what asyncapi.json holds


def refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return own + [r for v in value.values() for r in refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs(v)]
    return []


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.stem)
def test_the_document_validates(validator: jsonschema.Draft7Validator, module: Path) -> None:
    doc = document(module)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, errors[:5]
    for ref in refs(doc):
        resolve(doc, ref)  # KeyError if it leads nowhere


def test_a_broken_document_fails(validator: jsonschema.Draft7Validator) -> None:
    doc = document(MODULES[0])
    doc["channels"]["requests"]["address"] = 5
    del doc["info"]["version"]
    assert len(list(validator.iter_errors(doc))) >= 2


def test_channels_messages_and_their_properties() -> None:
    doc = document(MODULES[1])  # kitchen_sink: a stream, declared errors
    channels = doc["channels"]
    assert channels["requests"]["address"] == "climate"
    assert channels["control"]["address"] == "climate_control"
    assert channels["replies"]["address"] == "{response_topic}"
    assert set(channels["replies"]["messages"]) == {"response", "progress", "item"}
    messages = doc["components"]["messages"]
    request = RequestProperties.model_json_schema(by_alias=True)["properties"]
    assert set(messages["request"]["headers"]["properties"]) == set(request)
    response = ResponseProperties.model_json_schema(by_alias=True)["properties"]
    assert set(messages["response"]["headers"]["properties"]) == set(response)
    assert {Prop.SEQUENCE, Prop.REQUEST_CONTEXT} <= set(messages["item"]["headers"]["properties"])
    assert Prop.RECEIVED in messages["more"]["headers"]["properties"]
    item = messages["item"]["payload"]["anyOf"]
    assert item == [{"type": "integer"}]  # countdown yields int
    reply = doc["operations"]["receiveRequest"]["reply"]
    assert reply["address"]["location"] == "$message.header#/response_topic"
    assert doc["servers"]["broker"] == {"host": "broker:6650", "protocol": "pulsar"}


def test_payloads_are_the_module_schemas() -> None:
    doc = document(MODULES[0])
    models = build_models(inspect_module(MODULES[0]))
    payload = doc["components"]["messages"]["request"]["payload"]
    names = {resolve(doc, r["$ref"])["title"] for r in payload["oneOf"]}
    assert names == {f"Func{n.title().replace('_', '')}" for n in models.functions} | set(
        models.classes
    )
    schemas = doc["components"]["schemas"]
    assert schemas["Region"]["properties"]["south"]["minimum"] == -90
    assert schemas["FuncTotal"]["properties"]["values"]["x-dtype"] == "float64"
    assert doc["info"]["title"] == "climate"


def test_clashing_definitions_keep_both() -> None:
    def member(name: str, definition: dict[str, Any]) -> dict[str, Any]:
        returned = {"$defs": {"Thing": definition}, "items": {"$ref": "#/$defs/Thing"}}
        return {"name": name, "rpc_schema": {}, "return_schema": returned}

    info = {
        "functions": [member("a", {"type": "string"}), member("b", {"type": "integer"})],
        "classes": [],
        "rpc_schema": {"title": "m"},
    }
    doc = asyncapi_document(info, topic="m", broker_url="ws://h:8080/ws")
    schemas = doc["components"]["schemas"]
    assert schemas["Thing"] == {"type": "string"}
    assert schemas["Thing2"] == {"type": "integer"}
    returns = doc["components"]["messages"]["response"]["payload"]["anyOf"]
    assert [r["items"] for r in returns[:2]] == [
        {"$ref": "#/components/schemas/Thing"},
        {"$ref": "#/components/schemas/Thing2"},
    ]
    assert doc["servers"]["broker"] == {
        "host": "h:8080",
        "protocol": "ws",
        "pathname": "/ws",
        "description": "Apache Pulsar's WebSocket API",
    }


def test_server_of_a_local_broker() -> None:
    assert server_of("embedded://")["host"] == "127.0.0.1"
    assert "embedded://" in server_of("embedded://")["description"]


def test_infinite_defaults_are_written_as_text() -> None:
    text = dumps({"default": float("inf"), "x": [float("nan")]})
    assert json.loads(text) == {"default": "inf", "x": ["nan"]}


def test_credentials_in_the_broker_url_stay_out_of_the_document() -> None:
    server = server_of("wss://user:secret@broker.example.org:8443/ws?token=t0k3n")
    assert server["host"] == "broker.example.org:8443"
    assert server["pathname"] == "/ws"
    assert "secret" not in json.dumps(server)
    assert "t0k3n" not in json.dumps(server)
