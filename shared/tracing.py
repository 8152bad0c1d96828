"""Trace a message: the delivery state first, the log query only when the state cannot answer.

The use case behind ``GET /api/messages/{id}`` (and its poll link); it sits between the HTTP layer and
:mod:`shared.insights` / :mod:`shared.state`:

1. Read the message's partition of the delivery state (:class:`shared.state.store.StateStore`), with its
   observations still in the journal (events and log rows not folded into the partition yet).
2. **Final** there (:func:`shared.state.rules.message_final`: failed as a whole, or its expected recipients
   known, from the send row or the app's registration, and every one final), or **expired** there (its
   expected recipients known and the send older than ``STATUS_GRACE_HOURS``): answer from the state, with no
   log query (``source: "state"``).
3. Otherwise (unknown, pending, or expected recipients not known yet: events carry no recipient count) run
   the log trace (:meth:`shared.insights.Insights.trace`), write what it found back into the state as
   observations of source ``logs`` (so the next trace costs no query), and answer the logs merged with the
   state (``source: "logs"`` when the state held nothing of the message, ``"state"`` when the logs held
   nothing of it, else ``"both"``). A message known only from events, with no count anywhere, is never
   final: it is pending (202) until the count is known, and expired after the status grace.
4. Nothing anywhere: 404. ``Retry-After`` (:data:`NOT_FOUND_RETRY_AFTER` s) is sent only while the id could
   still be within ingestion delay of its send: for :data:`NOT_FOUND_RETRY_WINDOW` (30 minutes) from the
   first time anyone asked for it (recorded in the state, :meth:`StateStore.record_asked`); after that a
   plain 404. Without a reachable state store the first-asked time cannot be kept, so every 404 carries it.

The state store down (unreachable, misconfigured, frozen) never fails a trace: it falls back to the log query,
as before the state existed, and after a failed read the store is skipped for :data:`STATE_BACKOFF` seconds.
The read gets a part of the request's budget (:data:`STATE_READ_SHARE`, at most :data:`STATE_READ_SECONDS`):
the rest is kept for the log query. One message's state that cannot be read back is answered from the logs
too (the store stays in use).
``asOf`` is when the answer was read.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from shared import deadline
from shared.errors import Conflict, NotFound, ServiceError
from shared.insights import conclude_trace
from shared.logs.source import QueryResult
from shared.models import (
    BOUNCE_TYPE_OF_LABEL,
    RecipientEngagement,
    StatusEvent,
    TraceParams,
    TraceRecipient,
    TraceResult,
    TraceSendInfo,
)
from shared.schemas import FINAL_STATUSES
from shared.state.observations import RegistrationObservation, observation_of_trace_row
from shared.state.partition import FinalRecord, Partition, RecipientState, bounce_of
from shared.state.rules import EXPANDED
from shared.state.store import StateStore, UnreadableState

if TYPE_CHECKING:
    from shared.models import MessageRegistration, RegisterMessageBody
    from shared.services import Services

logger = logging.getLogger(__name__)

NOT_FOUND_RETRY_AFTER: Final = 60
#: How long after the first question a never-seen id still gets ``Retry-After`` (ingestion delay).
NOT_FOUND_RETRY_WINDOW: Final = timedelta(minutes=30)


def trace_message(services: Services, params: TraceParams) -> TraceResult:
    """The trace of one message (see the module docstring); raises NotFound for an id never seen."""
    now = services.clock()
    grace = services.status_grace
    store, partition = _store(services), None
    if store is not None:
        store, partition = _read(store, params.message_id)
    known = partition is not None and _known(partition)
    if partition is not None and known:
        answer = trace_from_state(partition, now=now, status_grace=grace)
        counted = partition.message.expected_recipients is not None
        if answer.state == "final" or (answer.state == "expired" and counted):
            return answer
    result, rows = services.insights.trace_with_rows(params)
    if result.state == "notFound" and not known:
        raise _not_found(params, _retry_after(store, params.message_id, now))
    if store is None:
        return result
    merged = _write_back(store, params.message_id, rows)
    if merged is not None and merged.final and not (partition is not None and partition.final):
        services.push.message_final(params.message_id)  # no fold sees this write: its subscribers are told here
    if partition is None or not known:
        return result
    partition = merged or partition
    if result.state == "notFound":
        # The logs hold nothing (yet) of a message the events told of: the state is the whole answer (pending
        # until its expected recipients are known).
        return trace_from_state(partition, now=now, status_grace=grace)
    return merge_traces(result, partition, now=now, status_grace=grace)


#: Reasons already logged: a state store that is not configured would otherwise log on every trace.
_LOGGED: set[str] = set()


def _store(services: Services) -> StateStore | None:
    try:
        return services.state
    except ServiceError as exc:
        if exc.detail not in _LOGGED:
            _LOGGED.add(exc.detail)
            logger.warning("trace: delivery state unavailable, using the log query: %s", exc.detail)
        return None


#: After a failed read, traces skip the state store this long: an unreachable endpoint costs the SDK's
#: retries (seconds) once, not on every trace, and the request budget goes to the log query.
STATE_BACKOFF: Final = 30.0
_SKIP_UNTIL: dict[int, float] = {}
#: The state read's part of what is left of the request's budget (the rest is the log query's), and its most:
#: a healthy read takes tens of milliseconds, so seconds without an answer mean the store is stuck.
STATE_READ_SHARE: Final = 0.4
STATE_READ_SECONDS: Final = 4.0


def _read(store: StateStore, message_id: str) -> tuple[StateStore | None, Partition | None]:
    """The partition (None if nothing stored); the store None when it failed or recently failed."""
    if _SKIP_UNTIL.get(id(store), 0.0) > time.monotonic():
        return None, None
    left = deadline.remaining()
    try:
        with deadline.within(STATE_READ_SECONDS if left is None else min(STATE_READ_SECONDS, left * STATE_READ_SHARE)):
            return store, store.read(message_id)
    except UnreadableState as exc:  # this message's state only: answered from the logs, the store stays in use
        logger.warning("trace: a message's delivery state is unreadable, using the log query: %s", exc.detail)
        return store, None
    except ServiceError as exc:
        _SKIP_UNTIL[id(store)] = time.monotonic() + STATE_BACKOFF
        logger.warning("trace: delivery state unreadable, using the log query: %s", exc.detail)
        return None, None


def _known(partition: Partition) -> bool:
    """Whether the state holds anything but a trace's question."""
    return partition.message.known or bool(partition.recipients)


