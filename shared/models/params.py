"""The query and path parameters of each route: send windows, scopes and their defaults."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    Field,
    field_validator,
    model_validator,
)

from shared.errors import InvalidInput, ParameterError
from shared.models.common import (
    DEFAULT_TOP,
    MAX_LOOKBACK_DAYS,
    MAX_TOP,
    MAX_WINDOW_DAYS,
    STATS_KINDS,
    Bin,
    StatsKind,
    SummaryDimension,
    _Params,
)
from shared.models.validators import (
    MESSAGE_ID_DESCRIPTION,
    RECIPIENT_DOMAIN_DESCRIPTION,
    RESOURCE_ID_DESCRIPTION,
    SENDER_DESCRIPTION,
    SENDER_DOMAIN_DESCRIPTION,
    TOP_DESCRIPTION,
    Address,
    Domain,
    InternetMessageId,
    MessageId,
    ResourceId,
    Sender,
    StatusList,
)

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
