"""The daily report's numbers (its HTML and email render them)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import (
    Field,
)

from shared.models.common import BoundedText, UtcDateTime, _Out

MetricUnit = Literal["count", "percent", "seconds"]


class ReportMetric(_Out):
    """One headline number of the daily report, with the day before and the 7 days before for comparison."""

    name: str = Field(description="Stable identifier: sent, deliveredPercent, hardBounces, softBounces, ...")
    label: str
    unit: MetricUnit
    value: float | None = Field(description="The day's value; null when the summaries do not hold it.")
    previous_day: float | None = Field(None, description="The value of the day before (null when not summarised).")
    change: float | None = Field(None, description="value - previousDay (percentage points for percents).")
    seven_day_average: float | None = Field(
        None, description="Mean of the 7 days before the day, over the days that have a summary."
    )
    change_vs_average: float | None = Field(None, description="value - sevenDayAverage.")
    better: Literal["higher", "lower"] = Field(description="Which direction is good news.")
    note: str | None = Field(None, description="Why the value is missing or how it was derived.")


class ReportDay(_Out):
    """One day of the 14-day history chart."""

    date: date
    summarised: bool = Field(description="False when no summary of the day exists (a gap in the chart).")
    sent: int = Field(description="Recipients of the day's sends: final statuses plus still pending.")
    delivered: int
    delivered_percent: float | None = Field(description="Delivered of final statuses, in percent.")
    pending: int


class ReportDomainLatency(_Out):
    domain: str | None
    sent: int = Field(description="Recipients with a final status.")
    delivered_percent: float | None
    p50_seconds: float | None
    p95_seconds: float | None


class ReportFailureReason(_Out):
    failure_reason: BoundedText
    final_delivery_status: str | None
    smtp_status_code: str | None
    enhanced_smtp_status_code: str | None
    explanation: str = Field(description="What the status code means (the code catalog).")
    failure_category: str | None
    remedy: str | None
    count: int


class ReportDomainCount(_Out):
    domain: str | None
    count: int


class ReportHardBounces(_Out):
    count: int = Field(description="Hard bounces of the day's sends (addresses to remove from lists).")
    previous_day: int | None
    top_domains: list[ReportDomainCount]


class ReportPending(_Out):
    still_pending: int = Field(description="Recipients without a final status whose status window is still open.")
    still_pending_days: list[date] = Field(description="Days that contribute to `stillPending`.")
    expired: int = Field(
        description="Recipients of the last 14 days without a final status whose status window has closed "
        "(as of each day's latest summary)."
    )
    expired_days: list[date] = Field(description="Days that contribute to `expired`.")
    status_window_closes: UtcDateTime = Field(description="When the report day's status window closes.")


class ReportCompleteness(_Out):
    summary_computed_at: UtcDateTime | None = Field(description="When the report day's summary was computed.")
    days_summarised: int = Field(description="Days of the 14-day history that have a summary.")
    missing_days: list[date]
    day_final: bool = Field(description="True when the day's summary was computed after its status window closed.")
    log_queries: int = Field(description="Log queries run to build the report (failure reasons): 0 or 1.")
    failure_reasons_source: Literal["log", "unavailable"]
    warnings: list[str] = Field(default_factory=list)


class ReportSenderHealth(_Out):
    """One sender domain's health verdict on the day (GET /api/senders/health's rules, from the day's summaries)."""

    sender_domain: str | None
    recipients: int = Field(description="Recipients with a final status.")
    failure_rate: float | None
    hard_bounce_rate: float | None
    spam_rate: float | None
    previous_day_hard_bounce_rate: float | None = None
    verdict: Literal["ok", "watch", "atRisk"]
    reasons: list[str] = Field(default_factory=list)


class DailyReport(_Out):
    """The daily delivery report of one UTC day, built from the persisted summaries (plus one log query)."""

    date: date
    generated_at: UtcDateTime
    metrics: list[ReportMetric]
    history: list[ReportDay]
    domain_latency: list[ReportDomainLatency]
    failure_reasons: list[ReportFailureReason]
    hard_bounces: ReportHardBounces
    pending: ReportPending
    completeness: ReportCompleteness
    sender_health: list[ReportSenderHealth] = Field(
        default_factory=list, description="Each sender domain's health verdict on the day, worst first."
    )
