"""State that does not grow for ever: the retention timer (``expire_state``, run through the dev host's admin
endpoint as the host runs timers) deletes message partitions first seen more than STATE_RETENTION_DAYS ago and
keeps younger ones; a 404 for an unknown id writes one small marker, pruned after the 30-minute window.
On Azurite; times come from the store's clock, which stamps FirstSeen, the day index and the markers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from local.embedded import DuckDbSource
from shared.insights import Insights
from shared.services import Services
from shared.state import retention
from shared.state.ingest import fold_journal
from shared.state.observations import SendObservation, StatusObservation
from shared.state.retention import ASKED_PARTITION, DAY_PREFIX, expire_state, expiry_table, indexed_ids
from shared.state.store import StateStore
from shared.tracing import NOT_FOUND_RETRY_WINDOW

from apphost import serve, settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(azurite_connection_string: str) -> Iterator[StateStore]:
    store = StateStore.from_connection_string(azurite_connection_string, "Keep" + uuid.uuid4().hex[:10])
    store.ensure_table()
    store.clock = Clock(NOW)
    yield store
    store.client.delete_table()
    expiry_table(store).client.delete_table()
    store.close()


def services_for(store: StateStore, semantic_store: Path, **overrides: Any) -> Services:
    insights = Insights(DuckDbSource(semantic_store), clock=store.clock)
    return Services(settings(**overrides), insights=insights, state=store, clock=store.clock)


def write(store: StateStore, message_id: str, recipient: str, at: datetime) -> None:
    """A send and one recipient's status, stored as if first seen at *at*."""
    assert isinstance(store.clock, Clock)
    store.clock.now = at
    observations: list[Any] = [
        SendObservation(message_id=message_id, send_time=at, unique_recipients_count=2),
        StatusObservation(message_id=message_id, recipient=recipient, status="Delivered", time=at, source="events"),
    ]
    store.apply(message_id, observations)
    store.clock.now = NOW


def keys(store: StateStore) -> set[tuple[str, str]]:
    """(PartitionKey, RowKey) of every entity of the state table and of its expiry table."""
    found = {(str(e["PartitionKey"]), str(e["RowKey"])) for e in store.client.list_entities()}
    return found | {(str(e["PartitionKey"]), str(e["RowKey"])) for e in expiry_table(store).client.list_entities()}


