"""Event Grid email events: parsing (casing, open status set, Suppressed without ids); the local webhook body."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.state.events import (
    DELIVERY_REPORT,
    ENGAGEMENT_REPORT,
    MAX_EVENTS,
    DeliveryReport,
    EngagementReport,
    EventError,
    event_from_function,
    parse_event,
    parse_events,
)
from tools.devhost.webhook import MAX_BODY_BYTES, Deletion, Notification, Validation, WebhookRejected, read_webhook

TOPIC = "/subscriptions/s/resourceGroups/rg/providers/microsoft.communication/communicationservices/acs"
MESSAGE = "0a1b2c3d-0000-4000-8000-000000000001"


def delivery(status: str = "Delivered", **data: object) -> dict[str, object]:
    body: dict[str, object] = {
        "sender": "DoNotReply@contoso.com",
        "recipient": "alice@example.com",
        "messageId": MESSAGE,
        "status": status,
        "deliveryStatusDetails": {"statusMessage": "ok", "recipientMailServerHostName": "mx.example.com"},
        "deliveryAttemptTimestamp": "2026-03-10T10:00:05.1234567+00:00",
        "internetMessageId": "<abc@contoso.com>",
    }
    body.update(data)
    return {
        "id": "e-1",
        "topic": TOPIC,
        "subject": f"sender/DoNotReply@contoso.com/message/{MESSAGE}",
        "eventType": DELIVERY_REPORT,
        "eventTime": "2026-03-10T10:00:06Z",
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "data": body,
    }


def test_the_docs_example_with_timestamp_spelt_TimeStamp_parses() -> None:
    event = delivery()
    data = event["data"]
    assert isinstance(data, dict)
    data["deliveryAttemptTimeStamp"] = data.pop("deliveryAttemptTimestamp")
    report = parse_event(event)
    assert isinstance(report, DeliveryReport)
    assert report.time == datetime(2026, 3, 10, 10, 0, 5, 123456, tzinfo=UTC)
    assert (report.status, report.mail_server, report.resource_id) == ("Delivered", "mx.example.com", TOPIC)


def test_keys_in_any_case_parse() -> None:
    event = {key.upper(): value for key, value in delivery().items()}
    data = event["DATA"]
    assert isinstance(data, dict)
    event["DATA"] = {key.lower(): value for key, value in data.items()}
    report = parse_event(event)
    assert isinstance(report, DeliveryReport) and report.message_id == MESSAGE and report.status_message == "ok"


@pytest.mark.parametrize("status", ["Expanded", "SomethingNew", "Delivered"])
def test_status_is_an_open_set(status: str) -> None:
    report = parse_event(delivery(status))
    assert isinstance(report, DeliveryReport) and report.status == status


def test_suppressed_without_internet_message_id_or_mail_server() -> None:
    event = delivery("Suppressed", deliveryStatusDetails={"statusMessage": "suppressed"})
    data = event["data"]
    assert isinstance(data, dict)
    del data["internetMessageId"]
    report = parse_event(event)
    assert isinstance(report, DeliveryReport)
    assert (report.internet_message_id, report.mail_server, report.status) == (None, None, "Suppressed")


def test_engagement_type_and_timestamp_casing() -> None:
    event = {
        "id": "e-2",
        "eventType": ENGAGEMENT_REPORT,
        "eventTime": "2026-03-10T11:00:00Z",
        "data": {
            "sender": "DoNotReply@contoso.com",
            "recipient": "alice@example.com",
            "messageId": MESSAGE,
            "userActionTimeStamp": "2026-03-10T10:59:00Z",
            "engagementContext": "https://contoso.com/x",
            "userAgent": "UA",
            "engagementType": "Click",
        },
    }
    report = parse_event(event)
    assert isinstance(report, EngagementReport)
    assert (report.engagement_type, report.context) == ("click", "https://contoso.com/x")
    assert report.time == datetime(2026, 3, 10, 10, 59, tzinfo=UTC)


def test_message_id_falls_back_to_the_subject() -> None:
    event = delivery()
    data = event["data"]
    assert isinstance(data, dict)
    del data["messageId"]
    assert parse_event(event).message_id == MESSAGE


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ("not an object", "is not a JSON object"),
        ({**delivery(), "eventType": "Microsoft.Storage.BlobCreated"}, "eventType"),
        ({**delivery(), "subject": None, "data": {**delivery()["data"], "messageId": None}}, "messageId is missing"),  # type: ignore[dict-item]
        ({**delivery(), "data": {**delivery()["data"], "messageId": "a/b"}}, "not a message id"),  # type: ignore[dict-item]
        ({**delivery(), "data": {**delivery()["data"], "deliveryAttemptTimestamp": "yesterday"}}, "ISO 8601"),  # type: ignore[dict-item]
        ({**delivery(), "data": "x"}, "data is not a JSON object"),
    ],
)
def test_malformed_events_are_errors_that_quote_no_address(event: object, reason: str) -> None:
    with pytest.raises(EventError) as caught:
        parse_event(event)
    assert reason in str(caught.value)
    assert "@" not in str(caught.value)


def test_a_bad_event_never_stops_the_rest_of_a_batch() -> None:
    good = delivery()
    reports, errors = parse_events([good, 42, {**good, "eventType": "x"}, delivery("Bounced")])
    assert [r.status for r in reports if isinstance(r, DeliveryReport)] == ["Delivered", "Bounced"]
    assert [error.index for error in errors] == [1, 2]


def test_webhook_validation_handshake() -> None:
    body = json.dumps(
        [
            {
                "id": "v",
                "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                "data": {"validationCode": "C0DE"},
            }
        ]
    ).encode()
    request = read_webhook(body, {"aeg-event-type": "SubscriptionValidation"})
    assert isinstance(request, Validation) and request.reply() == {"validationResponse": "C0DE"}


def test_webhook_notification_and_deletion() -> None:
    request = read_webhook(json.dumps([delivery()]).encode(), {"Aeg-Event-Type": "Notification"})
    assert isinstance(request, Notification) and len(request.events) == 1
    assert isinstance(read_webhook(b"", {"aeg-event-type": "SubscriptionDeletion"}), Deletion)


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"[{}]", {}, 400),
        (b"[{}]", {"aeg-event-type": "Other"}, 400),
        (b"not json", {"aeg-event-type": "Notification"}, 400),
        (b"[]", {"aeg-event-type": "Notification"}, 400),
        (b'"x"', {"aeg-event-type": "Notification"}, 400),
        (json.dumps([{}] * (MAX_EVENTS + 1)).encode(), {"aeg-event-type": "Notification"}, 400),
        (b"[" + b" " * (2 * 1024 * 1024) + b"{}]", {"aeg-event-type": "Notification"}, 413),
        (b'[{"data": {}}]', {"aeg-event-type": "SubscriptionValidation"}, 400),
    ],
)
def test_webhook_refuses_what_event_grid_never_sends(body: bytes, headers: dict[str, str], status: int) -> None:
    with pytest.raises(WebhookRejected) as caught:
        read_webhook(body, headers)
    assert caught.value.status == status


def test_webhook_takes_the_largest_batch_event_grid_sends() -> None:
    events = [delivery()] * MAX_EVENTS
    body = json.dumps(events).encode()
    assert len(body) > MAX_BODY_BYTES  # 5,000 such events exceed a megabyte: the size check comes first
    small = json.dumps([{"id": str(i)} for i in range(MAX_EVENTS)]).encode()
    request = read_webhook(small, {"aeg-event-type": "Notification"})
    assert isinstance(request, Notification) and len(request.events) == MAX_EVENTS


def test_event_from_the_functions_binding() -> None:
    import azure.functions as func

    sent = delivery()
    event = func.EventGridEvent(
        id="e-1",
        data=sent["data"],  # type: ignore[arg-type]
        topic=TOPIC,
        subject=str(sent["subject"]),
        event_type=DELIVERY_REPORT,
        event_time=datetime(2026, 3, 10, 10, 0, 6, tzinfo=UTC),
        data_version="1.0",
    )
    report = parse_event(event_from_function(event))
    assert isinstance(report, DeliveryReport) and report.recipient == "alice@example.com"
