"""Shard folds on Azurite (tables and queues): one holder per shard, no request lost between two folders, journal
writes asking for their shards, the timer's safety net, and the whole path (event -> journal -> queue -> shard
fold -> push) through the dev host with its timers off."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from test_state_store import send, status

from shared.insights import Insights
from shared.queues import queue_with_string
from shared.services import Services
from shared.state.folds import (
    FoldRequestError,
    FoldRequests,
    ShardLeases,
    fold_backlog,
    fold_request,
    fold_shard,
    read_fold_request,
)
from shared.state.journal import Journal
from shared.state.store import StateStore

from apphost import serve, settings
from azurite import Azurite
from test_push import SENDER, Receiver, event, send_events, subscribe


@pytest.fixture
def store(azurite_connection_string: str) -> Iterator[StateStore]:
    state = StateStore.from_connection_string(azurite_connection_string, f"Fold{uuid.uuid4().hex[:8]}")
    state.ensure_table()
    yield state
    state.client.delete_table()
    assert state.journal is not None
    state.journal.client.delete_table()
    state.close()


@pytest.fixture
def queue_name(azurite_server: Azurite) -> Iterator[str]:
    name = "folds-" + uuid.uuid4().hex[:12]
    yield name
    for queue in (name, f"{name}-poison"):
        client = queue_with_string(azurite_server.storage_connection_string, queue)
        assert client is not None
        with contextlib.suppress(ResourceNotFoundError):  # never created
            client.delete_queue()
        client.close()


def requests_on(azurite_server: Azurite, name: str) -> FoldRequests:
    queue = queue_with_string(azurite_server.storage_connection_string, name)
    assert queue is not None
    return FoldRequests(queue)


def shards_asked(azurite_server: Azurite, name: str) -> list[str]:
    queue = queue_with_string(azurite_server.storage_connection_string, name)
    assert queue is not None
    return sorted(read_fold_request(m.content.encode()) for m in queue.receive_messages(max_messages=32))


# --------------------------------------------------------------------------- the lease


def test_one_holder_per_shard_and_a_request_meanwhile_makes_it_fold_again(store: StateStore) -> None:
    first, second = ShardLeases.of(store), ShardLeases.of(store)
    lease = first.acquire("j3")
    assert lease is not None
    assert second.acquire("j3") is None  # held: the second folder is turned away...
    assert first.release(lease) is False  # ...and its request marks the lease: the holder must look again
    assert second.acquire("j3") is None  # still held (renewed by that release)
    assert first.release(lease) is False
    assert first.release(lease) is True  # nobody asked since: given back
    taken = second.acquire("j3")
    assert taken is not None and first.acquire("j4") is not None  # another shard is free all along
    assert second.release(taken) is True
    # A folder that stops (failed, or left a continuation) gives the lease back even when asked meanwhile.
    stopping = first.acquire("j5")
    assert stopping is not None and second.acquire("j5") is None
    assert first.release(stopping, whatever=True) is True
    assert second.acquire("j5") is not None


def test_a_lapsed_lease_is_taken_over_and_its_old_holder_cannot_clobber_it(store: StateStore) -> None:
    slow, fast = ShardLeases(store.client, seconds=0.5), ShardLeases(store.client)
    stale = slow.acquire("j1")
    assert stale is not None
    time.sleep(0.7)
    current = fast.acquire("j1")
    assert current is not None  # the dead holder's lease lapsed
    assert slow.release(stale) is True  # the old holder lets go without touching the new lease
    assert ShardLeases.of(store).acquire("j1") is None  # still held by the new holder


def test_two_folders_never_fold_one_shard_at_once_and_no_request_is_lost(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six writers each append and then fold the shard they wrote to (as the queue message would), all at once,
    on two shards; a listing is made slow to widen the windows. Each shard is listed by one folder at a time,
    and when all is done the journal is empty: every write was folded by some folder, none waits for a timer."""
    assert store.journal is not None
    active: dict[str, int] = {}
    overlaps: list[str] = []
    lock = threading.Lock()
    real_entries = Journal.entries

    def watched(journal: Journal) -> Any:
        if journal.shard is None:
            return real_entries(journal)
        with lock:
            active[journal.shard] = active.get(journal.shard, 0) + 1
            if active[journal.shard] > 1:
                overlaps.append(journal.shard)
        try:
            time.sleep(0.05)
            return real_entries(journal)
        finally:
            with lock:
                active[journal.shard] -= 1

    monkeypatch.setattr(Journal, "entries", watched)
    monkeypatch.setattr("shared.state.journal.PARTITIONS", 2)
    written: list[str] = []
    store.journal.on_written = written.extend
    ids = [str(uuid.uuid4()) for _ in range(60)]

    def writer(index: int) -> int:
        leases = ShardLeases.of(store)
        folds = 0
        for mid in ids[index::6]:
            before = len(written)
            store.append([send(mid, 1), status(mid, "a@x.com", "Delivered", 1)])
            for shard in written[before:]:
                folds += fold_shard(store, shard, leases=leases).rounds
        return folds

    with ThreadPoolExecutor(6) as pool:
        rounds = sum(pool.map(writer, range(6)))
    assert overlaps == [] and rounds > 0
    assert store.journal.entries() == []  # nothing left for a timer
    for mid in ids:
        partition = store.read(mid)
        assert store._entities(mid) and partition is not None and partition.final


