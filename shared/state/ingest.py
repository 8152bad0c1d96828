"""Reports and log rows -> the delivery state, grouped by message and written partition by partition.

A batch is grouped by message id: one read and one conditioned transaction per message, whatever the number
of its events in the batch. Partitions are written by a small thread pool, since each write waits on the
network (the measured throughput is in ``benchmarks/state.py``). A malformed event was already dropped by
:func:`shared.state.events.parse_events`; a store failure stops the batch with
:class:`~shared.state.store.StateStoreUnavailable`, so the delivery is retried (writes are idempotent, so
the partitions already written count once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from shared.state.events import DeliveryReport, EventError, Report, parse_events
from shared.state.partition import EngagementObservation, Observation, StatusObservation
from shared.state.store import PartitionChange, StateStore

logger = logging.getLogger(__name__)

#: Partitions written at once (the store's round trips overlap; more adds little on 2 cores).
WRITERS: Final = 8


@dataclass
class IngestReport:
    """What one batch did: events read, rejected (with reasons, no addresses), partitions and entities written."""

    received: int = 0
    rejected: int = 0
    messages: int = 0
    entities_written: int = 0
    became_final: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    changes: list[PartitionChange] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "rejected": self.rejected,
            "messages": self.messages,
            "entitiesWritten": self.entities_written,
            "becameFinal": len(self.became_final),
            "errors": self.errors[:20],
        }


def observation_of(report: Report) -> Observation:
    if isinstance(report, DeliveryReport):
        return StatusObservation(
            message_id=report.message_id,
            recipient=report.recipient,
            status=report.status,
            time=report.time,
            source="events",
            sender=report.sender,
            mail_server=report.mail_server,
            internet_message_id=report.internet_message_id,
            status_message=report.status_message,
            resource_id=report.resource_id,
        )
    return EngagementObservation(
        message_id=report.message_id,
        recipient=report.recipient,
        engagement_type=report.engagement_type,
        time=report.time,
        context=report.context,
        user_agent=report.user_agent,
        sender=report.sender,
        resource_id=report.resource_id,
    )


def group_by_message(observations: Iterable[Observation]) -> dict[str, list[Observation]]:
    groups: dict[str, list[Observation]] = {}
    for observation in observations:
        groups.setdefault(observation.message_id, []).append(observation)
    return groups


def apply_observations(
    store: StateStore,
    observations: Iterable[Observation],
    *,
    report: IngestReport | None = None,
    on_change: Callable[[Sequence[PartitionChange]], None] | None = None,
) -> IngestReport:
    """Write *observations* into *store*, one partition write per message."""
    report = report or IngestReport()
    groups = group_by_message(observations)
    report.messages += len(groups)
    if not groups:
        return report
    store.ensure_table()
    items = list(groups.items())
    # Whether a message became final matters only to subscriptions (on_change): without them a write that
    # only creates entities need not read the rest of its partition.
    whole = on_change is not None

    def write(item: tuple[str, list[Observation]]) -> PartitionChange:
        return store.apply(item[0], item[1], whole_partition=whole)

    if len(items) == 1:
        changes = [write(items[0])]
    else:
        with ThreadPoolExecutor(max_workers=min(WRITERS, len(items)), thread_name_prefix="state-writer") as pool:
            changes = list(pool.map(write, items))
    for change in changes:
        report.entities_written += change.written
        if change.became_final:
            report.became_final.append(change.message_id)
    report.changes.extend(change for change in changes if change.written)
    if on_change is not None:
        on_change([change for change in changes if change.written])
    return report


def log_event_errors(errors: Sequence[EventError]) -> None:
    for error in errors[:20]:
        logger.warning("skipped an Event Grid event: %s", error)
    if len(errors) > 20:
        logger.warning("skipped %d more Event Grid events", len(errors) - 20)


def ingest_events(
    store: StateStore,
    events: Iterable[Any],
    *,
    on_change: Callable[[Sequence[PartitionChange]], None] | None = None,
) -> IngestReport:
    """Event Grid schema events (parsed JSON) -> the state. Bad events are logged (no addresses) and skipped."""
    events = list(events)
    reports, errors = parse_events(events)
    log_event_errors(errors)
    report = IngestReport(received=len(events), rejected=len(errors), errors=[str(error) for error in errors])
    return apply_observations(store, (observation_of(r) for r in reports), report=report, on_change=on_change)
