"""Non-HTTP functions of ``shared.api.spec``: what each timer or event trigger runs, given the services."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Final

import azure.functions as func

from shared.api.signatures import EventGridHandler, QueueHandler, TimerHandler
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
    the host answers 5xx and Event Grid delivers the event again. The journal write asks for its shard to be
    folded (``fold_journal_shard``), and push follows that fold within seconds."""
    from shared.state.events import event_from_function
    from shared.state.ingest import ingest_events

    ingest_events(services.state, [event_from_function(event)])


def follow_status_updates(timer: func.TimerRequest, services: Services) -> None:
    """What reached the logs since the last run, into the journal: one log query per run (the journal write
    asks for its shards' folds); then the safety net: every shard with a backlog asked for again, so a lost
    request delays a fold by a minute at most (with no queue service, those shards are folded here); then
    what is due delivered. Subscriptions are read first: if they cannot be, nothing is folded here (the
    journal waits), so no outcome is missed. The safety net runs even when the log query fails."""
    from shared.state.folds import fold_backlog
    from shared.state.follower import Follower

    push = services.push
    hook = push.hook()
    try:
        # The follower's positions are arrival times (ingestion_time() / _IngestedAt), which only the wall clock
        # gives: not the services' clock, which tests (and replays) may set to the logs' own days.
        Follower(services.insights.source, services.state, fold=False).run()
    finally:
        fold_backlog(services.state, requests=services.folds, on_change=hook)
    push.run_due()


def fold_journal_shard(message: func.QueueMessage, services: Services) -> None:
    """One fold request: the shard it names folded under its lease, what became final pushed. A malformed
    request or a failing fold raises, so the queue retries it and, after maxDequeueCount, sets it aside in
    the poison queue; the other shards' requests go on."""
    from shared.state.folds import ShardLeases, fold_shard, read_fold_request

    shard = read_fold_request(message.get_body())
    state, push = services.state, services.push
    fold_shard(state, shard, leases=ShardLeases.of(state), on_change=push.hook(), requests=services.folds)


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


#: Checked against the handler signatures; ``shared.api.spec`` finds them here by name.
TIMER_HANDLERS: Final[tuple[TimerHandler, ...]] = (daily_summary, follow_status_updates, expire_state)
EVENT_GRID_HANDLERS: Final[tuple[EventGridHandler, ...]] = (ingest_email_events,)
QUEUE_HANDLERS: Final[tuple[QueueHandler, ...]] = (fold_journal_shard,)
