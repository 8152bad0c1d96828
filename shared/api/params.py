"""Turning raw input (query strings, CLI options) into validated parameter models."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class BadRequest(ValueError):
    """Input that cannot be used: says which parameter and why."""

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


def _reason(error: Any) -> str:
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def parse_params(model: type[M], raw: dict[str, Any]) -> M:
    """Validate ``raw`` (camelCase keys, string or typed values) into ``model`` or raise BadRequest."""
    cleaned = {key: value for key, value in raw.items() if value is not None and value != ""}
    try:
        return model.model_validate(cleaned)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            location = ".".join(str(part) for part in error.get("loc", ()) if part != "__root__")
            if error.get("type") == "extra_forbidden":
                errors.append({"parameter": location, "reason": "unknown parameter"})
            else:
                errors.append({"parameter": location or "(request)", "reason": _reason(error)})
        detail = "; ".join(f"{e['parameter']}: {e['reason']}" for e in errors)
        raise BadRequest(detail, errors) from None
