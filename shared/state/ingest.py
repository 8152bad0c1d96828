"""Reports and log rows -> the delivery state: journaled as they come, folded into message partitions later.

:func:`ingest_events` parses an Event Grid delivery and appends its observations to the journal
(:mod:`shared.state.journal`): one request for many events, whatever the messages. :func:`fold_journal`
(run by the follower's timer) writes journaled observations into their messages' partitions, one partition
write per message per fold, by a small thread pool since each write waits on the network, and hands the
changes to push. A malformed event was already dropped by :func:`shared.state.events.parse_events`; a store
failure raises :class:`~shared.errors.Unavailable`, so the delivery is retried (or the fold resumes at the
next run: entries are deleted only once folded, and merges are idempotent).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from azure.core.exceptions import HttpResponseError

from shared.state import retention
from shared.state.events import EventError, parse_events
from shared.state.journal import JournalEntry
from shared.state.observations import Observation, group_by_message, observation_of
from shared.state.store import PartitionChange, StateStore, StateStoreError, UnreadableState, empty_partition

logger = logging.getLogger(__name__)

#: Partitions written at once by this process, all folds together: their round trips overlap, and the
#: number stays within the Table client's connection pool (``shared.storage.POOL_CONNECTIONS``). With a pool
#: per fold (8 writers each) 16 shards folding side by side wrote up to 128 partitions at once over 32 pooled
#: connections: urllib3 opened and threw away a connection per surplus request ("Connection pool is full").
WRITERS: Final = 16
#: Observations folded between two deletions of folded entries (and two looks at the budget: ~5 s here).
FOLD_CHUNK: Final = 1_000


@dataclass
class IngestReport:
    """What one delivery did: events read, rejected (with reasons, no addresses), observations journaled."""

    received: int = 0
    rejected: int = 0
    journaled: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "rejected": self.rejected,
            "journaled": self.journaled,
            "errors": self.errors[:20],
        }


@dataclass
class WriteReport:
    """What writing observations into partitions did: messages, entities written, what became final."""

    messages: int = 0
    entities_written: int = 0
    became_final: list[str] = field(default_factory=list)
    #: Messages whose observations were set aside (their state could not be written).
    set_aside: int = 0


@dataclass
class FoldReport(WriteReport):
    """One fold: journal entries and observations folded, and entries left for the next run."""

    entries: int = 0
    observations: int = 0
    left: int = 0


_writers_lock = threading.Lock()
_writers: ThreadPoolExecutor | None = None


def _writer_pool() -> ThreadPoolExecutor:
    """The process's partition writers (see :data:`WRITERS`), made on first use."""
    global _writers
    with _writers_lock:
        if _writers is None:
            _writers = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="state-writer")
        return _writers


def apply_observations(
    store: StateStore,
    observations: Iterable[Observation],
    *,
    report: WriteReport | None = None,
    on_change: Callable[[Sequence[PartitionChange]], None] | None = None,
    seen_at: dict[str, datetime] | None = None,
    replay: bool = False,
) -> WriteReport:
    """Write *observations* into their partitions, one write per message (``seen_at``: first stored, by message).

    ``replay``: these observations may have been written before by a fold that failed before it handed its
    changes on (so before anything was pushed): each message is handed on as if its state were new, final
    recipients and all. Push's outbox keys each outcome, so what was pushed already is not pushed again."""
    report = report or WriteReport()
    groups = group_by_message(observations)
    report.messages += len(groups)
    if not groups:
        return report
    store.ensure_table()
    items = list(groups.items())
    # Whether a message became final matters only to subscriptions (on_change): without them a write that
    # only creates entities need not read the rest of its partition.
    whole = on_change is not None

    def write(item: tuple[str, list[Observation]]) -> PartitionChange | None:
        return _isolated(store, item, whole=whole, seen_at=(seen_at or {}).get(item[0]))

    written = [write(items[0])] if len(items) == 1 else list(_writer_pool().map(write, items))
    changes = [change for change in written if change is not None]
    report.set_aside += len(written) - len(changes)
    for change in changes:
        report.entities_written += change.written
        if change.became_final:
            report.became_final.append(change.message_id)
    if on_change is not None:
        if replay:
            changes = [replace(change, before=empty_partition(change.message_id)) for change in changes]
        on_change([change for change in changes if change.written or replay])
    return report


