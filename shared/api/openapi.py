"""OpenAPI 3.1 and Swagger 2.0 (Power Automate connector) documents, generated from the spec + models.

``OPERATIONS`` (shared.api.spec) is the one list of operations and the pydantic models in
shared.models are the one definition of every parameter and field; nothing here is written by
hand twice. ``openapi_document()`` is served at ``GET /api/openapi.json``; ``swagger2_document()``
is the custom connector definition committed as ``connector/apiDefinition.swagger.json``::

    python -m shared.api.openapi --write   # regenerate the committed connector definition
    python -m shared.api.openapi --check   # exit 1 when the committed file is out of date
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import CoreSchema

from shared.api.spec import HEADERS, OPERATIONS, Operation, Response, Webhook
from shared.push.callbacks import PUSH_HEADERS

API_TITLE = "ACS Email Insights"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    "What happened to my email? Message traces, delivery search, bounces and delivery statistics for "
    "Azure Communication Services Email, answered from its Log Analytics logs."
)
CONNECTOR_FILE = Path(__file__).resolve().parents[2] / "connector" / "apiDefinition.swagger.json"
#: Placeholder host of the committed connector; apiProperties.json's dynamichosturl policy replaces it
#: with the connection's function app host.
CONNECTOR_HOST = "your-function-app.azurewebsites.net"
#: Power Automate refuses connector definitions of 1 MB or more.
CONNECTOR_MAX_BYTES = 1_000_000

PROBLEM_JSON = "application/problem+json"
OAS_REF = "#/components/schemas/{model}"
SWAGGER_REF = "#/definitions/{model}"

#: Main parameters, shown up front in the Power Automate designer ("important").
IMPORTANT_PARAMETERS = frozenset({"messageId", "from", "to", "recipient", "kind", "date"})
#: Parameters a flow never sets itself (paging); "internal" hides them in the designer.
INTERNAL_PARAMETERS = frozenset({"continuationToken"})

_ACRONYMS = {"id": "ID", "smtp": "SMTP", "mb": "MB", "p50": "P50", "p95": "P95", "csv": "CSV", "url": "URL"}


def display_name(name: str) -> str:
    """``recipientMailServerHostName`` -> ``Recipient Mail Server Host Name`` (x-ms-summary, Title Case)."""
    words = re.findall(r"[a-z0-9]+|[A-Z][a-z0-9]*", name)
    if not words:
        return name
    return " ".join(_ACRONYMS.get(word.lower(), word[:1].upper() + word[1:].lower()) for word in words)


def sentence(text: str) -> str:
    """Connector guidance: descriptions are full sentences (capitalised, ending with a period)."""
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


# --------------------------------------------------------------------------- JSON Schema from pydantic


class _SchemaGenerator(GenerateJsonSchema):
    """Pydantic's generator, except that a datetime serialized as text says it is a date-time."""

    def generate_inner(self, schema: Any) -> JsonSchemaValue:
        core = cast(dict[str, Any], schema)
        if (
            self.mode == "serialization"
            and core.get("type") == "datetime"
            and isinstance(core.get("serialization"), dict)
            and core["serialization"].get("type") == "function-plain"
        ):
            return {"type": "string", "format": "date-time"}
        return super().generate_inner(cast(CoreSchema, schema))


def _model_schema(model: type[BaseModel], ref_template: str, mode: JsonSchemaMode) -> dict[str, Any]:
    return model.model_json_schema(ref_template=ref_template, mode=mode, schema_generator=_SchemaGenerator)


def _strip_titles(node: Any, keep: bool = True) -> Any:
    """Drop pydantic's generated property titles ("Recipientdomain"); keep a model's own title."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "title" and not keep and isinstance(value, str):
                continue
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                out[key] = {name: _strip_titles(sub, keep=key != "properties") for name, sub in value.items()}
            else:
                out[key] = _strip_titles(value, keep=False)
        return out
    if isinstance(node, list):
        return [_strip_titles(item, keep=False) for item in node]
    return node


def _response_models() -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}
    for operation in OPERATIONS:
        refs = [operation.response, *(response.model for response in (operation.ok, *operation.responses))]
        if operation.webhook is not None:
            refs += [operation.webhook.payload, *operation.webhook.also]
        for ref in refs:
            if ref is not None:
                model = ref()
                seen.setdefault(model.__name__, model)
    return list(seen.values())


def _body_models() -> list[type[BaseModel]]:
    """Request body models (validation schemas), the connector's webhook forms included."""
    seen: dict[str, type[BaseModel]] = {}
    for operation in OPERATIONS:
        for ref in (operation.body, operation.webhook.body if operation.webhook else None):
            if ref is not None:
                model = ref()
                seen.setdefault(model.__name__, model)
    return list(seen.values())


