"""The OpenAPI 3.1 document and the Power Automate connector (Swagger 2.0) generated from the spec + models."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.validators import OpenAPIV2SpecValidator, OpenAPIV31SpecValidator

from shared.api import openapi
from shared.api.openapi import (
    CONNECTOR_FILE,
    CONNECTOR_HOST,
    CONNECTOR_MAX_BYTES,
    openapi_document,
    render,
    swagger2_document,
    to_swagger_schema,
)
from shared.api.spec import OPERATIONS
from shared.api.spec import model as named_model
from shared.models import STATS_ROW_MODELS
from shared.services import Services

from apphost import serve, settings

CONNECTOR_DIR = Path(__file__).resolve().parents[1] / "connector"


def _walk(node: Any, path: str = "$") -> Iterator[tuple[str, Any, Any]]:
    """(json path, key, value) of every dict entry in a document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", key, value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _walk(item, f"{path}[{index}]")


def _operations(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {
        op["operationId"]: (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if not method.startswith("x-")  # path-level extensions (x-ms-notification-content)
    }


# --------------------------------------------------------------------------- OpenAPI 3.1


def test_openapi_document_is_valid_3_1() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_every_operation_is_in_the_openapi_document() -> None:
    operations = _operations(openapi_document())
    assert set(operations) == {operation.operation_id for operation in OPERATIONS}
    for operation in OPERATIONS:
        path, method, op = operations[operation.operation_id]
        assert path == "/" + operation.route and method == operation.method.lower()
        assert op["summary"] == operation.summary and op["tags"] == [operation.tag]
        assert str(operation.ok.status) in op["responses"]
        if operation.auth == "anonymous":
            assert op["security"] == []
        else:
            assert "security" not in op or op["security"]
        if operation.params is not None:
            assert "application/problem+json" in op["responses"]["400"]["content"], operation.name
        if not any(response.status >= 500 for response in operation.responses):
            assert "application/problem+json" in op["responses"]["5XX"]["content"], operation.name
        if operation.response is not None:
            ref = op["responses"][str(operation.ok.status)]["content"]["application/json"]["schema"]["$ref"]
            assert ref == f"#/components/schemas/{operation.response}"


def test_parameters_come_from_the_params_models() -> None:
    """Path parameters are the route's {name} segments and, like query parameters, are described by the model."""
    operations = _operations(openapi_document())
    for operation in OPERATIONS:
        op = operations[operation.operation_id][2]
        params = {(p["name"], p["in"]): p for p in op.get("parameters", [])}
        if operation.params is None:
            assert not params and not operation.path_params
            continue
        model = named_model(operation.params)
        aliases = {field.alias or name: field for name, field in model.model_fields.items()}
        assert set(params) == {(alias, "path" if alias in operation.path_params else "query") for alias in aliases}
        for (name, where), param in params.items():
            assert param["required"] == (where == "path" or aliases[name].is_required()), name
            assert param["description"].endswith("."), name
            assert "anyOf" not in param["schema"], name  # a query value is never null
    trace = {p["name"]: p for p in operations["traceMessage"][2]["parameters"]}
    from shared.models import MESSAGE_ID_PATTERN

    assert trace["messageId"]["schema"]["pattern"] == MESSAGE_ID_PATTERN
    kinds = {p["name"]: p for p in operations["getStats"][2]["parameters"]}["kind"]["schema"]["enum"]
    assert kinds == list(STATS_ROW_MODELS)


def test_openapi_special_responses() -> None:
    operations = _operations(openapi_document())
    trace = operations["traceMessage"][2]["responses"]
    assert set(trace["202"]["headers"]) == {"Location", "Retry-After"}
    assert trace["202"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/TraceResult"}
    assert "Retry-After" in trace["404"]["headers"]
    assert "application/problem+json" in trace["404"]["content"]
    bounces = operations["listBounces"][2]["responses"]["200"]["content"]
    assert set(bounces) == {"application/json", "text/csv"}
    admin = operations["recomputeDailySummary"][2]
    assert "admin" in admin["description"].lower()


def test_openapi_components() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]
    problem = schemas["Problem"]
    assert {"type", "title", "status", "detail", "errors"} <= set(problem["properties"])
    assert schemas["ProblemError"]["required"] == ["parameter", "reason"]
    rows = schemas["StatsResult"]["properties"]["value"]["items"]["oneOf"]
    assert rows == [{"$ref": f"#/components/schemas/{m.__name__}"} for m in STATS_ROW_MODELS.values()]
    for _path, key, value in _walk(document):
        if key == "$ref":
            assert value.startswith("#/components/schemas/") and value.rsplit("/", 1)[-1] in schemas, value
        assert key != "$defs"
    schemes = document["components"]["securitySchemes"]
    assert schemes["functionKeyHeader"] == {
        **schemes["functionKeyHeader"],
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
    }
    assert schemes["functionKeyQuery"]["in"] == "query" and schemes["functionKeyQuery"]["name"] == "code"
    # Datetimes serialized as text still say they are date-times.
    assert schemas["StatusEvent"]["properties"]["time"] == {"type": "string", "format": "date-time"}


def test_stats_row_models_are_mutually_exclusive() -> None:
    """oneOf needs exactly one row model to match each row: every row model requires a field no other has."""
    required = {
        name: set(m.model_json_schema(mode="serialization").get("required", [])) for name, m in STATS_ROW_MODELS.items()
    }
    for name, model in STATS_ROW_MODELS.items():
        fields = {f.alias or n for n, f in model.model_fields.items()}
        for other, needs in required.items():
            if other != name:
                assert not needs <= fields, f"a {name} row would also match {other}"


def test_openapi_route_serves_the_document_with_its_server_url() -> None:
    with serve(Services(settings())) as host:
        server_url = host.base_url + "/api"
        with urllib.request.urlopen(server_url + "/openapi.json", timeout=30) as response:
            assert response.status == 200
            assert response.headers.get_content_type() == "application/json"
            served = json.loads(response.read())
    assert served["servers"] == [{"url": server_url}]
    assert served == openapi_document(server_url=server_url)


# --------------------------------------------------------------------------- Swagger 2.0 connector


def test_swagger2_document_is_valid() -> None:
    document = swagger2_document()
    assert document["swagger"] == "2.0"
    validate(document, cls=OpenAPIV2SpecValidator)


def test_connector_operations() -> None:
    document = swagger2_document()
    operations = _operations(document)
    assert set(operations) == {operation.operation_id for operation in OPERATIONS if operation.connector}
    assert "recomputeDailySummary" not in operations and "openapi" not in operations  # no admin key in flows
    for _name, (_path, _method, op) in operations.items():
        for param in op["parameters"]:
            assert param["x-ms-visibility"] in ("important", "advanced", "internal")
    search = operations["searchMessages"][2]
    assert search["x-ms-pageable"] == {"nextLinkName": "nextLink"}
    visibility = {p["name"]: p["x-ms-visibility"] for p in search["parameters"]}
    assert visibility["continuationToken"] == "internal"
    assert visibility["from"] == visibility["to"] == visibility["recipient"] == "important"
    assert visibility["top"] == "advanced"
    assert operations["traceMessage"][2]["parameters"][0]["x-ms-visibility"] == "important"
    assert document["securityDefinitions"] == {"api_key": {"type": "apiKey", "in": "header", "name": "x-functions-key"}}


def test_connector_has_only_swagger2_schema_keywords() -> None:
    document = swagger2_document()
    for path, key, value in _walk(document):
        assert key not in ("anyOf", "oneOf", "const", "$defs", "examples", "prefixItems", "jsonSchemaDialect"), path
        if key == "$ref":
            assert value.startswith("#/definitions/") and value.rsplit("/", 1)[-1] in document["definitions"], path
        if key == "type" and not path.endswith(".properties.type"):
            assert isinstance(value, str) and value != "null", path
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not path.endswith(f".properties.{key}"):
            assert isinstance(value, bool), path
    # Response properties carry a display name for the designer's dynamic content.
    trace = document["definitions"]["TraceRecipient"]["properties"]
    assert trace["finalDeliveryStatus"]["x-ms-summary"] == "Final Delivery Status"
    assert trace["smtpStatusCode"]["x-nullable"] is True


def test_to_swagger_schema_conversions() -> None:
    converted = to_swagger_schema(
        {
            "anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "null"}],
            "description": "d",
            "default": None,
        }
    )
    assert converted == {
        "x-nullable": True,
        "type": "integer",
        "minimum": 0,
        "exclusiveMinimum": True,
        "description": "d",
    }
    assert to_swagger_schema({"const": "x", "examples": ["x"]}) == {"enum": ["x"], "example": "x"}
    assert to_swagger_schema({"$ref": "#/$defs/A", "description": "ignored"}) == {"$ref": "#/definitions/A"}
    assert to_swagger_schema({"type": ["string", "null"]}) == {"x-nullable": True, "type": "string"}


def test_stats_rows_merge_into_one_connector_schema() -> None:
    items = swagger2_document()["definitions"]["StatsResult"]["properties"]["value"]["items"]
    assert items["type"] == "object"
    for model in STATS_ROW_MODELS.values():
        for name, field in model.model_fields.items():
            assert (field.alias or name) in items["properties"]


def test_committed_connector_is_up_to_date() -> None:
    expected = render(swagger2_document(host=CONNECTOR_HOST))
    assert CONNECTOR_FILE.is_file(), (
        "connector/apiDefinition.swagger.json is missing: run `python -m shared.api.openapi --write`"
    )
    committed = CONNECTOR_FILE.read_text(encoding="utf-8")
    assert committed == expected, (
        "connector/apiDefinition.swagger.json is out of date with the models/routes: run "
        "`python -m shared.api.openapi --write` and commit the result"
    )
    assert len(committed.encode("utf-8")) < CONNECTOR_MAX_BYTES


def test_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "apiDefinition.swagger.json"
    assert openapi.main(["--check", "--file", str(target)]) == 1
    assert "python -m shared.api.openapi --write" in capsys.readouterr().err
    assert openapi.main(["--write", "--file", str(target)]) == 0
    assert target.read_text(encoding="utf-8").endswith("}\n")
    assert openapi.main(["--check", "--file", str(target)]) == 0
    target.write_text(target.read_text(encoding="utf-8").replace("Trace a Message", "Trace"), encoding="utf-8")
    assert openapi.main(["--check", "--file", str(target)]) == 1


def test_api_properties() -> None:
    properties = json.loads((CONNECTOR_DIR / "apiProperties.json").read_text(encoding="utf-8"))["properties"]
    api_key = properties["connectionParameters"]["api_key"]
    assert api_key["type"] == "securestring"
    assert api_key["uiDefinition"]["displayName"] == "Function key"
    assert properties["iconBrandColor"].startswith("#")
    assert isinstance(properties["capabilities"], list)
    assert properties["publisher"] and properties["stackOwner"]
    for policy in properties.get("policyTemplateInstances", []):
        if policy["templateId"] == "dynamichosturl":
            template = policy["parameters"]["x-ms-apimTemplateParameter.urlTemplate"]
            for name in (part.split("')")[0] for part in template.split("@connectionParameters('")[1:]):
                assert name in properties["connectionParameters"], name
