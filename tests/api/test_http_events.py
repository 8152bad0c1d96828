"""The Event Grid trigger and the follower timer as the host runs them: the dev host's webhook URL and admin
endpoint, over the app's own functions, into the delivery state on Azurite."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.insights import Insights
from shared.services import Services
from shared.state.store import StateStore

from apphost import serve, settings


@pytest.fixture
def services(
    semantic_insights: Insights, azurite_connection_string: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Services]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite_connection_string)
    config = settings(state_table="State" + uuid.uuid4().hex[:10])
    state = StateStore.from_settings(config)
    state.ensure_table()
    yield Services(config, insights=semantic_insights, state=state)
    state.client.delete_table()
    if state.journal is not None:
        state.journal.client.delete_table()
    state.close()


def _now() -> datetime:
    return datetime.now(UTC)


def post(url: str, body: Any, kind: str = "Notification") -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"aeg-event-type": kind, "Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def delivery(message_id: str, recipient: str, status: str, at: str, event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "topic": "/subscriptions/x/resourceGroups/rg/providers/microsoft.communication/communicationservices/acs",
        "subject": f"sender/DoNotReply@contoso.com/message/{message_id}",
        "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
        "eventTime": at,
        "dataVersion": "1.0",
        "data": {
            "sender": "DoNotReply@contoso.com",
            "recipient": recipient,
            "messageId": message_id,
            "status": status,
            "deliveryStatusDetails": {"statusMessage": "ok"},
            "deliveryAttemptTimeStamp": at,
        },
    }


def test_events_through_the_webhook_reach_the_state_in_any_order_and_once(services: Services) -> None:
    mid = str(uuid.uuid4())
    newer = delivery(mid, "Ann@Contoso.com", "Delivered", "2026-03-10T10:05:00Z", "e2")
    older = delivery(mid, "ann@contoso.com", "Bounced", "2026-03-10T10:01:00Z", "e1")
    poisoned = {"id": "e3", "eventType": "Microsoft.Communication.EmailDeliveryReportReceived", "data": {}}
    with serve(services) as host:
        url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=ingest_email_events"
        handshake = [{"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {"validationCode": "c"}}]
        assert post(url, handshake, "SubscriptionValidation") == (200, b'{"validationResponse": "c"}')
        # The newest first, then a duplicate and an older event with a poisoned one beside them: 202 each time.
        assert post(url, [newer])[0] == 202
        assert post(url, [newer, older, poisoned])[0] == 202
    partition = services.state.read(mid)
    assert partition is not None
    [recipient] = partition.recipients.values()
    assert recipient.final is not None and recipient.final.status == "Delivered"  # the older Bounced never wins
    assert recipient.source == "events"


def test_one_delivery_of_many_events_shares_journal_writes_and_loses_none(services: Services) -> None:
    """The host runs a delivery's events as concurrent invocations; their journal appends go together."""
    journal = services.state.journal
    assert journal is not None
    events = [
        delivery(str(uuid.uuid4()), f"r{n}@contoso.com", "Delivered", "2026-03-10T10:05:00Z", f"e{n}")
        for n in range(300)
    ]
    with serve(services) as host:
        url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=ingest_email_events"
        assert post(url, events)[0] == 202
    entries = journal.entries()
    assert len(entries) < len(events) // 2  # at least two events a write, on the worker's default thread count
    journaled = sorted(o.message_id for e in entries for o in e.observations)
    assert journaled == sorted(e["data"]["messageId"] for e in events)  # each once
    some = services.state.read(events[7]["data"]["messageId"])
    assert some is not None and some.recipients  # answered before any fold


def test_table_requests_leave_no_info_records_of_their_headers(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """azure-core logs each request and response at INFO, which the Functions host keeps: the app quiets it."""
    mid = str(uuid.uuid4())
    with caplog.at_level(logging.INFO), serve(services) as host:
        url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=ingest_email_events"
        assert post(url, [delivery(mid, "a@contoso.com", "Delivered", "2026-03-10T10:05:00Z", "q1")])[0] == 202
        assert services.state.read(mid) is not None  # Table requests did happen
    assert not [r for r in caplog.records if r.name.startswith("azure.core.pipeline.policies.http_logging")]
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").warning("still passes")
    assert caplog.records[-1].getMessage() == "still passes"


def test_the_state_store_down_answers_500_so_event_grid_retries(semantic_insights: Insights) -> None:
    broken = StateStore.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1",
        "State",
    )
    services = Services(settings(), insights=semantic_insights, state=broken)
    with serve(services) as host:
        url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=ingest_email_events"
        status, _ = post(url, [delivery("m-1", "a@b.com", "Delivered", "2026-03-10T10:05:00Z", "e1")])
    assert status == 500


def test_the_follower_timer_runs_through_the_admin_endpoint(services: Services) -> None:
    # The store stamps each row's arrival (_IngestedAt) with the import's real time: the follower reads up to
    # the real now, not the fixture's fixed clock.
    services = Services(services.settings, insights=services.insights, state=services.state, clock=_now)
    with serve(services) as host:
        request = urllib.request.Request(f"{host.base_url}/admin/functions/follow_status_updates", b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 202
    # The semantics fixture's final statuses are now in the state, from the logs.
    partition = services.state.read("msg-01-final")
    assert partition is not None and partition.recipients
    assert {r.source for r in partition.recipients.values()} == {"logs"}


def test_engagement_events_show_in_the_trace_from_the_state(services: Services) -> None:
    mid = str(uuid.uuid4())
    delivered = delivery(mid, "nina@contoso.com", "Delivered", "2026-03-12T10:00:00Z", "d1")

    def engagement(event_id: str, kind: str, at: str, url: str = "") -> dict[str, Any]:
        return {
            "id": event_id,
            "topic": "/subscriptions/x",
            "subject": f"sender/news@notify.contoso.com/message/{mid}",
            "eventType": "Microsoft.Communication.EmailEngagementTrackingReportReceived",
            "eventTime": at,
            "dataVersion": "1.0",
            "data": {
                "sender": "news@notify.contoso.com",
                "recipient": "Nina@Contoso.com",
                "messageId": mid,
                "userActionTimeStamp": at,
                "engagementContext": url,
                "userAgent": "Mozilla/5.0",
                "engagementType": kind,
            },
        }

    events = [
        delivered,
        engagement("v1", "View", "2026-03-12T10:05:00Z"),
        engagement("c1", "click", "2026-03-12T10:06:00Z", "https://www.contoso.com/a"),
        engagement("c1", "click", "2026-03-12T10:06:00Z", "https://www.contoso.com/a"),  # a duplicate delivery
    ]
    with serve(services) as host:
        url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=ingest_email_events"
        assert post(url, events)[0] == 202
        request = urllib.request.Request(f"{host.base_url}/api/messages/{mid}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:  # 202 pending also carries the body
            body = json.loads(error.read())
    [recipient] = body["recipients"]
    assert recipient["engagement"]["views"] == 1 and recipient["engagement"]["clicks"] == 1
    assert recipient["engagement"]["clickedUrls"] == ["https://www.contoso.com/a"]
