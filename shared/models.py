"""Pydantic models: the one definition of every parameter we accept and every field we return.

Field names are snake_case in Python and camelCase on the wire (the seed's output columns
in camelCase). OpenAPI and the Power Automate Swagger document are generated from these.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from shared.errors import InvalidInput, ParameterError
from shared.kql.literals import is_control_char
from shared.providers import provider_of

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
#: Delivery statuses ACS documents today; ``status`` is an open set (REFERENCE-next §1), so fields typed
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


# --------------------------------------------------------------------------- validation


def _no_controls(value: str, what: str) -> str:
    if any(is_control_char(ch) for ch in value):
        raise ValueError(f"{what} must not contain control characters or line breaks")
    return value


MESSAGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
_MESSAGE_ID = re.compile(MESSAGE_ID_PATTERN)
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?\.)*"
    r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?$"
)
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\uffff]{1,64}$")
#: RFC 5321 quoted local part, e.g. "john..doe"@example.com or "a@b"@example.com.
_QUOTED_LOCAL_PART = re.compile(r'^"(?:[^"\\]|\\.){1,62}"$')
_RESOURCE_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/\s]{1,90}/providers/"
    r"Microsoft\.Communication/CommunicationServices/[^/\s]{1,63}$",
    re.I,
)


def validate_message_id(value: str) -> str:
    value = value.strip()
    if not _MESSAGE_ID.match(value):
        raise ValueError("must be an ACS message id (letters, digits, '-', '.', '_', ':'; up to 128 characters)")
    return value


def validate_domain(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if not _DOMAIN.match(value):
        raise ValueError("must be a domain name such as contoso.com")
    return value


def validate_address(value: str) -> str:
    value = _no_controls(value.strip(), "address")
    local, at, domain = value.rpartition("@")
    if not at or not (_LOCAL_PART.match(local) or _QUOTED_LOCAL_PART.match(local)) or not _DOMAIN.match(domain):
        raise ValueError("must be an email address such as user@contoso.com")
    return value


def validate_sender(value: str) -> str:
    value = _no_controls(value.strip(), "sender")
    if "@" in value:
        return validate_address(value)
    if not _LOCAL_PART.match(value):
        raise ValueError("must be a sender username (e.g. DoNotReply) or address")
    return value


def validate_internet_message_id(value: str) -> str:
    value = _no_controls(value.strip(), "internetMessageId")
    if not 3 <= len(value) <= 998 or " " in value:
        raise ValueError("must be an Internet Message-ID such as <abc@contoso.com>")
    return value


def validate_resource_id(value: str) -> str:
    value = value.strip()
    if not _RESOURCE_ID.match(value):
        raise ValueError(
            "must be an ACS resource id (/subscriptions/.../providers/Microsoft.Communication/"
            "CommunicationServices/NAME)"
        )
    return value


_FINAL_STATUS_NAMES = {status.lower(): status for status in get_args(FinalStatus)}


def validate_statuses(value: object) -> tuple[str, ...]:
    """One or more final statuses, comma-separated (or a list), in any case -> their canonical names."""
    parts = value if isinstance(value, list | tuple) else str(value).split(",")
    statuses: list[str] = []
    for part in parts:
        name = str(part).strip()
        if not name:
            continue
        canonical = _FINAL_STATUS_NAMES.get(name.lower())
        if canonical is None:
            raise ValueError("must be final statuses, comma-separated: " + ", ".join(get_args(FinalStatus)))
        if canonical not in statuses:
            statuses.append(canonical)
    if not statuses:
        raise ValueError("must name at least one final status")
    return tuple(statuses)


MessageId = Annotated[
    str, AfterValidator(validate_message_id), WithJsonSchema({"type": "string", "pattern": MESSAGE_ID_PATTERN})
]
Domain = Annotated[str, AfterValidator(validate_domain)]
Address = Annotated[str, AfterValidator(validate_address)]
Sender = Annotated[str, AfterValidator(validate_sender)]
InternetMessageId = Annotated[str, AfterValidator(validate_internet_message_id)]
ResourceId = Annotated[str, AfterValidator(validate_resource_id)]
StatusList = Annotated[
    tuple[str, ...],
    BeforeValidator(validate_statuses),
    PlainSerializer(lambda value: ",".join(value), return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^\\s*[A-Za-z]+\\s*(,\\s*[A-Za-z]+\\s*)*$",
            "examples": ["Bounced,Failed"],
        }
    ),
]


#: Descriptions of query parameters that several endpoints share (OpenAPI and the connector show them).
MESSAGE_ID_DESCRIPTION = "The message id returned by the ACS send API (operation id)."
SENDER_DESCRIPTION = "Sender username (e.g. DoNotReply) or full sender address."
SENDER_DOMAIN_DESCRIPTION = "Sender domain, e.g. notify.contoso.com (case-insensitive)."
RESOURCE_ID_DESCRIPTION = "Only sends of this ACS resource (/subscriptions/.../CommunicationServices/NAME)."
RECIPIENT_DOMAIN_DESCRIPTION = "Recipient domain, e.g. contoso.com (case-insensitive)."
TOP_DESCRIPTION = "Maximum number of rows to return."


class _Params(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


#: Datetimes outside these years are refused (and keep window arithmetic far from datetime's limits).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class WindowError(InvalidInput):
    """A send window that cannot be used; ``parameter`` names the input at fault."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}", [ParameterError(parameter, reason)])