def run_timer(services: Services) -> None:
    with serve(services) as host:
        request = urllib.request.Request(f"{host.base_url}/admin/functions/expire_state", b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 202


@pytest.mark.parametrize("retention_days", [30, 50])
def test_the_timer_deletes_partitions_first_seen_before_the_retention_and_keeps_the_rest(
    store: StateStore, semantic_store: Path, retention_days: int
) -> None:
    write(store, "old", "a@contoso.com", NOW - timedelta(days=40))
    write(store, "young", "b@contoso.com", NOW - timedelta(days=10))
    # First seen 40 days ago, but a recipient new 5 days ago: something of it is young, so all of it stays.
    write(store, "renewed", "c@contoso.com", NOW - timedelta(days=40))
    write(store, "renewed", "d@contoso.com", NOW - timedelta(days=5))
    days = {pk for pk, _ in keys(store) if pk.startswith(DAY_PREFIX)}
    assert days == {DAY_PREFIX + (NOW - timedelta(days=d)).date().isoformat() for d in (40, 10, 5)}

    run_timer(services_for(store, semantic_store, state_retention_days=retention_days))

    left = {pk for pk, _ in keys(store)}
    assert {"young", "renewed"} <= left
    if retention_days == 30:
        assert "old" not in left  # every entity of it: the send's message entity and its recipient
        # The 40-day-old index partition is processed and gone; younger days stay for later runs.
        assert DAY_PREFIX + (NOW - timedelta(days=40)).date().isoformat() not in left
    else:
        assert "old" in left and store.read("old") is not None


def test_a_run_out_of_budget_stops_and_the_next_run_goes_on(store: StateStore) -> None:
    for n in range(5):
        write(store, f"old-{n}", "a@contoso.com", NOW - timedelta(days=31))
    common = {"now": NOW, "retention": timedelta(days=30), "asked_window": NOT_FOUND_RETRY_WINDOW}
    first = expire_state(store, budget_seconds=0, **common)
    assert not first.complete and first.partitions == 0
    assert {pk for pk, _ in keys(store)} >= {f"old-{n}" for n in range(5)}
    second = expire_state(store, **common)
    assert second.complete and second.partitions == 5
    assert not [pk for pk, _ in keys(store) if pk.startswith("old-") or pk.startswith(DAY_PREFIX)]
    assert expire_state(store, **common).partitions == 0  # nothing left to do: the index is empty


def get(url: str) -> tuple[int, dict[str, str], Any]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, json.loads(error.read())


def test_unknown_ids_write_one_small_marker_each_pruned_after_the_window(
    store: StateStore, semantic_store: Path
) -> None:
    services = services_for(store, semantic_store)
    assert isinstance(store.clock, Clock)
    with serve(services) as host:
        for _ in range(3):
            status, headers, _ = get(f"{host.base_url}/api/messages/unknown-x")
            assert status == 404 and "retry-after" in headers
        store.clock.now = NOW + timedelta(minutes=20)
        assert get(f"{host.base_url}/api/messages/unknown-y")[0] == 404
    # One marker per id asked, however often; no partition in the state's table, no day index entry.
    assert keys(store) == {(ASKED_PARTITION, "unknown-x"), (ASKED_PARTITION, "unknown-y")}
    [marker] = [e for e in expiry_table(store).client.list_entities() if e["RowKey"] == "unknown-x"]
    assert set(marker) == {"PartitionKey", "RowKey", "FirstAsked"}

    store.clock.now = NOW + NOT_FOUND_RETRY_WINDOW + timedelta(minutes=1)
    run_timer(services)  # x's window is over, y's is not
    assert keys(store) == {(ASKED_PARTITION, "unknown-y")}
    store.clock.now = NOW + timedelta(minutes=20) + NOT_FOUND_RETRY_WINDOW + timedelta(minutes=1)
    run_timer(services)
    assert keys(store) == set()


def test_folded_events_are_indexed_by_day_and_expire_with_the_rest(store: StateStore) -> None:
    """Through the journal and the fold (which indexes a chunk's messages in batches before writing them)."""
    assert isinstance(store.clock, Clock)
    store.clock.now = NOW - timedelta(days=31)
    ids = [f"folded-{n:03d}" for n in range(150)]
    at = store.clock.now
    store.append(
        [
            StatusObservation(message_id=mid, recipient="a@contoso.com", status="Delivered", time=at, source="events")
            for mid in ids
        ]
    )
    fold_journal(store)
    store.clock.now = NOW
    write(store, "fresh", "b@contoso.com", NOW - timedelta(days=1))
    day = DAY_PREFIX + (NOW - timedelta(days=31)).date().isoformat()
    [entry] = [e for e in expiry_table(store).client.list_entities() if e["PartitionKey"] == day]  # one request
    assert sorted(indexed_ids(entry)) == ids
    run = expire_state(store, now=NOW, retention=timedelta(days=30), asked_window=NOT_FOUND_RETRY_WINDOW)
    assert run.complete and run.partitions == len(ids)
    assert {pk for pk, _ in keys(store) if not pk.startswith(DAY_PREFIX)} == {"fresh"}


def test_a_run_stopped_half_way_through_an_index_entry_keeps_the_rest_for_the_next(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(store.clock, Clock)
    store.clock.now = NOW - timedelta(days=31)
    ids = [f"half-{n}" for n in range(5)]
    at = store.clock.now
    store.append([StatusObservation(mid, "a@contoso.com", "Delivered", at, "events") for mid in ids])
    fold_journal(store)  # one index entry lists all five
    store.clock.now = NOW
    looks = iter([True, True, True, True, False])  # markers, the index, two messages, then the budget is spent
    monkeypatch.setattr(retention, "_time_left", lambda: next(looks, False))
    common = {"now": NOW, "retention": timedelta(days=30), "asked_window": NOT_FOUND_RETRY_WINDOW}
    first = expire_state(store, **common)
    assert not first.complete and first.partitions == 2
    [entry] = list(expiry_table(store).client.list_entities())
    assert indexed_ids(entry) == ids[2:]  # what is left to do, and only that
    monkeypatch.undo()
    second = expire_state(store, **common)
    assert second.complete and second.partitions == 3
    assert keys(store) == set()
