"""The HTTP and timer functions, registered on a Blueprint.

This module is imported when the Functions host loads ``function_app.py``, so it imports
nothing but ``azure.functions``: the handlers (pydantic, the Azure SDKs, DuckDB) load on the
first request. Flex Consumption gives an app 30 s to start; cold imports stay small.

``ROUTES`` is the one list of operations: the blueprint, the OpenAPI document and the Power
Automate connector are all generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

import azure.functions as func


@dataclass(frozen=True)
class Route:
    name: str  # function name and OpenAPI operationId
    route: str
    method: str
    auth: str  # "function" | "anonymous" | "admin"
    summary: str
    description: str
    #: "module:Class" of the query-parameter model (validated) and of the 200 response body.
    params_model: str | None
    response_model: str | None
    tag: str
    #: Route parameters: (name, description, pattern); no description: the params model's field has it.
    path_params: tuple[tuple[str, str | None, str], ...] = ()


ROUTES: tuple[Route, ...] = (
    Route(
        "trace_message",
        "messages/{messageId}",
        "GET",
        "function",
        "Trace a message",
        "What happened to one message: its send, message-level events and every recipient's final status "
        "and timeline. 200 when final, 202 while pending (poll the Location), 404 while nothing is logged.",
        "shared.models:TraceParams",
        "shared.models:TraceResult",
        "Messages",
        (
            (
                "messageId",
                None,
                r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$",
            ),
        ),
    ),
    Route(
        "search_messages",
        "messages",
        "GET",
        "function",
        "Search deliveries",
        "One row per recipient with its final status, newest send first; paged with nextLink.",
        "shared.models:SearchParams",
        "shared.models:SearchPage",
        "Messages",
    ),
    Route(
        "get_stats",
        "stats/{kind}",
        "GET",
        "function",
        "Delivery statistics",
        "Aggregates over the send window: domains, senders, mail-servers, latency, failures or sizes, with how "
        "complete the data is.",
        "shared.models:StatsParams",
        "shared.models:StatsResult",
        "Statistics",
        (
            (
                "kind",
                "domains, senders, mail-servers, latency, failures or sizes.",
                r"^(domains|senders|mail-servers|latency|failures|sizes)$",
            ),
        ),
    ),
    Route(
        "list_bounces",
        "bounces",
        "GET",
        "function",
        "Bounced recipients",
        "One row per bounced address (lowercased). CSV with format=csv or Accept: text/csv.",
        "shared.models:BouncesParams",
        "shared.models:BounceList",
        "Bounces",
    ),
    Route(
        "list_daily_summaries",
        "summaries/daily",
        "GET",
        "function",
        "Daily summaries",
        "Persisted daily delivery summaries (no log query).",
        "shared.models:SummaryRangeParams",
        "shared.models:DailySummaryList",
        "Summaries",
    ),
    Route(
        "recompute_daily_summary",
        "summaries/daily/{date}",
        "POST",
        "admin",
        "Recompute a daily summary",
        "Recompute and persist the summaries of one UTC send day; returns them.",
        None,
        "shared.models:DailySummaryList",
        "Summaries",
        (("date", "UTC send day, YYYY-MM-DD.", r"^\d{4}-\d{2}-\d{2}$"),),
    ),
    Route(
        "health",
        "health",
        "GET",
        "anonymous",
        "Health",
        "Whether the log source and the summary table store are reachable, and why not.",
        None,
        "shared.models:Health",
        "Operations",
    ),
    Route(
        "openapi",
        "openapi.json",
        "GET",
        "anonymous",
        "OpenAPI document",
        "This API's OpenAPI 3.1 document.",
        None,
        None,
        "Operations",
    ),
)

_AUTH = {"function": func.AuthLevel.FUNCTION, "anonymous": func.AuthLevel.ANONYMOUS, "admin": func.AuthLevel.ADMIN}


def load(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(import_module(module), name)


def _handler(route: Route) -> Any:
    def handle(req: func.HttpRequest) -> func.HttpResponse:
        from shared.api.handlers import dispatch

        response: func.HttpResponse = dispatch(route, req)
        return response

    handle.__name__ = route.name
    handle.__qualname__ = route.name
    return handle


def _timer(timer: func.TimerRequest) -> None:
    from shared.summaries.job import run_scheduled

    run_scheduled(past_due=timer.past_due)


def build_blueprint() -> func.Blueprint:
    bp = func.Blueprint()  # type: ignore[no-untyped-call]
    for route in ROUTES:
        handler = _handler(route)
        bp.function_name(name=route.name)(
            bp.route(route=route.route, methods=[route.method], auth_level=_AUTH[route.auth])(handler)
        )
    _timer.__name__ = "daily_summary"
    bp.function_name(name="daily_summary")(
        bp.timer_trigger(schedule="%DAILY_SUMMARY_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)(
            _timer
        )
    )
    return bp
