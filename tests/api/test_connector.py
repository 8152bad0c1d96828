"""The Power Automate connector could be certified: it validates against Microsoft's connector schemas
(microsoft/PowerPlatformConnectors, in ../shared/reference-data/schemas) and follows the connector string
guidance: camelCase operationIds, Title Case ``x-ms-summary``, a summary and a full-sentence description on
every operation and parameter."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shared.api.openapi import CONNECTOR_FILE

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT.parent / "shared" / "reference-data" / "schemas"
CONNECTOR = json.loads(CONNECTOR_FILE.read_text(encoding="utf-8"))
PROPERTIES = json.loads((ROOT / "connector" / "apiProperties.json").read_text(encoding="utf-8"))

#: A Title Case word: a capital (possessive 's allowed), a number, or an acronym in capitals (ID, SMTP, URL, P95).
_TITLE_WORD = re.compile(r"^(?:[A-Z][a-z0-9]*(?:'s)?|[A-Z0-9]+|[0-9]+)$")


def _schema(name: str) -> dict[str, Any]:
    path = SCHEMAS / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (reference data lives beside the clone); connector schema check skipped")
    return dict(json.loads(_strip_comments(path.read_text(encoding="utf-8"))))


def _strip_comments(text: str) -> str:
    """JSON with // and /* */ comments (as Microsoft ships these schemas) -> JSON; strings are left alone."""
    out, i, in_string = [], 0, False
    while i < len(text):
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\":
                out.append(text[i + 1])
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
            continue
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _operations() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", op)
        for path, item in CONNECTOR["paths"].items()
        for method, op in item.items()
        if not method.startswith("x-")  # path-level extensions (x-ms-notification-content)
    ]


def _is_sentence(text: str) -> bool:
    return bool(text) and text[0].isupper() and text.rstrip().endswith((".", "?", "!"))


#: Words Title Case keeps in lower case inside a title.
_MINOR_WORDS = frozenset({"a", "an", "the", "of", "to", "for", "and", "or", "in", "on", "by", "per"})


def _is_title(text: str) -> bool:
    words = text.split()
    return bool(words) and all(
        _TITLE_WORD.match(word) or (index > 0 and word in _MINOR_WORDS) for index, word in enumerate(words)
    )


def test_connector_definition_validates_against_microsofts_schema() -> None:
    validator = jsonschema.Draft4Validator(_schema("apiDefinition.swagger.schema.json"))
    errors = sorted(validator.iter_errors(CONNECTOR), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_api_properties_validate_against_microsofts_schema() -> None:
    schema = _schema("paconn-apiProperties.schema.json")
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = list(validator.iter_errors(PROPERTIES))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_operation_ids_are_camel_case_and_unique() -> None:
    ids = [op["operationId"] for _, op in _operations()]
    assert len(ids) == len(set(ids))
    for operation_id in ids:
        assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", operation_id), operation_id


def test_every_operation_has_a_title_case_summary_and_a_sentence_description() -> None:
    for where, op in _operations():
        assert _is_title(op["summary"]), (where, op["summary"])
        assert len(op["summary"]) <= 80 and not op["summary"].endswith("."), where
        assert _is_sentence(op["description"]), where


def test_every_parameter_has_a_title_case_summary_and_a_sentence_description() -> None:
    for where, op in _operations():
        for param in op["parameters"]:
            assert _is_title(param["x-ms-summary"]), (where, param["name"], param["x-ms-summary"])
            assert _is_sentence(param["description"]), (where, param["name"], param["description"])
            # says what the value is, not only its name again ("From." for `from` tells a maker nothing)
            assert param["description"].rstrip(".").lower() != param["x-ms-summary"].lower(), (where, param["name"])


def test_response_properties_have_title_case_summaries() -> None:
    for name, definition in CONNECTOR["definitions"].items():
        for prop, schema in definition.get("properties", {}).items():
            if "x-ms-summary" in schema:
                assert _is_title(schema["x-ms-summary"]), (name, prop, schema["x-ms-summary"])


def test_the_send_action_answers_202_with_a_location_and_ends_with_the_final_trace() -> None:
    """Power Automate's asynchronous pattern: a 202 with Location (and Retry-After) is polled until it answers
    otherwise; the action's outputs are the 200's schema, the trace the poll link finally answers."""
    operation = CONNECTOR["paths"]["/messages"]["post"]
    assert operation["summary"] == "Send an Email and Wait for Its Delivery"
    accepted, final = operation["responses"]["202"], operation["responses"]["200"]
    assert {"Location", "Retry-After"} <= set(accepted["headers"])
    assert final["schema"] == {"$ref": "#/definitions/TraceResult"}
    assert operation.get("x-ms-visibility") == "important"
    [body] = [p for p in operation["parameters"] if p["in"] == "body"]
    assert body["schema"] == {"$ref": "#/definitions/SendEmailBody"}
