"""Wiring: which log source and which summary store the settings select."""

from __future__ import annotations

from datetime import timedelta
from functools import cache

from shared.insights import Insights
from shared.logs.source import LogSource
from shared.settings import Settings


def make_source(settings: Settings) -> LogSource:
    """Log Analytics when a workspace id is set, else the embedded DuckDB store."""
    if settings.workspace_id:
        from shared.logs.log_analytics import LogAnalyticsSource

        return LogAnalyticsSource(
            settings.workspace_id,
            endpoint=settings.log_analytics_endpoint,
            client_id=settings.client_id,
            server_timeout=settings.query_timeout_seconds,
        )
    from shared.logs.embedded import DuckDbSource

    return DuckDbSource(settings.local_store)


def make_insights(settings: Settings, source: LogSource | None = None) -> Insights:
    return Insights(source or make_source(settings), status_grace=timedelta(hours=settings.status_grace_hours))


@cache
def default_insights() -> Insights:
    """One Insights per process (so translations and SDK clients are reused across requests)."""
    return make_insights(Settings.from_env())
