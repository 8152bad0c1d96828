"""A message's trace and the search rows: send, timeline, per-recipient final status."""

from __future__ import annotations

from typing import Any

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from shared.models.common import (
    BOUNCE_TYPE_OF_LABEL,
    MAX_CLICKED_URLS,
    MAX_TRACE_EVENTS,
    BounceType,
    BounceTypeName,
    BounceTypeSource,
    BoundedText,
    DeliveryStatusText,
    TraceOutcome,
    TraceSource,
    TraceState,
    UtcDateTime,
    _Out,
    parse_flag,
)
from shared.providers import provider_of


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
