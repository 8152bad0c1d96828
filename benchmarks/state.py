"""Delivery-state benchmarks (run by hand): event ingestion into Azurite, and the follower.

    python benchmarks/state.py ingest [--events 100000] [--batch 500]
    python benchmarks/state.py follow [--rows 100000]

``ingest``: synthetic Event Grid delivery and engagement events (2.5 recipients a message, a tenth of them
duplicated, in shuffled order) POSTed in batches to the dev host's Event Grid webhook
(``/runtime/webhooks/eventgrid?functionName=ingest_email_events``), which runs one invocation per event,
concurrently, as the Functions host does; then the journal folded into message partitions (the follower
timer's second half), timed on its own, and a few traces checked against the events.
``follow``: an embedded store holding that many new status rows (plus their sends), one follower run (one
query, the rows journaled), its fold budget, and the rest of the fold timed until the journal is empty.
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
sys.path.insert(0, str(ROOT / "tests" / "support"))

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


def post(url: str, events: list[dict[str, Any]]) -> None:
    import json
    import urllib.request

    body = json.dumps(events).encode()
    headers = {"aeg-event-type": "Notification", "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=120) as response:
        assert response.status == 202, response.status


def bench_ingest(count: int, batch: int) -> None:
    import os

    from shared.services import Services
    from shared.state.ingest import fold_journal

    from apphost import serve, settings  # type: ignore[import-not-found]
    from azurite import running  # type: ignore[import-not-found]

    # The worker's threads as deployed (infra/app/api.bicep, local.settings.sample.json).
    os.environ.setdefault("PYTHON_THREADPOOL_THREAD_COUNT", "32")
    events = synthetic_events(count)
    with running() as azurite:
        overrides = {"summary_storage": "BENCH_STORAGE", "state_table": "BenchState"}
        os.environ["BENCH_STORAGE"] = azurite.connection_string
        services = Services(settings(**overrides))
        services.state.ensure_table()
        with serve(services) as host:
            url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=ingest_email_events"
            post(url, events[:batch])  # warm: imports, tables
            started = time.perf_counter()
            for start in range(batch, len(events), batch):
                post(url, events[start : start + batch])
            elapsed = time.perf_counter() - started
        sent = len(events) - batch
        print(
            f"ingest: {sent:,} events POSTed in batches of {batch} to the Event Grid webhook: {elapsed:.1f} s, "
            f"{sent / elapsed:,.0f} events/s (journaled: traces see them)"
        )
        if os.environ.get("BENCH_SKIP_FOLD"):
            return
        started = time.perf_counter()
        fold = fold_journal(services.state)
        elapsed = time.perf_counter() - started
        print(
            f"fold: {fold.observations:,} observations of {fold.messages:,} messages into partitions "
            f"({fold.entities_written:,} entities written): {elapsed:.1f} s, {fold.observations / elapsed:,.0f}/s"
        )
        check_traces(services, events)
        services.close()


def check_traces(services: Any, events: list[dict[str, Any]]) -> None:
    """A few messages read back from the state hold every recipient their events named."""
    named: dict[str, set[str]] = {}
    for event in events:
        named.setdefault(event["data"]["messageId"], set()).add(event["data"]["recipient"].lower())
    for message_id in list(named)[:200]:
        partition = services.state.read(message_id)
        assert partition is not None, message_id
        assert {r.address.lower() for r in partition.recipients.values()} == named[message_id]
    print(f"checked: {min(200, len(named))} messages read back with every recipient their events named")


def write_status_rows(path: Path, rows: int) -> None:
    """An embedded store with ``rows`` new status rows (2 a message) and their sends, stamped ``_IngestedAt``
    a minute ago (the store's arrival column)."""
    import duckdb

    from local.store import open_store

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
    from local.embedded import DuckDbSource
    from shared.state.follower import Follower
    from shared.state.ingest import fold_journal
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
            f"follow: one run, {result.rows:,} rows ({result.queries} query, {result.query_seconds:.1f} s; "
            f"journaled in {result.journal_seconds:.1f} s), fold within the run: {result.folded:,} observations "
            f"of {result.messages:,} messages: {elapsed:.1f} s in all"
        )
        started = time.perf_counter()
        rest = fold_journal(store)
        elapsed = time.perf_counter() - started
        if rest.observations:
            print(
                f"fold of the rest (later runs): {rest.observations:,} observations: {elapsed:.1f} s, "
                f"{rest.observations / elapsed:,.0f}/s"
            )
        assert store.journal is not None and not store.journal.entries()


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
