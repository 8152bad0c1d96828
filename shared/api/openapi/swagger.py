"""The Swagger 2.0 document of the Power Automate custom connector, committed as
``connector/apiDefinition.swagger.json``: JSON Schema 2020-12 brought down to what Swagger 2.0 and the
connector accept.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from shared.api.openapi.schema import (
    API_DESCRIPTION,
    API_TITLE,
    API_VERSION,
    IMPORTANT_PARAMETERS,
    INTERNAL_PARAMETERS,
    PROBLEM_JSON,
    SWAGGER_REF,
    _body_model,
    _declares_5xx,
    _non_null,
    _Parameter,
    _parameters,
    component_schemas,
    display_name,
    sentence,
)
from shared.api.spec import HEADERS, OPERATIONS, Operation, Response
from shared.api.spec import model as named_model

CONNECTOR_FILE = Path(__file__).resolve().parents[3] / "connector" / "apiDefinition.swagger.json"
#: Placeholder host of the committed connector; apiProperties.json's dynamichosturl policy replaces it
#: with the connection's function app host.
CONNECTOR_HOST = "your-function-app.azurewebsites.net"
#: Power Automate refuses connector definitions of 1 MB or more.
CONNECTOR_MAX_BYTES = 1_000_000


#: JSON Schema keywords Swagger 2.0's Schema Object knows (plus x- extensions).
_SWAGGER_SCHEMA_KEYS = frozenset(
    {
        "$ref",
        "format",
        "title",
        "description",
        "default",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxProperties",
        "minProperties",
        "required",
        "enum",
        "type",
        "items",
        "allOf",
        "properties",
        "additionalProperties",
        "discriminator",
        "readOnly",
        "xml",
        "externalDocs",
        "example",
    }
)
#: Keywords a Swagger 2.0 (non-body) parameter may carry besides name/in/description/required.
_SWAGGER_PARAM_KEYS = frozenset(
    {
        "type",
        "format",
        "items",
        "collectionFormat",
        "default",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "enum",
        "multipleOf",
    }
)


def to_swagger_schema(schema: Any, *, summaries: bool = False, scope: dict[str, Any] | None = None) -> Any:
    """JSON Schema 2020-12 (pydantic) -> the Swagger 2.0 subset.

    ``anyOf`` with null -> the other schema + ``x-nullable``; ``const`` -> one-value ``enum``;
    ``examples`` -> ``example``; ``$defs`` refs -> ``#/definitions``; numeric exclusive bounds ->
    boolean form; ``oneOf``/``anyOf`` of objects -> one object with the union of their properties;
    unknown keywords are dropped. ``summaries`` adds ``x-ms-summary`` to object properties; ``scope``
    holds the definitions that union members may refer to.
    """
    scope = scope or {}
    if isinstance(schema, list):
        return [to_swagger_schema(item, summaries=summaries, scope=scope) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema, nullable = _non_null(schema)
    if "$ref" in schema:
        ref = (
            str(schema["$ref"]).replace("#/components/schemas/", "#/definitions/").replace("#/$defs/", "#/definitions/")
        )
        return {"$ref": ref}  # Swagger 2.0 ignores siblings of $ref
    out: dict[str, Any] = {}
    if nullable:
        out["x-nullable"] = True
    for union_key in ("oneOf", "anyOf"):
        if union_key in schema:
            merged = _merge_union(schema[union_key], scope)
            schema = {**{k: v for k, v in schema.items() if k != union_key}, **merged}
    if "const" in schema:
        schema = {**{k: v for k, v in schema.items() if k != "const"}, "enum": [schema["const"]]}
    if "examples" in schema:
        examples = schema["examples"]
        schema = {k: v for k, v in schema.items() if k != "examples"}
        if isinstance(examples, list) and examples and "example" not in schema:
            schema["example"] = examples[0]
    for key, value in schema.items():
        if key.startswith("x-"):
            out[key] = value
        elif key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "type" and isinstance(value, list):
            out["type"] = value[0] if value else "string"
        elif key == "default" and value is None:
            continue
        elif key == "properties":
            props: dict[str, Any] = {}
            for name, sub in value.items():
                converted = to_swagger_schema(sub, summaries=summaries, scope=scope)
                if summaries and "$ref" not in converted:
                    converted = {"x-ms-summary": display_name(name), **converted}
                props[name] = converted
            out["properties"] = props
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_swagger_schema(value, summaries=summaries, scope=scope)
        elif key == "allOf":
            out[key] = [to_swagger_schema(item, summaries=summaries, scope=scope) for item in value]
        elif key in _SWAGGER_SCHEMA_KEYS:
            out[key] = copy.deepcopy(value)
    return out


def _merge_union(options: Iterable[Any], scope: dict[str, Any]) -> dict[str, Any]:
    """Swagger 2.0 has no oneOf/anyOf: one object holding every property any option has (none required)."""
    merged: dict[str, Any] = {}
    options = list(options)
    resolved = [_resolve_local(option, scope) for option in options]
    if all(isinstance(o, dict) and o.get("type") == "object" for o in resolved):
        for option in resolved:
            for name, prop in option.get("properties", {}).items():
                merged.setdefault(name, prop)
        return {"type": "object", "properties": merged}
    first = next((o for o in options if isinstance(o, dict) and o != {"type": "null"}), {})
    return cast(dict[str, Any], first)


def _resolve_local(option: Any, scope: dict[str, Any]) -> Any:
    if isinstance(option, dict) and "$ref" in option:
        name = str(option["$ref"]).rsplit("/", 1)[-1]
        return scope.get(name, option)
    return option


def _swagger_parameter(p: _Parameter) -> dict[str, Any]:
    schema = to_swagger_schema(p.schema)
    param: dict[str, Any] = {
        "name": p.name,
        "in": p.location,
        "required": p.required,
        "description": p.description,
        "x-ms-summary": display_name(p.name),
    }
    param.update({k: v for k, v in schema.items() if k in _SWAGGER_PARAM_KEYS})
    if p.name in INTERNAL_PARAMETERS:
        param["x-ms-visibility"] = "internal"
    elif p.name in IMPORTANT_PARAMETERS or p.location == "path":
        param["x-ms-visibility"] = "important"
    else:
        param["x-ms-visibility"] = "advanced"
    return param


def _swagger_response(operation: Operation, response: Response) -> dict[str, Any]:
    out: dict[str, Any] = {"description": response.description}
    if response.body == "problem":
        out["schema"] = {"$ref": SWAGGER_REF.format(model="Problem")}
    elif response.body != "empty":
        model = _body_model(operation, response)
        out["schema"] = {"$ref": SWAGGER_REF.format(model=model.__name__)} if model else {"type": "object"}
    if response.headers:
        out["headers"] = {
            name: {"type": "integer" if name == "Retry-After" else "string", "description": HEADERS[name]}
            for name in response.headers
        }
    return out


def _swagger_operation(operation: Operation) -> dict[str, Any]:
    webhook = operation.webhook
    op: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": webhook.summary if webhook else operation.summary,
        "description": webhook.description if webhook else operation.description,
        "tags": [operation.tag],
        "produces": ["application/json", PROBLEM_JSON, *operation.alternates],
        "parameters": [_swagger_parameter(p) for p in _parameters(operation)],
    }
    body = webhook.body if webhook else operation.body
    if body is not None:
        op["consumes"] = ["application/json"]
        op["parameters"].append(
            {
                "name": "body",
                "in": "body",
                "required": True,
                "description": sentence(named_model(body).__doc__ or "The request body"),
                "x-ms-summary": "Body",
                "x-ms-visibility": "important",
                "schema": {"$ref": SWAGGER_REF.format(model=body)},
            }
        )
    problem = {"$ref": SWAGGER_REF.format(model="Problem")}
    responses = {str(r.status): _swagger_response(operation, r) for r in (operation.ok, *operation.responses)}
    if webhook is not None:
        # The trigger's outputs are what each push carries: the designer reads them from the created response.
        created = responses[str(operation.ok.status)]
        created["schema"] = {"$ref": SWAGGER_REF.format(model=webhook.payload)}
        op["x-ms-trigger"] = webhook.kind
    if op["parameters"]:
        responses["400"] = {"description": "Invalid request: errors names each parameter at fault.", "schema": problem}
    if not _declares_5xx(operation):
        responses["503"] = {
            "description": "Log source or summary store unavailable or throttled.",
            "schema": problem,
            "headers": {"Retry-After": {"type": "integer", "description": HEADERS["Retry-After"]}},
        }
        responses["default"] = {"description": "Problem details.", "schema": problem}
    op["responses"] = dict(sorted(responses.items()))
    if operation.pageable:
        op["x-ms-pageable"] = {"nextLinkName": "nextLink"}
    if operation.visibility is not None:
        op["x-ms-visibility"] = operation.visibility
    if operation.auth == "anonymous":
        op["security"] = []
    return op


def swagger2_document(host: str = "localhost:7071", base_path: str = "/api", scheme: str = "https") -> dict[str, Any]:
    """The Power Automate custom connector definition (Swagger 2.0)."""
    definitions_2020 = component_schemas(SWAGGER_REF)
    definitions = {
        name: to_swagger_schema(schema, summaries=True, scope=definitions_2020)
        for name, schema in definitions_2020.items()
    }
    # Row models only reach the connector merged into StatsResult.value; keep definitions that are used.
    paths: dict[str, Any] = {}
    for operation in OPERATIONS:
        if operation.connector:
            item = paths.setdefault("/" + operation.route, {})
            item[operation.method.lower()] = _swagger_operation(operation)
            if operation.webhook is not None:
                payload = {"$ref": SWAGGER_REF.format(model=operation.webhook.payload)}
                item["x-ms-notification-content"] = {"description": "The body of each push.", "schema": payload}
    document: dict[str, Any] = {
        "swagger": "2.0",
        "info": {"title": API_TITLE, "version": API_VERSION, "description": API_DESCRIPTION},
        "host": host,
        "basePath": base_path,
        "schemes": [scheme],
        "produces": ["application/json"],
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {
            "api_key": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
        },
        "security": [{"api_key": []}],
    }
    used = _used_definitions(document)
    document["definitions"] = {name: schema for name, schema in definitions.items() if name in used}
    return document


def _used_definitions(document: dict[str, Any]) -> set[str]:
    definitions: dict[str, Any] = document["definitions"]
    used: set[str] = set()
    pending = [document["paths"]]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/definitions/"):
                name = ref.rsplit("/", 1)[-1]
                if name not in used:
                    used.add(name)
                    pending.append(definitions.get(name))
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return used