class TimeWindowParams(_Params):
    #: How far before `to` the window starts when `from` is not given.
    default_span: ClassVar[timedelta] = timedelta(hours=24)

    from_: datetime | None = Field(
        None, alias="from", description="Start of the send window (ISO 8601, UTC); default 24 h before `to`."
    )
    to: datetime | None = Field(None, description="End of the send window (exclusive); default now.")

    @field_validator("from_", "to")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if not EARLIEST <= value < LATEST:
            raise ValueError(f"must be between {EARLIEST.year} and {LATEST.year}")
        return value

    @model_validator(mode="after")
    def _order(self) -> TimeWindowParams:
        if self.from_ is not None and self.to is not None:
            if self.from_ >= self.to:
                raise ValueError("`from` must be earlier than `to`")
            if self.to - self.from_ > timedelta(days=MAX_WINDOW_DAYS):
                raise ValueError(f"the window from `from` to `to` may span at most {MAX_WINDOW_DAYS} days")
        return self

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """[from, to) with the defaults filled in: `to` now, `from` 24 h (``default_span``) before `to`."""
        end = self.to or now
        start = self.from_ or end - self.default_span
        if start >= end:
            raise WindowError("from", "must be earlier than `to` (which defaults to now)")
        if end - start > timedelta(days=MAX_WINDOW_DAYS):
            raise WindowError(
                "from", f"the window from `from` to `to` may span at most {MAX_WINDOW_DAYS} days (`to` defaults to now)"
            )
        return start, end


class TraceParams(_Params):
    message_id: MessageId = Field(description=MESSAGE_ID_DESCRIPTION)
    lookback_days: int = Field(7, ge=1, le=MAX_LOOKBACK_DAYS, description="How far back to look for the message.")


class PollParams(TraceParams):
    token: str = Field(max_length=2048, description="The signed token of the Location a 202 answer gave.")

    def trace(self) -> TraceParams:
        return TraceParams(message_id=self.message_id, lookback_days=self.lookback_days)


class ScopeParams(TimeWindowParams):
    """The send window and the sender / resource filters every aggregate accepts."""

    sender: Sender | None = Field(None, description=SENDER_DESCRIPTION)
    sender_domain: Domain | None = Field(None, description=SENDER_DOMAIN_DESCRIPTION)
    resource_id: ResourceId | None = Field(None, description=RESOURCE_ID_DESCRIPTION)


class SearchParams(ScopeParams):
    recipient: Address | None = Field(None, description="Recipient address (case-insensitive).")
    recipient_domain: Domain | None = Field(None, description=RECIPIENT_DOMAIN_DESCRIPTION)
    status: StatusList | None = Field(
        None, description="Final delivery status, or several comma-separated (e.g. Bounced,Failed); any case."
    )
    bounce_type: Literal["hard", "soft"] | None = Field(None, description="Only hard or only soft bounces.")
    min_duration_seconds: float | None = Field(
        None,
        ge=0,
        le=10_000_000,
        description="Only recipients whose final status came at least this many seconds after the send.",
    )
    min_size_mb: float | None = Field(None, ge=0, le=1000, description="Only messages of at least this size in MB.")
    has_attachments: bool | None = Field(None, description="Only messages with (true) or without (false) attachments.")
    internet_message_id: InternetMessageId | None = Field(
        None, description="The Internet Message-ID header, e.g. <abc@contoso.com>."
    )
    message_id: MessageId | None = Field(None, description=MESSAGE_ID_DESCRIPTION)
    top: int = Field(DEFAULT_TOP, ge=1, le=MAX_TOP, description=TOP_DESCRIPTION)
    continuation_token: str | None = Field(
        None,
        max_length=2048,
        description="Opaque token from a previous page's continuationToken (use nextLink instead).",
    )


class StatsParams(ScopeParams):
    top: int = Field(DEFAULT_TOP, ge=1, le=MAX_TOP, description=TOP_DESCRIPTION)
    bin: Bin = Field("1h", description="Time bin for latency stats.")


class StatsRequest(StatsParams):
    """Statistics of one kind (the route's `kind`, the CLI's first argument)."""

    kind: StatsKind = Field(description="Which statistics: " + ", ".join(STATS_KINDS) + ".")


