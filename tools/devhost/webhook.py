"""The Event Grid webhook body checked as the Functions host's Event Grid extension and Event Grid do.

Only the local host (:mod:`tools.devhost.host`) needs this: in Azure the Functions host itself answers
``POST /runtime/webhooks/eventgrid`` and hands each event to ``ingest_email_events``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from shared.state.events import MAX_EVENTS

#: Largest body Event Grid can send: batches fill up to ``preferredBatchSizeInKilobytes`` (at most 1,024 KB),
#: and an event larger than that (events are at most 1 MiB) travels alone; 64 KiB covers the array around it.
MAX_BODY_BYTES: Final = 1024 * 1024 + 64 * 1024


class WebhookRejected(ValueError):
    """A delivery the Event Grid extension (or Event Grid's contract) refuses: ``status`` is 400 or 413."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Validation:
    """The ``SubscriptionValidation`` handshake: answer 200 with :meth:`reply`."""

    code: str

    def reply(self) -> dict[str, str]:
        return {"validationResponse": self.code}


@dataclass(frozen=True)
class Notification:
    """A delivery of events: hand each to the function (``ingest_email_events``)."""

    events: list[Any]


@dataclass(frozen=True)
class Deletion:
    """``SubscriptionDeletion``: the extension acknowledges it with 202 and runs nothing."""


def read_webhook(body: bytes, headers: Mapping[str, str]) -> Validation | Notification | Deletion:
    """``POST /runtime/webhooks/eventgrid?functionName=...``: the body and ``aeg-event-type`` checked.

    As the Functions Event Grid extension does: ``SubscriptionValidation`` -> :class:`Validation`
    (answer 200 with ``validationResponse``), ``Notification`` -> :class:`Notification` (run the function
    once per event; answer 202 when all ran, 500 when one raised, so Event Grid retries the delivery),
    ``SubscriptionDeletion`` -> :class:`Deletion` (202), any other header -> 400. Beyond what the host checks,
    deliveries Event Grid can never send are refused: more than 5,000 events (400) or a body over
    :data:`MAX_BODY_BYTES` (413); Event Grid retries neither (a 400 or 413 is not retried:
    learn.microsoft.com, "Event Grid message delivery and retry").
    """
    kind = next((value for key, value in headers.items() if key.lower() == "aeg-event-type"), None)
    if kind not in ("SubscriptionValidation", "Notification", "SubscriptionDeletion"):
        raise WebhookRejected(400, "the aeg-event-type header is missing or not an Event Grid delivery type")
    if kind == "SubscriptionDeletion":
        return Deletion()
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"the body is larger than {MAX_BODY_BYTES} bytes, more than Event Grid sends")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(400, "the body is not JSON") from None
    # The extension also takes a single event object instead of an array.
    events = value if isinstance(value, list) else [value] if isinstance(value, dict) else None
    if events is None or not events:
        raise WebhookRejected(400, "the body is not a JSON array of 1 to 5,000 events")
    if len(events) > MAX_EVENTS:
        raise WebhookRejected(400, f"{len(events)} events in one delivery; Event Grid sends at most {MAX_EVENTS}")
    if kind == "SubscriptionValidation":
        first = events[0] if isinstance(events[0], Mapping) else {}
        data = _get(first, "data")
        code = _get(data, "validationCode") if isinstance(data, Mapping) else None
        if not isinstance(code, str) or not code:
            raise WebhookRejected(400, "the validation event has no data.validationCode")
        return Validation(code)
    return Notification(events)


def _get(value: Mapping[str, Any], name: str) -> Any:
    """``value[name]`` with the key matched in any case (Event Grid's casing varies)."""
    return {str(key).lower(): item for key, item in value.items()}.get(name.lower())