def test_a_fold_that_fails_gives_its_lease_back(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store.journal is not None
    mid = str(uuid.uuid4())
    store.append([status(mid, "a@x.com", "Delivered", 1)])
    shard = store.journal.shards()[0]

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the store fell over")

    monkeypatch.setattr(StateStore, "apply", broken)
    with pytest.raises(RuntimeError):
        fold_shard(store, shard, leases=ShardLeases.of(store))
    monkeypatch.undo()
    assert fold_shard(store, shard, leases=ShardLeases.of(store)).observations == 1  # retried at once: free


# --------------------------------------------------------------------------- requests


@pytest.mark.parametrize(
    "body", [b"", b"[]", b'{"shard": 3}', b'{"shard": "j1 or 1=1"}', b'{"shard": "~fold"}', b"\xff"]
)
def test_a_bad_fold_request_is_refused(body: bytes) -> None:
    with pytest.raises(FoldRequestError):
        read_fold_request(body)
    assert read_fold_request(fold_request("j12").encode()) == "j12"


def test_each_journal_write_asks_once_for_each_shard_it_wrote(
    azurite_server: Azurite, queue_name: str, monkeypatch: pytest.MonkeyPatch, semantic_insights: Insights
) -> None:
    table = "Asks" + uuid.uuid4().hex[:8]
    monkeypatch.setenv("AzureWebJobsStorage", azurite_server.storage_connection_string)
    monkeypatch.setenv("STATE_TABLE", table)
    services = Services(settings(state_table=table, fold_queue=queue_name), insights=semantic_insights)
    state = services.state
    assert state.journal is not None and services.folds is not None
    mid = str(uuid.uuid4())
    state.append([status(mid, f"r{n}@x.com", "Delivered", 1) for n in range(50)])  # one write, one entity
    shards = state.journal.shards()
    assert len(shards) == 1 and shards_asked(azurite_server, queue_name) == shards
    state.client.delete_table()
    state.journal.client.delete_table()
    services.close()


@pytest.mark.slow  # waits on purpose or runs the Kusto language service: CI, not test-fast
def test_a_request_that_cannot_be_sent_is_left_to_the_timer() -> None:
    down = queue_with_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1",
        "folds",
    )
    assert down is not None
    requests = FoldRequests(down)
    assert requests.request(["j1", "j2"]) == 0  # logged, never raised: the write is acknowledged