#: Bins a time series may hold (a 90-day window in 1 h bins; 5 m bins for up to ~7 days).
MAX_SERIES_BINS = 2200


class TimeSeriesParams(ScopeParams):
    bin: Bin = Field("1h", description="Time bin: 5m, 15m, 1h or 1d.")
    by: Literal["status", "domain"] = Field(
        "status", description="Key of each row: the final status (status) or the recipient domain (domain)."
    )


EngagementKey = Literal["sender", "senderDomain", "recipientDomain"]


class EngagementParams(ScopeParams):
    by: EngagementKey = Field(
        "sender", description="Key of each row: sender address (sender), sender domain or recipient domain."
    )
    top: int = Field(DEFAULT_TOP, ge=1, le=MAX_TOP, description=TOP_DESCRIPTION)


class RecipientParams(TimeWindowParams):
    default_span: ClassVar[timedelta] = timedelta(days=30)

    address: Address = Field(description="The recipient address (matched in any case).")
    from_: datetime | None = Field(
        None, alias="from", description="Start of the window (ISO 8601, UTC); default 30 days before `to`."
    )
    top: int = Field(DEFAULT_TOP, ge=1, le=MAX_TOP, description=TOP_DESCRIPTION)


class BouncesParams(ScopeParams):
    type: Literal["hard", "soft", "all"] = Field("all", description="Bounce type: hard, soft or all.")
    recipient_domain: Domain | None = Field(None, description=RECIPIENT_DOMAIN_DESCRIPTION)
    top: int = Field(MAX_TOP, ge=1, le=MAX_TOP * 10, description=TOP_DESCRIPTION)
    format: Literal["json", "csv"] = Field(
        "json", description="json (default) or csv; Accept: text/csv also selects CSV."
    )


def _plausible_day(value: date) -> date:
    if not EARLIEST.date() <= value < LATEST.date():
        raise ValueError(f"must be between {EARLIEST.year} and {LATEST.year}")
    return value


Day = Annotated[date, AfterValidator(_plausible_day)]


class RecomputeParams(_Params):
    day: Day = Field(alias="date", description="UTC send day, YYYY-MM-DD.")


class ReportParams(_Params):
    day: Day = Field(alias="date", description="UTC send day of the report, YYYY-MM-DD.")
    format: Literal["html", "json"] = Field(
        "html", description="html (default: one self-contained page) or json (the same numbers)."
    )


class SummaryRangeParams(_Params):
    from_: date = Field(alias="from", description="The first UTC send day, inclusive (YYYY-MM-DD).")
    to: date = Field(description="The last UTC send day, inclusive (YYYY-MM-DD); at most 366 days after from.")
    dimension: SummaryDimension | None = Field(None, description="Only summaries of this dimension.")
    format: Literal["json", "csv"] = Field(
        "json", description="json (default) or csv (docs/reports.md); Accept: text/csv also selects CSV."
    )

    @model_validator(mode="after")
    def _order(self) -> SummaryRangeParams:
        if self.from_ > self.to:
            raise ValueError("`from` must not be later than `to`")
        if (self.to - self.from_).days > 366:
            raise ValueError("at most 366 days at a time")
        return self


# --------------------------------------------------------------------------- responses


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


class SendInfo(_Out):
    send_time: UtcDateTime
    message_size_mb: float | None = Field(None, description="Message size in MB.")
    message_size_category: str | None = None
    attachments_count: int | None = None
    to_recipients_count: int | None = None
    cc_recipients_count: int | None = None
    bcc_recipients_count: int | None = None
    unique_recipients_count: int | None = None
    resource_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _size_in_mb(cls, data: Any) -> Any:
        """The KQL column ``MessageSize`` (MB) -> ``messageSizeMb`` (units in the field name)."""
        if isinstance(data, dict) and "message_size" in data:
            data = {**data}
            data.setdefault("message_size_mb", data.pop("message_size"))
        return data


class TraceSendInfo(SendInfo):
    sender: str | None = Field(None, description="Sender address (username@domain) as the status reports name it.")


