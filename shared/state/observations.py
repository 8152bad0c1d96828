"""What the delivery state is told: one observation type, whatever said it, and the one mapping from each source.

The real-time path reads top to bottom (``docs/state.md``)::

    Event Grid event   -> observation_of(report)          (shared.state.events parsed it)
    follower log row   -> observation_of_row(row)         (shared.state.follower)
    trace's log rows   -> observation_of_trace_row(row)   (the trace's write-back, shared.tracing)
    the app's register -> RegistrationObservation(...)    (PUT /api/messages/{id}, shared.tracing)
      -> journal (shared.state.journal: the same fields as JSON, the write that acknowledges)
        -> fold (shared.state.folds, shared.state.ingest) -> partition (shared.state.partition: the merges)
          -> entities (shared.state.codec: the columns, declared on the fields) -> push (shared.push)

An observation is one of four frozen dataclasses (:data:`Observation`): a status (of a recipient or of the whole
message, from events or logs), a send row (logs), an engagement report (events), a registration (the app). Each
is built in exactly one place per source, below (the registration: from the request, by
:func:`shared.tracing.register_message`). Times are bounded once,
where an observation is merged (:func:`shared.state.rules.time_fault`); nothing else is decided here. The
journal stores an observation as its fields (:func:`shared.state.journal.encode`); a send and a registration
are also kept whole in the message entity, so their fields name their Table columns too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from shared.state.codec import Column
from shared.state.events import DeliveryReport, Report

Source = Literal["events", "logs"]


@dataclass(frozen=True)
class StatusObservation:
    """A status of one recipient (``recipient`` None: of the whole message) from events or logs."""

    message_id: str
    recipient: str | None
    status: str
    time: datetime
    source: Source
    sender: str | None = None
    smtp_status_code: str | None = None
    enhanced_smtp_status_code: str | None = None
    failure_reason: str | None = None
    failure_message: str | None = None
    is_hard_bounce: str | None = None
    mail_server: str | None = None
    internet_message_id: str | None = None
    status_message: str | None = None
    resource_id: str | None = None


@dataclass(frozen=True)
class SendObservation:
    """The send row of a message (logs only: events carry no recipient count)."""

    message_id: str
    send_time: Annotated[datetime, Column("SendTime")]
    message_size: Annotated[float | None, Column("MessageSize")] = None
    attachments_count: Annotated[int | None, Column("AttachmentsCount")] = None
    to_recipients_count: Annotated[int | None, Column("ToRecipientsCount")] = None
    cc_recipients_count: Annotated[int | None, Column("CcRecipientsCount")] = None
    bcc_recipients_count: Annotated[int | None, Column("BccRecipientsCount")] = None
    unique_recipients_count: Annotated[int | None, Column("UniqueRecipientsCount")] = None
    resource_id: Annotated[str | None, Column("SendResourceId")] = None


@dataclass(frozen=True)
class EngagementObservation:
    message_id: str
    recipient: str
    engagement_type: str
    time: datetime
    context: str | None = None
    user_agent: str | None = None
    sender: str | None = None
    resource_id: str | None = None

    def digest(self) -> str:
        text = "\x1f".join([self.engagement_type, self.time.isoformat(), self.context or "", self.user_agent or ""])
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


@dataclass(frozen=True)
class RegistrationObservation:
    """The app's word on a sent message: its recipients (by address) or how many there are."""

    message_id: str
    time: Annotated[datetime, Column("RegisteredAt")]
    expected_recipients: Annotated[int, Column("RegisteredRecipients")]
    recipients: Annotated[tuple[str, ...], Column("RegisteredAddresses", form="json")] = ()

    def __post_init__(self) -> None:
        # Decoded from JSON (the journal) the addresses come as a list.
        object.__setattr__(self, "recipients", tuple(self.recipients))

    def order(self) -> tuple[Any, ...]:
        return (self.time, self.expected_recipients, tuple(sorted(a.lower() for a in self.recipients)))

    def same_as(self, other: RegistrationObservation) -> bool:
        """The same registration (whenever made): the same count and the same addresses in any case and order."""
        return self.order()[1:] == other.order()[1:]