def _stats_row_models() -> dict[str, type[BaseModel]]:
    from shared.models import STATS_ROW_MODELS

    return dict(STATS_ROW_MODELS)


def component_schemas(ref_template: str = OAS_REF) -> dict[str, Any]:
    """Every response model (and the models they use), JSON Schema 2020-12, keyed by model name."""
    schemas: dict[str, Any] = {}
    models = _response_models() + list(_stats_row_models().values())
    for model in models:
        schema = _model_schema(model, ref_template, "serialization")
        for name, sub in schema.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas[model.__name__] = schema
    for model in _body_models():
        schema = _model_schema(model, ref_template, "validation")
        for name, sub in schema.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas[model.__name__] = schema
    stats = schemas.get("StatsResult")
    if stats is not None:
        rows = [{"$ref": ref_template.format(model=m.__name__)} for m in _stats_row_models().values()]
        stats["properties"]["value"] = {
            "type": "array",
            "description": "One row per group; the row shape depends on the statistics kind "
            "(" + ", ".join(_stats_row_models()) + ").",
            "items": {"oneOf": rows},
        }
    schemas["Problem"] = _problem_schema(ref_template)
    schemas["ProblemError"] = {
        "type": "object",
        "title": "ProblemError",
        "required": ["parameter", "reason"],
        "properties": {
            "parameter": {"type": "string", "description": "The query or route parameter at fault."},
            "reason": {"type": "string", "description": "Why its value cannot be used."},
        },
    }
    return {name: _strip_titles(schema, keep=True) for name, schema in schemas.items()}


def _problem_schema(ref_template: str) -> dict[str, Any]:
    return {
        "type": "object",
        "title": "Problem",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "description": "Problem type URI; about:blank for plain HTTP problems."},
            "title": {"type": "string", "description": "Short summary of the problem."},
            "status": {"type": "integer", "description": "HTTP status code."},
            "detail": {"type": "string", "description": "What went wrong, in words."},
            "errors": {
                "type": "array",
                "description": "For 400: every parameter at fault and why.",
                "items": {"$ref": ref_template.format(model="ProblemError")},
            },
        },
    }


