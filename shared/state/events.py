"""Event Grid email events -> typed reports.

Two event types (learn.microsoft.com: Azure Communication Services as an Event Grid source):
``Microsoft.Communication.EmailDeliveryReportReceived`` and
``Microsoft.Communication.EmailEngagementTrackingReportReceived``. The traps handled here:

* key casing varies (``deliveryAttemptTimestamp`` / ``deliveryAttemptTimeStamp``, ``userActionTimeStamp``):
  every key of an event and of its ``data`` is looked up case-insensitively;
* ``status`` is an open set: ``Expanded`` and values not yet documented are kept as they are (the store
  never counts them as final); ``engagementType`` is lowercased (``View`` -> ``view``);
* ``Suppressed`` reports carry no ``internetMessageId`` and no mail server: both are optional;
* one malformed event (not an object, unknown type, no ``messageId``) is a per-event :class:`EventError`
  and never stops the rest of a batch. Errors name the event id and the field, never an address.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

DELIVERY_REPORT: Final = "Microsoft.Communication.EmailDeliveryReportReceived"
ENGAGEMENT_REPORT: Final = "Microsoft.Communication.EmailEngagementTrackingReportReceived"
SUBSCRIPTION_VALIDATION: Final = "Microsoft.EventGrid.SubscriptionValidationEvent"
EVENT_TYPES: Final = (DELIVERY_REPORT, ENGAGEMENT_REPORT)

#: Event Grid's most events in one delivery (``maxEventsPerBatch`` is 1..5,000).
MAX_EVENTS: Final = 5_000

#: The message id as the trace route accepts it (shared.models), and a valid Table Storage partition key.
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
_MAX_TEXT = 4096
_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})?$")


class EventError(ValueError):
    """One event that cannot be used. ``reason`` never holds an address or a body excerpt."""

    def __init__(self, reason: str, *, event_id: str | None = None, index: int | None = None) -> None:
        where = f"event {event_id!r}" if event_id else "event" if index is None else f"event #{index}"
        super().__init__(f"{where}: {reason}")
        self.reason = reason
        self.event_id = event_id
        self.index = index


@dataclass(frozen=True)
class DeliveryReport:
    """One ``EmailDeliveryReportReceived``: one recipient's delivery status."""

    event_id: str
    message_id: str
    recipient: str
    sender: str | None
    #: As sent: Delivered, Bounced, Failed, FilteredSpam, Quarantined, Suppressed, Expanded or anything new.
    status: str
    time: datetime
    status_message: str | None = None
    mail_server: str | None = None
    internet_message_id: str | None = None
    #: The ACS resource (the event's topic), when given.
    resource_id: str | None = None

    kind: Literal["delivery"] = "delivery"


@dataclass(frozen=True)
class EngagementReport:
    """One ``EmailEngagementTrackingReportReceived``: a view or click by one recipient."""

    event_id: str
    message_id: str
    recipient: str
    sender: str | None
    #: Lowercased: view, click (or anything new).
    engagement_type: str
    time: datetime
    #: The clicked URL (clicks); empty for views.
    context: str | None = None
    user_agent: str | None = None
    resource_id: str | None = None

    kind: Literal["engagement"] = "engagement"


Report = DeliveryReport | EngagementReport


class _Fields:
    """Case-insensitive access to one JSON object's keys."""

    def __init__(self, value: Mapping[str, Any]) -> None:
        self._by_lower = {str(key).lower(): item for key, item in value.items()}

    def get(self, *names: str) -> Any:
        for name in names:
            value = self._by_lower.get(name.lower())
            if value is not None:
                return value
        return None

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.get(name)
        if value is None or value == "":
            if required:
                raise EventError(f"{name} is missing")
            return None
        if not isinstance(value, str):
            raise EventError(f"{name} is not a string")
        if len(value) > _MAX_TEXT:
            raise EventError(f"{name} is longer than {_MAX_TEXT} characters")
        return value

    def time(self, *names: str) -> datetime | None:
        value = self.get(*names)
        if value is None or value == "":
            return None
        return parse_time(value, names[0])


