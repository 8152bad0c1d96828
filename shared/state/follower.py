"""The Log Analytics follower: what arrived in the logs since a watermark, written into the delivery state.

Each run sends exactly one query (:func:`shared.kql.follower.build_follow_query`), appends the rows it got
(send facts and statuses, source ``logs``) to the state's journal, where traces see them at once, saves its
position, then folds the journal (these rows and any Event Grid events waiting) into message partitions for
what is left of ``run_seconds`` (40 s); the rest of the journal waits for the next run
(:mod:`shared.state.journal`). The position is kept in the state table (entity ``follower`` of the service
partition), so it survives restarts:

* ``Watermark``: every row that was queryable when it arrived has been read up to here (the fresh read);
* ``Swept``: every row that arrived before it has been read at a time when it was surely queryable (the
  second read, below);
* ``CursorArrival`` / ``CursorTime`` (and the pass's ``SweepTo``, ``GapFrom``, ``GapUntil``): set while a pass
  is unfinished (a run stopped at ``max_rows``): the last row's arrival and ``TimeGenerated``; the next run
  continues from there (re-reading only rows tied with it), whatever the traffic. Should a whole page tie
  (``max_rows`` rows of one arrival instant and one time, never seen in practice), the cursor steps 100 ns
  past it.

A run at ``now`` reads, in one query, the rows that arrived in ``[Swept, now)`` except the gap ``[SweepTo,
Watermark)``, where ``SweepTo = now - overlap`` (never before ``Swept``): so the fresh rows ``[Watermark, now)``
and the one interval of older rows ``[Swept, SweepTo)`` that has just become surely queryable (after a long pause,
``SweepTo`` passes ``Watermark`` and there is no gap). A row is therefore read at most twice: fresh, and once more
when the overlap has passed over it, which catches the rows that became queryable only after their arrival time
(the overlap's reason, below); merges are idempotent, so the second read of a row already read changes nothing.
Until 2026-12-07 each run re-read the whole overlap: 11 reads of every row at a one-minute interval and a 10-minute
overlap, which at 2 M messages an hour (83,000 rows a minute) could never finish a pass. Fewer than ``max_rows``
rows: the pass is complete, ``Watermark`` becomes the run's ``now`` and ``Swept`` its ``SweepTo``. Exactly
``max_rows``: the cursor moves to the last row and the rest stays as it was.

Overlaps: Log Analytics rows become queryable some time after their ``ingestion_time()`` (seconds to a few
minutes), so the overlap is :data:`LOG_ANALYTICS_OVERLAP` (10 minutes). The embedded store's ``_IngestedAt``
is the import's commit time; a row committed by an import that started before a run but committed after it
carries an earlier stamp, so the overlap (:data:`EMBEDDED_OVERLAP`, 10 minutes) must exceed the longest
import (33 s for a million messages). Stores without ``_IngestedAt`` fall back to ``TimeGenerated``
(:data:`TIME_GENERATED_OVERLAP`, the status grace): rows imported later than that after their own time are
missed by the follower (a trace still finds them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from shared.kql.follower import INGESTED_AT, LOG_ANALYTICS_TIME_SLACK, EmbeddedArrival, build_follow_query
from shared.logs.source import LogSource
from shared.schemas import STATUS_UPDATE_TABLE
from shared.state.ingest import FoldReport, fold_journal
from shared.state.observations import observation_of_row
from shared.state.store import PartitionChange, StateStore

logger = logging.getLogger(__name__)

LOG_ANALYTICS_OVERLAP: Final = timedelta(minutes=10)
EMBEDDED_OVERLAP: Final = timedelta(minutes=10)
TIME_GENERATED_OVERLAP: Final = timedelta(hours=72)
#: Rows per run: one query's worth (Log Analytics returns at most 500,000 rows / 64 MB).
DEFAULT_MAX_ROWS: Final = 100_000
#: Longest a run goes on (seconds; the timer runs every minute): the fold gets what the query and the journal
#: left of it, checked between chunks of :data:`shared.state.ingest.FOLD_CHUNK` observations.
RUN_BUDGET_SECONDS: Final = 40.0
#: Where a follower with no watermark starts: this long before its first run.
FIRST_RUN_LOOKBACK: Final = timedelta(days=3)
POSITION: Final = "follower"


_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Position:
    """The follower's stored position (see the module docstring)."""

    watermark: datetime | None = None
    swept: datetime | None = None
    cursor_arrival: datetime | None = None
    cursor_time: datetime | None = None
    sweep_to: datetime | None = None
    gap: tuple[datetime, datetime] | None = None


