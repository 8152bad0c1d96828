"""The one way an HTTP invocation runs: validate input, call the operation's handler, map any error.

Every failure becomes problem+json here and nowhere else (``shared.api.http.problem_response``): bad input is
a 400 naming each parameter, a dependency down or throttling a 503 with ``Retry-After``, a dependency that
refuses us a 502, anything unexpected a 500 whose log line names where it happened but never what the
exception said (it may quote a recipient address).
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from typing import Any

import azure.functions as func
from pydantic import BaseModel

from shared import deadline
from shared.api.http import PLATFORM_PARAMS, Call, json_response, problem_response
from shared.api.params import parse_params
from shared.api.signatures import HttpHandler
from shared.api.spec import Operation, model
from shared.errors import InvalidInput, ServiceError
from shared.services import Services

log = logging.getLogger("acs_email_insights")

#: Largest JSON request body an operation accepts.
MAX_BODY_BYTES = 64 * 1024


def _params(operation: Operation, req: func.HttpRequest) -> Any:
    raw: dict[str, Any] = {key: value for key, value in req.params.items() if key not in PLATFORM_PARAMS}
    if operation.params is None:
        if raw:
            unknown = sorted(raw)
            raise InvalidInput(
                "unknown parameter(s): " + ", ".join(unknown),
                [InvalidInput.parameter(name, "unknown parameter").errors[0] for name in unknown],
            )
        return None
    raw.update({name: req.route_params.get(name) for name in operation.path_params})
    return parse_params(model(operation.params), raw)


def _body(operation: Operation, req: func.HttpRequest) -> Any:
    if operation.body is None:
        return None
    data = req.get_body() or b""
    limit = operation.max_body_bytes or MAX_BODY_BYTES
    if len(data) > limit:
        raise InvalidInput.parameter("body", f"must be at most {limit} bytes")
    try:
        document = json.loads(data or b"null")
    except ValueError:
        raise InvalidInput.parameter("body", "must be a JSON object") from None
    if not isinstance(document, dict):
        raise InvalidInput.parameter("body", "must be a JSON object")
    return parse_params(model(operation.body), document)


def dispatch(
    operation: Operation,
    req: func.HttpRequest,
    services: Callable[[], Services],
    handler: HttpHandler | None = None,
) -> func.HttpResponse:
    """Runs *handler* (default: the operation's own) on the validated call."""
    try:
        context = services()
        with deadline.budget(context.settings.request_budget_seconds):
            call = Call(req, _params(operation, req), _body(operation, req), context)
            result = (handler or operation.handler())(call)
        if isinstance(result, BaseModel):
            return json_response(result)
        return result  # type: ignore[no-any-return]
    except ServiceError as exc:
        if exc.status >= 500:
            log.warning("%s answered %d: %s", operation.name, exc.status, type(exc).__name__)
        return problem_response(exc)
    except Exception as exc:
        where = "".join(traceback.format_tb(exc.__traceback__, limit=-3))
        log.error("unhandled %s in %s\n%s", type(exc).__name__, operation.name, where)
        return problem_response(ServiceError(f"{operation.name} failed unexpectedly"))