def _isolated(
    store: StateStore, item: tuple[str, list[Observation]], *, whole: bool, seen_at: datetime | None
) -> PartitionChange | None:
    """One message's write; a message that cannot be written (not the store: the message) is set aside with its
    observations and the reason, so one poisoned message never stops the rest. None when it was set aside."""
    message_id, observations = item
    try:
        return store.apply(message_id, observations, whole_partition=whole, seen_at=seen_at)
    except Exception as exc:
        if not _this_message(exc):
            raise  # the store itself (down, throttled, denied): the whole fold is retried
        # The reason names the error class, never its text (which may hold an address).
        reason = f"its message's state could not be written ({type(exc).__name__})"
        logger.warning("state: message set aside: %s", reason)
        store.set_aside([(observation, reason) for observation in observations])
        return None


def _this_message(exc: BaseException) -> bool:
    """Whether a write failed for its message alone: state that cannot be read back, a value that cannot be
    encoded, or an entity the service refuses as such (400, 413); never an outage or a credential."""
    if isinstance(exc, UnreadableState | ValueError | TypeError | OverflowError):
        return True
    cause = exc.__cause__
    return isinstance(exc, StateStoreError) and isinstance(cause, HttpResponseError) and cause.status_code in (400, 413)


def log_event_errors(errors: Sequence[EventError]) -> None:
    for error in errors[:20]:
        logger.warning("skipped an Event Grid event: %s", error)
    if len(errors) > 20:
        logger.warning("skipped %d more Event Grid events", len(errors) - 20)


def ingest_events(store: StateStore, events: Iterable[Any]) -> IngestReport:
    """Event Grid schema events (parsed JSON) -> the journal. Bad events are logged (no addresses) and skipped."""
    events = list(events)
    reports, errors = parse_events(events)
    log_event_errors(errors)
    observations = [observation_of(r) for r in reports]
    store.append(observations)
    return IngestReport(
        received=len(events), rejected=len(errors), journaled=len(observations), errors=[str(e) for e in errors]
    )


def fold_journal(
    store: StateStore,
    *,
    on_change: Callable[[Sequence[PartitionChange]], None] | None = None,
    budget_seconds: float = math.inf,
    replay: bool = False,
) -> FoldReport:
    """Journaled observations into their partitions, oldest first, until the journal is empty or the budget
    is spent (the follower's timer gives what its run has left); each chunk's entries are deleted once its
    partitions are written."""
    report = FoldReport()
    if store.journal is None:
        return report
    started = time.monotonic()
    entries = store.journal.entries()
    position = 0
    while position < len(entries) and time.monotonic() - started < budget_seconds:
        chunk: list[JournalEntry] = []
        count = 0
        while position < len(entries) and (not chunk or count + len(entries[position].observations) <= FOLD_CHUNK):
            chunk.append(entries[position])
            count += len(entries[position].observations)
            position += 1
        seen_at: dict[str, datetime] = {}
        for entry in chunk:
            for observation in entry.observations:
                first = seen_at.get(observation.message_id)
                if first is None or entry.written_at < first:
                    seen_at[observation.message_id] = entry.written_at
        observations = [observation for entry in chunk for observation in entry.observations]
        retention.index_messages(store, seen_at)  # in batches, before the partitions (shared.state.retention)
        apply_observations(store, observations, report=report, on_change=on_change, seen_at=seen_at, replay=replay)
        store.journal.delete(chunk)
        report.entries += len(chunk)
        report.observations += count
    report.left = len(entries) - position
    return report
