"""Non-HTTP functions of ``shared.api.spec``: what each timer or event trigger runs, given the services."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import azure.functions as func

from shared.services import Services

logger = logging.getLogger(__name__)


def daily_summary(timer: func.TimerRequest, services: Services) -> None:
    """Summaries of the planned days, then the daily report email when it is configured."""
    from shared.summaries.job import run_scheduled

    store, insights = services.summaries, services.insights

    def send_report(run: dict[str, Any]) -> dict[str, Any]:
        from shared.report.email import send_after_summary

        return send_after_summary(run, store, insights, services.settings)

    run_scheduled(services.settings, insights, store, past_due=timer.past_due, after_run=send_report)


def ingest_email_events(event: func.EventGridEvent, services: Services) -> None:
    """One Event Grid event into the delivery state's journal (shared with the concurrent invocations of the
    same delivery). A malformed event is logged (no address) and skipped; the store being down raises, so
    the host answers 5xx and Event Grid delivers the event again. Push follows when the timer folds it."""
    from shared.state.events import event_from_function
    from shared.state.ingest import ingest_events

    ingest_events(services.state, [event_from_function(event)])


def follow_status_updates(timer: func.TimerRequest, services: Services) -> None:
    """What reached the logs since the last run, into the delivery state: one log query per run; then the
    journal (those rows and Event Grid's events) folded into message partitions, what became final queued
    for its subscribers, and what is due delivered. Subscriptions are read first: if they cannot be, nothing
    is folded (the journal waits for the next run), so no outcome is missed."""
    from shared.state.follower import Follower

    push = services.push
    # The follower's positions are arrival times (ingestion_time() / _IngestedAt), which only the wall clock
    # gives: not the services' clock, which tests (and replays) may set to the logs' own days.
    Follower(services.insights.source, services.state, on_change=push.hook()).run()
    push.run_due()


def expire_state(timer: func.TimerRequest, services: Services) -> None:
    """Prune the notFound markers past their window, then delete message partitions first seen more than
    ``STATE_RETENTION_DAYS`` ago, in batches within the run's budget (the next run goes on)."""
    from shared.state.retention import expire_state
    from shared.tracing import NOT_FOUND_RETRY_WINDOW

    days = services.settings.state_retention_days
    if days < 1:
        raise ValueError(f"STATE_RETENTION_DAYS must be at least 1, got {days}: nothing deleted")
    store = services.state
    run = expire_state(
        store,
        now=store.clock(),
        retention=timedelta(days=days),
        asked_window=NOT_FOUND_RETRY_WINDOW,
    )
    logger.info(
        "retention: %d markers, %d partitions (%d entities) deleted, %d kept%s",
        run.markers,
        run.partitions,
        run.entities,
        run.kept,
        "" if run.complete else "; the budget ended first, the next run goes on",
    )