@dataclass(frozen=True)
class Pass:
    """One pass: rows that arrived from ``since`` (from ``since_time`` at ``since`` itself) until the run's now,
    except the ``gap``; once complete, the fresh reads are done up to now and the second reads to ``sweep_to``."""

    watermark: datetime
    swept: datetime
    since: datetime
    since_time: datetime
    sweep_to: datetime
    gap: tuple[datetime, datetime] | None


@dataclass(frozen=True)
class FollowResult:
    rows: int
    queries: int
    query_seconds: float
    #: Seconds to journal the rows (from then on traces see them).
    journal_seconds: float
    #: What the fold that followed wrote into message partitions (the journal's older entries included).
    messages: int
    entities_written: int
    folded: int
    fold_left: int
    #: Whether the run read everything up to ``until`` (False: it stopped at max_rows; the next run continues).
    complete: bool
    watermark: datetime
    until: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "queries": self.queries,
            "querySeconds": round(self.query_seconds, 3),
            "journalSeconds": round(self.journal_seconds, 3),
            "messages": self.messages,
            "entitiesWritten": self.entities_written,
            "foldedObservations": self.folded,
            "journalEntriesLeft": self.fold_left,
            "complete": self.complete,
            "watermark": self.watermark.isoformat(),
        }


def embedded_arrival(source: LogSource) -> EmbeddedArrival:
    """``_IngestedAt`` when the embedded store has it, else the ``TimeGenerated`` fallback."""
    has_column = getattr(source, "has_column", None)
    if has_column is not None and has_column(STATUS_UPDATE_TABLE, INGESTED_AT):
        return INGESTED_AT
    return "TimeGenerated"


