"""Request and response models of the deliverability answers: quota headroom, sender health, mailbox providers.

Beside ``shared.models`` (whose base classes and field types they reuse) so the deliverability routes stay in
modules of their own. Definitions of every rate and verdict: docs/semantics.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field, model_validator

from shared.models import (
    DEFAULT_TOP,
    MAX_TOP,
    TOP_DESCRIPTION,
    BoundedText,
    ScopeParams,
    UtcDateTime,
    _Out,
)

#: ACS grants a quota increase only to domains whose failure rate is under this (percent).
FAILURE_RATE_BAR_PERCENT = 2.0
Verdict = Literal["ok", "watch", "atRisk"]
HealthSpan = Literal["24h", "7d"]
HEALTH_SPANS: dict[str, timedelta] = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
#: Failure codes listed per mailbox provider.
TOP_PROVIDER_CODES = 5

# --------------------------------------------------------------------------- requests


class QuotaParams(ScopeParams):
    """The send window (default: the 24 h before `to`) and the resource / sender filters of every aggregate."""


class SenderHealthParams(ScopeParams):
    span: HealthSpan | None = Field(
        None,
        alias="window",
        description="How far back from `to` the window reaches: 24h (default) or 7d. Or give `from` instead; "
        "the previous window is as long and ends where this one starts.",
    )

    @model_validator(mode="after")
    def _one_span(self) -> SenderHealthParams:
        if self.span is not None and self.from_ is not None:
            raise ValueError("give either `window` or `from`, not both")
        return self

    def window_bounds(self, now: datetime) -> tuple[datetime, datetime]:
        if self.from_ is not None:
            return self.window(now)
        end = self.to or now
        return end - HEALTH_SPANS[self.span or "24h"], end


class ProviderStatsParams(ScopeParams):
    top: int = Field(DEFAULT_TOP, ge=1, le=MAX_TOP, description=TOP_DESCRIPTION)


# --------------------------------------------------------------------------- quota


class QuotaPeriod(_Out):
    """Send requests (messages) and recipients per minute or per hour, against the limit."""

    limit: int = Field(description="Messages (send requests) allowed per period: SEND_LIMIT_PER_MINUTE / _HOUR.")
    busy_periods: int = Field(description="Periods of the window with at least one send.")
    peak_messages: int = Field(description="Most messages sent in one period.")
    p95_messages: float | None = Field(None, description="95th percentile of messages per busy period.")
    peak_recipients: int = Field(description="Most recipients in one period (reported beside; ACS counts messages).")
    p95_recipients: float | None = Field(None, description="95th percentile of recipients per busy period.")
    periods_over_limit: int = Field(description="Busy periods whose messages exceeded the limit.")
    headroom_percent: float = Field(
        description="How far the peak stays below the limit: 100 * (limit - peak) / limit; negative when over."
    )


class BusyMinute(_Out):
    time: UtcDateTime = Field(description="Start of the minute (UTC).")
    messages: int
    recipients: int


class LastHour(_Out):
    """The 60 minutes before the window's end, against the hourly limit (taken as a sliding hour)."""

    start: UtcDateTime
    messages: int
    recipients: int
    limit: int
    headroom_percent: float = Field(description="100 * (hourly limit - messages of the last hour) / limit.")
    rate_per_minute: float = Field(description="The last hour's average messages per minute.")
    minutes_to_limit: int | None = Field(
        None,
        description="At the last hour's rate (its sends rolling out of the sliding hour as they age), the minutes "
        "until the hourly limit is reached; 0 when it already is; null when it is not reached within the hour.",
    )
    note: str


class EvidencePeak(_Out):
    period: Literal["minute", "hour", "day"]
    peak_messages_7d: int = Field(alias="peakMessages7d")
    peak_recipients_7d: int = Field(alias="peakRecipients7d")
    peak_messages_30d: int = Field(alias="peakMessages30d")
    peak_recipients_30d: int = Field(alias="peakRecipients30d")


class DomainFailureRate(_Out):
    sender_domain: str | None
    recipients: int = Field(description="Recipients with a final status in the last 7 days.")
    failure_rate: float = Field(description="Percent of them not Delivered (docs/semantics.md).")
    under_bar: bool = Field(description=f"failureRate < {FAILURE_RATE_BAR_PERCENT} %: what a quota increase needs.")


