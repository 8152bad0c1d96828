"""What every model shares: limits, the status vocabularies, UTC datetimes, bounded text, and the two bases
(``_Params`` for what we accept, ``_Out`` for what we return).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

MAX_TOP = 1000
DEFAULT_TOP = 100
MAX_LOOKBACK_DAYS = 90
MAX_WINDOW_DAYS = 90

FinalStatus = Literal["Delivered", "Failed", "Bounced", "Suppressed", "Quarantined", "FilteredSpam"]
BounceTypeName = Literal["Hard Bounce", "Soft Bounce", "Not Applicable", "Unknown"]
BounceTypeSource = Literal["reported", "inferred", "notApplicable", "unknown"]
#: Machine bounce types; the KQL (and the alerts and workbook that share it) speaks the display labels.
BounceType = Literal["hard", "soft", "none", "unknown"]
#: Display label -> machine value: the one mapping (the KQL enrichment and the state store emit labels).
BOUNCE_TYPE_OF_LABEL: dict[str, BounceType] = {
    "Hard Bounce": "hard",
    "Soft Bounce": "soft",
    "Not Applicable": "none",
    "Unknown": "unknown",
}
TraceState = Literal["final", "pending", "expired", "notFound"]
#: The message's outcome, first thing an app reads (rules in docs/semantics.md and shared/tracing.py).
TraceOutcome = Literal["delivered", "partiallyDelivered", "notDelivered", "failed", "pending", "expired"]
#: Where a trace answer came from: the delivery state alone, the log query alone, or both merged.
TraceSource = Literal["state", "logs", "both"]
#: Delivery statuses ACS documents today; ``status`` is an open set (ACS adds values), so fields typed
#: :data:`DeliveryStatusText` accept any string and the schema says so (an open enum, see there).
KNOWN_DELIVERY_STATUSES = (
    "Delivered",
    "Failed",
    "Bounced",
    "Suppressed",
    "Quarantined",
    "FilteredSpam",
    "Expanded",
    "OutForDelivery",
    "Dropped",
)
StatsKind = Literal["domains", "senders", "mail-servers", "latency", "failures", "sizes"]
STATS_KINDS: tuple[str, ...] = get_args(StatsKind)
SummaryDimension = Literal["total", "domain", "sender", "status", "mailServer"]
SUMMARY_DIMENSIONS: tuple[str, ...] = get_args(SummaryDimension)
Bin = Literal["5m", "15m", "1h", "1d"]
BIN_SPANS = {
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}


def _utc_iso(value: datetime) -> str:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}Z"


UtcDateTime = Annotated[datetime, PlainSerializer(_utc_iso, return_type=str, when_used="json")]

#: Longest text field an answer carries (a failure message is remote-controlled text: one of 50 MB was once
#: logged); longer values are cut with TRUNCATED_MARK, so a response stays bounded whatever the logs hold.
MAX_TEXT_CHARS = 8192
TRUNCATED_MARK = "…[truncated]"
#: Events listed per recipient in a trace (the newest); more are counted in ``eventsOmitted``.
MAX_TRACE_EVENTS = 50
#: Distinct clicked URLs listed per recipient.
MAX_CLICKED_URLS = 20


def bound_text(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_TEXT_CHARS:
        return value
    return value[: MAX_TEXT_CHARS - len(TRUNCATED_MARK)] + TRUNCATED_MARK


BoundedText = Annotated[str | None, AfterValidator(bound_text)]

#: An open enum: the documented values are listed (``anyOf [enum, string]`` in OpenAPI 3.1; ``enum`` with
#: ``x-ms-enum.modelAsString`` in the connector, which AutoRest and Power Automate treat as extensible), and
#: any other string passes through unchanged: a status ACS adds later is shown, never rejected.
DeliveryStatusText = Annotated[
    str,
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "enum": list(KNOWN_DELIVERY_STATUSES)}, {"type": "string"}],
            "x-ms-enum": {"name": "DeliveryStatus", "modelAsString": True},
            "description": "Delivery status as ACS reports it: one of the listed values, or a newer one.",
        }
    ),
]


def parse_flag(value: Any) -> bool | None:
    """ACS's ``IsHardBounce`` ("True"/"False", any case, or a boolean) -> a boolean; anything else None."""
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    return True if text == "true" else False if text == "false" else None


class _Params(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


#: Top-level fields left out when they carry nothing (they only appear when they say something).
_OPTIONAL_TOP_LEVEL = ("partial", "warning", "nextLink", "continuationToken")


def contract_body(model: BaseModel) -> dict[str, Any]:
    """A result as the API answers it (and a push carries it): JSON values, camelCase, empty extras left out."""
    body: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    for key in _OPTIONAL_TOP_LEVEL:
        if key in body and body[key] is None:
            del body[key]
    return body
