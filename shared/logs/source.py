"""Where KQL runs: the interface both log sources implement, and their errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.errors import Unavailable, UpstreamFailure
from shared.kql.query import KqlQuery


class LogQueryError(UpstreamFailure):
    """A query could not be answered (the source refused it or failed)."""

    title = "Log query failed"

    def __init__(self, detail: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.code = code


class LogSourceUnavailable(Unavailable, LogQueryError):
    """The source cannot be reached, is not configured, timed out or failed transiently: retry later."""

    title = "Log source unavailable"


class LogQueryThrottled(LogSourceUnavailable):
    """Log Analytics answered 429 and retries did not help (or would not fit the request's budget)."""

    title = "Log Analytics is throttling queries"


class LogQueryRejected(LogQueryError):
    """The service refused the query text (a bug on our side, never user input)."""

    title = "Log query rejected"


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    #: Set when Log Analytics returned a partial result: rows are usable but incomplete.
    partial_error: str | None = None
    statistics: dict[str, Any] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, (_normalise(value) for value in row), strict=True)) for row in self.rows]


def _normalise(value: Any) -> Any:
    """One representation for both engines: UTC-aware datetimes, None for empty strings."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if value == "":
        return None
    return value


class LogSource(Protocol):
    name: str

    def run(self, query: KqlQuery) -> QueryResult: ...

    def check(self) -> tuple[bool, str]:
        """Whether the source is reachable, and why (for /api/health)."""
        ...

    def query_text(self, query: KqlQuery) -> str:
        """The exact text this source sends."""
        ...
