"""Delivery-state benchmarks (run by hand): event ingestion into Azurite, and the follower.

    python benchmarks/state.py ingest [--events 100000] [--batch 500]
    python benchmarks/state.py follow [--rows 100000]

``ingest``: synthetic Event Grid delivery and engagement events (2.5 recipients a message, a tenth of them
duplicated, in shuffled order) written through :func:`shared.state.ingest.ingest_events` in batches.
``follow``: an embedded store holding that many new status rows (plus their sends), one follower run.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from shared.state.events import DELIVERY_REPORT, ENGAGEMENT_REPORT  # noqa: E402

T0 = datetime(2026, 3, 10, tzinfo=UTC)
STATUSES = ("Delivered",) * 8 + ("Bounced", "Failed", "Suppressed", "Expanded")


def synthetic_events(count: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    while len(events) < count:
        message = str(uuid.UUID(int=rng.getrandbits(128)))
        sent = T0 + timedelta(seconds=rng.randint(0, 7 * 86400))
        for index in range(rng.choice((1, 2, 3, 4))):
            recipient = f"user{rng.randint(0, 10**6)}.{index}@example{rng.randint(0, 50)}.com"
            data = {
                "sender": "DoNotReply@contoso.com",
                "recipient": recipient,
                "messageId": message,
                "status": rng.choice(STATUSES),
                "deliveryStatusDetails": {"statusMessage": "ok", "recipientMailServerHostName": "mx.example.com"},
                "deliveryAttemptTimestamp": (sent + timedelta(seconds=rng.randint(1, 600))).isoformat(),
            }
            events.append({"id": str(uuid.uuid4()), "eventType": DELIVERY_REPORT, "data": data})
            if rng.random() < 0.2:
                engagement = {
                    "sender": "DoNotReply@contoso.com",
                    "recipient": recipient,
                    "messageId": message,
                    "engagementType": "view",
                    "userActionTimestamp": (sent + timedelta(hours=1)).isoformat(),
                }
                events.append({"id": str(uuid.uuid4()), "eventType": ENGAGEMENT_REPORT, "data": engagement})
    events = events[:count]
    duplicates = rng.sample(events, k=count // 10)
    events = events[: count - len(duplicates)] + duplicates
    rng.shuffle(events)
    return events


def bench_ingest(count: int, batch: int) -> None:
    from shared.state.ingest import ingest_events
    from shared.state.store import StateStore

    from azurite import running  # type: ignore[import-not-found]

    events = synthetic_events(count)
    with running() as azurite:
        store = StateStore.from_connection_string(azurite.connection_string, "BenchState")
        store.ensure_table()
        started = time.perf_counter()
        written = messages = 0
        for start in range(0, len(events), batch):
            report = ingest_events(store, events[start : start + batch])
            written += report.entities_written
            messages += report.messages
        elapsed = time.perf_counter() - started
    print(
        f"ingest: {len(events):,} events in batches of {batch}: {elapsed:.1f} s, "
        f"{len(events) / elapsed:,.0f} events/s ({messages:,} partition writes, {written:,} entities written)"
    )


def write_status_rows(path: Path, rows: int) -> None:
    """An embedded store with ``rows`` new status rows (2 a message) and their sends, stamped ``_IngestedAt``
    a minute ago (the store's arrival column)."""
    import duckdb

    from shared.logs.store import open_store

    open_store(path).close()
    con = duckdb.connect(str(path))
    stamp = "now()::TIMESTAMP - INTERVAL 1 MINUTE"
    messages = rows // 2
    con.execute(
        'INSERT INTO "ACSEmailSendMailOperational" ("TimeGenerated", "CorrelationId", "Size", '
        '"UniqueRecipientsCount", "_ResourceId", "_IngestedAt") '
        f"SELECT TIMESTAMP '2026-03-10' + to_seconds(i), uuid()::VARCHAR, 0.1, 2, '/r', {stamp} "
        f"FROM range({messages}) t(i)"
    )
    con.execute(
        'INSERT INTO "ACSEmailStatusUpdateOperational" ("TimeGenerated", "CorrelationId", "RecipientId", '
        '"DeliveryStatus", "SenderUsername", "SenderDomain", "_ResourceId", "_IngestedAt") '
        "SELECT s.TimeGenerated + INTERVAL 30 SECOND, s.CorrelationId, 'user' || r.n || '@example.com', "
        f"'Delivered', 'DoNotReply', 'contoso.com', '/r', {stamp} "
        'FROM "ACSEmailSendMailOperational" s, (VALUES (0), (1)) r(n)'
    )
    con.close()


def bench_follow(rows: int) -> None:
    from shared.logs.embedded import DuckDbSource
    from shared.state.follower import Follower
    from shared.state.store import StateStore

    from azurite import running

    with tempfile.TemporaryDirectory() as work, running() as azurite:
        path = Path(work) / "store.duckdb"
        write_status_rows(path, rows)
        source = DuckDbSource(path)
        store = StateStore.from_connection_string(azurite.connection_string, "BenchFollow")
        follower = Follower(source, store, clock=lambda: datetime.now(UTC), max_rows=rows * 2)
        started = time.perf_counter()
        result = follower.run()
        elapsed = time.perf_counter() - started
        print(
            f"follow: one run, {result.rows:,} rows ({result.queries} query, {result.query_seconds:.1f} s of it), "
            f"{result.messages:,} messages, {result.entities_written:,} entities written: {elapsed:.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("ingest", "follow"))
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    if args.what == "ingest":
        bench_ingest(args.events, args.batch)
    else:
        bench_follow(args.rows)


if __name__ == "__main__":
    main()
