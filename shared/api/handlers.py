"""HTTP handlers: one function per operation of ``shared.api.spec``, each given a validated ``Call``.

A handler calls a use case and shapes the answer (status, headers, media type); input validation and error
mapping happen once, in ``shared.api.dispatch``. Recipient addresses never reach a log line.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final
from urllib.parse import urlsplit

import azure.functions as func
from pydantic import BaseModel

from shared import tracing
from shared.api.http import Call, json_response, retry_after_header, text_response, wants
from shared.api.render import bounces_csv, summaries_csv
from shared.api.signatures import HttpHandler
from shared.errors import InvalidInput, ServiceError
from shared.models import ComponentHealth, DailySummaryList, Health, RegisterMessageBody, TraceResult
from shared.services import Services
from shared.signing import LinkSigningUnavailable

log = logging.getLogger("acs_email_insights")

TRACE_PENDING_RETRY_AFTER = 30
#: How long a poll link stays valid; each 202 answer hands out a fresh one, so a client that keeps polling
#: keeps a valid link, and a leaked link is good for at most this long, for one message only.
POLL_LINK_LIFE = timedelta(hours=1)


# --------------------------------------------------------------------------- messages


def _trace_answer(call: Call, result: TraceResult) -> func.HttpResponse:
    """200 final or expired (a definite end), 202 pending with a poll link; 404 is raised by the use case."""
    if result.state == "pending":
        services = call.services
        token = services.signer.poll_token(result.message_id, services.clock(), POLL_LINK_LIFE)
        path = urlsplit(call.url).path.rstrip("/")
        location = call.link(path if path.endswith("/poll") else path + "/poll", token=token)
        headers = {"Location": location, **retry_after_header(TRACE_PENDING_RETRY_AFTER)}
        return json_response(result, 202, headers)
    return json_response(result)


def trace_message(call: Call) -> func.HttpResponse:
    call.services.signer  # noqa: B018 - a trace may hand out a poll link: refused at once without a usable key
    return _trace_answer(call, tracing.trace_message(call.services, call.params))


def register_message(call: Call) -> func.HttpResponse:
    """201 when the registration is new, 200 when the same one was stored already (409 raised on a conflict)."""
    created, registration = tracing.register_message(call.services, call.params.message_id, call.body)
    return json_response(registration, 201 if created else 200)


def poll_message_trace(call: Call) -> func.HttpResponse:
    """The 202's Location: no function key, but a token signed for this one message that expires."""
    services = call.services
    services.signer.check_poll_token(call.params.token, call.params.message_id, services.clock(), POLL_LINK_LIFE)
    return _trace_answer(call, tracing.trace_message(services, call.params.trace()))


def search_messages(call: Call) -> BaseModel:
    page = call.services.insights.search(call.params)
    if page.continuation_token:
        page.next_link = call.link(continuationToken=page.continuation_token)
    return page


# --------------------------------------------------------------------------- push subscriptions


def create_subscription(call: Call) -> func.HttpResponse:
    """201 with the subscription (its secret shown this once) and a Location that deletes it; with recipients,
    the message is registered too (a conflicting registration: 409, and no subscription is left behind)."""
    body = call.body
    if body.recipients is not None and body.message_id is None:
        raise InvalidInput.parameter("recipients", "registers a message's recipients: give it with messageId")
    subscription = call.services.push.subscribe(body)
    if body.recipients is not None:
        assert body.message_id is not None
        try:
            tracing.register_message(call.services, body.message_id, RegisterMessageBody(recipients=body.recipients))
        except ServiceError:
            call.services.push.unsubscribe(subscription.id)
            raise
    location = call.link(urlsplit(call.url).path.rstrip("/") + "/" + subscription.id)
    return json_response(subscription, 201, {"Location": location})


def delete_subscription(call: Call) -> func.HttpResponse:
    call.services.push.unsubscribe(call.params.id)
    return func.HttpResponse(status_code=204)


# --------------------------------------------------------------------------- aggregates


def get_stats(call: Call) -> BaseModel:
    return call.services.insights.stats(call.params.kind, call.params)


def get_stats_timeseries(call: Call) -> BaseModel:
    return call.services.insights.timeseries(call.params)


def get_stats_engagement(call: Call) -> BaseModel:
    return call.services.insights.engagement(call.params)


def get_recipient_history(call: Call) -> BaseModel:
    """The address is PII: it reaches the query only as an obfuscated literal and is never logged."""
    return call.services.insights.recipient_history(call.params)


