"""Summary rows small enough to check a report by hand (not a test module).

``write_days(store, {day: Day(...)})`` persists, per day, a total row and one row per domain, as the
daily summary job would (``SummaryStore.replace_day``). Every figure a report test expects is derived
from these inputs in the test itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from shared.summaries.table import SummaryStore


@dataclass(frozen=True)
class Day:
    delivered: int
    bounced: int = 0
    suppressed: int = 0
    pending: int = 0
    hard: int = 0
    soft: int = 0
    p50: float | None = 2.0
    p95: float | None = 30.0
    #: domain -> (delivered, hard bounces, p50, p95)
    domains: Mapping[str, tuple[int, int, float | None, float | None]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.delivered + self.bounced + self.suppressed


def _row(dimension: str, key: str | None, **values: Any) -> dict[str, Any]:
    total = values["Total"]
    return {
        "Dimension": dimension,
        "Key": key,
        "Failed": 0,
        "Quarantined": 0,
        "FilteredSpam": 0,
        "SuccessRate": round(100.0 * values["Delivered"] / total, 2) if total else 0.0,
        "AvgDurationSeconds": None,
        **values,
    }


def rows_of(day: Day) -> list[dict[str, Any]]:
    rows = [
        _row(
            "total",
            "all",
            Total=day.total,
            Delivered=day.delivered,
            Bounced=day.bounced,
            Suppressed=day.suppressed,
            Pending=day.pending,
            HardBounces=day.hard,
            SoftBounces=day.soft,
            P50DurationSeconds=day.p50,
            P95DurationSeconds=day.p95,
        )
    ]
    for domain, (delivered, hard, p50, p95) in day.domains.items():
        rows.append(
            _row(
                "domain",
                domain,
                Total=delivered + hard,
                Delivered=delivered,
                Bounced=hard,
                Suppressed=0,
                Pending=0,
                HardBounces=hard,
                SoftBounces=0,
                P50DurationSeconds=p50,
                P95DurationSeconds=p95,
            )
        )
    return rows


def write_days(store: SummaryStore, days: Mapping[date, Day], computed_at: datetime | None = None) -> None:
    store.ensure_table()
    for current, day in days.items():
        store.replace_day(current, rows_of(day), computed_at or datetime.now(UTC))