def parse_time(value: Any, name: str) -> datetime:
    """An ISO 8601 time with any number of fractional digits (Event Grid sends 7) -> aware UTC datetime."""
    if not isinstance(value, str):
        raise EventError(f"{name} is not a time")
    match = _TIME.match(value.strip())
    if not match:
        raise EventError(f"{name} is not an ISO 8601 time")
    base, fraction, zone = match.groups()
    zone = "+00:00" if zone is None or zone.upper() == "Z" else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    try:
        parsed = datetime.fromisoformat(f"{base}.{(fraction or '')[:6].ljust(6, '0')}{zone}")
    except ValueError:
        raise EventError(f"{name} is not an ISO 8601 time") from None
    return parsed.astimezone(UTC)


def _message_id(data: _Fields, subject: str | None) -> str:
    message_id = data.text("messageId")
    if message_id is None and subject:
        # subject = sender/{senderAddress}/message/{messageId}
        head, sep, tail = subject.rpartition("/message/")
        message_id = tail if sep and head else None
    if message_id is None:
        raise EventError("data.messageId is missing")
    if not _MESSAGE_ID.match(message_id):
        raise EventError("data.messageId is not a message id")
    return message_id


def parse_event(event: Any, *, index: int | None = None) -> Report:
    """One Event Grid schema event -> a report; :class:`EventError` when it cannot be used."""
    if not isinstance(event, Mapping):
        raise EventError("is not a JSON object", index=index)
    envelope = _Fields(event)
    raw_id = envelope.get("id")
    event_id = str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    try:
        return _parse(envelope, event_id or "")
    except EventError as exc:
        raise EventError(exc.reason, event_id=event_id, index=index) from None


def _parse(envelope: _Fields, event_id: str) -> Report:
    event_type = envelope.text("eventType", required=True)
    if event_type not in EVENT_TYPES:
        raise EventError("eventType is not an email delivery or engagement report")
    raw_data = envelope.get("data")
    if not isinstance(raw_data, Mapping):
        raise EventError("data is not a JSON object")
    data = _Fields(raw_data)
    message_id = _message_id(data, envelope.text("subject"))
    recipient = data.text("recipient", required=True)
    assert recipient is not None
    event_time = envelope.time("eventTime")
    resource_id = envelope.text("topic")
    sender = data.text("sender")
    if event_type == DELIVERY_REPORT:
        status = data.text("status", required=True)
        assert status is not None
        details_value = data.get("deliveryStatusDetails")
        details = _Fields(details_value if isinstance(details_value, Mapping) else {})
        time = data.time("deliveryAttemptTimestamp") or event_time
        if time is None:
            raise EventError("data.deliveryAttemptTimestamp and eventTime are missing")
        return DeliveryReport(
            event_id=event_id,
            message_id=message_id,
            recipient=recipient,
            sender=sender,
            status=status,
            time=time,
            status_message=details.text("statusMessage"),
            mail_server=details.text("recipientMailServerHostName") or data.text("recipientMailServerHostName"),
            internet_message_id=data.text("internetMessageId"),
            resource_id=resource_id,
        )
    engagement = data.text("engagementType", required=True)
    assert engagement is not None
    time = data.time("userActionTimestamp") or event_time
    if time is None:
        raise EventError("data.userActionTimestamp and eventTime are missing")
    return EngagementReport(
        event_id=event_id,
        message_id=message_id,
        recipient=recipient,
        sender=sender,
        engagement_type=engagement.lower(),
        time=time,
        context=data.text("engagementContext"),
        user_agent=data.text("userAgent"),
        resource_id=resource_id,
    )


def parse_events(events: Iterable[Any]) -> tuple[list[Report], list[EventError]]:
    """Every usable report of a batch, and one error per event that is not (the rest are unaffected)."""
    reports: list[Report] = []
    errors: list[EventError] = []
    for index, event in enumerate(events):
        try:
            reports.append(parse_event(event, index=index))
        except EventError as exc:
            errors.append(exc)
    return reports, errors


def event_from_function(event: Any) -> dict[str, Any]:
    """An ``azure.functions.EventGridEvent`` (what the trigger hands the function) -> the event as sent."""
    event_time = getattr(event, "event_time", None)
    return {
        "id": getattr(event, "id", None),
        "topic": getattr(event, "topic", None),
        "subject": getattr(event, "subject", None),
        "eventType": getattr(event, "event_type", None),
        "eventTime": event_time.isoformat() if isinstance(event_time, datetime) else event_time,
        "dataVersion": getattr(event, "data_version", None),
        "data": event.get_json(),
    }
