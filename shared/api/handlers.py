"""HTTP handlers: parse and validate input, call a use case, render JSON / CSV / problem+json.

Every failure becomes a problem+json answer with the right status; bad input is a 400 that
names the parameter. Recipient addresses never reach a log line.
"""

from __future__ import annotations

import json
import logging
import traceback
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import azure.functions as func
from pydantic import BaseModel

from shared.api.params import BadRequest, parse_params
from shared.api.render import bounces_csv, problem, to_body
from shared.api.routes import Route, load
from shared.insights import InvalidToken
from shared.logs.source import LogQueryError, LogQueryThrottled
from shared.models import (
    BouncesParams,
    ComponentHealth,
    DailySummaryList,
    Health,
    SearchParams,
    StatsParams,
    SummaryRangeParams,
    TraceParams,
    WindowError,
)
from shared.services import default_insights
from shared.settings import Settings

log = logging.getLogger("acs_email_insights")

PROBLEM_JSON = "application/problem+json"
#: Query parameters the platform uses (function keys), never validated as API parameters.
_PLATFORM_PARAMS = {"code"}
TRACE_PENDING_RETRY_AFTER = 30
TRACE_NOT_FOUND_RETRY_AFTER = 60


class HttpProblem(Exception):
    def __init__(
        self, status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.headers = headers or {}
        self.extra = extra


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None, mimetype: str = "application/json"
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False), status_code=status, headers=headers, mimetype=mimetype, charset="utf-8"
    )


def problem_response(exc: HttpProblem) -> func.HttpResponse:
    body = problem(exc.status, exc.title, exc.detail, **exc.extra)
    return json_response(body, exc.status, exc.headers, mimetype=PROBLEM_JSON)


def _query_params(req: func.HttpRequest) -> dict[str, Any]:
    return {key: value for key, value in req.params.items() if key not in _PLATFORM_PARAMS}


def _wants_csv(req: func.HttpRequest, params: dict[str, Any]) -> bool:
    if params.get("format"):
        return str(params["format"]).lower() == "csv"
    accept = (req.headers.get("Accept") or "").lower()
    return "text/csv" in accept and "application/json" not in accept


def _with_query(url: str, replace: dict[str, str | None]) -> str:
    parts = urlsplit(url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in replace and k not in _PLATFORM_PARAMS
    ]
    query += [(k, v) for k, v in replace.items() if v is not None]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


# --------------------------------------------------------------------------- operations


def trace_message(req: func.HttpRequest) -> func.HttpResponse:
    params = parse_params(TraceParams, {**_query_params(req), "messageId": req.route_params.get("messageId")})
    result = default_insights().trace(params)
    body = to_body(result)
    if result.state == "notFound":
        raise HttpProblem(
            404,
            "Message not found",
            f"No logs for message {params.message_id} in the last {params.lookback_days} days. Logs reach Log "
            "Analytics minutes after a send; retry later.",
            {"Retry-After": str(TRACE_NOT_FOUND_RETRY_AFTER)},
            messageId=params.message_id,
            state="notFound",
        )
    if result.state == "pending":
        location = _with_query(req.url, {})
        return json_response(body, 202, {"Location": location, "Retry-After": str(TRACE_PENDING_RETRY_AFTER)})
    return json_response(body)


def search_messages(req: func.HttpRequest) -> func.HttpResponse:
    params = parse_params(SearchParams, _query_params(req))
    page = default_insights().search(params)
    if page.continuation_token:
        page.next_link = _with_query(req.url, {"continuationToken": page.continuation_token})
    return json_response(to_body(page))


def get_stats(req: func.HttpRequest) -> func.HttpResponse:
    kind = req.route_params.get("kind", "")
    if kind not in ("domains", "senders", "mail-servers", "latency", "failures", "sizes"):
        raise BadRequest(
            f"kind: must be one of domains, senders, mail-servers, latency, failures, sizes; got {kind!r}",
            [{"parameter": "kind", "reason": "unknown statistics kind"}],
        )
    params = parse_params(StatsParams, _query_params(req))
    return json_response(to_body(default_insights().stats(kind, params)))


def list_bounces(req: func.HttpRequest) -> func.HttpResponse:
    raw = _query_params(req)
    if _wants_csv(req, raw):
        raw["format"] = "csv"
    params = parse_params(BouncesParams, raw)
    result = default_insights().bounces(params)
    if params.format == "csv":
        headers = {"Content-Disposition": 'attachment; filename="bounces.csv"'}
        if result.partial:
            headers["Warning"] = '199 - "partial result"'
        return func.HttpResponse(
            bounces_csv(result), status_code=200, headers=headers, mimetype="text/csv", charset="utf-8"
        )
    return json_response(to_body(result))


