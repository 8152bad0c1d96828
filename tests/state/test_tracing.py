"""Trace reads the delivery state first (issue 9 items 4-5): over the dev host's URLs, the state on Azurite,
the logs in DuckDB (the semantics fixture, tests/fixtures/semantics/EXPECTED.md), log queries counted at the
source."""

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
from shared.errors import NotFound
from shared.insights import Insights
from shared.kql.query import KqlQuery
from shared.logs.source import QueryResult
from shared.models import TraceParams
from shared.services import Services
from shared.state.ingest import ingest_events
from shared.state.observations import SendObservation
from shared.state.store import StateStore
from shared.tracing import NOT_FOUND_RETRY_WINDOW, trace_message

from apphost import serve, settings
from conftest import FIXTURE_NOW


class CountingSource:
    """The real DuckDB source, counting the queries it runs."""

    def __init__(self, source: DuckDbSource) -> None:
        self.inner = source
        self.name = source.name
        self.queries = 0

    def run(self, query: KqlQuery) -> QueryResult:
        self.queries += 1
        return self.inner.run(query)

    def check(self) -> tuple[bool, str]:
        return self.inner.check()

    def query_text(self, query: KqlQuery) -> str:
        return self.inner.query_text(query)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def state(azurite_connection_string: str) -> Iterator[StateStore]:
    store = StateStore.from_connection_string(azurite_connection_string, "Trace" + uuid.uuid4().hex[:10])
    store.ensure_table()
    yield store
    store.client.delete_table()
    store.close()


@pytest.fixture
def world(semantic_store: Path, state: StateStore) -> Iterator[tuple[Services, CountingSource, Clock]]:
    source = CountingSource(DuckDbSource(semantic_store))
    clock = Clock(FIXTURE_NOW)
    insights = Insights(source, clock=clock)
    state.clock = clock
    yield Services(settings(), insights=insights, state=state, clock=clock), source, clock
    source.inner.close()


def get(url: str) -> tuple[int, dict[str, str], Any]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, json.loads(error.read())


def delivery(message_id: str, recipient: str, status: str, at: datetime) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "subject": f"sender/DoNotReply@contoso.com/message/{message_id}",
        "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
        "eventTime": at.isoformat(),
        "dataVersion": "1.0",
        "data": {
            "sender": "DoNotReply@contoso.com",
            "recipient": recipient,
            "messageId": message_id,
            "status": status,
            "deliveryStatusDetails": {"statusMessage": "ok"},
            "deliveryAttemptTimestamp": at.isoformat(),
        },
    }


def trace(services: Services, message_id: str) -> dict[str, Any]:
    return trace_message(services, TraceParams(message_id=message_id)).model_dump(mode="json", by_alias=True)


def test_a_final_message_in_the_state_is_answered_with_no_log_query(
    world: tuple[Services, CountingSource, Clock],
) -> None:
    services, source, _ = world
    mid = "evt-" + uuid.uuid4().hex
    sent = FIXTURE_NOW - timedelta(minutes=5)
    services.state.apply(mid, [SendObservation(mid, sent, 0.02, 0, 2, 0, 0, 2)])
    ingest_events(
        services.state,
        [
            delivery(mid, "ann@contoso.com", "Delivered", sent + timedelta(seconds=3)),
            delivery(mid, "bo@fabrikam.com", "Suppressed", sent + timedelta(seconds=4)),
        ],
    )
    with serve(services) as host:
        status, _, body = get(f"{host.base_url}/api/messages/{mid}")
    assert status == 200, body
    assert (body["state"], body["outcome"], body["source"]) == ("final", "partiallyDelivered", "state")
    assert body["counts"]["delivered"] == 1 and body["counts"]["suppressed"] == 1
    assert body["send"]["sender"] == "DoNotReply@contoso.com" and body["send"]["messageSizeMb"] == 0.02
    ann = body["recipients"][0]
    assert (ann["recipientId"], ann["bounceType"], ann["durationMilliseconds"]) == ("ann@contoso.com", "none", 3000)
    # Traces of a final message: not one log query, counted at the source (1,000 in benchmarks/trace_state.py).
    for _ in range(100):
        assert trace(services, mid)["outcome"] == "partiallyDelivered"
    assert source.queries == 0