@pytest.mark.slow  # waits on purpose or runs the Kusto language service: CI, not test-fast
def test_after_a_failed_request_none_is_tried_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable queue costs one try (its retries), not one per journal write: writes meanwhile return at
    once, and requests are tried again once the pause is over."""
    down = queue_with_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1",
        "folds",
    )
    assert down is not None
    tries: list[str] = []
    requests = FoldRequests(down, pause_seconds=1.0)
    real_send = requests._send
    monkeypatch.setattr(requests, "_send", lambda text: (tries.append(text), real_send(text)))
    assert requests.request(["j1", "j2"]) == 0 and len(tries) == 1
    started = time.monotonic()
    assert [requests.request([f"j{n}"]) for n in range(20)] == [0] * 20
    assert len(tries) == 1 and time.monotonic() - started < 0.5
    time.sleep(1.1)
    assert requests.request(["j3"]) == 0 and len(tries) == 2  # tried again after the pause


def test_the_safety_net_asks_for_every_shard_with_a_backlog_or_folds_them_without_a_queue(
    azurite_server: Azurite, queue_name: str, store: StateStore
) -> None:
    assert store.journal is not None
    ids = [str(uuid.uuid4()) for _ in range(40)]
    for mid in ids:  # forty writes: spread over the shards
        store.append([status(mid, "a@x.com", "Delivered", 1)])
    shards = store.journal.shards()
    assert len(shards) > 1
    assert fold_backlog(store, requests=requests_on(azurite_server, queue_name)) == shards
    assert shards_asked(azurite_server, queue_name) == shards
    assert store.journal.shards() == shards  # asked for, not folded here
    assert fold_backlog(store, requests=None) == shards  # no queue service: folded in line
    assert store.journal.shards() == []
    assert all(store._entities(mid) for mid in ids)


# --------------------------------------------------------------------------- through the dev host


def test_an_event_is_pushed_through_the_fold_queue_with_no_timer(
    azurite_server: Azurite,
    queue_name: str,
    semantic_insights: Insights,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Timers off: only the queue-triggered fold can write the partition and push. A malformed request on the
    same queue is set aside in the poison queue without holding the push up."""
    tables = {"state_table": "Qs" + uuid.uuid4().hex[:10], "subscriptions_table": "Qsub" + uuid.uuid4().hex[:10]}
    monkeypatch.setenv("AzureWebJobsStorage", azurite_server.storage_connection_string)
    monkeypatch.setenv("STATE_TABLE", tables["state_table"])
    monkeypatch.setenv("FOLD_QUEUE", queue_name)
    host_file = tmp_path / "host.json"
    queues = {"maxDequeueCount": 2, "visibilityTimeout": "00:00:00", "maxPollingInterval": "00:00:01"}
    host_file.write_text(json.dumps({"version": "2.0", "extensions": {"queues": queues}}))
    services = Services(settings(**tables, fold_queue=queue_name), insights=semantic_insights)
    receiver = Receiver()
    mid = str(uuid.uuid4())
    poison = queue_with_string(azurite_server.storage_connection_string, f"{queue_name}-poison")
    try:
        with serve(services, host_file=host_file) as host:
            assert [listener.name for listener in host.listeners] == ["fold_journal_shard"]
            folds = requests_on(azurite_server, queue_name).queue
            with contextlib.suppress(ResourceExistsError):
                folds.create_queue()
            folds.send_message('{"shard": "not a shard"}')
            subscribe(host.base_url, {"callbackUrl": receiver.url, "filter": {"sender": SENDER}})
            started = time.monotonic()
            assert send_events(host.base_url, [event(mid, "a@contoso.com", "Delivered", "2026-03-10T10:05:00Z")]) == 202
            receiver.wait_for(1)
            seconds = time.monotonic() - started
            deadline = time.monotonic() + 30
            while poison is not None and time.monotonic() < deadline:
                with contextlib.suppress(ResourceNotFoundError):  # not created yet
                    if poison.peek_messages():
                        break
                time.sleep(0.2)
        body = json.loads(receiver.received[0][1])
        assert body["messageId"] == mid and body["finalDeliveryStatus"] == "Delivered" and seconds < 30
        assert services.state._entities(mid)  # folded into its partition, not only journaled
        assert poison is not None and [m.content for m in poison.peek_messages()] == ['{"shard": "not a shard"}']
    finally:
        receiver.close()
        for name in tables.values():
            client = StateStore.from_connection_string(azurite_server.connection_string, name).client
            client.delete_table()
        services.close()


