"""Persisted daily summaries and the CSV columns they are exported with."""

from __future__ import annotations

from datetime import date

from pydantic import (
    Field,
)

from shared.models.common import SummaryDimension, UtcDateTime, _Out


class DailySummary(_Out):
    """One persisted daily summary entity: sends of one UTC day, one dimension key."""

    date: date
    dimension: SummaryDimension
    key: str | None = Field(description="Dimension key (domain, sender, status, mail server); null when unknown.")
    total: int = Field(description="Recipients with a final status.")
    delivered: int
    bounced: int
    failed: int
    suppressed: int
    quarantined: int
    filtered_spam: int
    pending: int = Field(description="Expected recipients without a final status yet (total dimension only).")
    hard_bounces: int
    soft_bounces: int
    success_rate: float
    avg_duration_seconds: float | None = None
    p95_duration_seconds: float | None = None
    p50_duration_seconds: float | None = Field(
        None, description="Median send-to-final latency; null in summaries written before it was recorded."
    )
    computed_at: UtcDateTime
    schema_version: int
    failed_messages: int = Field(
        0, description="Sends that failed as a whole (message-level Failed or Dropped; total dimension only)."
    )


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


#: The measures of a daily summary as the summary query names them (and the table stores them), in model order.
SUMMARY_COUNT_COLUMNS: tuple[str, ...] = tuple(
    _pascal(name) for name, f in DailySummary.model_fields.items() if f.annotation is int and name != "schema_version"
)
SUMMARY_RATE_COLUMNS: tuple[str, ...] = tuple(
    _pascal(name) for name, f in DailySummary.model_fields.items() if f.annotation in (float, float | None)
)
#: Rates that are always present (0 when there is nothing to divide).
SUMMARY_REQUIRED_RATES: tuple[str, ...] = tuple(
    _pascal(name) for name, f in DailySummary.model_fields.items() if f.annotation is float
)


class DailySummaryList(_Out):
    value: list[DailySummary]


#: CSV columns of daily summaries (docs/reports.md): the wire names, in field order; new fields append.
SUMMARY_CSV_COLUMNS = tuple(field.alias or name for name, field in DailySummary.model_fields.items())
