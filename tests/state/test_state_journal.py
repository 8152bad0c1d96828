"""The delivery-state journal on Azurite: codec, shared writes, limits, folding (any split, crash, budget), outages."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_state_store import _comparable, _retarget, _state, observation_strategy, send, status

from shared.errors import Unavailable
from shared.state.ingest import apply_observations, fold_journal
from shared.state.journal import CHUNK_CHARS, ENTITY_CHARS, Journal, JournalUnavailable, decode, encode
from shared.state.observations import Observation
from shared.state.partition import partition_entities, recipient_row_key
from shared.state.store import StateStore


@pytest.fixture(scope="module")
def store(azurite_connection_string: str) -> Iterator[StateStore]:
    state = StateStore.from_connection_string(azurite_connection_string, f"Jrnl{uuid.uuid4().hex[:8]}")
    yield state
    state.close()


def message_id() -> str:
    return str(uuid.uuid4())


class Counting:
    """Counts one kind of the journal's requests (the real client does the work) until restored."""

    def __init__(self, journal: Journal, method: str = "create_entity") -> None:
        self.calls = 0
        self._lock = threading.Lock()
        self._client, self._method = journal.client, method
        self._real = getattr(journal.client, method)
        setattr(journal.client, method, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        return self._real(*args, **kwargs)

    def restore(self) -> None:
        setattr(self._client, self._method, self._real)


@settings(max_examples=200, deadline=None)
@given(observation_strategy)
def test_every_observation_survives_the_codec(observation: Observation) -> None:
    text = json.dumps(encode(observation))
    assert text.isascii()
    assert decode(json.loads(text)) == observation


def test_message_level_statuses_keep_their_missing_recipient() -> None:
    observation = status("m-1", None, "Dropped", 1)
    assert decode(encode(observation)) == observation


def test_journaled_events_are_read_before_any_fold(store: StateStore) -> None:
    mid = message_id()
    store.append([status(mid, "a@x.com", "Delivered", 1), status(mid, "b@x.com", "Bounced", 2)])
    assert store._entities(mid) == []  # no partition yet
    partition = store.read(mid)
    assert partition is not None
    assert {r.address for r in partition.recipients.values()} == {"a@x.com", "b@x.com"}
    assert store.read(message_id()) is None


def test_concurrent_appends_share_requests_and_lose_nothing(store: StateStore) -> None:
    assert store.journal is not None
    counting = Counting(store.journal)
    try:
        mids = [message_id() for _ in range(96)]
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda mid: store.append([status(mid, "a@x.com", "Delivered", 1)]), mids))
    finally:
        counting.restore()
    assert counting.calls < len(mids)  # invocations arriving during a write go together in the next
    journaled = {o.message_id for e in store.journal.entries() for o in e.observations}
    assert set(mids) <= journaled


def test_a_failed_write_fails_every_caller_that_shared_it() -> None:
    down = StateStore.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1",
        "DownState",
    )
    assert down.journal is not None
    down.journal._table_ready = True  # straight to the write

    def attempt(index: int) -> BaseException | None:
        try:
            down.append([status(f"m-{index}", "a@x.com", "Delivered", 1)])
        except BaseException as exc:
            return exc
        return None

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(16)))
    assert all(isinstance(outcome, JournalUnavailable) for outcome in outcomes), outcomes
    assert all(isinstance(outcome, Unavailable) for outcome in outcomes)  # 503: Event Grid delivers again
    assert "a@x.com" not in str(outcomes[0])
    down.close()


def test_large_writes_are_split_within_table_limits(store: StateStore) -> None:
    assert store.journal is not None
    mid = message_id()
    long = "x" * 4096  # the longest text an event carries
    observations = [
        status(mid, f"r{i}@x.com", "Delivered", i % 60, status_message=long, mail_server="mx") for i in range(400)
    ]
    counting = Counting(store.journal)
    try:
        store.append(observations)
    finally:
        counting.restore()
    assert counting.calls > 1
    raw = list(store.journal.client.list_entities())
    mine = [e for e in raw if mid in "".join(v for k, v in e.items() if k.startswith("Body"))]
    assert len(mine) == counting.calls
    for entity in mine:
        bodies = [value for key, value in entity.items() if key.startswith("Body")]
        assert all(len(body) <= CHUNK_CHARS for body in bodies)
        assert sum(len(body) for body in bodies) <= ENTITY_CHARS + 2
    back = [o for e in store.journal.entries() for o in e.observations if o.message_id == mid]
    assert back == observations


# --------------------------------------------------------------------------- folding


