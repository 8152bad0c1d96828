"""One message's delivery state as entities, and the merges that make every write idempotent and monotone.

A partition (``PartitionKey`` = message id) holds one message entity (``RowKey`` ``message``) and one entity
per recipient (``RowKey`` ``r:`` + the SHA-256 of the lowercased address): at most recipients + 1 entities.
The row key is a hash only so that it has a fixed length and no character Table Storage forbids; the
address itself is a property (needed to answer by address) and, like the row key, never logged.

The observations merged here are defined in :mod:`shared.state.observations`. The entities' columns are
declared on the fields of :class:`MessageState`, :class:`RecipientState` and the records they hold
(``Annotated[..., Column(...)]``) and written and read by :mod:`shared.state.codec`; the columns written for
readers of the table only (``FinalStatus``, ``FinalStatusTime``, ``BounceType``, ``BounceTypeSource``,
``Source``, ``Views``, ``Clicks``) by the methods marked :func:`~shared.state.codec.derived`.

Every field is a join of what has been observed, so any arrival order and any duplicates give the same
entities (``tests/state/test_state_store.py`` checks it with hypothesis):

* final status per source (events, logs): the latest by time among Delivered, Failed, Bounced, Suppressed,
  Quarantined, FilteredSpam (``shared.schemas.FINAL_STATUSES``, the correlation query's rule); a tie in
  time is broken by the whole record, so an older report arriving later never replaces a newer one;
* the answer's final status is the later of the two sources'; its ``Source`` is every source that reported
  that status (``events``, ``logs`` or ``both``);
* other statuses (``Expanded``, ``OutForDelivery``, values not yet documented) are kept as the latest
  non-final status and never count as final;
* a registration (the app's ``PUT /api/messages/{id}``: the recipients or their number) is kept on the message
  entity, the earliest if two disagree; its addresses are recipients waiting for a status until one comes;
* engagement: the set of distinct engagement reports (a 12-hex-digit digest each, the smallest
  :data:`MAX_ENGAGEMENT_KEYS` kept), counts derived from it, first/last time, clicked URLs (the smallest
  :data:`MAX_CLICKED_URLS` kept), so a duplicate counts once;
* send facts: the earliest send row (the trace query's ``arg_min``); sender, resource id: the smallest seen;
  first seen: the earliest write. A recipient's report writes only its recipient entity; the message
  entity holds what is said of the whole message (send row, message-level status, a trace's question).

An observation whose time is not within reason of its arrival (:func:`shared.state.rules.time_fault`) is never
merged: :meth:`Partition.apply` puts it in :attr:`Partition.set_aside` with its reason, and the store keeps it
apart (``shared.state.store``). What is final, resolved and bounced is decided by :mod:`shared.state.rules`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Annotated, Any, Final

from shared.models import MAX_CLICKED_URLS
from shared.schemas import FINAL_STATUSES, MESSAGE_TERMINAL_STATUSES
from shared.state import codec, rules
from shared.state.codec import Column, derived
from shared.state.observations import (
    EngagementObservation,
    Observation,
    RegistrationObservation,
    SendObservation,
    StatusObservation,
    observation_time,
)

MESSAGE_ROW_KEY: Final = "message"
RECIPIENT_PREFIX: Final = "r:"
MAX_ENGAGEMENT_KEYS: Final = 1_000

_BEFORE: Final = "dated before its message's send, beyond the clock-skew allowance"


def recipient_row_key(address: str) -> str:
    return RECIPIENT_PREFIX + hashlib.sha256(address.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class FinalRecord:
    """A recipient's final status as one source reported it: the fields of its :class:`StatusObservation` that
    say what became of it (stored under ``Event`` or ``Log``)."""

    status: Annotated[str, Column("Status")]
    time: Annotated[datetime, Column("Time")]
    smtp_status_code: Annotated[str | None, Column("SmtpStatusCode")] = None
    enhanced_smtp_status_code: Annotated[str | None, Column("EnhancedSmtpStatusCode")] = None
    failure_reason: Annotated[str | None, Column("FailureReason")] = None
    failure_message: Annotated[str | None, Column("FailureMessage")] = None
    is_hard_bounce: Annotated[str | None, Column("IsHardBounce")] = None
    mail_server: Annotated[str | None, Column("MailServer")] = None
    internet_message_id: Annotated[str | None, Column("InternetMessageId")] = None
    status_message: Annotated[str | None, Column("StatusMessage")] = None
    sender: Annotated[str | None, Column("Sender")] = None

    def order(self) -> tuple[Any, ...]:
        """Later time first; equal times ordered by the whole record, so the choice never depends on arrival."""
        rest = (getattr(self, name) for name in _RECORD_FIELDS[2:])
        return (self.time, self.status, *("" if value is None else str(value) for value in rest))

    @classmethod
    def of(cls, observation: StatusObservation) -> FinalRecord:
        return cls(**{name: getattr(observation, name) for name in _RECORD_FIELDS})


_RECORD_FIELDS: Final = tuple(item.name for item in fields(FinalRecord))


def _later(current: FinalRecord | None, incoming: FinalRecord) -> FinalRecord:
    return incoming if current is None or incoming.order() > current.order() else current


def _min_text(current: str | None, incoming: str | None) -> str | None:
    if incoming is None:
        return current
    return incoming if current is None or incoming < current else current


def _min_time(current: datetime | None, incoming: datetime | None) -> datetime | None:
    if incoming is None:
        return current
    return incoming if current is None or incoming < current else current


def _max_time(current: datetime | None, incoming: datetime | None) -> datetime | None:
    if incoming is None:
        return current
    return incoming if current is None or incoming > current else current


def bounce_of(record: FinalRecord) -> tuple[str, str]:
    """(bounce type, its source): the one bounce rule (:func:`shared.state.rules.bounce_type`)."""
    return rules.bounce_type(
        record.status, record.is_hard_bounce, record.smtp_status_code, record.enhanced_smtp_status_code
    )


# --------------------------------------------------------------------------- entities as state


@dataclass
class RecipientState:
    """One recipient of a message (entity ``r:`` + the address's hash; its columns in the field types)."""

    address: Annotated[str, Column("Recipient")]
    event_final: Annotated[FinalRecord | None, Column("Event")] = None
    log_final: Annotated[FinalRecord | None, Column("Log")] = None
    #: Latest non-final status: (time, status, source).
    latest: Annotated[
        tuple[datetime, str, str] | None, Column("LatestStatusTime", "LatestStatus", "LatestStatusSource")
    ] = None
    seen_events: Annotated[bool, Column("SeenEvents")] = False
    seen_logs: Annotated[bool, Column("SeenLogs")] = False
    engagement_keys: Annotated[tuple[str, ...], Column("EngagementKeys", form="words")] = ()
    first_engagement: Annotated[datetime | None, Column("FirstEngagement")] = None
    last_engagement: Annotated[datetime | None, Column("LastEngagement")] = None
    clicked_urls: Annotated[tuple[str, ...], Column("ClickedUrls", form="json")] = ()
    sender: Annotated[str | None, Column("Sender")] = None
    resource_id: Annotated[str | None, Column("ResourceId")] = None
    first_seen: Annotated[datetime | None, Column("FirstSeen")] = None
    etag: str | None = field(default=None, compare=False)

    @property
    def final(self) -> FinalRecord | None:
        """The later of the two sources' final records (equal: the events')."""
        event, log = self.event_final, self.log_final
        if event is None or log is None:
            return event or log
        return event if event.order() >= log.order() else log

    @property
    def final_source(self) -> str | None:
        final = self.final
        return None if final is None else self._reported(final)

    def _reported(self, final: FinalRecord) -> str:
        """Which sources reported *final*'s status: ``events``, ``logs`` or ``both``."""
        sources = [
            name
            for name, record in (("events", self.event_final), ("logs", self.log_final))
            if record is not None and record.status == final.status
        ]
        return "both" if len(sources) == 2 else sources[0]

    @property
    def source(self) -> str:
        """Where what we know of this recipient came from."""
        final = self.final
        return self._seen() if final is None else self._reported(final)

    def _seen(self) -> str:
        return "both" if self.seen_events and self.seen_logs else "events" if self.seen_events else "logs"

    @property
    def resolved(self) -> bool:
        """Has a final status (an expanded list never does: its members are recipients of their own)."""
        return self.final is not None

    @property
    def expanded(self) -> bool:
        """A distribution list: no final status, and its latest status is ``Expanded``."""
        return self.final is None and self.latest is not None and self.latest[1] == rules.EXPANDED

    def times(self, *, engagement: bool = True) -> list[datetime]:
        """Every time observed of this recipient (``engagement=False``: of its delivery statuses only)."""
        found = [record.time for record in (self.event_final, self.log_final) if record is not None]
        if self.latest is not None:
            found.append(self.latest[0])
        if engagement:
            found += [t for t in (self.first_engagement, self.last_engagement) if t is not None]
        return found

    def views(self) -> int:
        return sum(1 for key in self.engagement_keys if key.startswith("view:"))

    def clicks(self) -> int:
        return sum(1 for key in self.engagement_keys if key.startswith("click:"))

    # -- columns for readers of the table (and its filters): recomputed on every write, never read back ----------

    @derived("FinalStatus", "FinalStatusTime", "BounceType", "BounceTypeSource", "Source")
    def _final_columns(self) -> tuple[str | None, datetime | None, str | None, str | None, str]:
        """The final status, its time and bounce type (none until final), and :attr:`source` (``final`` once)."""
        final = self.final
        if final is None:
            return None, None, None, None, self._seen()
        return final.status, final.time, *bounce_of(final), self._reported(final)

    @derived("Views", "Clicks")
    def _engagement_columns(self) -> tuple[int, int] | None:
        return (self.views(), self.clicks()) if self.engagement_keys else None

    # -- merges -------------------------------------------------------------------------------

    def apply_status(self, observation: StatusObservation, *, merge: bool = True) -> None:
        """Merge a status (``merge=False``: only that it was seen; its status is set aside, see Partition)."""
        assert observation.recipient is not None
        self.address = min(self.address, observation.recipient)
        if observation.source == "events":
            self.seen_events = True
        else:
            self.seen_logs = True
        if not merge:
            return
        if observation.status in FINAL_STATUSES:
            record = FinalRecord.of(observation)
            if observation.source == "events":
                self.event_final = _later(self.event_final, record)
            else:
                self.log_final = _later(self.log_final, record)
        else:
            candidate = (observation.time, observation.status, observation.source)
            if self.latest is None or candidate > self.latest:
                self.latest = candidate

    def drop_before(self, bound: datetime) -> list[tuple[str, FinalRecord | tuple[datetime, str, str]]]:
        """Forget statuses dated before *bound* (the send less the clock-skew allowance); what was dropped, by
        source. A final record kept is the latest of its source, so a dropped one hid no believable one."""
        dropped: list[tuple[str, FinalRecord | tuple[datetime, str, str]]] = []
        if self.event_final is not None and self.event_final.time < bound:
            dropped.append(("events", self.event_final))
            self.event_final = None
        if self.log_final is not None and self.log_final.time < bound:
            dropped.append(("logs", self.log_final))
            self.log_final = None
        if self.latest is not None and self.latest[0] < bound:
            dropped.append((self.latest[2], self.latest))
            self.latest = None
        return dropped

    def apply_engagement(self, observation: EngagementObservation) -> None:
        self.address = min(self.address, observation.recipient)
        self.seen_events = True
        key = f"{observation.engagement_type}:{observation.digest()}"
        self.engagement_keys = tuple(sorted({*self.engagement_keys, key})[:MAX_ENGAGEMENT_KEYS])
        self.first_engagement = _min_time(self.first_engagement, observation.time)
        self.last_engagement = _max_time(self.last_engagement, observation.time)
        if observation.engagement_type == "click" and observation.context:
            self.clicked_urls = tuple(sorted({*self.clicked_urls, observation.context[:2048]})[:MAX_CLICKED_URLS])


@dataclass
class MessageState:
    """What is said of a message as a whole (entity ``message``; its columns in the field types)."""

    message_id: Annotated[str, Column("PartitionKey")]
    send: Annotated[SendObservation | None, Column()] = None
    sender: Annotated[str | None, Column("Sender")] = None
    resource_id: Annotated[str | None, Column("ResourceId")] = None
    #: Latest message-level status (no recipient): (time, status).
    message_status: Annotated[tuple[datetime, str] | None, Column("MessageStatusTime", "MessageStatus")] = None
    first_seen: Annotated[datetime | None, Column("FirstSeen")] = None
    #: When a trace first asked for this message while nothing was known (the notFound rule).
    first_asked: Annotated[datetime | None, Column("FirstAsked")] = None
    #: The app's registration of the send (``PUT /api/messages/{id}``).
    registration: Annotated[RegistrationObservation | None, Column()] = None
    etag: str | None = field(default=None, compare=False)

    @property
    def expected_recipients(self) -> int | None:
        """From the send row when there is one, else from the registration; None while neither is known."""
        if self.send is not None and self.send.unique_recipients_count is not None:
            return self.send.unique_recipients_count
        return None if self.registration is None else self.registration.expected_recipients

    @property
    def known(self) -> bool:
        """Whether anything but a trace's question is stored."""
        return self.send is not None or self.message_status is not None or self.first_seen is not None

    def apply_registration(self, observation: RegistrationObservation) -> None:
        if self.registration is None or observation.order() < self.registration.order():
            self.registration = observation

    def apply_send(self, observation: SendObservation) -> None:
        if self.send is None or _send_order(observation) < _send_order(self.send):
            self.send = observation
        self.resource_id = _min_text(self.resource_id, observation.resource_id)

    def apply_message_status(self, observation: StatusObservation) -> None:
        candidate = (observation.time, observation.status)
        if self.message_status is None or candidate > self.message_status:
            self.message_status = candidate


def _send_order(send: SendObservation) -> tuple[Any, ...]:
    """Earlier first; equal times ordered by the whole row (its fields after the message id and the time)."""
    values = (getattr(send, name) for name in _SEND_FACTS)
    return (send.send_time, *("" if value is None else str(value) for value in values))


_SEND_FACTS: Final = tuple(item.name for item in fields(SendObservation))[2:]


@dataclass
class Partition:
    """A message's state: the message entity and its recipients, keyed by row key."""

    message: MessageState
    recipients: dict[str, RecipientState] = field(default_factory=dict)
    #: Observations :meth:`apply` refused, with the reason (never stored here; the store keeps them apart).
    set_aside: list[tuple[Observation, str]] = field(default_factory=list, compare=False)

    @property
    def message_id(self) -> str:
        return self.message.message_id

    def apply(self, observation: Observation, *, seen_at: datetime | None = None) -> None:
        """Merge one observation (idempotent, commutative); ``seen_at``: when it arrived, against which its time
        is checked (:func:`shared.state.rules.time_fault`; no check without it)."""
        if observation.message_id != self.message_id:
            raise ValueError("an observation of another message")
        if seen_at is not None:
            fault = rules.time_fault(observation_time(observation), seen_at)
            if fault is not None:
                self.set_aside.append((observation, fault))
                return
        message = self.message
        if isinstance(observation, RegistrationObservation):
            message.first_seen = _min_time(message.first_seen, seen_at)
            message.apply_registration(observation)
            return
        if isinstance(observation, SendObservation) or observation.recipient is None:
            # The message entity holds what is said of the whole message; a recipient's report touches only
            # its recipient entity, so an event of a message not stored yet costs one write.
            message.first_seen = _min_time(message.first_seen, seen_at)
            if isinstance(observation, SendObservation):
                message.apply_send(observation)
                self._drop_before_send()
            else:
                message.sender = _min_text(message.sender, observation.sender)
                message.resource_id = _min_text(message.resource_id, observation.resource_id)
                if not self._before_send(observation):
                    message.apply_message_status(observation)
            return
        key = recipient_row_key(observation.recipient)
        recipient = self.recipients.get(key)
        if recipient is None:
            recipient = self.recipients[key] = RecipientState(address=observation.recipient)
        recipient.first_seen = _min_time(recipient.first_seen, seen_at)
        recipient.sender = _min_text(recipient.sender, observation.sender)
        recipient.resource_id = _min_text(recipient.resource_id, observation.resource_id)
        if isinstance(observation, StatusObservation):
            recipient.apply_status(observation, merge=not self._before_send(observation))
        else:
            recipient.apply_engagement(observation)

    def _send_bound(self) -> datetime | None:
        send = self.message.send
        return None if send is None else send.send_time - rules.CLOCK_SKEW_ALLOWANCE

    def _before_send(self, observation: StatusObservation) -> bool:
        """A status dated before its send (less the allowance) is set aside, as when the send comes after it
        (:meth:`_drop_before_send`): either order gives the same state."""
        bound = self._send_bound()
        if bound is None or observation.time >= bound:
            return False
        self.set_aside.append((observation, _BEFORE))
        return True

    def settle(self) -> None:
        """Set aside what is dated before the send (less the allowance) but was stored before the send was known
        to the write (a write that does not read the message entity cannot tell): readers never believe it, and
        the next write of the partition removes it."""
        if self.message.send is not None:
            self._drop_before_send()

    def _drop_before_send(self) -> None:
        bound = self._send_bound()
        assert bound is not None
        status = self.message.message_status
        if status is not None and status[0] < bound:
            self.message.message_status = None
            self.set_aside.append((StatusObservation(self.message_id, None, status[1], status[0], "events"), _BEFORE))
        for recipient in self.recipients.values():
            for source, dropped in recipient.drop_before(bound):
                if isinstance(dropped, FinalRecord):
                    values = {f.name: getattr(dropped, f.name) for f in fields(dropped)}
                    observation = StatusObservation(self.message_id, recipient.address, source=source, **values)  # type: ignore[arg-type]
                else:
                    observation = StatusObservation(self.message_id, recipient.address, dropped[1], dropped[0], source)  # type: ignore[arg-type]
                self.set_aside.append((observation, _BEFORE))

    # -- what the partition says -------------------------------------------------------------

    @property
    def sender(self) -> str | None:
        senders = [r.sender for r in self.recipients.values() if r.sender]
        return self.message.sender or (min(senders) if senders else None)

    @property
    def resource_id(self) -> str | None:
        ids = [r.resource_id for r in self.recipients.values() if r.resource_id]
        return self.message.resource_id or (min(ids) if ids else None)

    @property
    def first_seen(self) -> datetime | None:
        times = [t for t in (self.message.first_seen, *(r.first_seen for r in self.recipients.values())) if t]
        return min(times) if times else None

    @property
    def terminal(self) -> bool:
        """The message failed or was dropped as a whole."""
        status = self.message.message_status
        return status is not None and status[1] in MESSAGE_TERMINAL_STATUSES

    def resolved_count(self) -> int:
        return sum(1 for recipient in self.recipients.values() if recipient.resolved)

    def roster(self) -> dict[str, RecipientState]:
        """Every recipient known: those reported, and the registered ones no report has named yet."""
        known = dict(self.recipients)
        registration = self.message.registration
        for address in registration.recipients if registration is not None else ():
            known.setdefault(recipient_row_key(address), RecipientState(address=address))
        return known

    def final_at(self, now: datetime | None) -> bool:
        """Final by :func:`shared.state.rules.message_final` (``now`` None: without a clock, a list never is)."""
        roster = self.roster().values()
        return rules.message_final(
            terminal=self.terminal,
            expected=self.message.expected_recipients,
            finals=sum(1 for r in roster if r.resolved),
            waiting=sum(1 for r in roster if not r.resolved and not r.expanded),
            lists=sum(1 for r in roster if r.expanded),
            latest=max(self._times(engagement=False), default=None),
            now=now,
        )

    @property
    def final(self) -> bool:
        """Final as a write sees it (no clock: a message with an expanded list waits for a reader's clock)."""
        return self.final_at(None)

    def _times(self, *, engagement: bool = True) -> list[datetime]:
        times = [] if self.message.message_status is None else [self.message.message_status[0]]
        for recipient in self.recipients.values():
            times += recipient.times(engagement=engagement)
        return times

    def send_time_bound(self) -> datetime | None:
        """The send time, or when unknown the earliest time observed (the send came before it)."""
        send_time = None if self.message.send is None else self.message.send.send_time
        return rules.send_time_bound(send_time, self._times())


# --------------------------------------------------------------------------- entities (shared.state.codec)


def message_entity(message: MessageState) -> dict[str, Any]:
    return codec.encode(message, RowKey=MESSAGE_ROW_KEY, Kind="message")


def message_from_entity(entity: Mapping[str, Any]) -> MessageState:
    return codec.decode(MessageState, entity, etag=_etag(entity))


def recipient_entity(message_id: str, key: str, recipient: RecipientState) -> dict[str, Any]:
    return codec.encode(recipient, PartitionKey=message_id, RowKey=key, Kind="recipient")


def recipient_from_entity(entity: Mapping[str, Any]) -> RecipientState:
    return codec.decode(RecipientState, entity, etag=_etag(entity))


def _etag(entity: Mapping[str, Any]) -> str | None:
    metadata = getattr(entity, "metadata", None)
    return metadata.get("etag") if isinstance(metadata, Mapping) else None


def partition_from_entities(message_id: str, entities: Iterable[Mapping[str, Any]]) -> Partition:
    partition = Partition(MessageState(message_id))
    for entity in entities:
        key = str(entity["RowKey"])
        if key == MESSAGE_ROW_KEY:
            partition.message = message_from_entity(entity)
        elif key.startswith(RECIPIENT_PREFIX):
            partition.recipients[key] = recipient_from_entity(entity)
    partition.settle()
    return partition


def partition_entities(partition: Partition) -> dict[str, dict[str, Any]]:
    """Row key -> entity, for every entity of the partition."""
    entities = {MESSAGE_ROW_KEY: message_entity(partition.message)}
    for key, recipient in partition.recipients.items():
        entities[key] = recipient_entity(partition.message_id, key, recipient)
    return entities


def copy_partition(partition: Partition) -> Partition:
    recipients = {key: replace(r) for key, r in partition.recipients.items()}
    return Partition(replace(partition.message), recipients, list(partition.set_aside))
