"""The delivery-state store on Azurite: layout, monotone merges, duplicates, concurrency and outages."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import Unavailable
from shared.state.observations import (
    EngagementObservation,
    Observation,
    RegistrationObservation,
    SendObservation,
    StatusObservation,
)
from shared.state.partition import MESSAGE_ROW_KEY, Partition, partition_entities, recipient_row_key
from shared.state.store import KnownEntities, StateStore, StateStoreUnavailable, empty_partition

T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def store(azurite_connection_string: str) -> Iterator[StateStore]:
    state = StateStore.from_connection_string(azurite_connection_string, f"State{uuid.uuid4().hex[:8]}")
    yield state
    state.close()


def message_id() -> str:
    return str(uuid.uuid4())


def status(
    mid: str, recipient: str | None, name: str, minutes: float, source: str = "events", **kw: object
) -> StatusObservation:
    return StatusObservation(mid, recipient, name, T0 + timedelta(minutes=minutes), source, **kw)  # type: ignore[arg-type]


def send(mid: str, recipients: int, minutes: float = 0) -> SendObservation:
    return SendObservation(mid, T0 + timedelta(minutes=minutes), 0.5, 0, recipients, 0, 0, recipients, "/r")


def test_one_entity_per_recipient_plus_one_for_the_message(store: StateStore) -> None:
    mid = message_id()
    store.apply(mid, [send(mid, 2), status(mid, "a@x.com", "Delivered", 1), status(mid, "B@x.com", "Bounced", 2)])
    store.apply(mid, [status(mid, "b@x.com", "Bounced", 2, "logs", smtp_status_code="550", is_hard_bounce="true")])
    entities = list(store.client.query_entities("PartitionKey eq @pk", parameters={"pk": mid}))
    assert sorted(str(e["RowKey"]) for e in entities) == sorted(
        [MESSAGE_ROW_KEY, recipient_row_key("a@x.com"), recipient_row_key("b@x.com")]
    )
    partition = store.read(mid)
    assert partition is not None and partition.final
    bounced = partition.recipients[recipient_row_key("b@x.com")]
    assert bounced.final_source == "both" and bounced.final is not None
    entity = next(e for e in entities if e["RowKey"] == recipient_row_key("b@x.com"))
    assert (entity["FinalStatus"], entity["BounceType"], entity["BounceTypeSource"], entity["Source"]) == (
        "Bounced",
        "Hard Bounce",
        "reported",
        "both",
    )


def test_an_older_final_arriving_later_never_replaces_a_newer_one(store: StateStore) -> None:
    mid = message_id()
    store.apply(mid, [status(mid, "a@x.com", "Delivered", 10)])
    store.apply(mid, [status(mid, "a@x.com", "Bounced", 5)])
    partition = store.read(mid)
    assert partition is not None
    final = partition.recipients[recipient_row_key("a@x.com")].final
    assert final is not None and final.status == "Delivered"


def test_expanded_and_unknown_statuses_are_stored_never_final(store: StateStore) -> None:
    mid = message_id()
    store.apply(mid, [send(mid, 1), status(mid, "a@x.com", "Brand new status", 3)])
    partition = store.read(mid)
    assert partition is not None
    recipient = partition.recipients[recipient_row_key("a@x.com")]
    assert recipient.final is None and recipient.latest is not None and recipient.latest[1] == "Brand new status"
    assert not partition.final


def test_final_from_events_alone_needs_the_expected_recipients(store: StateStore) -> None:
    mid = message_id()
    change = store.apply(mid, [status(mid, "a@x.com", "Delivered", 1)])
    assert not change.after.final and not change.became_final
    change = store.apply(mid, [send(mid, 1)])
    assert change.became_final


def test_an_exact_duplicate_writes_nothing_and_counts_once(store: StateStore) -> None:
    mid = message_id()
    view = EngagementObservation(mid, "a@x.com", "view", T0 + timedelta(hours=1), None, "UA")
    click = EngagementObservation(mid, "a@x.com", "click", T0 + timedelta(hours=2), "https://c.com/1", "UA")
    assert store.apply(mid, [status(mid, "a@x.com", "Delivered", 1), view, view, click]).written == 1
    assert store.apply(mid, [status(mid, "a@x.com", "Delivered", 1), view, click]).written == 0
    partition = store.read(mid)
    assert partition is not None
    recipient = partition.recipients[recipient_row_key("a@x.com")]
    assert (recipient.views(), recipient.clicks(), recipient.clicked_urls) == (1, 1, ("https://c.com/1",))
    assert (recipient.first_engagement, recipient.last_engagement) == (view.time, click.time)


def test_concurrent_writers_lose_nothing(store: StateStore) -> None:
    mid = message_id()
    recipients = [f"user{i}@x.com" for i in range(12)]
    observations = [status(mid, r, "Delivered", i) for i, r in enumerate(recipients)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda o: store.apply(mid, [o]), observations))
    partition = store.read(mid)
    assert partition is not None
    assert sorted(r.address for r in partition.recipients.values() if r.final is not None) == sorted(recipients)


# --------------------------------------------------------------------------- what this process knows


class _Calls:
    """Counts the Table requests a store's client makes, by method."""

    def __init__(self, store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: dict[str, int] = {}
        for name in ("get_entity", "query_entities", "create_entity", "update_entity", "submit_transaction"):
            monkeypatch.setattr(store.client, name, self._counting(name, getattr(store.client, name)))

    def _counting(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] = self.counts.get(name, 0) + 1
            return method(*args, **kwargs)

        return call


def test_a_message_this_process_wrote_is_written_again_without_reading_it(
    azurite_connection_string: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = f"Known{uuid.uuid4().hex[:8]}"
    with closing(StateStore.from_connection_string(azurite_connection_string, table)) as store:
        mid = message_id()
        store.apply(mid, [status(mid, "a@x.com", "Delivered", 1)], whole_partition=False)
        calls = _Calls(store, monkeypatch)
        view = EngagementObservation(mid, "a@x.com", "view", T0 + timedelta(hours=1), None, "UA")
        change = store.apply(mid, [view], whole_partition=False)
        # One request: the update, If-Match the ETag the first write got back (no failed create, no read).
        assert calls.counts == {"update_entity": 1}
        assert change.before.recipients[recipient_row_key("a@x.com")].views() == 0
        assert change.after.recipients[recipient_row_key("a@x.com")].views() == 1
    with closing(StateStore.from_connection_string(azurite_connection_string, table)) as other:
        partition = other.read(mid)
        assert partition is not None and partition.recipients[recipient_row_key("a@x.com")].views() == 1


def test_a_known_message_whose_whole_partition_is_needed_is_read_without_failed_creates_first(
    azurite_connection_string: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with closing(StateStore.from_connection_string(azurite_connection_string, f"Known{uuid.uuid4().hex[:8]}")) as store:
        mid = message_id()
        store.apply(mid, [send(mid, 2), status(mid, "a@x.com", "Delivered", 1)])
        calls = _Calls(store, monkeypatch)
        change = store.apply(mid, [status(mid, "b@x.com", "Delivered", 2), status(mid, "a@x.com", "Delivered", 1)])
        # b is new (its create is the write), a is known: the partition is read, never a create bound to fail.
        assert calls.counts == {"query_entities": 1, "create_entity": 1}
        assert change.became_final and not change.before.final


def test_what_a_process_knows_is_only_a_hint_another_writer_or_an_expiry_wins(azurite_connection_string: str) -> None:
    table = f"Known{uuid.uuid4().hex[:8]}"
    with (
        closing(StateStore.from_connection_string(azurite_connection_string, table)) as one,
        closing(StateStore.from_connection_string(azurite_connection_string, table)) as two,
    ):
        mid = message_id()
        key = recipient_row_key("a@x.com")
        one.apply(mid, [status(mid, "a@x.com", "Delivered", 1)], whole_partition=False)
        two.apply(mid, [EngagementObservation(mid, "a@x.com", "view", T0 + timedelta(hours=1), None, "UA")])
        # one's ETag is stale now: its write fails (412), it reads, merges and keeps the other's view.
        click = EngagementObservation(mid, "a@x.com", "click", T0 + timedelta(hours=2), "https://c.com/1", "UA")
        change = one.apply(mid, [click], whole_partition=False)
        assert change.before.recipients[key].views() == 1  # judged against what the service held
        stored = two.read(mid)
        assert stored is not None
        recipient = stored.recipients[key]
        assert (recipient.views(), recipient.clicks(), recipient.final is not None) == (1, 1, True)
        # Expired (deleted) since one wrote it: its update fails (404), it reads nothing and creates it again.
        one.client.delete_entity(mid, key)
        one.apply(mid, [status(mid, "a@x.com", "Bounced", 5)], whole_partition=False)
        again = two.read(mid)
        assert again is not None and again.recipients[key].clicks() == 0
        final = again.recipients[key].final
        assert final is not None and final.status == "Bounced"


def test_known_entities_are_bounded_least_recently_used_first() -> None:
    known = KnownEntities(limit=3)
    for index in range(5):
        known.remember({"PartitionKey": f"m{index}", "RowKey": "r", "Kind": "x"}, f"etag{index}")
        if index == 2:
            assert known.get("m0", ["r"])  # used: kept over m1
    assert len(known) == 3
    assert set(known.get("m0", ["r"])) == {"r"} and not known.get("m1", ["r"]) and not known.get("m2", ["r"])
    assert known.get("m4", ["r"])["r"].metadata == {"etag": "etag4"}
    known.remember({"PartitionKey": "m4", "RowKey": "r"}, None)  # no ETag: nothing to trust
    assert not known.get("m4", ["r"])


def test_table_storage_down_is_unavailable() -> None:
    down = StateStore.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1",
        "State",
    )
    down.client._client._config.retry_policy.total_retries = 0  # type: ignore[attr-defined,union-attr]
    with pytest.raises(StateStoreUnavailable) as caught:
        down.apply("m-1", [status("m-1", "a@x.com", "Delivered", 1)])
    assert isinstance(caught.value, Unavailable)
    assert "AccountKey" not in caught.value.detail and "a@x.com" not in caught.value.detail


# --------------------------------------------------------------------------- any order, any duplicates

MID = "0a1b2c3d-0000-4000-8000-00000000abcd"
RECIPIENTS = ("a@x.com", "A@X.com", "b@x.com")
observation_strategy = st.one_of(
    st.builds(
        lambda r, s, t, src, code: StatusObservation(
            MID,
            r,
            s,
            T0 + timedelta(minutes=t),
            src,
            smtp_status_code=code,
            mail_server=None if src == "logs" else "mx",
        ),
        st.sampled_from((*RECIPIENTS, None)),
        st.sampled_from(("Delivered", "Bounced", "Failed", "Expanded", "OutForDelivery", "Dropped", "Whatever")),
        st.sampled_from((0, 1, 2, 3, -30)),  # -30: before any send less the clock-skew allowance (set aside)
        st.sampled_from(("events", "logs")),
        st.sampled_from((None, "550", "250")),
    ),
    st.builds(
        lambda r, k, t, c: EngagementObservation(MID, r, k, T0 + timedelta(minutes=t), c, "UA"),
        st.sampled_from(RECIPIENTS),
        st.sampled_from(("view", "click")),
        st.integers(0, 3),
        st.sampled_from((None, "https://c.com/1", "https://c.com/2")),
    ),
    st.builds(lambda n, t: send(MID, n, t), st.integers(1, 3), st.integers(0, 2)),
    st.builds(
        lambda n, t, named: RegistrationObservation(MID, T0 + timedelta(minutes=t), n, RECIPIENTS[:n] if named else ()),
        st.integers(1, 3),
        st.integers(0, 2),
        st.booleans(),
    ),
)


def _state(observations: list[Observation]) -> dict[str, dict[str, object]]:
    partition = empty_partition(MID)
    for observation in observations:
        partition.apply(observation)
    return partition_entities(partition)


@settings(max_examples=300, deadline=None)
@given(st.lists(observation_strategy, min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_any_order_and_duplicates_give_the_same_state(observations: list[Observation], rng: random.Random) -> None:
    expected = _state(observations)
    shuffled = observations + rng.sample(observations, k=min(3, len(observations)))
    rng.shuffle(shuffled)
    assert _state(shuffled) == expected


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(observation_strategy, min_size=1, max_size=10), st.randoms(use_true_random=False))
def test_any_order_and_chunking_through_the_table_give_the_same_state(
    store: StateStore, observations: list[Observation], rng: random.Random
) -> None:
    expected = _state(observations)
    mid = message_id()
    shuffled = observations + rng.sample(observations, k=min(2, len(observations)))
    rng.shuffle(shuffled)
    position = 0
    while position < len(shuffled):
        size = rng.randint(1, 4)
        chunk = [_retarget(o, mid) for o in shuffled[position : position + size]]
        store.apply(mid, chunk)
        position += size
    stored = store.read(mid)
    assert stored is not None
    want = {key: {**entity, "PartitionKey": mid} for key, entity in expected.items()}
    assert _comparable(partition_entities(stored)) == _comparable(want)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(observation_strategy, min_size=1, max_size=10), st.randoms(use_true_random=False))
def test_what_two_processes_know_changes_nothing_that_is_stored(
    azurite_connection_string: str, observations: list[Observation], rng: random.Random
) -> None:
    """The fold's writes (only the touched entities) through two stores that remember what they wrote, taking
    turns at random, store what one store that remembers nothing stores from the same chunks."""
    table = "KnownTwo"
    with (
        closing(StateStore.from_connection_string(azurite_connection_string, table)) as one,
        closing(StateStore.from_connection_string(azurite_connection_string, table)) as two,
        closing(StateStore.from_connection_string(azurite_connection_string, table)) as plain,
    ):
        plain.known = KnownEntities(limit=0)
        mid, reference = message_id(), message_id()
        shuffled = observations + rng.sample(observations, k=min(2, len(observations)))
        rng.shuffle(shuffled)
        position = 0
        while position < len(shuffled):
            chunk = shuffled[position : position + rng.randint(1, 4)]
            rng.choice((one, two)).apply(mid, [_retarget(o, mid) for o in chunk], whole_partition=False)
            plain.apply(reference, [_retarget(o, reference) for o in chunk], whole_partition=False)
            position += len(chunk)
        assert len(plain.known) == 0
        got, want = plain.read(mid), plain.read(reference)
        assert got is not None and want is not None
        assert _comparable(_rekeyed(partition_entities(got))) == _comparable(_rekeyed(partition_entities(want)))


def _rekeyed(entities: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    return {key: {k: v for k, v in entity.items() if k != "PartitionKey"} for key, entity in entities.items()}


def _comparable(entities: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """Entities without the wall-clock FirstSeen, and without a message entity that says nothing else."""
    out = {key: {k: v for k, v in entity.items() if k != "FirstSeen"} for key, entity in entities.items()}
    return {key: entity for key, entity in out.items() if key != MESSAGE_ROW_KEY or len(entity) > 3}


def _retarget(observation: Observation, mid: str) -> Observation:
    from dataclasses import replace

    return replace(observation, message_id=mid)


def test_partition_snapshot_is_independent() -> None:
    partition = Partition(empty_partition(MID).message)
    partition.apply(StatusObservation(MID, "a@x.com", "Delivered", T0, "events"))
    assert partition.recipients[recipient_row_key("a@x.com")].final is not None