Observation = StatusObservation | SendObservation | EngagementObservation | RegistrationObservation


def observation_time(observation: Observation) -> datetime:
    return observation.send_time if isinstance(observation, SendObservation) else observation.time


def group_by_message(observations: Iterable[Observation]) -> dict[str, list[Observation]]:
    groups: dict[str, list[Observation]] = {}
    for observation in observations:
        groups.setdefault(observation.message_id, []).append(observation)
    return groups


# --------------------------------------------------------------------------- one mapping per source


def observation_of(report: Report) -> Observation:
    """An Event Grid report (parsed by :func:`shared.state.events.parse_events`) -> its observation."""
    if isinstance(report, DeliveryReport):
        return StatusObservation(
            message_id=report.message_id,
            recipient=report.recipient,
            status=report.status,
            time=report.time,
            source="events",
            sender=report.sender,
            mail_server=report.mail_server,
            internet_message_id=report.internet_message_id,
            status_message=report.status_message,
            resource_id=report.resource_id,
        )
    return EngagementObservation(
        message_id=report.message_id,
        recipient=report.recipient,
        engagement_type=report.engagement_type,
        time=report.time,
        context=report.context,
        user_agent=report.user_agent,
        sender=report.sender,
        resource_id=report.resource_id,
    )


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def observation_of_row(row: Mapping[str, Any]) -> Observation | None:
    """A follower row (:func:`shared.kql.follower.build_follow_query`) -> its observation; None if it says nothing."""
    message_id = _text(row.get("CorrelationId"))
    time_generated = row.get("TimeGenerated")
    if message_id is None or not isinstance(time_generated, datetime):
        return None
    if row.get("RowKind") == "send":
        size = row.get("Size")
        return SendObservation(
            message_id=message_id,
            send_time=time_generated,
            message_size=None if size is None else float(size),
            attachments_count=_int(row.get("AttachmentsCount")),
            to_recipients_count=_int(row.get("ToRecipientsCount")),
            cc_recipients_count=_int(row.get("CcRecipientsCount")),
            bcc_recipients_count=_int(row.get("BccRecipientsCount")),
            unique_recipients_count=_int(row.get("UniqueRecipientsCount")),
            resource_id=_text(row.get("_ResourceId")),
        )
    status = _text(row.get("DeliveryStatus"))
    if status is None:
        return None
    username, domain = _text(row.get("SenderUsername")), _text(row.get("SenderDomain"))
    sender = f"{username}@{domain}" if username and domain else username
    return StatusObservation(
        message_id=message_id,
        recipient=_text(row.get("RecipientId")),
        status=status,
        time=time_generated,
        source="logs",
        sender=sender,
        smtp_status_code=_text(row.get("SmtpStatusCode")),
        enhanced_smtp_status_code=_text(row.get("EnhancedSmtpStatusCode")),
        failure_reason=_text(row.get("FailureReason")),
        failure_message=_text(row.get("FailureMessage")),
        is_hard_bounce=_text(row.get("IsHardBounce")),
        mail_server=_text(row.get("RecipientMailServerHostName")),
        internet_message_id=_text(row.get("InternetMessageId")),
        resource_id=_text(row.get("_ResourceId")),
    )


def observation_of_trace_row(record: Mapping[str, Any]) -> Observation | None:
    """A log trace row of kind send or event (:func:`shared.kql.builder.build_trace_query`) -> its observation:
    the follower's row in other column names (the send row is projected as ``SendTime``, ``MessageId``, ...)."""
    if record.get("RowKind") != "send":
        return observation_of_row(record)
    return observation_of_row(
        {
            **record,
            "CorrelationId": record.get("MessageId"),
            "TimeGenerated": record.get("SendTime"),
            "Size": record.get("MessageSize"),
        }
    )
