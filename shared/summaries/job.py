"""The daily summary job: recompute recent days (status events arrive late) and backfill gaps.

Aggregation runs in the log source (KQL ``summarize``); this module only decides which UTC
days to (re)compute and persists each day with :meth:`SummaryStore.replace_day`. Logs carry
day counts only, never keys (which include sender addresses) or recipient addresses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from shared.errors import InvalidInput, ServiceError
from shared.insights import Insights
from shared.models import DailySummaryList
from shared.settings import Settings
from shared.summaries.table import ReplaceResult, SummaryStore

logger = logging.getLogger(__name__)

Reason = Literal["recompute", "backfill", "requested"]


def plan_days(today: date, lookback_days: int, backfill_days: int, present: set[date]) -> dict[date, Reason]:
    """Complete UTC days to compute: the last *lookback_days* (yesterday back) always, plus every
    day of the last *backfill_days* that has no summary yet."""
    yesterday = today - timedelta(days=1)
    plan: dict[date, Reason] = {yesterday - timedelta(days=i): "recompute" for i in range(max(lookback_days, 0))}
    for i in range(max(backfill_days, 0)):
        day = yesterday - timedelta(days=i)
        if day not in plan and day not in present:
            plan[day] = "backfill"
    return dict(sorted(plan.items()))


def _summarise(
    insights: Insights, store: SummaryStore, day: date, *, present: bool, computed_at: datetime
) -> tuple[ReplaceResult | None, str | None, int]:
    """Compute and persist one day. Returns (result or None if skipped, partial warning, total)."""
    rows, partial = insights.daily_summary(day)
    total = next((int(row.get("Total") or 0) for row in rows if row.get("Dimension") == "total"), 0)
    if partial and present:
        # A partial result must not overwrite a complete summary; the next run tries again.
        logger.warning("daily summary %s: partial query result, existing summary kept", day.isoformat())
        return None, partial, total
    result = store.replace_day(day, rows, computed_at, delete_stale=not partial)
    return result, partial, total


def _plan(
    settings: Settings, store: SummaryStore, days: Iterable[date] | None, today: date
) -> tuple[dict[date, Reason], set[date]]:
    """The days to compute and why, and which of them already have a summary."""
    if days is None:
        yesterday = today - timedelta(days=1)
        span = max(settings.summary_lookback_days, settings.summary_backfill_days, 1)
        present = store.days_present(yesterday - timedelta(days=span - 1), yesterday)
        return plan_days(today, settings.summary_lookback_days, settings.summary_backfill_days, present), present
    requested = sorted(set(days))
    present = store.days_present(requested[0], requested[-1]) if requested else set()
    return dict.fromkeys(requested, "requested"), present


def _run_day(
    insights: Insights, store: SummaryStore, day: date, reason: Reason, present: bool, report: dict[str, Any]
) -> None:
    """One day into the store and its line into ``report``; a failure is recorded, never raised."""
    started = time.monotonic()
    entry: dict[str, Any] = {"date": day.isoformat(), "reason": reason}
    try:
        result, partial, total = _summarise(insights, store, day, present=present, computed_at=datetime.now(UTC))
    except (ServiceError, ValueError) as exc:
        detail = getattr(exc, "detail", None) or str(exc)
        logger.error("daily summary %s (%s) failed: %s", day.isoformat(), reason, detail)
        entry.update(status="failed", error=detail)
        report["failed"].append({"date": day.isoformat(), "error": detail})
    else:
        entry["recipients"] = total
        if partial:
            entry["partialWarning"] = partial
            report["partialWarnings"].append({"date": day.isoformat(), "warning": partial})
        if result is None:
            entry["status"] = "skipped"
        else:
            entry.update(status="written", entities=result.entities, written=result.written, deleted=result.deleted)
            report["entitiesWritten"] += result.written
            report["entitiesDeleted"] += result.deleted
            logger.info(
                "daily summary %s (%s): %d recipients, %d entities written, %d deleted",
                *(day.isoformat(), reason, total, result.written, result.deleted),
            )
    entry["seconds"] = round(time.monotonic() - started, 3)
    report["days"].append(entry)


def run_daily_summary(
    settings: Settings,
    days: Iterable[date] | None = None,
    *,
    insights: Insights,
    store: SummaryStore,
    today: date | None = None,
) -> dict[str, Any]:
    """Run the job; with *days* None, plan recompute + backfill days from the settings.

    Days are processed independently: a failure of one is reported and the others still run.
    Returns a JSON-able report.
    """
    started = time.monotonic()
    today = today or datetime.now(UTC).date()
    store.ensure_table()
    plan, present = _plan(settings, store, days, today)
    report: dict[str, Any] = {
        "today": today.isoformat(),
        **{
            key: [d.isoformat() for d, reason in plan.items() if reason == name]
            for key, name in (("recomputed", "recompute"), ("backfilled", "backfill"), ("requested", "requested"))
        },
        "days": [],
        "entitiesWritten": 0,
        "entitiesDeleted": 0,
        "partialWarnings": [],
        "failed": [],
    }
    for day, reason in plan.items():
        _run_day(insights, store, day, reason, day in present, report)
    report["ok"] = not report["failed"]
    report["seconds"] = round(time.monotonic() - started, 3)
    logger.info(
        "daily summary run: %d days (%d recomputed, %d backfilled, %d requested), %d failed, %.1f s",
        *(len(plan), len(report["recomputed"]), len(report["backfilled"]), len(report["requested"])),
        *(len(report["failed"]), report["seconds"]),
    )
    return report


def refuse_open_day(day: date, today: date) -> None:
    if day >= today:
        raise InvalidInput.parameter("date", f"{day.isoformat()} has not ended yet (UTC); summaries are of whole days")


def summarize_one_day(insights: Insights, store: SummaryStore, day: date, *, today: date) -> DailySummaryList:
    """Recompute and persist one day on request (``POST /api/summaries/daily/{date}``); return it.

    A day that has not ended (``today`` or later, UTC) is refused: its summary would be partial at best and
    all zeros for a future day. Errors propagate (LogQueryError, SummaryStoreError) so the API maps them to a
    status. A partial query result is written without deleting keys it may have missed.
    """
    refuse_open_day(day, today)
    store.ensure_table()
    rows, partial = insights.daily_summary(day)
    result = store.replace_day(day, rows, datetime.now(UTC), delete_stale=not partial)
    if partial:
        logger.warning("daily summary %s: partial query result written, stale keys kept", day.isoformat())
    logger.info(
        "daily summary %s (requested): %d entities written, %d deleted", day.isoformat(), result.written, result.deleted
    )
    return DailySummaryList(value=store.read(day, day))


def run_scheduled(
    settings: Settings,
    insights: Insights,
    store: SummaryStore,
    *,
    past_due: bool = False,
    after_run: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The timer's entry point: the planned run with the app's settings, log source and summary store.

    ``after_run`` (the report email) gets the run's report; what it returns is kept as ``afterRun`` and whatever
    it raises is logged, never allowed to fail the summaries already written. Timers are not retried by the
    host, so a run with failed days raises after every day was tried, which marks the invocation failed where
    operators look (Application Insights); the next run recomputes and backfills whatever is missing.
    """
    if past_due:
        logger.warning("daily summary timer is past due; running now")
    report = run_daily_summary(settings, insights=insights, store=store)
    if after_run is not None:
        try:
            report["afterRun"] = after_run(report)
        except Exception as exc:  # the summaries are written; nothing after them may undo that
            logger.error("after the daily summary: %s", type(exc).__name__)
            report["afterRun"] = {"status": "failed", "error": type(exc).__name__}
    if not report["ok"]:
        raise ServiceError(
            f"daily summary failed for {len(report['failed'])} day(s): "
            + ", ".join(item["date"] for item in report["failed"])
        )
    return report