class Follower:
    def __init__(
        self,
        source: LogSource,
        store: StateStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_rows: int = DEFAULT_MAX_ROWS,
        on_change: Callable[[Sequence[PartitionChange]], None] | None = None,
        run_seconds: float = RUN_BUDGET_SECONDS,
        fold: bool = True,
    ) -> None:
        self.source = source
        self.store = store
        self.clock = clock
        self.max_rows = max_rows
        self.on_change = on_change
        self.run_seconds = run_seconds
        #: Whether a run folds the journal after journaling (False: the queued folds do, :mod:`shared.state.folds`).
        self.fold = fold
        self._arrival: EmbeddedArrival | None = None

    @property
    def arrival(self) -> EmbeddedArrival:
        if self._arrival is None:
            self._arrival = INGESTED_AT if self.source.name != "embedded" else embedded_arrival(self.source)
        return self._arrival

    @property
    def overlap(self) -> timedelta:
        if self.source.name != "embedded":
            return LOG_ANALYTICS_OVERLAP
        return EMBEDDED_OVERLAP if self.arrival == INGESTED_AT else TIME_GENERATED_OVERLAP

    def position(self) -> Position:
        """The stored position (see the module docstring); empty before the first run."""
        entity = self.store.read_service(POSITION) or {}
        gap = (_utc(entity.get("GapFrom")), _utc(entity.get("GapUntil")))
        return Position(
            watermark=_utc(entity.get("Watermark")),
            swept=_utc(entity.get("Swept")),
            cursor_arrival=_utc(entity.get("CursorArrival")),
            cursor_time=_utc(entity.get("CursorTime")),
            sweep_to=_utc(entity.get("SweepTo")),
            gap=(gap[0], gap[1]) if gap[0] is not None and gap[1] is not None else None,
        )

    def _pass(self, position: Position, now: datetime) -> Pass:
        """What this run reads: the unfinished pass continued, or a new pass (see the module docstring)."""
        watermark = position.watermark or now - FIRST_RUN_LOOKBACK
        # A position stored before the second reads existed: its next pass re-reads the whole overlap, once.
        swept = position.swept or watermark - self.overlap
        if position.cursor_arrival is not None and position.cursor_time is not None:
            sweep_to = position.sweep_to or swept
            return Pass(watermark, swept, position.cursor_arrival, position.cursor_time, sweep_to, position.gap)
        sweep_to = max(swept, now - self.overlap)  # whatever arrived before it is queryable by now
        gap = (sweep_to, watermark) if sweep_to < watermark else None
        return Pass(watermark, swept, swept, _EPOCH, sweep_to, gap)

    def run(self) -> FollowResult:
        """One run: one query, its rows journaled, the position saved, then the journal folded (budgeted)."""
        now = self.clock()
        run_started = time.monotonic()
        this = self._pass(self.position(), now)
        since = this.since
        if self.source.name == "embedded" and self.arrival == INGESTED_AT:
            time_from = _EPOCH  # arrival, not event time, bounds the embedded read
        else:
            time_from = since - (LOG_ANALYTICS_TIME_SLACK if self.arrival == INGESTED_AT else timedelta(0))
        query = build_follow_query(
            since,
            this.since_time,
            now,
            self.max_rows,
            time_from=time_from,
            gap=this.gap,
            embedded_arrival=self.arrival,
        )
        started = time.perf_counter()
        records = self.source.run(query).records()
        query_seconds = time.perf_counter() - started
        observations = [o for o in (observation_of_row(r) for r in records) if o is not None]
        started = time.perf_counter()
        self.store.append(observations)
        journal_seconds = time.perf_counter() - started
        complete = len(records) < self.max_rows
        self._save_position(records, complete, this, now)
        left = self.run_seconds - (time.monotonic() - run_started)
        fold = fold_journal(self.store, on_change=self.on_change, budget_seconds=left) if self.fold else FoldReport()
        logger.info(
            "follower: %d rows, complete=%s; fold: %d observations, %d messages, %d journal entries left",
            len(records),
            complete,
            fold.observations,
            fold.messages,
            fold.left,
        )
        return FollowResult(
            rows=len(records),
            queries=1,
            query_seconds=query_seconds,
            journal_seconds=journal_seconds,
            messages=fold.messages,
            entities_written=fold.entities_written,
            folded=fold.observations,
            fold_left=fold.left,
            complete=complete,
            watermark=now if complete else this.watermark,
            until=now,
        )

    def _save_position(self, records: Sequence[Mapping[str, Any]], complete: bool, this: Pass, now: datetime) -> None:
        """A complete pass moves the watermark to *now* and the sweep to its end; one stopped at ``max_rows``
        keeps a cursor (and the pass's bounds) instead."""
        if complete:
            self.store.write_service(
                POSITION, {"Watermark": now, "Swept": this.sweep_to, "LastRun": now, "Rows": len(records)}
            )
            return
        first, last = records[0], records[-1]
        arrival, event_time = _utc(last["IngestedAt"]), _utc(last["TimeGenerated"])
        if (first["IngestedAt"], first["TimeGenerated"]) == (last["IngestedAt"], last["TimeGenerated"]):
            event_time = (event_time or now) + timedelta(microseconds=1)  # a page of ties: step past it
        values: dict[str, Any] = {
            "Watermark": this.watermark,
            "Swept": this.swept,
            "CursorArrival": arrival,
            "CursorTime": event_time,
            "SweepTo": this.sweep_to,
            "LastRun": now,
            "Rows": len(records),
        }
        if this.gap is not None:
            values["GapFrom"], values["GapUntil"] = this.gap
        self.store.write_service(POSITION, values)


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