def test_events_alone_wait_for_the_expected_count_then_one_log_trace_completes_the_state(
    world: tuple[Services, CountingSource, Clock],
) -> None:
    """msg-01-final's events arrive by Event Grid (no recipient count): the first trace runs one log query and
    writes the send row back; every later trace is answered from the state."""
    services, source, _ = world
    at = datetime(2026, 3, 10, 10, 0, 3, tzinfo=UTC)
    ingest_events(services.state, [delivery("msg-01-final", "alice@Contoso.com", "Delivered", at)])
    first = trace(services, "msg-01-final")
    assert source.queries == 1 and first["source"] == "both"
    assert (first["state"], first["outcome"]) == ("final", "partiallyDelivered")
    stored = services.state.read("msg-01-final")
    assert stored is not None and stored.message.expected_recipients == 2 and stored.final
    second = trace(services, "msg-01-final")
    assert source.queries == 1 and second["source"] == "state"
    assert (second["outcome"], second["counts"]) == (first["outcome"], first["counts"])
    bob = {r["recipientId"]: r for r in second["recipients"]}["bob@fabrikam.com"]
    assert (bob["finalDeliveryStatus"], bob["bounceType"], bob["bounceTypeSource"]) == ("Bounced", "hard", "reported")


def test_a_pending_message_runs_the_log_trace_each_time_until_final(
    world: tuple[Services, CountingSource, Clock],
) -> None:
    services, source, _ = world
    with serve(services) as host:
        status, headers, body = get(f"{host.base_url}/api/messages/msg-02-pending")
        assert status == 202 and "location" in headers
        assert (body["outcome"], body["source"], body["unresolvedCount"]) == ("pending", "logs", 2)
        assert body["pendingRecipients"] == ["dave@contoso.com"]
        # dave's Delivered and the third recipient arrive as events: final from the state, no query.
        later = datetime(2026, 3, 10, 11, 0, 9, tzinfo=UTC)
        ingest_events(
            services.state,
            [
                delivery("msg-02-pending", "dave@contoso.com", "Delivered", later),
                delivery("msg-02-pending", "erin@contoso.com", "Delivered", later),
            ],
        )
        queries = source.queries
        status, _, body = get(f"{host.base_url}/api/messages/msg-02-pending")
    assert status == 200 and (body["outcome"], body["source"]) == ("delivered", "state")
    assert body["counts"]["delivered"] == 3 and source.queries == queries


def test_past_the_grace_unresolved_recipients_expire_with_200_and_never_202_again(
    world: tuple[Services, CountingSource, Clock],
) -> None:
    services, source, clock = world
    clock.now = datetime(2026, 3, 10, 11, 0, tzinfo=UTC) + services.status_grace + timedelta(minutes=1)
    with serve(services) as host:
        for expected_queries in (1, 1, 1):
            status, headers, body = get(f"{host.base_url}/api/messages/msg-02-pending")
            assert status == 200 and "location" not in headers, body
            assert (body["state"], body["outcome"]) == ("expired", "expired")
            assert body["pendingRecipients"] == ["dave@contoso.com"]  # known by address
            assert (body["expectedRecipients"], body["unresolvedCount"]) == (3, 2)  # and one only counted
            assert source.queries == expected_queries  # the first wrote the send back; the rest read the state
    assert body["source"] == "state"


def test_an_unknown_id_is_404_with_retry_after_for_30_minutes_from_the_first_question(
    world: tuple[Services, CountingSource, Clock],
) -> None:
    services, _, clock = world
    mid = "never-" + uuid.uuid4().hex
    with serve(services) as host:
        url = f"{host.base_url}/api/messages/{mid}"
        status, headers, body = get(url)
        assert status == 404 and int(headers["retry-after"]) > 0 and body["state"] == "notFound"
        clock.now += NOT_FOUND_RETRY_WINDOW - timedelta(seconds=1)
        assert "retry-after" in get(url)[1]
        clock.now += timedelta(seconds=2)
        status, headers, body = get(url)
    assert status == 404 and "retry-after" not in headers
    assert "check the message id" in body["detail"]
    assert services.state.read(mid) is None  # the question writes no partition: one small marker elsewhere
    assert services.state.record_asked(mid) == FIXTURE_NOW


def test_the_state_store_down_falls_back_to_the_log_query(semantic_insights: Insights) -> None:
    down = StateStore.from_connection_string("UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://127.0.0.1:9")
    services = Services(settings(), insights=semantic_insights, state=down)
    with serve(services) as host:
        status, _, body = get(f"{host.base_url}/api/messages/msg-01-final")
        assert status == 200 and (body["outcome"], body["source"]) == ("partiallyDelivered", "logs")
        status, headers, _ = get(f"{host.base_url}/api/messages/msg-unknown-x")
        assert status == 404 and "retry-after" in headers
    with pytest.raises(NotFound):
        trace_message(services, TraceParams(message_id="msg-unknown-y"))
    down.close()


def test_unconfigured_state_falls_back_too(semantic_insights: Insights, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    services = Services(settings(summary_storage="NoSuchSetting"), insights=semantic_insights)
    body = trace(services, "msg-03-msgfail")
    assert (body["outcome"], body["source"]) == ("failed", "logs")
