"""The Event Grid events that match a local store's rows, so the delivery state can be tried without Azure.

``python -m shared sample`` writes them beside the store (``<store>.events.json``): a JSON array in the Event
Grid schema, as Event Grid would POST it to ``ingest_email_events`` (``python -m shared events send`` replays
it in batches). One ``EmailDeliveryReportReceived`` per recipient-level status row (Event Grid has no
message-level event and no ``OutForDelivery``: the event schema lists recipient statuses only) and one
``EmailEngagementTrackingReportReceived`` per engagement row. Realistic variants, chosen per event by a hash
of the row (deterministic): ``deliveryAttemptTimestamp`` in the spec's casing for most events and the docs'
``deliveryAttemptTimeStamp`` for about one in five (``userActionTimestamp`` / ``userActionTimeStamp`` alike),
``engagementType`` ``view`` or ``View``; ``Suppressed`` reports without ``internetMessageId`` or mail server.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import duckdb

from local.store import open_store, quote
from shared.errors import InvalidInput, Unavailable, UpstreamFailure
from shared.schemas import ENGAGEMENT_TABLE, STATUS_UPDATE_TABLE
from shared.state.events import DELIVERY_REPORT, ENGAGEMENT_REPORT, MAX_EVENTS

#: Statuses Event Grid reports (the spec's enum and ``Expanded``); other log statuses have no event.
EVENT_STATUSES: Final = ("Delivered", "Bounced", "Failed", "FilteredSpam", "Quarantined", "Suppressed", "Expanded")
EVENTS_SUFFIX: Final = ".events.json"
_ROWS_PER_FETCH: Final = 10_000


def events_path(store: str | Path) -> Path:
    """Where the sample events of *store* are written: beside it, ``<store>.events.json``."""
    return Path(str(store) + EVENTS_SUFFIX)


def _variant(*parts: Any) -> int:
    """0-99, stable for a row: picks the casing variant of its event."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100


def _event_id(*parts: Any) -> str:
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _iso(value: datetime) -> str:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def _sender(username: str | None, domain: str | None) -> str:
    return f"{username}@{domain}" if username and domain else username or "DoNotReply@example.com"


def _envelope(
    event_id: str, event_type: str, topic: str | None, sender: str, message_id: str, at: datetime
) -> dict[str, Any]:
    return {
        "id": event_id,
        "topic": topic or "",
        "subject": f"sender/{sender}/message/{message_id}",
        "eventType": event_type,
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "eventTime": _iso(at),
    }


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> Iterator[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description or ()]
    while batch := cursor.fetchmany(_ROWS_PER_FETCH):
        for row in batch:
            yield dict(zip(names, row, strict=True))


def delivery_events(con: duckdb.DuckDBPyConnection) -> Iterator[dict[str, Any]]:
    statuses = ", ".join(f"'{status}'" for status in EVENT_STATUSES)
    sql = (
        'SELECT "TimeGenerated", "CorrelationId", "RecipientId", "DeliveryStatus", "SenderUsername", "SenderDomain", '
        '"RecipientMailServerHostName", "InternetMessageId", "FailureMessage", "_ResourceId" '
        f"FROM {quote(STATUS_UPDATE_TABLE)} "
        f'WHERE "RecipientId" <> \'\' AND "DeliveryStatus" IN ({statuses}) '
        'ORDER BY "TimeGenerated", "CorrelationId", "RecipientId"'
    )
    for row in _rows(con, sql):
        at, message_id, recipient, status = (
            row["TimeGenerated"],
            row["CorrelationId"],
            row["RecipientId"],
            row["DeliveryStatus"],
        )
        sender = _sender(row["SenderUsername"], row["SenderDomain"])
        variant = _variant(message_id, recipient, status, at)
        event = _envelope(
            _event_id("delivery", message_id, recipient, status, at),
            DELIVERY_REPORT,
            row["_ResourceId"],
            sender,
            message_id,
            at,
        )
        details: dict[str, Any] = {"statusMessage": row["FailureMessage"] or f"{status}."}
        data: dict[str, Any] = {"sender": sender, "recipient": recipient, "messageId": message_id, "status": status}
        if status != "Suppressed":
            if row["RecipientMailServerHostName"]:
                details["recipientMailServerHostName"] = row["RecipientMailServerHostName"]
            if row["InternetMessageId"]:
                data["internetMessageId"] = row["InternetMessageId"]
        data["deliveryStatusDetails"] = details
        data["deliveryAttemptTimeStamp" if variant < 20 else "deliveryAttemptTimestamp"] = _iso(at)
        event["data"] = data
        yield event