class StatusEvent(_Out):
    time: UtcDateTime
    delivery_status: DeliveryStatusText
    smtp_status_code: str | None = None
    enhanced_smtp_status_code: str | None = None
    failure_reason: BoundedText = None
    failure_message: BoundedText = None
    is_hard_bounce: bool | None = Field(None, description="ACS's own hard-bounce flag; null when not reported.")
    recipient_mail_server_host_name: str | None = None

    @field_validator("is_hard_bounce", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> bool | None:
        return parse_flag(value)


class CorrelatedFields(_Out):
    """Fields shared by a trace recipient and a search row: one recipient's final status, enriched."""

    recipient_id: str
    recipient_domain: str | None = None
    final_delivery_status: DeliveryStatusText | None = None
    bounce_type: BounceType | None = Field(
        None, description="hard, soft, none (delivered) or unknown; null while there is no final status."
    )
    bounce_type_label: BounceTypeName | None = Field(None, description="The bounce type as display text.")
    bounce_type_source: BounceTypeSource | None = None
    final_status_time: UtcDateTime | None = None
    duration_milliseconds: int | None = Field(
        None, description="From the send to the final status, in milliseconds (negative under clock skew)."
    )
    smtp_status_code: str | None = None
    smtp_status_code_details: str | None = None
    enhanced_smtp_status_code: str | None = None
    enhanced_smtp_status_code_details: str | None = None
    failure_category: str | None = None
    failure_reason: BoundedText = None
    failure_message: BoundedText = None
    recipient_mail_server_host_name: str | None = None
    internet_message_id: str | None = None
    sender_username: str | None = None
    sender_domain: str | None = None
    clock_skew: bool = False
    provider: str | None = Field(
        None,
        description="Mailbox provider (Google, Microsoft 365, ...): by the mail server's host name, else the "
        "recipient domain; Other or Unknown (docs/semantics.md).",
    )

    @model_validator(mode="after")
    def _provider(self) -> CorrelatedFields:
        """The one catalog (shared/providers) the provider statistics' KQL reads too."""
        if self.provider is None:
            self.provider = provider_of(self.recipient_mail_server_host_name, self.recipient_domain)
        return self

    @model_validator(mode="before")
    @classmethod
    def _machine_values(cls, data: Any) -> Any:
        """KQL rows carry the display label (``BounceType``) and seconds: map them once, here."""
        if isinstance(data, dict):
            data = {key: value for key, value in data.items() if key != "duration_seconds"}
            label = data.get("bounce_type")
            if label in BOUNCE_TYPE_OF_LABEL:
                data["bounce_type"] = BOUNCE_TYPE_OF_LABEL[label]
                data.setdefault("bounce_type_label", label)
        return data


class RecipientEngagement(_Out):
    """Views and clicks of one recipient (only custom sender domains with engagement tracking on have them)."""

    views: int = Field(description="Times the message was opened (tracking pixel loaded).")
    clicks: int = Field(description="Tracked links clicked.")
    first_time: UtcDateTime | None = Field(None, description="First view or click.")
    last_time: UtcDateTime | None = Field(None, description="Latest view or click.")
    clicked_urls: list[str] = Field(
        default_factory=list, description=f"Distinct clicked URLs, at most {MAX_CLICKED_URLS}."
    )


class TraceRecipient(CorrelatedFields):
    events: list[StatusEvent] = Field(default_factory=list)
    events_omitted: int | None = Field(
        None, description=f"Older events left out: a trace lists each recipient's newest {MAX_TRACE_EVENTS}."
    )
    engagement: RecipientEngagement | None = Field(
        None, description="Views and clicks, when the sender domain tracks engagement; null when none were seen."
    )


class StatusCounts(_Out):
    """Recipients per final status."""

    delivered: int = 0
    failed: int = 0
    bounced: int = 0
    suppressed: int = 0
    quarantined: int = 0
    filtered_spam: int = 0


class TraceResult(_Out):
    message_id: str
    outcome: TraceOutcome | None = Field(
        None,
        description="delivered (every recipient), partiallyDelivered, notDelivered, failed (the message as a "
        "whole), pending (recipients still without a final status) or expired (the status grace passed).",
    )
    state: TraceState = Field(description="final, pending or expired (notFound only in a 404's body).")
    source: TraceSource | None = Field(None, description="state, logs or both: where this answer came from.")
    as_of: UtcDateTime | None = Field(None, description="The time the answer describes.")
    counts: StatusCounts = Field(default_factory=StatusCounts)
    expected_recipients: int | None = Field(None, description="Recipients the send named; null when not known.")
    pending_recipients: list[str] = Field(
        default_factory=list, description="Recipients known by address that have no final status yet."
    )
    unresolved_count: int | None = Field(
        None,
        description="Recipients without a final status, counted against the expected recipients (includes "
        "those not known by address); null when the expected recipients are not known.",
    )
    send: TraceSendInfo | None = None
    message_events: list[StatusEvent] = Field(default_factory=list)
    recipients: list[TraceRecipient] = Field(default_factory=list)
    partial: bool | None = Field(None, description="True when Log Analytics returned a partial result.")
    warning: str | None = None


class SearchRow(CorrelatedFields, SendInfo):
    """One recipient of one send: the send's columns and the recipient's final status, enriched."""

    message_id: str


class SearchPage(_Out):
    value: list[SearchRow]
    next_link: str | None = None
    continuation_token: str | None = None
    partial: bool | None = None
    warning: str | None = None


class Completeness(_Out):
    pending_recipients: int = Field(
        description="Expected recipients of the window's sends (UniqueRecipientsCount of sends that did not fail as "
        "a whole) minus those with a final status: the daily summary's pending rule."
    )
    latest_event_time: UtcDateTime | None = Field(
        None, description="Newest status event seen; later ones may not be ingested yet."
    )


class DomainStats(_Out):
    recipient_domain: str | None
    total: int
    delivered: int
    bounced: int
    failed: int
    suppressed: int
    quarantined: int
    filtered_spam: int
    hard_bounces: int
    soft_bounces: int
    success_rate: float
    avg_duration_seconds: float | None = None
    p50_duration_seconds: float | None = None
    p95_duration_seconds: float | None = None


class SenderStats(_Out):
    sender_username: str | None
    sender_domain: str | None
    total_sent: int
    delivered: int
    hard_bounces: int
    soft_bounces: int
    hard_bounce_rate: float
    soft_bounce_rate: float


class MailServerStats(_Out):
    recipient_mail_server_host_name: str | None
    total: int
    delivered: int
    failures: int
    failure_rate: float
    avg_duration_seconds: float | None = None
    p95_duration_seconds: float | None = None


class LatencyStats(_Out):
    time: UtcDateTime
    count: int
    avg_duration_seconds: float | None = None
    p95_duration_seconds: float | None = None


class FailureStats(_Out):
    failure_reason: BoundedText
    final_delivery_status: str | None
    smtp_status_code: str | None
    enhanced_smtp_status_code: str | None
    enhanced_smtp_status_code_details: str | None
    failure_category: str | None
    count: int


class SizeStats(_Out):
    message_size_category: str
    messages: int
    recipients: int
    avg_message_size: float | None = None


class StatsResult(_Out):
    value: list[dict[str, Any]]
    completeness: Completeness
    failed_messages: int = Field(
        0, description="Sends of the window that failed as a whole (a message-level Failed or Dropped event)."
    )
    partial: bool | None = None
    warning: str | None = None


STATS_ROW_MODELS: dict[str, type[_Out]] = {
    "domains": DomainStats,
    "senders": SenderStats,
    "mail-servers": MailServerStats,
    "latency": LatencyStats,
    "failures": FailureStats,
    "sizes": SizeStats,
}


class TimeSeriesRow(_Out):
    time: UtcDateTime = Field(description="Start of the bin (event time of the final statuses).")
    key: str | None = Field(description="The final status or recipient domain (the `by` parameter).")
    count: int = Field(description="Recipients whose final status fell in the bin.")
    delivered: int
    delivery_rate: float = Field(description="Delivered of `count`, percent.")
    bin_total: int = Field(description="Final statuses in the bin, every key together.")
    bin_delivery_rate: float = Field(description="Delivered of `binTotal`, percent.")
    p50_latency_seconds: float | None = Field(None, description="Median send-to-final latency (clock skew left out).")
    p95_latency_seconds: float | None = None


class TimeSeriesResult(_Out):
    value: list[TimeSeriesRow]
    completeness: Completeness
    partial: bool | None = None
    warning: str | None = None


#: What the engagement answer says about where engagement data comes from (REFERENCE-next.md §2).
ENGAGEMENT_NOTE = (
    "Engagement (views and clicks) is logged only for mail sent from verified custom domains with user engagement "
    "tracking enabled, in HTML bodies; Azure managed domains never have it. A sender with 0 opens may simply have "
    "tracking off."
)


class EngagementRow(_Out):
    key: str | None = Field(description="Sender address, sender domain or recipient domain (the `by` parameter).")
    delivered: int = Field(description="Delivered recipients.")
    opened: int = Field(description="Delivered recipients with a view or a click.")
    clicked: int = Field(description="Delivered recipients with a click.")
    open_rate: float = Field(description="Opened of delivered, percent.")
    click_rate: float = Field(description="Clicked of delivered, percent.")
    views: int
    clicks: int


class EngagementResult(_Out):
    value: list[EngagementRow]
    note: str = Field(ENGAGEMENT_NOTE, description="Where engagement data exists (custom domains with tracking).")
    partial: bool | None = None
    warning: str | None = None


class RecipientMessage(_Out):
    message_id: str
    send_time: UtcDateTime | None = Field(None, description="Null when the send is outside the window.")
    final_delivery_status: str | None = Field(None, description="Null while the recipient has no final status.")
    final_status_time: UtcDateTime | None = None
    last_event_status: str
    last_event_time: UtcDateTime
    bounce_type: str | None = None
    hard_bounce: bool = Field(False, description="A Bounced or Failed final status of the hard type.")
    smtp_status_code: str | None = None
    enhanced_smtp_status_code: str | None = None
    enhanced_smtp_status_code_details: str | None = None
    failure_category: str | None = None
    failure_reason: BoundedText = None
    sender_username: str | None = None
    sender_domain: str | None = None
    internet_message_id: str | None = None
    resource_id: str | None = None


class Suppression(_Out):
    """Why the address is most likely suppressed: the newest hard bounce before the suppressed message."""

    message_id: str | None = Field(description="The hard-bounced message; null when none is in the window.")
    time: UtcDateTime | None = Field(None, description="When the hard bounce was logged.")
    smtp_status_code: str | None = None
    enhanced_smtp_status_code: str | None = None
    enhanced_smtp_status_code_details: str | None = None
    failure_reason: BoundedText = None
    seconds_ago: float | None = Field(None, description="Seconds from the hard bounce to now.")
    seconds_before_suppression: float | None = Field(
        None, description="Seconds from the hard bounce to the suppressed message's status."
    )
    note: str


class RecipientHistory(_Out):
    messages: list[RecipientMessage] = Field(description="Messages to the address, newest first.")
    latest_status: str | None = Field(description="Final (else latest) status of the newest message.")
    suppression: Suppression | None = Field(None, description="Present when the newest message was Suppressed.")
    partial: bool | None = None
    warning: str | None = None


class BounceRow(_Out):
    recipient_id: str
    recipient_domain: str | None
    bounce_type: str | None
    bounce_type_source: str | None
    bounce_count: int
    first_bounce_time: UtcDateTime
    last_bounce_time: UtcDateTime
    last_message_id: str
    smtp_status_code: str | None
    enhanced_smtp_status_code: str | None
    enhanced_smtp_status_code_details: str | None
    failure_category: str | None
    failure_reason: BoundedText
    last_status: str


class BounceList(_Out):
    value: list[BounceRow]
    partial: bool | None = None
    warning: str | None = None


BOUNCE_CSV_COLUMNS = tuple(field.alias or name for name, field in BounceRow.model_fields.items())


class DailySummary(_Out):
    """One persisted daily summary entity: sends of one UTC day, one dimension key."""

    date: date
    dimension: SummaryDimension
    key: str | None = Field(description="Dimension key (domain, sender, status, mail server); null when unknown.")
    total: int = Field(description="Recipients with a final status.")
    delivered: int
    bounced: int
    failed: int
    suppressed: int
    quarantined: int
    filtered_spam: int
    pending: int = Field(description="Expected recipients without a final status yet (total dimension only).")
    hard_bounces: int
    soft_bounces: int
    success_rate: float
    avg_duration_seconds: float | None = None
    p95_duration_seconds: float | None = None
    p50_duration_seconds: float | None = Field(
        None, description="Median send-to-final latency; null in summaries written before it was recorded."
    )
    computed_at: UtcDateTime
    schema_version: int
    failed_messages: int = Field(
        0, description="Sends that failed as a whole (message-level Failed or Dropped; total dimension only)."
    )


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


#: The measures of a daily summary as the summary query names them (and the table stores them), in model order.
SUMMARY_COUNT_COLUMNS: tuple[str, ...] = tuple(
    _pascal(name) for name, f in DailySummary.model_fields.items() if f.annotation is int and name != "schema_version"
)
SUMMARY_RATE_COLUMNS: tuple[str, ...] = tuple(
    _pascal(name) for name, f in DailySummary.model_fields.items() if f.annotation in (float, float | None)
)
#: Rates that are always present (0 when there is nothing to divide).
SUMMARY_REQUIRED_RATES: tuple[str, ...] = tuple(
    _pascal(name) for name, f in DailySummary.model_fields.items() if f.annotation is float
)


class DailySummaryList(_Out):
    value: list[DailySummary]


#: CSV columns of daily summaries (docs/reports.md): the wire names, in field order; new fields append.
SUMMARY_CSV_COLUMNS = tuple(field.alias or name for name, field in DailySummary.model_fields.items())


class ComponentHealth(_Out):
    name: str
    reachable: bool
    detail: str


class Health(_Out):
    status: Literal["ok", "degraded"]
    log_source: ComponentHealth
    table_store: ComponentHealth
    report_email: ComponentHealth | None = Field(
        None, description="Whether the latest daily report email went out; null when no report email is configured."
    )
    link_signing: str = Field(
        "configured",
        description="The key of poll links and continuation tokens: 'configured' (LINK_SIGNING_KEY), 'development "
        "key' (a local run without one: public, protects nothing), or 'missing: ' and the reason (Azure without a "
        "usable key: signed routes answer 503 and the service is degraded).",
    )
    set_aside: int | None = Field(
        None,
        description="Events and log rows the delivery state set aside (a time not within reason of their arrival, "
        "or a message whose state could not be written); null when the state store cannot be read.",
    )


# --------------------------------------------------------------------------- the daily report (issue 12)

MetricUnit = Literal["count", "percent", "seconds"]


class ReportMetric(_Out):
    """One headline number of the daily report, with the day before and the 7 days before for comparison."""

    name: str = Field(description="Stable identifier: sent, deliveredPercent, hardBounces, softBounces, ...")
    label: str
    unit: MetricUnit
    value: float | None = Field(description="The day's value; null when the summaries do not hold it.")
    previous_day: float | None = Field(None, description="The value of the day before (null when not summarised).")
    change: float | None = Field(None, description="value - previousDay (percentage points for percents).")
    seven_day_average: float | None = Field(
        None, description="Mean of the 7 days before the day, over the days that have a summary."
    )
    change_vs_average: float | None = Field(None, description="value - sevenDayAverage.")
    better: Literal["higher", "lower"] = Field(description="Which direction is good news.")
    note: str | None = Field(None, description="Why the value is missing or how it was derived.")


class ReportDay(_Out):
    """One day of the 14-day history chart."""

    date: date
    summarised: bool = Field(description="False when no summary of the day exists (a gap in the chart).")
    sent: int = Field(description="Recipients of the day's sends: final statuses plus still pending.")
    delivered: int
    delivered_percent: float | None = Field(description="Delivered of final statuses, in percent.")
    pending: int


class ReportDomainLatency(_Out):
    domain: str | None
    sent: int = Field(description="Recipients with a final status.")
    delivered_percent: float | None
    p50_seconds: float | None
    p95_seconds: float | None


class ReportFailureReason(_Out):
    failure_reason: BoundedText
    final_delivery_status: str | None
    smtp_status_code: str | None
    enhanced_smtp_status_code: str | None
    explanation: str = Field(description="What the status code means (the code catalog).")
    failure_category: str | None
    remedy: str | None
    count: int


class ReportDomainCount(_Out):
    domain: str | None
    count: int


class ReportHardBounces(_Out):
    count: int = Field(description="Hard bounces of the day's sends (addresses to remove from lists).")
    previous_day: int | None
    top_domains: list[ReportDomainCount]


class ReportPending(_Out):
    still_pending: int = Field(description="Recipients without a final status whose status window is still open.")
    still_pending_days: list[date] = Field(description="Days that contribute to `stillPending`.")
    expired: int = Field(
        description="Recipients of the last 14 days without a final status whose status window has closed "
        "(as of each day's latest summary)."
    )
    expired_days: list[date] = Field(description="Days that contribute to `expired`.")
    status_window_closes: UtcDateTime = Field(description="When the report day's status window closes.")


class ReportCompleteness(_Out):
    summary_computed_at: UtcDateTime | None = Field(description="When the report day's summary was computed.")
    days_summarised: int = Field(description="Days of the 14-day history that have a summary.")
    missing_days: list[date]
    day_final: bool = Field(description="True when the day's summary was computed after its status window closed.")
    log_queries: int = Field(description="Log queries run to build the report (failure reasons): 0 or 1.")
    failure_reasons_source: Literal["log", "unavailable"]
    warnings: list[str] = Field(default_factory=list)


class ReportSenderHealth(_Out):
    """One sender domain's health verdict on the day (GET /api/senders/health's rules, from the day's summaries)."""

    sender_domain: str | None
    recipients: int = Field(description="Recipients with a final status.")
    failure_rate: float | None
    hard_bounce_rate: float | None
    spam_rate: float | None
    previous_day_hard_bounce_rate: float | None = None
    verdict: Literal["ok", "watch", "atRisk"]
    reasons: list[str] = Field(default_factory=list)


class DailyReport(_Out):
    """The daily delivery report of one UTC day, built from the persisted summaries (plus one log query)."""

    date: date
    generated_at: UtcDateTime
    metrics: list[ReportMetric]
    history: list[ReportDay]
    domain_latency: list[ReportDomainLatency]
    failure_reasons: list[ReportFailureReason]
    hard_bounces: ReportHardBounces
    pending: ReportPending
    completeness: ReportCompleteness
    sender_health: list[ReportSenderHealth] = Field(
        default_factory=list, description="Each sender domain's health verdict on the day, worst first."
    )


# --------------------------------------------------------------------------- push subscriptions (issue 9)

#: Longest callback URL accepted (Power Automate's callback URLs, signature included, are about 400 characters).
MAX_CALLBACK_URL_CHARS = 2048
SUBSCRIPTION_ID_PATTERN = r"^[0-9a-f]{32}$"
CALLBACK_URL_DESCRIPTION = (
    "Where outcomes are POSTed: an https URL (http only to a loopback host when the service runs locally)."
)


class SubscriptionFilter(_Params):
    """Which recipients' outcomes to push: by sender and final status (both optional)."""

    sender: Sender | None = Field(None, description=SENDER_DESCRIPTION)
    statuses: list[FinalStatus] | None = Field(
        None, min_length=1, max_length=6, description="Final statuses to push; all of them when left out."
    )


#: Recipients one email may have (To, Cc and Bcc together): ACS's limit per send request.
MAX_MESSAGE_RECIPIENTS = 50
REGISTERED_RECIPIENTS_DESCRIPTION = (
    "The message's recipients (To, Cc and Bcc), as sent: the trace lists them waiting from the first second and "
    f"is final as soon as each has a final status. At most {MAX_MESSAGE_RECIPIENTS}; an address twice (in any "
    "case) counts once."
)


def _distinct_addresses(addresses: list[str] | None) -> list[str] | None:
    if addresses is None:
        return None
    seen: dict[str, str] = {}
    for address in addresses:
        seen.setdefault(address.lower(), address)
    return list(seen.values())


class RegisterMessageBody(_Params):
    """What the app knows of a message it sent: its recipients, or how many there are."""

    recipients: list[Address] | None = Field(
        None, min_length=1, max_length=MAX_MESSAGE_RECIPIENTS, description=REGISTERED_RECIPIENTS_DESCRIPTION
    )
    expected_recipients: int | None = Field(
        None,
        ge=1,
        le=MAX_MESSAGE_RECIPIENTS,
        description="How many distinct recipients the message was sent to, when their addresses are not given.",
    )

    @model_validator(mode="after")
    def _one_count(self) -> RegisterMessageBody:
        distinct = _distinct_addresses(self.recipients)
        if distinct is None and self.expected_recipients is None:
            raise ValueError("give recipients or expectedRecipients")
        if distinct is not None and self.expected_recipients not in (None, len(distinct)):
            raise ValueError("expectedRecipients differs from the number of distinct recipients")
        return self

    def distinct_recipients(self) -> list[str]:
        return _distinct_addresses(self.recipients) or []

    def count(self) -> int:
        return len(self.distinct_recipients()) or int(self.expected_recipients or 0)


class RegisterParams(_Params):
    message_id: MessageId = Field(description=MESSAGE_ID_DESCRIPTION)


class MessageRegistration(_Out):
    message_id: str
    expected_recipients: int = Field(description="The recipients the trace waits for.")
    recipients: list[str] | None = Field(None, description="Their addresses, when they were given.")
    registered_at: UtcDateTime = Field(description="When the message was first registered.")


class CreateSubscriptionBody(_Params):
    """A push subscription: one message (messageId) or every recipient outcome matching a filter."""

    callback_url: str = Field(min_length=1, max_length=MAX_CALLBACK_URL_CHARS, description=CALLBACK_URL_DESCRIPTION)
    message_id: MessageId | None = Field(
        None, description="Push this message's trace once it is final. Give messageId or filter, not both."
    )
    filter: SubscriptionFilter | None = Field(
        None, description="Push each recipient outcome that matches. Give messageId or filter, not both."
    )
    recipients: list[Address] | None = Field(
        None,
        min_length=1,
        max_length=MAX_MESSAGE_RECIPIENTS,
        description="With messageId: registers the message's recipients too (as PUT /api/messages/{messageId}), so "
        "the push comes as soon as each has a final status.",
    )


class MessageSubscriptionBody(_Params):
    """The Power Automate trigger's subscription: the flow's callback URL and the message to wait for."""

    callback_url: str = Field(
        max_length=MAX_CALLBACK_URL_CHARS,
        description="The flow's callback URL (set by Power Automate).",
        json_schema_extra={"x-ms-notification-url": True, "x-ms-visibility": "internal"},
    )
    message_id: MessageId = Field(description=MESSAGE_ID_DESCRIPTION)
    recipients: list[Address] | None = Field(
        None, min_length=1, max_length=MAX_MESSAGE_RECIPIENTS, description=REGISTERED_RECIPIENTS_DESCRIPTION
    )


class SubscriptionParams(_Params):
    id: str = Field(pattern=SUBSCRIPTION_ID_PATTERN, description="The subscription id the create answer gave.")


class Subscription(_Out):
    id: str
    kind: Literal["message", "filter"]
    message_id: str | None = None
    sender: str | None = Field(None, description="The filter's sender, when it has one.")
    statuses: list[str] | None = Field(None, description="The filter's final statuses, when it has them.")
    secret: str | None = Field(
        None,
        description="The signing secret (whsec_ and base64 of 32 bytes), shown only when the subscription is "
        "created: verify each push's webhook-signature with any Standard Webhooks library (keyed with the bytes "
        "after whsec_), or its X-Signature (sha256= hex HMAC-SHA256 of the body, keyed with this whole string).",
    )
    created_at: UtcDateTime
    expires_at: UtcDateTime


class RecipientOutcome(_Out):
    """What a filter subscription is sent: one recipient's final status."""

    message_id: str
    recipient_id: str
    final_delivery_status: str
    final_status_time: UtcDateTime
    bounce_type: str | None = None
    bounce_type_source: str | None = None
    smtp_status_code: str | None = None
    enhanced_smtp_status_code: str | None = None
    failure_reason: BoundedText = None
    failure_message: BoundedText = None
    recipient_mail_server_host_name: str | None = None
    internet_message_id: str | None = None
    sender: str | None = None
    source: str | None = Field(None, description="Where the status came from: events, logs or both.")