def _summary_store() -> Any:
    from shared.summaries.table import SummaryStore

    return SummaryStore.from_settings(Settings.from_env())


def list_daily_summaries(req: func.HttpRequest) -> func.HttpResponse:
    params = parse_params(SummaryRangeParams, _query_params(req))
    rows = _summary_store().read(params.from_, params.to, params.dimension)
    return json_response(to_body(DailySummaryList(value=rows)))


def recompute_daily_summary(req: func.HttpRequest) -> func.HttpResponse:
    text = req.route_params.get("date", "")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"date: must be a day YYYY-MM-DD, got {text!r}", [{"parameter": "date", "reason": "not a date YYYY-MM-DD"}]
        ) from None
    from shared.summaries.job import summarize_one_day

    result = summarize_one_day(default_insights(), _summary_store(), day)
    return json_response(to_body(result))


def health(req: func.HttpRequest) -> func.HttpResponse:
    insights = default_insights()
    ok, detail = insights.source.check()
    log_source = ComponentHealth(name=insights.source.name, reachable=ok, detail=detail)
    try:
        store = _summary_store()
        store_ok, store_detail = store.check()
    except Exception as exc:  # not configured, bad settings: say why, never the secret
        store_ok, store_detail = False, str(exc)
    table_store = ComponentHealth(name="tableStorage", reachable=store_ok, detail=store_detail)
    healthy = ok and store_ok
    body = Health(status="ok" if healthy else "degraded", log_source=log_source, table_store=table_store)
    return json_response(to_body(body), 200 if healthy else 503)


def openapi(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.openapi import openapi_document

    parts = urlsplit(req.url)
    return json_response(openapi_document(server_url=f"{parts.scheme}://{parts.netloc}/api"))


_HANDLERS = {
    "trace_message": trace_message,
    "search_messages": search_messages,
    "get_stats": get_stats,
    "list_bounces": list_bounces,
    "list_daily_summaries": list_daily_summaries,
    "recompute_daily_summary": recompute_daily_summary,
    "health": health,
    "openapi": openapi,
}


def dispatch(route: Route, req: func.HttpRequest) -> func.HttpResponse:
    try:
        return _HANDLERS[route.name](req)
    except HttpProblem as exc:
        return problem_response(exc)
    except BadRequest as exc:
        return problem_response(HttpProblem(400, "Invalid request", exc.detail, errors=exc.errors))
    except InvalidToken as exc:
        errors = [{"parameter": "continuationToken", "reason": str(exc)}]
        return problem_response(HttpProblem(400, "Invalid request", f"continuationToken: {exc}", errors=errors))
    except WindowError as exc:
        errors = [{"parameter": exc.parameter, "reason": exc.reason}]
        return problem_response(HttpProblem(400, "Invalid request", str(exc), errors=errors))
    except LogQueryThrottled as exc:
        retry = str(max(1, round(exc.retry_after or 30)))
        return problem_response(HttpProblem(503, exc.title, exc.detail, {"Retry-After": retry}))
    except LogQueryError as exc:
        log.warning("log query failed in %s: %s", route.name, type(exc).__name__)
        headers = {"Retry-After": "30"} if exc.status == 503 else None
        return problem_response(HttpProblem(exc.status, exc.title, exc.detail, headers))
    except Exception as exc:
        try:
            from shared.summaries.table import SummaryStoreError
        except ImportError:  # never let the error path hide the original error
            SummaryStoreError = ()  # type: ignore[assignment,misc]
        if isinstance(exc, SummaryStoreError):
            headers = {"Retry-After": "30"} if exc.status == 503 else None
            return problem_response(
                HttpProblem(
                    exc.status,
                    "Summary store unavailable" if exc.status == 503 else "Summary store failed",
                    exc.detail,
                    headers,
                )
            )
        # The exception's message may quote data (a validation error quotes the recipient it failed on):
        # log where it happened, never what it said.
        where = "".join(traceback.format_tb(exc.__traceback__, limit=-3))
        log.error("unhandled %s in %s\n%s", type(exc).__name__, route.name, where)
        return problem_response(HttpProblem(500, "Internal Server Error", f"{route.name} failed unexpectedly"))


def model_for(reference: str | None) -> type[BaseModel] | None:
    return None if reference is None else load(reference)  # type: ignore[no-any-return]