def engagement_events(con: duckdb.DuckDBPyConnection) -> Iterator[dict[str, Any]]:
    sql = (
        'SELECT "TimeGenerated", "CorrelationId", "RecipientId", "EngagementType", "EngagementContext", "UserAgent", '
        f'"_ResourceId" FROM {quote(ENGAGEMENT_TABLE)} WHERE "RecipientId" <> \'\' '
        'ORDER BY "TimeGenerated", "CorrelationId", "RecipientId"'
    )
    for row in _rows(con, sql):
        at, message_id, recipient = row["TimeGenerated"], row["CorrelationId"], row["RecipientId"]
        kind = str(row["EngagementType"] or "view").lower()
        variant = _variant(message_id, recipient, kind, at)
        sender = "DoNotReply@example.com"
        event = _envelope(
            _event_id("engagement", message_id, recipient, kind, at, row["EngagementContext"]),
            ENGAGEMENT_REPORT,
            row["_ResourceId"],
            sender,
            message_id,
            at,
        )
        event["data"] = {
            "sender": sender,
            "recipient": recipient,
            "messageId": message_id,
            "engagementType": kind.capitalize() if variant < 10 else kind,
            "engagementContext": row["EngagementContext"] or "",
            "userAgent": row["UserAgent"] or "",
            "userActionTimeStamp" if variant < 20 else "userActionTimestamp": _iso(at),
        }
        yield event


def write_sample_events(store: str | Path, out: str | Path | None = None) -> dict[str, int]:
    """Every event matching *store*'s rows, written as one JSON array to *out* (default :func:`events_path`).

    Streams (a million-message store makes some millions of events); returns the counts per event type.
    """
    target = Path(out) if out is not None else events_path(store)
    counts = {"deliveryEvents": 0, "engagementEvents": 0}
    con = open_store(store, read_only=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            handle.write("[")
            first = True
            for key, events in (("deliveryEvents", delivery_events(con)), ("engagementEvents", engagement_events(con))):
                for event in events:
                    handle.write("\n" if first else ",\n")
                    handle.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")))
                    first = False
                    counts[key] += 1
            handle.write("\n]\n")
        partial.replace(target)
    finally:
        con.close()
        partial.unlink(missing_ok=True)
    return counts


# --------------------------------------------------------------------------- replay to a running host

#: Events per POST by default (the ingestion benchmark's batch); Event Grid allows 1 to 5,000.
DEFAULT_BATCH: Final = 500


def read_events_file(path: str | Path) -> list[Any]:
    """The JSON array of an events file; :class:`InvalidInput` (one line, no content quoted) otherwise."""
    try:
        with Path(path).open("rb") as handle:
            events = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path} is not a JSON file ({type(exc).__name__})") from None
    if not isinstance(events, list):
        raise InvalidInput(f"{path} does not hold a JSON array of Event Grid events")
    return events


def replay_events(
    events: Sequence[Any], url: str, *, batch: int = DEFAULT_BATCH, timeout: float = 60.0
) -> dict[str, int]:
    """POST *events* to a host's Event Grid webhook URL as Event Grid does (``aeg-event-type: Notification``).

    Batches of *batch* events, in order; stops at the first batch the host refuses (:class:`UpstreamFailure`
    naming the batch and status; the host's own error text is not quoted, it may echo data).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput("--to must be an http(s) URL such as http://localhost:7071/runtime/webhooks/eventgrid?...")
    if not 1 <= batch <= MAX_EVENTS:
        raise InvalidInput(f"--batch must be between 1 and {MAX_EVENTS}")
    posted = 0
    batches = 0
    for start in range(0, len(events), batch):
        body = json.dumps(list(events[start : start + batch])).encode()
        request = urllib.request.Request(  # noqa: S310  # scheme checked above: http(s) only
            url,
            body,
            {"aeg-event-type": "Notification", "Content-Type": "application/json", "aeg-delivery-count": "0"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            last = min(start + batch, len(events))
            raise UpstreamFailure(f"the host answered {exc.code} to events {start + 1}-{last}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unavailable(f"cannot reach {parts.scheme}://{parts.netloc}: {reason}") from None
        posted += len(events[start : start + batch])
        batches += 1
    return {"events": posted, "batches": batches}