class QuotaEvidence(_Out):
    """What an ACS quota-increase support request asks for (volumes, failure rate, hard-bounce handling)."""

    to: UtcDateTime = Field(description="The evidence covers the 7 and 30 days before this time.")
    peaks: list[EvidencePeak]
    failure_rate_bar_percent: float = FAILURE_RATE_BAR_PERCENT
    sender_domains: list[DomainFailureRate] = Field(description="Failure rate per sender domain, last 7 days.")
    all_domains_under_bar: bool
    suppression_sync: bool = Field(
        description="Hard-bounce handling in place: hard bounces are synced to a suppression list "
        "(SUPPRESSION_LIST_ID is set)."
    )
    note: str


class QuotaResult(_Out):
    from_: UtcDateTime = Field(alias="from")
    to: UtcDateTime
    messages: int = Field(description="Send requests in the window (what ACS's limits count).")
    recipients: int = Field(description="Their unique recipients.")
    minute: QuotaPeriod
    hour: QuotaPeriod
    busiest_minutes: list[BusyMinute]
    last_hour: LastHour
    evidence: QuotaEvidence
    partial: bool | None = None
    warning: str | None = None


# --------------------------------------------------------------------------- sender health


class HealthRates(_Out):
    """One window's counts and rates (percent of recipients with a final status; null without any)."""

    recipients: int = Field(description="Recipients with a final status, of sends in the window.")
    delivered: int
    failures: int = Field(description="Recipients whose final status is not Delivered.")
    hard_bounces: int
    spam: int = Field(description="Recipients whose final status is Quarantined or FilteredSpam.")
    failure_rate: float | None = None
    hard_bounce_rate: float | None = None
    spam_rate: float | None = None


class HealthThresholdsOut(_Out):
    hard_bounce_watch_percent: float
    hard_bounce_at_risk_percent: float
    spam_watch_percent: float
    spam_at_risk_percent: float
    failure_watch_percent: float
    min_recipients: int


class SenderHealth(_Out):
    sender: str | None = Field(None, description="username@domain; null on a sender domain's row.")
    sender_domain: str | None
    current: HealthRates
    previous: HealthRates
    failure_rate_under_bar: bool | None = Field(
        None, description=f"failureRate < {FAILURE_RATE_BAR_PERCENT} % (null without recipients)."
    )
    verdict: Verdict
    reasons: list[str] = Field(description="Why the verdict, in words; empty when ok.")


class DomainHealth(SenderHealth):
    senders: list[SenderHealth] = Field(default_factory=list)


class SenderHealthResult(_Out):
    from_: UtcDateTime = Field(alias="from")
    to: UtcDateTime
    previous_from: UtcDateTime = Field(description="The previous window is [previousFrom, from).")
    verdict: Verdict = Field(description="The worst verdict of any sender domain (ok without any sends).")
    thresholds: HealthThresholdsOut
    value: list[DomainHealth]
    partial: bool | None = None
    warning: str | None = None


# --------------------------------------------------------------------------- mailbox providers


class ProviderFailureCode(_Out):
    final_delivery_status: str | None
    smtp_status_code: str | None = None
    enhanced_smtp_status_code: str | None = None
    enhanced_smtp_status_code_details: BoundedText = None
    count: int


class ProviderStats(_Out):
    provider: str = Field(description="Mailbox provider (shared/providers/catalog.json), Other or Unknown.")
    recipients: int = Field(description="Recipients with a final status.")
    delivered: int
    delivery_rate: float
    bounced: int = Field(description="Recipients whose final status is Bounced or Failed.")
    bounce_rate: float
    hard_bounces: int
    hard_bounce_rate: float
    spam: int = Field(description="Quarantined or FilteredSpam.")
    spam_rate: float
    p50_latency_seconds: float | None = None
    p95_latency_seconds: float | None = None
    top_failure_codes: list[ProviderFailureCode] = Field(
        default_factory=list, description=f"The {TOP_PROVIDER_CODES} most frequent non-delivered outcomes."
    )


class ProviderStatsResult(_Out):
    value: list[ProviderStats]
    partial: bool | None = None
    warning: str | None = None
