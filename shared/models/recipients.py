"""One address's history (with the hard bounce behind a suppression) and the bounce list."""

from __future__ import annotations

from pydantic import (
    Field,
)

from shared.models.common import BoundedText, UtcDateTime, _Out


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