def _write_back(store: StateStore, message_id: str, rows: QueryResult) -> Partition | None:
    """The log trace's send and event rows into the state (source ``logs``); the merged partition."""
    observations = [o for o in map(observation_of_trace_row, rows.records()) if o is not None]
    observations = [o for o in observations if o.message_id == message_id]
    if not observations:
        return None
    try:
        return store.overlay(store.apply(message_id, observations).after, message_id)
    except ServiceError as exc:
        logger.warning("trace: could not write the log trace into the delivery state: %s", exc.detail)
        return None


def _retry_after(store: StateStore | None, message_id: str, now: datetime) -> int | None:
    if store is None:
        return NOT_FOUND_RETRY_AFTER
    try:
        first_asked = store.record_asked(message_id)
    except ServiceError as exc:
        logger.warning("trace: could not record the question in the delivery state: %s", exc.detail)
        return NOT_FOUND_RETRY_AFTER
    return NOT_FOUND_RETRY_AFTER if now - first_asked < NOT_FOUND_RETRY_WINDOW else None


def _not_found(params: TraceParams, retry_after: int | None) -> NotFound:
    if retry_after is not None:
        detail = (
            f"No logs or delivery events for message {params.message_id} in the last {params.lookback_days} days. "
            "They arrive minutes after a send; retry later."
        )
    else:
        detail = (
            f"No logs or delivery events for message {params.message_id} in the last {params.lookback_days} days, "
            f"and none arrived in the {int(NOT_FOUND_RETRY_WINDOW.total_seconds() // 60)} minutes since it was "
            "first asked for: check the message id."
        )
    return NotFound(
        detail,
        title="Message not found",
        retry_after=retry_after,
        fields={"messageId": params.message_id, "state": "notFound"},
    )


