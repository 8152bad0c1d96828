"""The daily report's numbers: built from the persisted summaries, plus one log query for what they lack.

Summaries hold per-day counts and latency for every dimension, so the headline numbers, the 14-day
history, the domain latency and the hard bounces come from Table Storage (two reads). Failure reasons
with their codes are not summarised (their keys are remote-controlled text of unbounded variety), so
they cost exactly one log query, the ``failures`` stats of the day; when it fails the report still
builds and says so in ``completeness``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from shared.codes import explain_enhanced, explain_smtp
from shared.deliverability.health import judge, rates
from shared.errors import ServiceError
from shared.insights import Insights, snake
from shared.models import (
    DailyReport,
    DailySummary,
    FailureStats,
    ReportCompleteness,
    ReportDay,
    ReportDomainCount,
    ReportDomainLatency,
    ReportFailureReason,
    ReportHardBounces,
    ReportMetric,
    ReportPending,
    ReportSenderHealth,
    StatsParams,
)
from shared.settings import HealthThresholds
from shared.summaries.table import SummaryStore

logger = logging.getLogger(__name__)

HISTORY_DAYS: Final = 14
AVERAGE_DAYS: Final = 7
TOP_DOMAINS: Final = 8
TOP_FAILURES: Final = 10

#: What a final status means when the receiving server gave no code to explain (ACS decided itself).
STATUS_EXPLANATIONS: Final = {
    "Suppressed": "Not sent: the address is on a suppression list (an earlier hard bounce or a list of yours).",
    "Quarantined": "Held by the receiving side's filters; the recipient or their admin can release it.",
    "FilteredSpam": "Classified as spam before delivery.",
    "Failed": "ACS could not deliver the message and the receiving server gave no status code.",
    "Bounced": "The receiving server refused the message without a status code.",
}

P50_MISSING_NOTE: Final = (
    "not in this day's summary (written before the median was recorded); recompute the day to add it"
)


def sent(summary: DailySummary) -> int:
    """Recipients of a day's sends: those with a final status plus those still pending."""
    return summary.total + summary.pending


def delivered_percent(summary: DailySummary) -> float | None:
    return summary.success_rate if summary.total else None


#: Headline metrics: (name, label, unit, which way is good, value of a total summary).
_METRICS: Final[tuple[tuple[str, str, str, str, Callable[[DailySummary], float | None]], ...]] = (
    ("sent", "Recipients sent", "count", "higher", lambda s: float(sent(s))),
    ("deliveredPercent", "Delivered", "percent", "higher", delivered_percent),
    ("hardBounces", "Hard bounces", "count", "lower", lambda s: float(s.hard_bounces)),
    ("softBounces", "Soft bounces", "count", "lower", lambda s: float(s.soft_bounces)),
    ("suppressed", "Suppressed", "count", "lower", lambda s: float(s.suppressed)),
    ("p50Seconds", "Latency p50", "seconds", "lower", lambda s: s.p50_duration_seconds),
    ("p95Seconds", "Latency p95", "seconds", "lower", lambda s: s.p95_duration_seconds),
)


def _difference(value: float | None, other: float | None) -> float | None:
    return None if value is None or other is None else round(value - other, 3)


def _metrics(totals: dict[date, DailySummary], day: date) -> list[ReportMetric]:
    today, yesterday = totals.get(day), totals.get(day - timedelta(days=1))
    week = [totals[d] for d in (day - timedelta(days=i) for i in range(1, AVERAGE_DAYS + 1)) if d in totals]
    metrics: list[ReportMetric] = []
    for name, label, unit, better, value_of in _METRICS:
        value = value_of(today) if today is not None else None
        previous = value_of(yesterday) if yesterday is not None else None
        values = [v for v in (value_of(s) for s in week) if v is not None]
        average = round(sum(values) / len(values), 3) if values else None
        note = None
        if today is None:
            note = "no summary of this day"
        elif value is None and name == "p50Seconds":
            note = P50_MISSING_NOTE
        elif value is None:
            note = "no delivered recipient with a latency"
        metrics.append(
            ReportMetric(
                name=name,
                label=label,
                unit=unit,  # type: ignore[arg-type]
                value=value,
                previous_day=previous,
                change=_difference(value, previous),
                seven_day_average=average,
                change_vs_average=_difference(value, average),
                better=better,  # type: ignore[arg-type]
                note=note,
            )
        )
    return metrics


