"""The message index: a message's subscriptions found by one point read, by every instance at once.

Two services over the same Azurite tables stand for two instances: one makes the subscription, the other folds
the event that makes its message final. Each has its own cached list of subscriptions, made long-lived here, so
a fold that still looked a message's subscribers up in that list would miss the new one (and its push would wait
for the status grace, hours away)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import Conflict
from shared.insights import Insights
from shared.push import subscriptions
from shared.push.subscriptions import (
    INDEX_BUILT_ROW,
    MESSAGE_INDEX_PARTITION,
    SUBSCRIPTION_PARTITION,
    SubscriptionStore,
    index_row,
)

import test_push
from apphost import serve
from conftest import FIXTURE_NOW
from test_push import Clock, Receiver, build, run_timer, subscribe

#: test_push's fixtures: Azurite tables of the test's own, loopback receivers closed afterwards.
tables = test_push.tables
receivers = test_push.receivers

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=2)


def _store(connection_string: str) -> SubscriptionStore:
    return SubscriptionStore.from_connection_string(connection_string, "Index" + uuid.uuid4().hex[:10])


def _counting(store: SubscriptionStore) -> dict[str, int]:
    """Requests *store*'s client makes from now on, by method (point reads, queries)."""
    counts = {"get_entity": 0, "query_entities": 0, "list_entities": 0}
    for name in counts:
        method: Callable[..., Any] = getattr(store.client, name)

        def counted(*args: Any, _name: str = name, _method: Callable[..., Any] = method, **kwargs: Any) -> Any:
            counts[_name] += 1
            return _method(*args, **kwargs)

        setattr(store.client, name, counted)
    return counts


@pytest.fixture
def store(azurite_connection_string: str) -> Iterator[SubscriptionStore]:
    made = _store(azurite_connection_string)
    yield made
    made.client.delete_table()
    made.close()


def test_a_messages_subscribers_are_one_point_read_whatever_the_number_of_subscriptions(
    store: SubscriptionStore, azurite_connection_string: str
) -> None:
    first = store.create("message", "https://a.example/h", now=NOW, expires_at=LATER, message_id="m/1#?")
    second = store.create("message", "https://b.example/h", now=NOW, expires_at=LATER, message_id="m/1#?")
    for n in range(20):
        store.create("message", "https://c.example/h", now=NOW, expires_at=LATER, message_id=f"other-{n}")
    store.create("filter", "https://d.example/h", now=NOW, expires_at=LATER, sender="Someone")
    # Another instance: its own store object, nothing cached.
    other = SubscriptionStore.from_connection_string(azurite_connection_string, store.client.table_name)
    counts = _counting(other)
    assert set(other.subscribers("m/1#?", NOW)) == {first.id, second.id}
    assert counts == {"get_entity": 2, "query_entities": 0, "list_entities": 0}  # the index entity and the marker
    assert set(other.subscribers("m/1#?", NOW)) == {first.id, second.id}
    assert counts == {"get_entity": 3, "query_entities": 0, "list_entities": 0}  # the marker is read once
    assert other.subscribers("never-subscribed", NOW) == []
    other.close()


def test_deleting_takes_the_id_out_and_the_last_one_takes_the_entity(store: SubscriptionStore) -> None:
    first = store.create("message", "https://a.example/h", now=NOW, expires_at=LATER, message_id="m-1")
    second = store.create("message", "https://b.example/h", now=NOW, expires_at=LATER, message_id="m-1")
    store.delete(first.id)
    assert store.subscribers("m-1", NOW) == [second.id]
    store.delete(second.id)
    assert store.subscribers("m-1", NOW) == []
    index = store.client.query_entities("PartitionKey eq @pk", parameters={"pk": MESSAGE_INDEX_PARTITION})
    assert [entity["RowKey"] for entity in index] == [INDEX_BUILT_ROW]  # no entity left for m-1