# --------------------------------------------------------------------------- state -> answer


def trace_from_state(partition: Partition, *, now: datetime, status_grace: timedelta) -> TraceResult:
    """The trace contract from the delivery state alone (``source: "state"``): the registered recipients no
    report has named yet are listed, waiting."""
    message = partition.message
    send = None
    if message.send is not None:
        s = message.send
        send = TraceSendInfo(
            send_time=s.send_time,
            message_size_mb=s.message_size,
            attachments_count=s.attachments_count,
            to_recipients_count=s.to_recipients_count,
            cc_recipients_count=s.cc_recipients_count,
            bcc_recipients_count=s.bcc_recipients_count,
            unique_recipients_count=s.unique_recipients_count,
            resource_id=s.resource_id,
            sender=partition.sender,
        )
    message_events = []
    if message.message_status is not None:
        message_events.append(StatusEvent(time=message.message_status[0], delivery_status=message.message_status[1]))
    send_time = message.send.send_time if message.send is not None else None
    recipients = [_recipient(r, send_time) for r in partition.roster().values()]
    recipients.sort(key=lambda r: r.recipient_id.lower())
    trace = TraceResult(
        message_id=partition.message_id,
        state="pending",
        source="state",
        as_of=now,
        send=send,
        message_events=message_events,
        recipients=recipients,
    )
    return conclude_trace(trace, now=now, status_grace=status_grace, expected=message.expected_recipients)


def _recipient(recipient: RecipientState, send_time: datetime | None) -> TraceRecipient:
    address = recipient.address
    domain = address.rpartition("@")[2].lower() or None
    events = [_event(record) for record in (recipient.event_final, recipient.log_final) if record is not None]
    if recipient.latest is not None:
        events.append(StatusEvent(time=recipient.latest[0], delivery_status=recipient.latest[1]))
    unique = {(e.time, e.delivery_status): e for e in events}
    events = [unique[key] for key in sorted(unique)]
    engagement = _engagement(recipient)
    final = recipient.final
    if final is None:
        return TraceRecipient(recipient_id=address, recipient_domain=domain, events=events, engagement=engagement)
    label, label_source = bounce_of(final)
    duration = None if send_time is None else int((final.time - send_time).total_seconds() * 1000)
    username, _, sender_domain = (final.sender or recipient.sender or "").partition("@")
    return TraceRecipient(
        recipient_id=address,
        recipient_domain=domain,
        final_delivery_status=final.status,
        bounce_type=BOUNCE_TYPE_OF_LABEL.get(label, "unknown"),
        bounce_type_label=label,  # type: ignore[arg-type]
        bounce_type_source=label_source,  # type: ignore[arg-type]
        final_status_time=final.time,
        duration_milliseconds=duration,
        smtp_status_code=final.smtp_status_code,
        enhanced_smtp_status_code=final.enhanced_smtp_status_code,
        failure_reason=final.failure_reason,
        failure_message=final.failure_message,
        recipient_mail_server_host_name=final.mail_server,
        internet_message_id=final.internet_message_id,
        sender_username=username or None,
        sender_domain=sender_domain or None,
        clock_skew=duration is not None and duration < 0,
        events=events,
        engagement=engagement,
    )


def _engagement(recipient: RecipientState) -> RecipientEngagement | None:
    """What the engagement events said of one recipient (the state keeps counts, times and clicked URLs)."""
    views, clicks = recipient.views(), recipient.clicks()
    if not (views or clicks):
        return None
    return RecipientEngagement(
        views=views,
        clicks=clicks,
        first_time=recipient.first_engagement,
        last_time=recipient.last_engagement,
        clicked_urls=list(recipient.clicked_urls),
    )


