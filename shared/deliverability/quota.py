"""Quota headroom: send requests per minute and per hour against SEND_LIMIT_PER_MINUTE / SEND_LIMIT_PER_HOUR,
and the evidence an ACS quota-increase request asks for.

ACS's limits count send requests (one message, up to 50 recipients), so the limits are compared with messages;
recipients are reported beside. The hourly limit is read as a sliding hour: "at the last hour's rate" means the
last 60 minutes' average rate going on while the sends already in the hour roll out as they age.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from shared.deliverability.health import rates
from shared.deliverability.models import (
    FAILURE_RATE_BAR_PERCENT,
    BusyMinute,
    DomainFailureRate,
    EvidencePeak,
    LastHour,
    QuotaEvidence,
    QuotaParams,
    QuotaPeriod,
    QuotaResult,
)
from shared.insights import Insights, _partial_of
from shared.kql import deliverability as kql
from shared.kql.builder import Filters, Window
from shared.kql.query import KqlQuery
from shared.logs.source import QueryResult
from shared.settings import Settings

HOUR = timedelta(hours=1)
EVIDENCE_SPANS = (timedelta(days=7), timedelta(days=30))


def run_all(insights: Insights, queries: Sequence[KqlQuery]) -> list[QueryResult]:
    """The queries at once, each in a copy of this context (the request's time budget follows each query)."""
    with ThreadPoolExecutor(max_workers=len(queries)) as pool:
        futures = [pool.submit(contextvars.copy_context().run, insights.source.run, q) for q in queries]
        return [future.result() for future in futures]


def headroom(limit: int, used: int) -> float:
    return round(100.0 * (limit - used) / limit, 2)


def minutes_to_limit(per_minute: Mapping[datetime, int], start: datetime, limit: int) -> int | None:
    """Minutes until a sliding hour holds ``limit`` messages if the last hour's average rate goes on: at minute
    N the hour holds the last hour's sends not yet rolled out (those after start + N) plus N minutes at the rate.
    0 when the last hour already holds the limit; None when the limit is not reached within the next hour."""
    sent = sum(per_minute.values())
    if sent >= limit:
        return 0
    rate = sent / 60.0
    for minute in range(1, 61):
        rolled_out = sum(count for time, count in per_minute.items() if time < start + timedelta(minutes=minute))
        if sent - rolled_out + rate * minute >= limit:
            return minute
    return None


def _period(record: Mapping[str, Any] | None, limit: int) -> QuotaPeriod:
    record = record or {}
    peak = int(record.get("PeakMessages") or 0)
    return QuotaPeriod(
        limit=limit,
        busy_periods=int(record.get("Periods") or 0),
        peak_messages=peak,
        p95_messages=record.get("P95Messages"),
        peak_recipients=int(record.get("PeakRecipients") or 0),
        p95_recipients=record.get("P95Recipients"),
        periods_over_limit=int(record.get("OverLimit") or 0),
        headroom_percent=headroom(limit, peak),
    )


def _last_hour(rows: Sequence[Mapping[str, Any]], start: datetime, limit: int) -> LastHour:
    per_minute = {row["Time"]: int(row.get("Messages") or 0) for row in rows}
    messages = sum(per_minute.values())
    minutes = minutes_to_limit(per_minute, start, limit)
    rate = round(messages / 60.0, 3)
    if minutes == 0:
        note = f"The last hour already holds {messages} messages: the hourly limit of {limit} is reached."
    elif minutes is None:
        note = f"At the last hour's rate ({rate} messages a minute) the hourly limit of {limit} is not reached."
    else:
        note = (
            f"At the last hour's rate ({rate} messages a minute) the hourly limit of {limit} is reached in "
            f"{minutes} minutes."
        )
    return LastHour(
        start=start,
        messages=messages,
        recipients=sum(int(row.get("Recipients") or 0) for row in rows),
        limit=limit,
        headroom_percent=headroom(limit, messages),
        rate_per_minute=rate,
        minutes_to_limit=minutes,
        note=note,
    )


def _evidence(peaks: QueryResult, failures: QueryResult, end: datetime, settings: Settings) -> QuotaEvidence:
    by_period = {row.get("RowKind"): row for row in peaks.records()}
    evidence_peaks = [
        EvidencePeak(
            period=period,
            peak_messages_7d=int(row.get("PeakMessages7d") or 0),
            peak_recipients_7d=int(row.get("PeakRecipients7d") or 0),
            peak_messages_30d=int(row.get("PeakMessages30d") or 0),
            peak_recipients_30d=int(row.get("PeakRecipients30d") or 0),
        )
        for period in ("minute", "hour", "day")
        for row in [by_period.get(period) or {}]
    ]
    totals: dict[str, dict[str, int]] = {}
    for row in failures.records():
        domain = totals.setdefault(str(row.get("SenderDomain") or ""), {"recipients": 0, "delivered": 0})
        domain["recipients"] += int(row.get("Recipients") or 0)
        domain["delivered"] += int(row.get("Delivered") or 0)
    domains = []
    for name, counts in sorted(totals.items()):
        current = rates(counts)
        rate = current.failure_rate or 0.0
        domains.append(
            DomainFailureRate(
                sender_domain=name or None,
                recipients=current.recipients,
                failure_rate=rate,
                under_bar=rate < FAILURE_RATE_BAR_PERCENT,
            )
        )
    return QuotaEvidence(
        to=end,
        peaks=evidence_peaks,
        sender_domains=domains,
        all_domains_under_bar=all(d.under_bar for d in domains),
        suppression_sync=bool(settings.suppression_list_id),
        note="An ACS quota increase needs a failure rate under 2 % on every sender domain, SPF, DKIM and DMARC "
        "in place, and the expected volumes per minute, hour and day; DNS records are not checked here.",
    )


def quota_queries(
    insights: Insights, params: QuotaParams, settings: Settings, window: tuple[datetime, datetime] | None = None
) -> list[KqlQuery]:
    """Volume in the window, peaks over 7 and 30 days, and failures per sender domain over 7 days."""
    start, end = window or params.window(insights.clock())
    f = Filters.from_scope(params)
    week, month = (end - span for span in EVIDENCE_SPANS)
    return [
        kql.build_quota_query(
            f,
            insights.window(start, end),
            minute_limit=settings.send_limit_per_minute,
            hour_limit=settings.send_limit_per_hour,
            last_hour_start=max(start, end - HOUR),
        ),
        kql.build_quota_evidence_query(f, insights.window(month, end), week_start=week),
        kql.build_sender_health_query(f, Window(week, end, insights.status_grace), current_start=week),
    ]


def quota(insights: Insights, params: QuotaParams, settings: Settings) -> QuotaResult:
    start, end = params.window(insights.clock())
    queries = quota_queries(insights, params, settings, (start, end))
    minute_limit, hour_limit = settings.send_limit_per_minute, settings.send_limit_per_hour
    volume, peaks, failures = run_all(insights, queries)
    rows: dict[str, list[dict[str, Any]]] = {}
    for record in volume.records():
        rows.setdefault(str(record.get("RowKind")), []).append(record)
    minute_row = next(iter(rows.get("minute", [])), None)
    busiest = sorted(rows.get("busiest", []), key=lambda r: (-int(r.get("Messages") or 0), r["Time"]))
    return QuotaResult(
        from_=start,
        to=end,
        messages=int((minute_row or {}).get("TotalMessages") or 0),
        recipients=int((minute_row or {}).get("TotalRecipients") or 0),
        minute=_period(minute_row, minute_limit),
        hour=_period(next(iter(rows.get("hour", [])), None), hour_limit),
        busiest_minutes=[
            BusyMinute(time=r["Time"], messages=int(r.get("Messages") or 0), recipients=int(r.get("Recipients") or 0))
            for r in busiest[: kql.BUSIEST_MINUTES]
        ],
        last_hour=_last_hour(rows.get("lastHour", []), max(start, end - HOUR), hour_limit),
        evidence=_evidence(peaks, failures, end, settings),
        **_partial_of(volume, peaks, failures),
    )