def _history(totals: dict[date, DailySummary], day: date) -> list[ReportDay]:
    history = []
    for offset in range(HISTORY_DAYS - 1, -1, -1):
        current = day - timedelta(days=offset)
        summary = totals.get(current)
        if summary is None:
            history.append(
                ReportDay(date=current, summarised=False, sent=0, delivered=0, delivered_percent=None, pending=0)
            )
            continue
        history.append(
            ReportDay(
                date=current,
                summarised=True,
                sent=sent(summary),
                delivered=summary.delivered,
                delivered_percent=delivered_percent(summary),
                pending=summary.pending,
            )
        )
    return history


def _failure_reasons(
    insights: Insights, day: date, top: int, warnings: list[str]
) -> tuple[list[ReportFailureReason], bool]:
    """The one log query: the day's failure reasons. Returns (reasons, whether the query answered)."""
    start = datetime.combine(day, time(0), UTC)
    params = StatsParams.model_validate({"from": start, "to": start + timedelta(days=1), "top": top})
    try:
        result = insights.run_query(insights.stats_query("failures", params))
    except ServiceError as exc:
        logger.warning("daily report %s: the failure-reason query failed: %s", day.isoformat(), exc.detail)
        warnings.append(f"failure reasons unavailable: {exc.title}")
        return [], False
    if result.partial_error:
        warnings.append("failure reasons come from a partial log query result")
    reasons = []
    for record in result.records():
        row = FailureStats.model_validate({snake(k): v for k, v in record.items()})
        info = explain_enhanced(row.enhanced_smtp_status_code)
        if info.matched == "unknown":
            info = explain_smtp(row.smtp_status_code)
        explanation = row.enhanced_smtp_status_code_details or info.meaning
        remedy = info.remedy if info.matched != "unknown" else None
        # No code, or a success code on a recipient that was not delivered (a quarantine accepts with 250):
        # the code cannot explain the outcome, the status does.
        unexplained = info.matched == "unknown" or info.code.startswith("2")
        if unexplained and row.final_delivery_status in STATUS_EXPLANATIONS:
            explanation, remedy = STATUS_EXPLANATIONS[row.final_delivery_status], None
        reasons.append(
            ReportFailureReason(
                failure_reason=row.failure_reason,
                final_delivery_status=row.final_delivery_status,
                smtp_status_code=row.smtp_status_code,
                enhanced_smtp_status_code=row.enhanced_smtp_status_code,
                explanation=explanation,
                failure_category=row.failure_category or info.failure_category,
                remedy=remedy,
                count=row.count,
            )
        )
    return reasons, True


def _domain_latency(domains: Sequence[DailySummary], top: int) -> list[ReportDomainLatency]:
    ranked = sorted(domains, key=lambda s: (-s.total, s.key or ""))[:top]
    return [
        ReportDomainLatency(
            domain=s.key,
            sent=s.total,
            delivered_percent=delivered_percent(s),
            p50_seconds=s.p50_duration_seconds,
            p95_seconds=s.p95_duration_seconds,
        )
        for s in ranked
    ]


def _pending(totals: dict[date, DailySummary], day: date, now: datetime, grace: timedelta) -> ReportPending:
    """Pending recipients of a day whose status window (day end + grace) is still open may still resolve;
    those of closed windows never will within what the summaries look at, so they count as expired."""
    closes = datetime.combine(day + timedelta(days=1), time(0), UTC) + grace
    still = expired = 0
    still_days, expired_days = [], []
    for current, summary in sorted(totals.items()):
        if current > day or not summary.pending:
            continue
        if datetime.combine(current + timedelta(days=1), time(0), UTC) + grace > now:
            still += summary.pending
            still_days.append(current)
        else:
            expired += summary.pending
            expired_days.append(current)
    return ReportPending(
        still_pending=still,
        still_pending_days=still_days,
        expired=expired,
        expired_days=expired_days,
        status_window_closes=closes,
    )


_VERDICT_ORDER: Final = {"atRisk": 0, "watch": 1, "ok": 2}