def test_fold_empties_the_journal_into_partitions_and_a_second_fold_writes_nothing(store: StateStore) -> None:
    mid = message_id()
    store.append([send(mid, 2), status(mid, "a@x.com", "Delivered", 1, "logs")])
    store.append([status(mid, "B@x.com", "Bounced", 2), status(mid, "b@x.com", "Bounced", 2)])
    before = store.read(mid)
    report = fold_journal(store)
    assert report.observations >= 4 and report.left == 0
    assert store.journal is not None and not store.journal.entries()
    stored = store._entities(mid)
    assert len(stored) == 3  # the message and two recipients: at most recipients + 1
    after = store.read(mid)
    assert after is not None and before is not None and after.final
    assert _comparable(partition_entities(after)) == _comparable(partition_entities(before))
    assert fold_journal(store).entities_written == 0


def test_a_fold_that_stopped_before_deleting_is_redone_without_a_change(store: StateStore) -> None:
    """A crash between writing partitions and deleting the folded entries: the next fold merges them again."""
    assert store.journal is not None
    fold_journal(store)
    mid = message_id()
    store.append([send(mid, 1), status(mid, "a@x.com", "Failed", 1, smtp_status_code="550")])
    entries = store.journal.entries()
    # Written as the fold writes them (first seen: when journaled), then the process died before deleting.
    apply_observations(store, [o for e in entries for o in e.observations], seen_at={mid: entries[0].written_at})
    written = store._entities(mid)
    report = fold_journal(store)
    assert report.entities_written == 0 and report.entries == len(entries)
    assert [dict(e) for e in store._entities(mid)] == [dict(e) for e in written]


def test_a_fold_without_budget_leaves_everything_for_the_next(store: StateStore) -> None:
    assert store.journal is not None
    fold_journal(store)
    mid = message_id()
    store.append([status(mid, "a@x.com", "Delivered", 1)])
    report = fold_journal(store, budget_seconds=0)
    assert report.entries == 0 and report.left == len(store.journal.entries()) >= 1
    assert store.read(mid) is not None  # still answered, from the journal
    assert fold_journal(store).left == 0 and store._entities(mid)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(observation_strategy, min_size=1, max_size=10), st.randoms(use_true_random=False))
def test_any_split_between_journal_and_partition_and_any_fold_give_the_same_state(
    store: StateStore, observations: list[Observation], rng: random.Random
) -> None:
    """Events journaled, log rows written back by a trace, folds at any point, duplicates: one state."""
    expected = _state(observations)
    mid = message_id()
    shuffled = [_retarget(o, mid) for o in observations + rng.sample(observations, k=min(2, len(observations)))]
    rng.shuffle(shuffled)
    for observation in shuffled:
        if rng.random() < 0.5:
            store.append([observation])
        else:
            store.apply(mid, [observation])
        if rng.random() < 0.2:
            fold_journal(store)
    want = {key: {**entity, "PartitionKey": mid} for key, entity in expected.items()}
    read = store.read(mid)
    assert read is not None and _comparable(partition_entities(read)) == _comparable(want)
    fold_journal(store)
    folded = store.read(mid)
    assert folded is not None and _comparable(partition_entities(folded)) == _comparable(want)


def test_first_seen_is_when_the_journal_got_it_not_when_it_was_folded(store: StateStore) -> None:
    from datetime import UTC, datetime

    mid = message_id()
    early = datetime(2026, 3, 10, 10, 5, tzinfo=UTC)  # the event (10:01) arrived 4 min later
    store.clock = lambda: early
    try:
        store.append([status(mid, "a@x.com", "Delivered", 1)])
    finally:
        store.clock = lambda: datetime.now(UTC)
    fold_journal(store)
    partition = store.read(mid)
    assert partition is not None
    assert partition.recipients[recipient_row_key("a@x.com")].first_seen == early


def test_the_state_without_a_journal_writes_straight_to_partitions(azurite_connection_string: str) -> None:
    state = StateStore.from_connection_string(azurite_connection_string, f"Bare{uuid.uuid4().hex[:8]}")
    state.journal = None
    mid = message_id()
    state.append([replace(status(mid, "a@x.com", "Delivered", 1))])
    assert state._entities(mid)
    state.close()


def test_a_reader_after_a_burst_reads_the_journal_in_one_query_not_an_entry_at_a_time(
    azurite_connection_string: str,
) -> None:
    from shared.state.journal import POINT_READS

    table = f"Burst{uuid.uuid4().hex[:8]}"
    writer = StateStore.from_connection_string(azurite_connection_string, table)
    mids = [message_id() for _ in range(POINT_READS * 3)]
    for mid in mids:  # one entry each: sequential appends share nothing
        writer.append([status(mid, "a@x.com", "Delivered", 1)])
    reader = StateStore.from_connection_string(azurite_connection_string, table)  # another instance: no cache
    assert reader.journal is not None
    gets = Counting(reader.journal, "get_entity")
    partition = reader.read(mids[5])
    assert partition is not None and partition.recipients
    assert gets.calls == 0  # one query of the whole journal, not 48 point reads
    writer.append([status(mids[0], "b@x.com", "Bounced", 2)])
    again = reader.read(mids[0])
    assert again is not None and len(again.recipients) == 2 and gets.calls == 1  # the one new entry
    gets.restore()
    writer.close()
    reader.close()
