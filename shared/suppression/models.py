"""The parameters and answers of the suppression routes (sendability, removal): the one definition of their fields."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from shared.models import (
    Address,
    BoundedText,
    TimeWindowParams,
    UtcDateTime,
    _no_controls,
    _Out,
    _Params,
)


def _requester(value: str) -> str:
    value = _no_controls(value.strip(), "requestedBy")
    if not value:
        raise ValueError("must say who asks (a name, an email or a ticket number)")
    return value


Requester = Annotated[str, AfterValidator(_requester)]


class SendabilityParams(TimeWindowParams):
    default_span: ClassVar[timedelta] = timedelta(days=90)

    address: Address = Field(description="The recipient address (matched in any case).")
    from_: datetime | None = Field(
        None, alias="from", description="Start of the history window (ISO 8601, UTC); default 90 days before `to`."
    )
    to: datetime | None = Field(None, description="End of the history window (exclusive); default now.")


class RemoveSuppressionParams(_Params):
    address: Address = Field(description="The address to remove from our suppression list (matched in any case).")
    requested_by: Requester = Field(
        max_length=200, description="Who asks for the removal (a name, an email or a ticket number); recorded."
    )


class SuppressionEntry(_Out):
    """One entry of the address in our customer-managed suppression list."""

    address_id: str = Field(description="The entry's addressId in the list.")
    ours: bool = Field(description="Added by this service (its addressId is the address's hash); else by someone else.")
    since: UtcDateTime | None = Field(None, description="When the entry was created (else last changed).")
    notes: BoundedText = None


class SuppressionListStatus(_Out):
    configured: bool = Field(description="Whether SUPPRESSION_LIST_ID names a list.")
    listed: bool | None = Field(None, description="Whether the address is in the list; null when unknown.")
    entries: list[SuppressionEntry] = Field(default_factory=list)
    complete: bool | None = Field(
        None, description="False when the list was too long to read every page for entries added by others."
    )
    removed_at: UtcDateTime | None = Field(None, description="When a removal was last asked for through this API.")
    error: str | None = Field(None, description="Why the list could not be read.")


class HardBounce(_Out):
    message_id: str
    time: UtcDateTime = Field(description="When the hard bounce was logged.")
    smtp_status_code: str | None = None
    enhanced_smtp_status_code: str | None = None
    enhanced_smtp_status_code_details: str | None = None
    failure_reason: BoundedText = None


class ManagedSuppression(_Out):
    """ACS's own (platform-wide) suppression, estimated: it has no API (docs/suppression.md)."""

    likely_active: bool = Field(description="The estimated lease has not ended yet.")
    since: UtcDateTime = Field(description="The hard bounce that started the lease.")
    until: UtcDateTime = Field(description="When the lease most likely ends (24 h, doubled by each send during it).")
    lease_hours: float = Field(description="The current lease's length.")
    renewals: int = Field(description="Sends during the lease, each doubling it (up to 14 days).")


class DomainResults(_Out):
    """The recipient domain's final statuses among the window's sends."""

    recipient_domain: str
    total: int
    delivered: int
    bounced: int
    failed: int
    suppressed: int
    quarantined: int
    filtered_spam: int
    hard_bounces: int
    delivered_rate: float | None = Field(None, description="delivered / total; null without results.")


ReasonKind = Literal[
    "customerSuppressionList", "managedSuppression", "recentlySuppressed", "earlierHardBounce", "recipientDomain"
]


class SendabilityReason(_Out):
    kind: ReasonKind
    blocking: bool = Field(description="A reason the next send to the address would most likely be suppressed.")
    detail: str
    since: UtcDateTime | None = None
    until: UtcDateTime | None = None


class Sendability(_Out):
    sendable: bool = Field(description="No blocking reason: a send now would most likely be attempted.")
    checked_at: UtcDateTime
    window_from: UtcDateTime = Field(description="Start of the history looked at.")
    window_to: UtcDateTime
    reasons: list[SendabilityReason] = Field(description="Blocking reasons first.")
    suppression_list: SuppressionListStatus
    last_hard_bounce: HardBounce | None = Field(
        None, description="The newest hard bounce of the address in the window."
    )
    managed_suppression: ManagedSuppression | None = Field(
        None, description="ACS's managed suppression estimated from the history; null when no hard bounce is in it."
    )
    recipient_domain: DomainResults | None = None
    latest_status: str | None = Field(None, description="Final (else latest) status of the newest message.")
    messages: int = Field(description="Messages to the address in the window.")
    partial: bool | None = None
    warning: str | None = None


class SuppressionRemoval(_Out):
    removed: list[SuppressionEntry] = Field(description="The entries removed from our list.")
    requested_by: str
    requested_at: UtcDateTime
    complete: bool = Field(description="False when the list was too long to search every page for other entries.")
    note: str = Field(description="What the removal does not do.")