def _sender_health(store: SummaryStore, day: date, thresholds: HealthThresholds) -> list[ReportSenderHealth]:
    """Per sender domain (the part after the sender key's "@", lowercased) the day's rates and verdict, from the
    day's and the day before's sender summaries (one read)."""
    counts: dict[tuple[date, str], dict[str, int]] = {}
    for summary in store.read(day - timedelta(days=1), day, dimension="sender"):
        domain = (summary.key or "").rpartition("@")[2].lower()
        totals = counts.setdefault(
            (summary.date, domain), {"recipients": 0, "delivered": 0, "hard_bounces": 0, "spam": 0}
        )
        totals["recipients"] += summary.total
        totals["delivered"] += summary.delivered
        totals["hard_bounces"] += summary.hard_bounces
        totals["spam"] += summary.quarantined + summary.filtered_spam
    entries = []
    for (when, domain), totals in counts.items():
        if when != day:
            continue
        current, previous = rates(totals), rates(counts.get((day - timedelta(days=1), domain), {}))
        verdict, reasons = judge(current, previous, thresholds)
        entries.append(
            ReportSenderHealth(
                sender_domain=domain or None,
                recipients=current.recipients,
                failure_rate=current.failure_rate,
                hard_bounce_rate=current.hard_bounce_rate,
                spam_rate=current.spam_rate,
                previous_day_hard_bounce_rate=previous.hard_bounce_rate,
                verdict=verdict,
                reasons=reasons,
            )
        )
    entries.sort(key=lambda e: (_VERDICT_ORDER[e.verdict], -e.recipients, e.sender_domain or ""))
    return entries


def build_daily_report(
    store: SummaryStore,
    insights: Insights | None,
    day: date,
    *,
    now: datetime | None = None,
    top_domains: int = TOP_DOMAINS,
    top_failures: int = TOP_FAILURES,
    health: HealthThresholds | None = None,
) -> DailyReport:
    """The report of UTC *day* from the summaries of the 14 days up to it and one failure-reason query.

    With *insights* None no log query runs (failure reasons are reported unavailable). Raises
    SummaryStoreError when the table cannot be read.
    """
    now = now or (insights.clock() if insights is not None else datetime.now(UTC))
    grace = insights.status_grace if insights is not None else timedelta(hours=72)
    first = day - timedelta(days=HISTORY_DAYS - 1)
    totals = {s.date: s for s in store.read(first, day, dimension="total")}
    domains = store.read(day, day, dimension="domain")
    warnings: list[str] = []
    if day not in totals:
        warnings.append(f"no summary of {day.isoformat()}: run the daily summary for it")

    reasons: list[ReportFailureReason] = []
    answered = False
    if insights is not None:
        reasons, answered = _failure_reasons(insights, day, top_failures, warnings)

    today, yesterday = totals.get(day), totals.get(day - timedelta(days=1))
    hard = [s for s in domains if s.hard_bounces]
    hard.sort(key=lambda s: (-s.hard_bounces, s.key or ""))
    history = _history(totals, day)
    closes = datetime.combine(day + timedelta(days=1), time(0), UTC) + grace
    return DailyReport(
        date=day,
        generated_at=now,
        metrics=_metrics(totals, day),
        history=history,
        domain_latency=_domain_latency(domains, top_domains),
        failure_reasons=reasons,
        hard_bounces=ReportHardBounces(
            count=today.hard_bounces if today is not None else 0,
            previous_day=yesterday.hard_bounces if yesterday is not None else None,
            top_domains=[ReportDomainCount(domain=s.key, count=s.hard_bounces) for s in hard[:top_domains]],
        ),
        pending=_pending(totals, day, now, grace),
        completeness=ReportCompleteness(
            summary_computed_at=today.computed_at if today is not None else None,
            days_summarised=sum(1 for d in history if d.summarised),
            missing_days=[d.date for d in history if not d.summarised],
            day_final=today is not None and today.computed_at >= closes,
            log_queries=1 if insights is not None else 0,
            failure_reasons_source="log" if answered else "unavailable",
            warnings=warnings,
        ),
        sender_health=_sender_health(store, day, health or HealthThresholds()),
    )
