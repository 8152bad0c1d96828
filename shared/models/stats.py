"""Aggregates: statistics per kind, time series and engagement rates, with how complete the data is."""

from __future__ import annotations

from typing import Any

from pydantic import (
    Field,
)

from shared.models.common import BoundedText, UtcDateTime, _Out


class Completeness(_Out):
    pending_recipients: int = Field(
        description="Expected recipients of the window's sends (UniqueRecipientsCount of sends that did not fail as "
        "a whole) minus those with a final status: the daily summary's pending rule."
    )
    latest_event_time: UtcDateTime | None = Field(
        None, description="Newest status event seen; later ones may not be ingested yet."
    )


class DomainStats(_Out):
    recipient_domain: str | None
    total: int
    delivered: int
    bounced: int
    failed: int
    suppressed: int
    quarantined: int
    filtered_spam: int
    hard_bounces: int
    soft_bounces: int
    success_rate: float
    avg_duration_seconds: float | None = None
    p50_duration_seconds: float | None = None
    p95_duration_seconds: float | None = None


class SenderStats(_Out):
    sender_username: str | None
    sender_domain: str | None
    total_sent: int
    delivered: int
    hard_bounces: int
    soft_bounces: int
    hard_bounce_rate: float
    soft_bounce_rate: float


class MailServerStats(_Out):
    recipient_mail_server_host_name: str | None
    total: int
    delivered: int
    failures: int
    failure_rate: float
    avg_duration_seconds: float | None = None
    p95_duration_seconds: float | None = None


class LatencyStats(_Out):
    time: UtcDateTime
    count: int
    avg_duration_seconds: float | None = None
    p95_duration_seconds: float | None = None


class FailureStats(_Out):
    failure_reason: BoundedText
    final_delivery_status: str | None
    smtp_status_code: str | None
    enhanced_smtp_status_code: str | None
    enhanced_smtp_status_code_details: str | None
    failure_category: str | None
    count: int


class SizeStats(_Out):
    message_size_category: str
    messages: int
    recipients: int
    avg_message_size: float | None = None


class StatsResult(_Out):
    value: list[dict[str, Any]]
    completeness: Completeness
    failed_messages: int = Field(
        0, description="Sends of the window that failed as a whole (a message-level Failed or Dropped event)."
    )
    partial: bool | None = None
    warning: str | None = None


STATS_ROW_MODELS: dict[str, type[_Out]] = {
    "domains": DomainStats,
    "senders": SenderStats,
    "mail-servers": MailServerStats,
    "latency": LatencyStats,
    "failures": FailureStats,
    "sizes": SizeStats,
}


class TimeSeriesRow(_Out):
    time: UtcDateTime = Field(description="Start of the bin (event time of the final statuses).")
    key: str | None = Field(description="The final status or recipient domain (the `by` parameter).")
    count: int = Field(description="Recipients whose final status fell in the bin.")
    delivered: int
    delivery_rate: float = Field(description="Delivered of `count`, percent.")
    bin_total: int = Field(description="Final statuses in the bin, every key together.")
    bin_delivery_rate: float = Field(description="Delivered of `binTotal`, percent.")
    p50_latency_seconds: float | None = Field(None, description="Median send-to-final latency (clock skew left out).")
    p95_latency_seconds: float | None = None


class TimeSeriesResult(_Out):
    value: list[TimeSeriesRow]
    completeness: Completeness
    partial: bool | None = None
    warning: str | None = None


#: What the engagement answer says about where engagement data comes from (learn.microsoft.com, ACS email:
#: user engagement tracking).
ENGAGEMENT_NOTE = (
    "Engagement (views and clicks) is logged only for mail sent from verified custom domains with user engagement "
    "tracking enabled, in HTML bodies; Azure managed domains never have it. A sender with 0 opens may simply have "
    "tracking off."
)


class EngagementRow(_Out):
    key: str | None = Field(description="Sender address, sender domain or recipient domain (the `by` parameter).")
    delivered: int = Field(description="Delivered recipients.")
    opened: int = Field(description="Delivered recipients with a view or a click.")
    clicked: int = Field(description="Delivered recipients with a click.")
    open_rate: float = Field(description="Opened of delivered, percent.")
    click_rate: float = Field(description="Clicked of delivered, percent.")
    views: int
    clicks: int


class EngagementResult(_Out):
    value: list[EngagementRow]
    note: str = Field(ENGAGEMENT_NOTE, description="Where engagement data exists (custom domains with tracking).")
    partial: bool | None = None
    warning: str | None = None
