"""The follower: one query per run, both engine forms valid, rows into the state, watermark across restarts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from local.embedded import DuckDbSource, embedded_kusto_schema
from local.store import open_store
from shared.kql.follower import build_follow_query
from shared.schemas import kusto_schema
from shared.state.follower import Follower
from shared.state.partition import recipient_row_key
from shared.state.store import StateStore

from kusto_check import assert_valid_kql

T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)


@pytest.mark.slow  # waits on purpose or runs the Kusto language service: CI, not test-fast
def test_both_forms_pass_the_kusto_check() -> None:
    for arrival in ("_IngestedAt", "TimeGenerated"):
        query = build_follow_query(T0, T0, T0 + timedelta(hours=1), 1000, time_from=T0, embedded_arrival=arrival)  # type: ignore[arg-type]
        schema = embedded_kusto_schema()
        for table in schema.values():
            table["_IngestedAt"] = "datetime"
        assert_valid_kql([query.embedded_text()], schema=schema)
    assert_valid_kql([query.log_analytics_text()], schema=kusto_schema())


class CountingSource(DuckDbSource):
    queries = 0

    def run(self, query):  # type: ignore[no-untyped-def]
        type(self).queries += 1
        return super().run(query)


def _store_with_rows(path: Path, messages: int, ingested: datetime) -> list[str]:
    if not path.exists():
        open_store(path).close()
    con = duckdb.connect(str(path))
    con.execute('ALTER TABLE "ACSEmailSendMailOperational" ADD COLUMN IF NOT EXISTS "_IngestedAt" TIMESTAMP')
    con.execute('ALTER TABLE "ACSEmailStatusUpdateOperational" ADD COLUMN IF NOT EXISTS "_IngestedAt" TIMESTAMP')
    ids = [str(uuid.uuid4()) for _ in range(messages)]
    stamp = ingested.replace(tzinfo=None)
    for index, mid in enumerate(ids):
        sent = (T0 + timedelta(minutes=index)).replace(tzinfo=None)
        con.execute(
            'INSERT INTO "ACSEmailSendMailOperational" ("TimeGenerated", "CorrelationId", "Size", '
            '"UniqueRecipientsCount", "_ResourceId", "_IngestedAt") VALUES (?, ?, 0.1, 2, \'/r\', ?)',
            [sent, mid, stamp],
        )
        for n, status in enumerate(("Delivered", "Bounced")):
            con.execute(
                'INSERT INTO "ACSEmailStatusUpdateOperational" ("TimeGenerated", "CorrelationId", "RecipientId", '
                '"DeliveryStatus", "SmtpStatusCode", "IsHardBounce", "SenderUsername", "SenderDomain", '
                "\"_ResourceId\", \"_IngestedAt\") VALUES (?, ?, ?, ?, ?, ?, 'DoNotReply', 'contoso.com', '/r', ?)",
                [
                    sent + timedelta(seconds=30),
                    mid,
                    f"user{n}@x.com",
                    status,
                    "550" if n else "250",
                    "true" if n else "",
                    stamp,
                ],
            )
    con.close()
    return ids


@pytest.fixture()
def state(azurite_connection_string: str) -> Iterator[StateStore]:
    store = StateStore.from_connection_string(azurite_connection_string, f"Follow{uuid.uuid4().hex[:8]}")
    yield store
    store.close()


def test_runs_continue_across_restarts_with_one_query_each(tmp_path: Path, state: StateStore) -> None:
    now = T0 + timedelta(hours=1)
    ids = _store_with_rows(tmp_path / "logs.duckdb", 10, now - timedelta(minutes=20))
    source = CountingSource(tmp_path / "logs.duckdb")
    CountingSource.queries = 0
    first = Follower(source, state, clock=lambda: now, max_rows=12).run()
    assert (first.rows, first.complete, CountingSource.queries) == (12, False, 1)
    # A new follower (a restart) continues from the stored cursor.
    second = Follower(source, state, clock=lambda: now + timedelta(minutes=1), max_rows=12).run()
    third = Follower(source, state, clock=lambda: now + timedelta(minutes=2), max_rows=12).run()
    assert CountingSource.queries == 3
    assert first.rows + second.rows + third.rows >= 30 and third.complete
    for mid in ids:
        partition = state.read(mid)
        assert partition is not None and partition.final
        bounced = partition.recipients[recipient_row_key("user1@x.com")]
        assert bounced.final is not None and bounced.final.status == "Bounced" and bounced.source == "logs"
    # Nothing new: the next run reads only the overlap again, writes nothing.
    fourth = Follower(source, state, clock=lambda: now + timedelta(minutes=3), max_rows=100).run()
    assert fourth.complete and fourth.entities_written == 0
    source.close()


def test_rows_imported_later_reach_the_state_on_the_next_run(tmp_path: Path, state: StateStore) -> None:
    now = T0 + timedelta(hours=2)
    path = tmp_path / "logs.duckdb"
    _store_with_rows(path, 1, now - timedelta(minutes=1))
    source = CountingSource(path)
    assert Follower(source, state, clock=lambda: now).run().rows == 3
    source.close()
    late = _store_with_rows(path, 2, now + timedelta(minutes=1))  # an import after the first run
    source = CountingSource(path)
    result = Follower(source, state, clock=lambda: now + timedelta(minutes=5)).run()
    assert result.complete and all(state.read(mid) is not None for mid in late)
    source.close()


def test_an_import_after_a_run_reaches_the_state_whatever_the_rows_time(tmp_path: Path, state: StateStore) -> None:
    """The store stamps ``_IngestedAt`` on every row an import inserts: rows whose TimeGenerated is months older
    than the status grace (the semantics fixture, sent 2026-03-10) still reach the state on the next run."""
    from local.importers import import_paths
    from local.store import INGESTED_AT

    from conftest import SEMANTICS

    path = tmp_path / "logs.duckdb"
    open_store(path).close()
    source = DuckDbSource(path)
    clock = lambda: datetime.now(UTC)  # noqa: E731  # the import's stamp is the real time too
    assert Follower(source, state, clock=clock).run().rows == 0
    assert source.has_column("ACSEmailStatusUpdateOperational", INGESTED_AT)
    source.close()  # the import (another process, in real use) needs the file
    con = open_store(path)
    import_paths(con, [SEMANTICS])
    oldest = con.execute('SELECT min("TimeGenerated"), min("_IngestedAt") FROM "ACSEmailStatusUpdateOperational"')
    (time_generated, ingested_at) = oldest.fetchall()[0]
    con.close()
    assert ingested_at - time_generated > timedelta(hours=72)
    source = DuckDbSource(path)
    follower = Follower(source, state, clock=clock)
    assert follower.arrival == INGESTED_AT
    result = follower.run()
    assert result.complete and result.rows > 0
    partition = state.read("msg-01-final")
    assert partition is not None and partition.final and partition.message.expected_recipients == 2
    source.close()


def test_a_row_is_read_twice_at_most_fresh_and_once_the_overlap_has_passed(tmp_path: Path, state: StateStore) -> None:
    """Each run used to re-read the whole overlap (10 minutes): 11 reads of every row at one run a minute. Now
    a row is read when it arrives and once more when the overlap has passed over it, never in between."""
    from shared.state.follower import EMBEDDED_OVERLAP

    now = T0 + timedelta(hours=1)
    path = tmp_path / "logs.duckdb"
    _store_with_rows(path, 10, now - timedelta(minutes=1))
    source = CountingSource(path)

    def rows_at(minutes: float) -> int:
        return Follower(source, state, clock=lambda: now + timedelta(minutes=minutes)).run().rows

    assert rows_at(0) == 30  # fresh
    assert [rows_at(m) for m in range(1, 9)] == [0] * 8  # within the overlap: not read again
    minutes_until_swept = (EMBEDDED_OVERLAP - timedelta(minutes=1)).total_seconds() / 60 + 1
    assert rows_at(minutes_until_swept) == 30  # the second read, once they are surely queryable
    assert [rows_at(minutes_until_swept + m) for m in range(1, 4)] == [0] * 3
    source.close()


def test_a_row_queryable_only_after_the_run_that_passed_its_arrival_is_read_once_the_overlap_passes(
    tmp_path: Path, state: StateStore
) -> None:
    """The overlap's reason: Log Analytics rows become queryable after their arrival stamp. Rows stamped two
    minutes before a run but inserted after it (so invisible to it) reach the state by the second read."""
    now = T0 + timedelta(hours=1)
    path = tmp_path / "logs.duckdb"
    _store_with_rows(path, 1, now - timedelta(minutes=5))
    source = CountingSource(path)
    assert Follower(source, state, clock=lambda: now).run().rows == 3
    source.close()
    late = _store_with_rows(path, 2, now - timedelta(minutes=2))  # arrived before the run, queryable after it
    source = CountingSource(path)
    reads = [Follower(source, state, clock=lambda m=m: now + timedelta(minutes=m)).run().rows for m in range(1, 10)]
    assert all(state.read(mid) is not None for mid in late)
    assert sum(reads) == 3 + 6  # the first import's rows once more, the late rows once: no other re-read
    source.close()


def test_an_unfinished_pass_keeps_its_gap_and_sweep_across_runs(tmp_path: Path, state: StateStore) -> None:
    """A pass stopped at max_rows continues from its cursor with the bounds it started with, and completes with
    every row read once; its sweep is then recorded."""
    now = T0 + timedelta(hours=1)
    path = tmp_path / "logs.duckdb"
    _store_with_rows(path, 4, now - timedelta(minutes=3))
    source = CountingSource(path)
    assert Follower(source, state, clock=lambda: now).run().rows == 12
    source.close()
    _store_with_rows(path, 10, now + timedelta(seconds=30))  # 30 fresh rows for the next pass
    source = CountingSource(path)
    follower = Follower(source, state, clock=lambda: now + timedelta(minutes=1), max_rows=12)
    first = follower.run()
    position = follower.position()
    assert (first.rows, first.complete) == (12, False) and position.gap is not None
    assert position.gap == (now + timedelta(minutes=1) - follower.overlap, now)
    rest = [Follower(source, state, clock=lambda m=m: now + timedelta(minutes=m), max_rows=12).run() for m in (2, 3)]
    assert rest[-1].complete and first.rows + sum(r.rows for r in rest) <= 30 + 2 * 3  # ties re-read at most
    position = follower.position()
    assert position.cursor_arrival is None and position.swept == now + timedelta(minutes=1) - follower.overlap
    source.close()
