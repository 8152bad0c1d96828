"""What both documents are made of: JSON Schema from the pydantic models, the parameters of each operation,
display names and sentences, the problem+json schema.
"""

from __future__ import annotations

import re
from typing import Any, cast

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import CoreSchema

from shared.api.spec import OPERATIONS, Operation, Response
from shared.api.spec import model as named_model

API_TITLE = "ACS Email Insights"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    "What happened to my email? Message traces, delivery search, bounces and delivery statistics for "
    "Azure Communication Services Email, answered from its Log Analytics logs."
)

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
                seen.setdefault(ref, named_model(ref))
    return list(seen.values())


def _body_models() -> list[type[BaseModel]]:
    """Request body models (validation schemas), the connector's webhook forms included."""
    seen: dict[str, type[BaseModel]] = {}
    for operation in OPERATIONS:
        for ref in (operation.body, operation.webhook.body if operation.webhook else None):
            if ref is not None:
                seen.setdefault(ref, named_model(ref))
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


class _Parameter:
    def __init__(self, name: str, location: str, schema: dict[str, Any], description: str, required: bool) -> None:
        self.name, self.location, self.schema = name, location, schema
        self.description, self.required = description, required


def _parameters(operation: Operation) -> list[_Parameter]:
    """Path parameters (the route's ``{name}`` segments) first, then query parameters; all from the params model."""
    if operation.params is None:
        return []
    schema = _model_schema(named_model(operation.params), OAS_REF, "validation")
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
    return None if ref is None else named_model(ref)


def _declares_5xx(operation: Operation) -> bool:
    return any(response.status >= 500 for response in operation.responses)
