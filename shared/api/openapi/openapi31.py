"""The OpenAPI 3.1 document, served at ``GET /api/openapi.json``."""

from __future__ import annotations

from typing import Any

from shared.api.openapi.schema import (
    API_DESCRIPTION,
    API_TITLE,
    API_VERSION,
    OAS_REF,
    PROBLEM_JSON,
    _body_model,
    _declares_5xx,
    _model_schema,
    _parameters,
    component_schemas,
)
from shared.api.spec import HEADERS, OPERATIONS, Operation, Response, Webhook
from shared.api.spec import model as named_model
from shared.push.callbacks import PUSH_HEADERS


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
        body_ref = {"$ref": OAS_REF.format(model=operation.body)}
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
    properties = _model_schema(named_model(webhook.body), OAS_REF, "validation").get("properties", {})
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