def list_bounces(call: Call) -> BaseModel | func.HttpResponse:
    params = call.params
    if params.format == "json" and wants(call.request, None, "text/csv"):
        params = params.model_copy(update={"format": "csv"})
    result = call.services.insights.bounces(params)
    if params.format != "csv":
        return result
    headers = {"Content-Disposition": 'attachment; filename="bounces.csv"'}
    if result.partial:
        headers["Warning"] = '199 - "partial result"'
    return text_response(bounces_csv(result), "text/csv", headers)


# --------------------------------------------------------------------------- summaries


def list_daily_summaries(call: Call) -> BaseModel | func.HttpResponse:
    """JSON, or CSV for Excel and Power BI (format=csv or Accept: text/csv; columns in docs/reports.md)."""
    params = call.params
    rows = call.services.summaries.read(params.from_, params.to, params.dimension)
    if params.format == "csv" or (params.format == "json" and wants(call.request, None, "text/csv")):
        disposition = f'attachment; filename="daily-summaries-{params.from_}-{params.to}.csv"'
        return text_response(summaries_csv(rows), "text/csv", {"Content-Disposition": disposition})
    return DailySummaryList(value=rows)


def get_daily_report(call: Call) -> BaseModel | func.HttpResponse:
    from shared.report.daily import build_daily_report

    services = call.services
    report = build_daily_report(
        services.summaries, services.insights, call.params.day, now=services.clock(), health=services.settings.health
    )
    if call.params.format == "json":
        return report
    from shared.report.html import render_report_html

    return text_response(render_report_html(report, images="inline-data"), "text/html")


def recompute_daily_summary(call: Call) -> BaseModel:
    from shared.summaries.job import refuse_open_day, summarize_one_day

    services = call.services
    today = services.clock().date()
    refuse_open_day(call.params.day, today)  # before the store is needed: bad input is a 400 whatever the store
    return summarize_one_day(services.insights, services.summaries, call.params.day, today=today)


# --------------------------------------------------------------------------- operations


def health(call: Call) -> func.HttpResponse:
    services = call.services
    source = services.insights.source
    ok, detail = source.check()
    log_source = ComponentHealth(name=source.name, reachable=ok, detail=detail)
    try:
        store_ok, store_detail = services.summaries.check()
    except Exception as exc:  # not configured, bad settings: say why, never the secret
        store_ok, store_detail = False, getattr(exc, "detail", type(exc).__name__)
    table_store = ComponentHealth(name="tableStorage", reachable=store_ok, detail=store_detail)
    report_email = _report_email_health(services) if store_ok else None
    link_signing = _link_signing_health(services)
    set_aside = _set_aside_count(services) if store_ok else None
    # A failed report email is shown, but the API still serves: it does not make the service degraded.
    healthy = ok and store_ok and not link_signing.startswith("missing")
    body = Health(
        status="ok" if healthy else "degraded",
        log_source=log_source,
        table_store=table_store,
        report_email=report_email,
        link_signing=link_signing,
        set_aside=set_aside,
    )
    return json_response(body, 200 if healthy else 503)


def _link_signing_health(services: Services) -> str:
    try:
        return "development key" if services.signer.development else "configured"
    except LinkSigningUnavailable as exc:
        log.error("link signing refused: %s", exc.detail)  # names the setting, never its value
        return "missing: " + exc.detail


def _set_aside_count(services: Services) -> int | None:
    """Observations the delivery state set aside (shown, but they do not make the service degraded)."""
    try:
        return services.state.set_aside_count()
    except Exception:  # the state store is reported by tableStorage already (the same account)
        return None


def _report_email_health(services: Services) -> ComponentHealth | None:
    if not services.settings.report_recipients:
        return None
    from shared.report.email import report_health

    return report_health(services.summaries, today=services.clock().date(), settings=services.settings)


#: Every handler of this module, checked against ``HttpHandler`` (``shared.api.spec`` finds them here by name).
HTTP_HANDLERS: Final[tuple[HttpHandler, ...]] = (
    trace_message,
    register_message,
    poll_message_trace,
    search_messages,
    create_subscription,
    delete_subscription,
    get_stats,
    get_stats_timeseries,
    get_stats_engagement,
    get_recipient_history,
    list_bounces,
    list_daily_summaries,
    get_daily_report,
    recompute_daily_summary,
    health,
)