def _event(record: FinalRecord) -> StatusEvent:
    return StatusEvent(
        time=record.time,
        delivery_status=record.status,
        smtp_status_code=record.smtp_status_code,
        enhanced_smtp_status_code=record.enhanced_smtp_status_code,
        failure_reason=record.failure_reason,
        failure_message=record.failure_message,
        is_hard_bounce=record.is_hard_bounce,  # type: ignore[arg-type]  # parsed by the model
        recipient_mail_server_host_name=record.mail_server,
    )


def merge_traces(logs: TraceResult, partition: Partition, *, now: datetime, status_grace: timedelta) -> TraceResult:
    """The log trace completed by the state (``source: "both"``): recipients only the events reported, and
    a later final status from the events, replace or join the logs' view; then the one outcome rule."""
    state = trace_from_state(partition, now=now, status_grace=status_grace)
    by_address = {r.recipient_id.lower(): r for r in logs.recipients}
    for recipient in state.recipients:
        mine = by_address.get(recipient.recipient_id.lower())
        if mine is None or _newer(recipient, mine):
            by_address[recipient.recipient_id.lower()] = recipient
    merged = logs.model_copy(
        update={
            "source": "both",
            "as_of": now,
            "send": logs.send or state.send,
            "message_events": logs.message_events or state.message_events,
            "recipients": sorted(by_address.values(), key=lambda r: r.recipient_id.lower()),
        }
    )
    return conclude_trace(merged, now=now, status_grace=status_grace, expected=partition.message.expected_recipients)


def _newer(candidate: TraceRecipient, current: TraceRecipient) -> bool:
    if candidate.final_status_time is None:
        return current.final_status_time is None and _resolves(candidate) and not _resolves(current)
    return current.final_status_time is None or candidate.final_status_time > current.final_status_time


def _resolves(recipient: TraceRecipient) -> bool:
    return bool(recipient.events) and recipient.events[-1].delivery_status in (*FINAL_STATUSES, EXPANDED)


# --------------------------------------------------------------------------- the app's registration of a send


def register_message(
    services: Services, message_id: str, body: RegisterMessageBody
) -> tuple[bool, MessageRegistration]:
    """``PUT /api/messages/{id}``: store whom the message was sent to (True when new, False when the same
    registration is stored already). Conflict when it contradicts the send row or an earlier registration.

    The registration is an observation like any other (journaled, folded, merged in any order), so the trace
    answers from it at once: the registered recipients waiting by address, final once each is.
    """
    from shared.models import MessageRegistration

    registration = RegistrationObservation(
        message_id=message_id,
        time=services.clock(),
        expected_recipients=body.count(),
        recipients=tuple(body.distinct_recipients()),
    )
    store = services.state
    partition = store.read(message_id)
    stored = partition.message.registration if partition is not None else None
    send = partition.message.send if partition is not None else None
    if send is not None and send.unique_recipients_count not in (None, registration.expected_recipients):
        raise _conflict(message_id, f"the send row names {send.unique_recipients_count} recipients")
    if stored is not None and not stored.same_as(registration):
        raise _conflict(message_id, "it was registered with other recipients")
    if stored is None:
        store.append([registration])
    kept = stored or registration
    answer = MessageRegistration(
        message_id=message_id,
        expected_recipients=kept.expected_recipients,
        recipients=list(kept.recipients) or None,
        registered_at=kept.time,
    )
    return stored is None, answer


def _conflict(message_id: str, why: str) -> Conflict:
    return Conflict(
        f"The registration of message {message_id} contradicts what is known: {why}.",
        title="Registration conflicts",
        fields={"messageId": message_id},
    )


def push_trace(services: Services, message_id: str) -> TraceResult:
    """A message subscription's push: the answer ``GET /api/messages/{id}`` gives now (state first), and for a
    message never seen at all the notFound trace (the definite end the timer pushes after the grace)."""
    try:
        return trace_message(services, TraceParams(message_id=message_id))
    except NotFound:
        return TraceResult(message_id=message_id, state="notFound", as_of=services.clock())