# --------------------------------------------------------------------------- partition writes


def test_a_partition_write_of_three_entities_or_more_is_one_transaction(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, int] = {"submit_transaction": 0, "create_entity": 0}
    for name in calls:
        real = getattr(store.client, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(store.client, name, counted)
    mid = str(uuid.uuid4())
    store.apply(mid, [send(mid, 3), *(status(mid, f"r{n}@x.com", "Delivered", 1) for n in range(3))])
    assert calls == {"submit_transaction": 1, "create_entity": 0}  # message + 3 recipients, all or nothing
    other = str(uuid.uuid4())
    store.apply(other, [status(other, "a@x.com", "Delivered", 1)])
    assert calls == {"submit_transaction": 1, "create_entity": 1}  # one entity: one plain request


def test_concurrent_transactions_on_one_partition_lose_nothing(store: StateStore) -> None:
    """Eight writers, each adding three recipients to one message at once: a transaction that finds the
    partition changed fails whole (409/412) and is merged again."""
    mid = str(uuid.uuid4())

    def write(index: int) -> None:
        # Each write holds the message entity too (the send), which all eight create or update: conflicts.
        store.apply(mid, [send(mid, 24), *(status(mid, f"w{index}-{n}@x.com", "Delivered", 1) for n in range(3))])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    partition = store.read(mid)
    assert partition is not None and len(partition.recipients) == 24 and partition.final


@pytest.mark.slow  # waits on purpose or runs the Kusto language service: CI, not test-fast
def test_folds_side_by_side_share_the_process_writers_within_the_connection_pool(
    store: StateStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Shards folded at once write at most ``WRITERS`` partitions at a time between them (a pool per fold
    wrote up to 8 each: up to 64 here, over 32 pooled connections), and urllib3 never throws a connection away."""
    from shared.state import ingest
    from shared.storage import POOL_CONNECTIONS

    assert store.journal is not None
    monkeypatch.setattr("shared.state.journal.PARTITIONS", 8)
    in_flight, peak, lock = [0], [0], threading.Lock()
    real_apply = StateStore.apply

    def watched(self: StateStore, *args: Any, **kwargs: Any) -> Any:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            time.sleep(0.01)  # widens the window, as a slow store would
            return real_apply(self, *args, **kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(StateStore, "apply", watched)
    ids = [str(uuid.uuid4()) for _ in range(400)]
    for start in range(0, len(ids), 5):  # 80 writes, each to a random shard of 8
        store.append([status(mid, "a@x.com", "Delivered", 1) for mid in ids[start : start + 5]])
    shards = store.journal.shards()
    assert len(shards) >= 4
    with caplog.at_level("WARNING", logger="urllib3"), ThreadPoolExecutor(len(shards)) as pool:
        list(pool.map(lambda shard: fold_shard(store, shard, leases=ShardLeases.of(store)), shards))
    assert 1 < peak[0] <= ingest.WRITERS <= POOL_CONNECTIONS // 2
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert store.journal.entries() == []
    assert all((p := store.read(mid)) is not None and p.recipients for mid in ids[::40])


def test_a_shard_whose_fold_failed_or_whose_holder_vanished_is_folded_unclean_until_a_fold_ends_well(
    store: StateStore,
) -> None:
    """The next fold of such a shard hands on what it folds as new (``replay``): the failed or vanished fold may
    have written partitions without handing their changes to push."""
    clean = ShardLeases.of(store)
    lease = clean.acquire("j4")
    assert lease is not None and not lease.unclean
    clean.release(lease, whatever=True, failed=True)
    after_failure = ShardLeases.of(store).acquire("j4")
    assert after_failure is not None and after_failure.unclean
    ShardLeases.of(store).release(after_failure)  # a fold that ended well
    vanishing = ShardLeases(store.client, seconds=0.3)
    assert (held := vanishing.acquire("j4")) is not None and not held.unclean
    time.sleep(0.5)  # its holder never comes back
    taken_over = ShardLeases.of(store).acquire("j4")
    assert taken_over is not None and taken_over.unclean
