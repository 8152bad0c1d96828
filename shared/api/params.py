"""Turning raw input (query strings, route values, CLI options, JSON bodies) into validated models."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.errors import InvalidInput, ParameterError

M = TypeVar("M", bound=BaseModel)


def _reason(error: Any) -> str:
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def parse_params(model: type[M], raw: dict[str, Any]) -> M:
    """Validate ``raw`` (camelCase keys, string or typed values) into ``model`` or raise InvalidInput.

    None is "not given". An empty value (``to=``) is refused rather than read as "not given": the OpenAPI
    document types each parameter (a date-time, an enum, ...) and the empty string is none of them; a client
    that means the default leaves the parameter out.
    """
    empty = [key for key, value in raw.items() if value == ""]
    if empty:
        raise _invalid([ParameterError(key, "is empty; leave the parameter out to use its default") for key in empty])
    cleaned = {key: value for key, value in raw.items() if value is not None}
    try:
        return model.model_validate(cleaned)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            location = ".".join(str(part) for part in error.get("loc", ()) if part != "__root__")
            if error.get("type") == "extra_forbidden":
                errors.append(ParameterError(location, "unknown parameter"))
            else:
                errors.append(ParameterError(location or "(request)", _reason(error)))
        raise _invalid(errors) from None


def _invalid(errors: list[ParameterError]) -> InvalidInput:
    """One InvalidInput naming every parameter at fault, its detail the reasons joined."""
    return InvalidInput("; ".join(f"{e.parameter}: {e.reason}" for e in errors), errors)