def test_subscriptions_older_than_the_index_are_found_then_indexed_once(
    store: SubscriptionStore, azurite_connection_string: str
) -> None:
    """A table from before the index: subscription entities, no index entities, no marker."""
    store.ensure_table()
    store.client.delete_entity(MESSAGE_INDEX_PARTITION, INDEX_BUILT_ROW)
    for row, message_id in (("a" * 32, "old-1"), ("b" * 32, "old-1"), ("c" * 32, "old-2")):
        store.client.create_entity(
            {
                "PartitionKey": SUBSCRIPTION_PARTITION,
                "RowKey": row,
                "Kind": "message",
                "CallbackUrl": "https://a.example/h",
                "Secret": "s",
                "CreatedAt": NOW,
                "ExpiresAt": LATER,
                "MessageId": message_id,
            }
        )
    upgraded = SubscriptionStore.from_connection_string(azurite_connection_string, store.client.table_name)
    assert set(upgraded.subscribers("old-1", NOW)) == {"a" * 32, "b" * 32}  # from the list, until indexed
    assert upgraded.build_index() == 3
    assert upgraded.build_index() == 0  # once
    fresh = SubscriptionStore.from_connection_string(azurite_connection_string, store.client.table_name)
    counts = _counting(fresh)
    assert set(fresh.subscribers("old-1", NOW)) == {"a" * 32, "b" * 32}
    assert fresh.subscribers("old-2", NOW) == ["c" * 32]
    assert counts["query_entities"] == 0 and counts["list_entities"] == 0
    for made in (upgraded, fresh):
        made.close()


def test_the_index_entity_is_refused_past_its_size(store: SubscriptionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscriptions, "MAX_PER_MESSAGE", 2)
    for _ in range(2):
        store.create("message", "https://a.example/h", now=NOW, expires_at=LATER, message_id="busy")
    with pytest.raises(Conflict):
        store.create("message", "https://a.example/h", now=NOW, expires_at=LATER, message_id="busy")
    assert len(store.all()) == 2 and len(store.subscribers("busy", NOW)) == 2  # nothing half made
    assert index_row("busy") != index_row("busy ")


@pytest.mark.parametrize("cached", ["a filter subscription", "no subscription"])
def test_a_subscription_made_on_another_instance_is_pushed_at_once(
    cached: str,
    semantic_insights: Insights,
    tables: dict[str, str],
    receivers: list[Receiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The folding instance's list of subscriptions, cached before the other instance made the message
    subscription, is kept far longer than the test (CACHE_SECONDS): the fold must find the subscription all the
    same, and whether the cache holds a filter (the list) or nothing (``hook`` saying nobody subscribed)."""
    monkeypatch.setattr(subscriptions, "CACHE_SECONDS", 3600.0)
    receiver = Receiver()
    receivers.append(receiver)
    folding = build(semantic_insights, tables, Clock(FIXTURE_NOW))
    making = build(semantic_insights, tables, Clock(FIXTURE_NOW))
    with serve(folding) as folder, serve(making) as maker:
        if cached == "a filter subscription":
            subscribe(folder.base_url, {"callbackUrl": receiver.url, "filter": {"sender": "Nobody@example.com"}})
        assert len(folding.subscriptions.active(FIXTURE_NOW)) == (cached == "a filter subscription")
        sub = subscribe(maker.base_url, {"callbackUrl": receiver.url, "messageId": "msg-01-final"})
        [waiting] = [entry for entry in making.subscriptions.outbox() if entry.subscription_id == sub["id"]]
        assert waiting.waiting  # nothing known of the message yet: it would wait for the status grace
        run_timer(folder.base_url)  # the follower on the other instance makes msg-01-final final
        receiver.wait_for(1)
    [(headers, _)] = receiver.received
    assert headers["x-subscription-id"] == sub["id"]
    for services in (folding, making):
        services.close()


def test_a_message_subscription_without_its_waiting_entry_is_pushed_when_final(
    semantic_insights: Insights, tables: dict[str, str], receivers: list[Receiver]
) -> None:
    """A subscription made before entries waited (or whose entry is being written) has none to claim: the fold
    writes its push due now instead, once, and a deleted subscription whose id lingers in the index gets none."""
    receiver = Receiver()
    receivers.append(receiver)
    services = build(semantic_insights, tables, Clock(FIXTURE_NOW))
    with serve(services) as host:
        sub = subscribe(host.base_url, {"callbackUrl": receiver.url, "messageId": "msg-01-final"})
        gone = subscribe(host.base_url, {"callbackUrl": receiver.url, "messageId": "msg-01-final"})
        store = services.subscriptions
        for entry in store.outbox():
            store.drop(entry)
        store.client.delete_entity(SUBSCRIPTION_PARTITION, gone["id"])  # its id stays in the index
        assert set(store.subscribers("msg-01-final", FIXTURE_NOW)) == {sub["id"], gone["id"]}
        run_timer(host.base_url)
        receiver.wait_for(1)
        run_timer(host.base_url)
    assert [headers["x-subscription-id"] for headers, _ in receiver.received] == [sub["id"]]
    assert [entry.subscription_id for entry in services.subscriptions.outbox()] == [sub["id"]]
    services.close()