def _non_null(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``anyOf: [X, {type: null}]`` -> (X merged with the outer keywords, True)."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        rest = [o for o in options if o != {"type": "null"}]
        if len(rest) == 1 and len(rest) < len(options):
            outer = {k: v for k, v in schema.items() if k != "anyOf"}
            return {**outer, **rest[0]}, True
    kinds = schema.get("type")
    if isinstance(kinds, list) and "null" in kinds:
        rest_kinds = [k for k in kinds if k != "null"]
        return {**schema, "type": rest_kinds[0] if len(rest_kinds) == 1 else rest_kinds}, True
    return schema, False


# --------------------------------------------------------------------------- parameters


class _Parameter:
    def __init__(self, name: str, location: str, schema: dict[str, Any], description: str, required: bool) -> None:
        self.name, self.location, self.schema = name, location, schema
        self.description, self.required = description, required


def _parameters(operation: Operation) -> list[_Parameter]:
    """Path parameters (the route's ``{name}`` segments) first, then query parameters; all from the params model."""
    if operation.params is None:
        return []
    schema = _model_schema(operation.params(), OAS_REF, "validation")
    required = set(schema.get("required", []))
    properties: dict[str, Any] = schema.get("properties", {})
    path, query = [], []
    for name, prop in properties.items():
        prop, _ = _non_null(prop)
        prop = {k: v for k, v in prop.items() if k != "title" and not (k == "default" and v is None)}
        description = sentence(prop.pop("description", None) or display_name(name))
        if name in operation.path_params:
            path.append(_Parameter(name, "path", prop, description, True))
        else:
            query.append(_Parameter(name, "query", prop, description, name in required))
    missing = set(operation.path_params) - {p.name for p in path}
    if missing:
        raise ValueError(f"{operation.name}: route parameters {sorted(missing)} are not in its params model")
    path.sort(key=lambda p: operation.path_params.index(p.name))
    return path + query


def _body_model(operation: Operation, response: Response) -> type[BaseModel] | None:
    if response.body != "model":
        return None
    ref = response.model or operation.response
    return None if ref is None else ref()


def _declares_5xx(operation: Operation) -> bool:
    return any(response.status >= 500 for response in operation.responses)


# --------------------------------------------------------------------------- OpenAPI 3.1


def _oas_content(operation: Operation, response: Response) -> dict[str, Any] | None:
    if response.body == "problem":
        return {PROBLEM_JSON: {"schema": {"$ref": OAS_REF.format(model="Problem")}}}
    if response.body == "empty":
        return None
    model = _body_model(operation, response)
    schema = {"$ref": OAS_REF.format(model=model.__name__)} if model else {"type": "object"}
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if response.status < 300:
        content.update({media: {"schema": {"type": "string"}} for media in operation.alternates})
    return content


def _oas_response(operation: Operation, response: Response) -> dict[str, Any]:
    out: dict[str, Any] = {"description": response.description}
    if response.headers:
        out["headers"] = {
            name: {"description": HEADERS[name], "schema": {"type": "integer", "minimum": 0}}
            if name == "Retry-After"
            else {"description": HEADERS[name], "schema": {"type": "string"}}
            for name in response.headers
        }
    content = _oas_content(operation, response)
    if content is not None:
        out["content"] = content
    return out


def _oas_operation(operation: Operation) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "description": operation.description,
        "tags": [operation.tag],
    }
    parameters = [
        {"name": p.name, "in": p.location, "required": p.required, "description": p.description, "schema": p.schema}
        for p in _parameters(operation)
    ]
    if parameters:
        op["parameters"] = parameters
        op["description"] += " Unknown query parameters are rejected with 400."
    if operation.body is not None:
        body_ref = {"$ref": OAS_REF.format(model=operation.body().__name__)}
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_ref}}}
    problem = {PROBLEM_JSON: {"schema": {"$ref": OAS_REF.format(model="Problem")}}}
    retry_after = {"Retry-After": {"description": HEADERS["Retry-After"], "schema": {"type": "integer", "minimum": 0}}}
    responses = {str(r.status): _oas_response(operation, r) for r in (operation.ok, *operation.responses)}
    if parameters or operation.body is not None:
        responses["400"] = {
            "description": "Invalid request: `errors` names each parameter at fault.",
            "content": problem,
        }
    responses["405"] = {
        "description": "The route does not take this method (answered by the host, with `Allow`).",
        "headers": {"Allow": {"description": "The methods the route takes.", "schema": {"type": "string"}}},
        "content": problem,
    }
    responses["414"] = {"description": "The URL is longer than the host accepts.", "content": problem}
    if operation.auth != "anonymous":
        responses["401"] = {"description": "Missing or wrong function key (answered by the Functions host)."}
    if not _declares_5xx(operation):
        responses["5XX"] = {
            "description": "Log source or summary store unavailable or throttled (503 with Retry-After), "
            "a dependency refused the request (502), or an internal error (500).",
            "headers": retry_after,
            "content": problem,
        }
    op["responses"] = dict(sorted(responses.items()))
    if operation.webhook is not None:
        op["callbacks"] = {"push": _oas_push(operation.webhook)}
    if operation.long_running:
        # For client generators (AutoRest's extension): poll the 202's Location; its final answer is the result.
        # The connector needs no mark (Microsoft's connector schema has none): Power Automate follows a 202's
        # Location and Retry-After by itself, its actions' asynchronous pattern.
        op["x-ms-long-running-operation"] = True
        op["x-ms-long-running-operation-options"] = {"final-state-via": "location"}
    if operation.auth == "anonymous":
        op["security"] = []
    elif operation.auth == "admin":
        op["security"] = [{"functionKeyHeader": []}, {"functionKeyQuery": []}]
        op["description"] += " Requires the host's admin (master) key, not a function key."
    return op


