"""HTTP plumbing shared by the dispatcher and the handlers: the call a handler gets, and responses."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import azure.functions as func
from pydantic import BaseModel

from shared.api.render import problem, to_body
from shared.errors import InvalidInput, ServiceError
from shared.services import Services

PROBLEM_JSON = "application/problem+json"
#: Query parameters the platform uses (function keys), never validated as API parameters.
PLATFORM_PARAMS = frozenset({"code"})


@dataclass(frozen=True)
class Call:
    """One HTTP invocation as a handler sees it: the request, its validated parameters and body, the services."""

    request: func.HttpRequest
    params: Any
    body: Any
    services: Services

    @property
    def url(self) -> str:
        return str(self.request.url)

    def link(self, path: str | None = None, **query: str | None) -> str:
        """This request's URL with another path (under the same host) and query values replaced."""
        parts = urlsplit(self.url)
        kept = [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in query and k not in PLATFORM_PARAMS
        ]
        kept += [(k, v) for k, v in query.items() if v is not None]
        return urlunsplit((parts.scheme, parts.netloc, path or parts.path, urlencode(kept), ""))


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None, mimetype: str = "application/json"
) -> func.HttpResponse:
    if isinstance(body, BaseModel):
        body = to_body(body)
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False), status_code=status, headers=headers, mimetype=mimetype, charset="utf-8"
    )


def text_response(text: str, mimetype: str, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(text, status_code=200, headers=headers, mimetype=mimetype, charset="utf-8")


def retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def problem_response(exc: ServiceError) -> func.HttpResponse:
    """The one mapping of an error to problem+json: status, title, detail, errors, Retry-After."""
    extra: dict[str, Any] = dict(exc.fields)
    if isinstance(exc, InvalidInput):
        extra["errors"] = [error.as_dict() for error in exc.errors]
    headers = retry_after_header(exc.retry_after) if exc.retry_after is not None else None
    body = problem(exc.status, exc.title, exc.detail, **extra)
    return json_response(body, exc.status, headers, mimetype=PROBLEM_JSON)


def wants(request: func.HttpRequest, format_param: str | None, media_type: str) -> bool:
    """Whether the client asked for ``media_type`` (``format`` parameter first, then the Accept header)."""
    if format_param:
        return media_type.endswith("/" + format_param.lower())
    accept = (request.headers.get("Accept") or "").lower()
    return media_type in accept and "application/json" not in accept