def _oas_push(webhook: Webhook) -> dict[str, Any]:
    """The POST a subscription receives at its callback URL (OpenAPI callbacks)."""
    payloads = [{"$ref": OAS_REF.format(model=model.__name__)} for model in webhook.payloads()]
    headers = {
        name: {"required": True, "schema": {"type": "string"}, "description": text}
        for name, text in PUSH_HEADERS.items()
    }
    properties = _model_schema(webhook.body(), OAS_REF, "validation").get("properties", {})
    url_field = next(name for name, prop in properties.items() if prop.get("x-ms-notification-url"))
    return {
        f"{{$request.body#/{url_field}}}": {
            "post": {
                "summary": "Push to the Callback URL",
                "description": "What a subscription is sent: a message subscription gets the message's trace once, a "
                "filter subscription one recipient outcome per push. Retried until a 2XX answer, as the operation "
                "says.",
                "parameters": [{"name": name, "in": "header", **spec} for name, spec in headers.items()],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": payloads[0] if len(payloads) == 1 else {"oneOf": payloads}}
                    },
                },
                "responses": {
                    "2XX": {"description": "Received; any other answer (or none within 10 s) is retried."},
                    "410": {"description": "Unsubscribe: the subscription is deleted and nothing more is pushed."},
                },
            }
        }
    }


def openapi_document(server_url: str = "http://localhost:7071/api") -> dict[str, Any]:
    """The API's OpenAPI 3.1 document."""
    paths: dict[str, Any] = {}
    for operation in OPERATIONS:
        paths.setdefault("/" + operation.route, {})[operation.method.lower()] = _oas_operation(operation)
    tags: list[str] = []
    for operation in OPERATIONS:
        if operation.tag not in tags:
            tags.append(operation.tag)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {"title": API_TITLE, "version": API_VERSION, "description": API_DESCRIPTION},
        "servers": [{"url": server_url}],
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": component_schemas(OAS_REF),
            "securitySchemes": {
                "functionKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "Function key (or the admin key for admin operations).",
                },
                "functionKeyQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "code",
                    "description": "Function key as the `code` query parameter.",
                },
            },
        },
        "security": [{"functionKeyHeader": []}, {"functionKeyQuery": []}],
    }


# --------------------------------------------------------------------------- Swagger 2.0

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
                "description": sentence(body().__doc__ or "The request body"),
                "x-ms-summary": "Body",
                "x-ms-visibility": "important",
                "schema": {"$ref": SWAGGER_REF.format(model=body().__name__)},
            }
        )
    problem = {"$ref": SWAGGER_REF.format(model="Problem")}
    responses = {str(r.status): _swagger_response(operation, r) for r in (operation.ok, *operation.responses)}
    if webhook is not None:
        # The trigger's outputs are what each push carries: the designer reads them from the created response.
        created = responses[str(operation.ok.status)]
        created["schema"] = {"$ref": SWAGGER_REF.format(model=webhook.payload().__name__)}
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
                payload = {"$ref": SWAGGER_REF.format(model=operation.webhook.payload().__name__)}
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


# --------------------------------------------------------------------------- CLI


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.api.openapi", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"write {CONNECTOR_FILE.name}")
    action.add_argument("--check", action="store_true", help="exit 1 when the committed connector is out of date")
    parser.add_argument("--openapi", action="store_true", help="print the OpenAPI 3.1 document instead")
    parser.add_argument("--file", type=Path, default=CONNECTOR_FILE, help="connector definition path")
    args = parser.parse_args(argv)
    if args.openapi and (args.write or args.check):
        parser.error("--openapi only prints; --write and --check are for the connector definition")
    text = render(openapi_document() if args.openapi else swagger2_document(host=CONNECTOR_HOST))
    if args.write:
        args.file.parent.mkdir(parents=True, exist_ok=True)
        args.file.write_text(text, encoding="utf-8")
        print(f"wrote {args.file} ({len(text.encode())} bytes)")
        return 0
    if args.check:
        current = args.file.read_text(encoding="utf-8") if args.file.is_file() else ""
        if current != text:
            print(
                f"{args.file} is out of date with the models: run `python -m shared.api.openapi --write`",
                file=sys.stderr,
            )
            return 1
        print(f"{args.file} is up to date")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
