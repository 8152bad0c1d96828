"""Push: subscriptions matched against delivery-state changes, and outcomes delivered from the outbox.

Who is told what:

* a message subscription gets the message's trace (the ``TraceResult`` body ``GET /api/messages/{id}``
  answers, built by the same state-first trace: no log query once the state is final) once, when the message
  becomes final; a trace that is still pending when the attempt is made is not sent (the attempt counts as
  failed and is retried on the schedule), so a pending body is never recorded as the delivered outcome;
* a filter subscription gets a :class:`~shared.models.RecipientOutcome` for each recipient that becomes final
  and matches its sender and statuses (a later, different final status is a new outcome).

How: the fold of the delivery-state journal (run by the follower's timer, which journals its own rows as
ingestion journals events) hands its :class:`~shared.state.store.PartitionChange` objects to
:meth:`Push.on_change`, which writes one outbox entity per outcome (a duplicate event changes nothing, and
an outcome already in the outbox is not added twice) and submits an immediate attempt to a small thread
pool, without waiting for it. A message's subscriptions are found by one point read of the message index
(:meth:`~shared.push.subscriptions.SubscriptionStore.subscribers`), so every instance sees a new one at once,
and their waiting entries are claimed by the fold for the attempt. An attempt POSTs with a short timeout; at
most one attempt per subscription is in flight here, so a callback that hangs holds one worker for at most the
timeout and never delays ingestion or another subscription. What fails stays in the outbox: the follower's
timer (every minute) calls :meth:`Push.run_due`, which delivers whatever is due, so a restart loses nothing (at
least once; receivers dedup by ``X-Delivery-Id``).

Retries follow Event Grid's schedule: 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, then 3 h, 6 h, 12 h
and 24 h; 12 attempts over about two days, then the outcome is dropped with a warning (subscription and
delivery ids only). The 10 s and 30 s retries run in this process when it is still up, else at the next
timer run, so the first retry comes within a minute either way. A 410 answer ends the subscription; a 400
or 413 drops that one outcome; a redirect counts as a failure. In Azure a callback whose host now resolves
to an address it must not reach is not sent (``shared.push.callbacks``): a failed attempt, retried likewise.

A message that never becomes final still ends: once the status grace (``STATUS_GRACE_HOURS``) has passed
since its send (or since the subscription, for a message never seen then), the timer pushes its trace as it
stands. That push is written to the outbox when the subscription is made, due at that deadline (``Waiting``);
the message becoming final makes it due at once. So a timer run reads what is due and nothing else: idle
subscriptions cost it nothing (benchmarks/push.py). A trace whose write-back makes a message final (which no
fold sees) calls :meth:`Push.message_final`.

At most ``MAX_SUBSCRIPTIONS`` unexpired subscriptions exist at once; one more is refused with 409 (two
instances creating at the same moment may pass the limit by one each).

Expiry: a filter subscription lasts 7 days; a message subscription lasts the status grace plus a day.
Expired subscriptions stop matching at once, and are deleted with their outbox entries once nothing can be
retried any more.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel

from shared.errors import Conflict, InvalidInput, ServiceError
from shared.models import CreateSubscriptionBody, RecipientOutcome, Subscription, contract_body
from shared.push.callbacks import (
    ATTEMPT_HEADER,
    CALLBACK_TIMEOUT_SECONDS,
    DELIVERY_ID_HEADER,
    SUBSCRIPTION_ID_HEADER,
    Attempt,
    Resolver,
    check_callback_url,
    post,
    push_headers,
)
from shared.push.subscriptions import OutboxEntry, SubscriptionRecord, SubscriptionStore, delivery_id
from shared.state import rules
from shared.state.partition import Partition, RecipientState, bounce_of, recipient_row_key
from shared.state.store import PartitionChange, StateStore

logger = logging.getLogger(__name__)

#: Delay before each retry (Event Grid's schedule, cut at a day); one more attempt than delays.
RETRY_DELAYS: Final = tuple(
    timedelta(seconds=s) for s in (10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600)
)
#: Retries this short wait in this process (a timer thread) rather than for the next timer run.
IN_PROCESS_RETRY: Final = timedelta(seconds=60)
FILTER_LIFETIME: Final = timedelta(days=7)
MESSAGE_EXTRA_LIFETIME: Final = timedelta(days=1)
#: How long a claimed entry is held for its attempt (far more than the callback timeout).
LEASE: Final = timedelta(seconds=90)
#: Attempts in flight at once. More does not go faster where the table service is the bottleneck: 32 made each
#: attempt's state read four times slower and starved the folds sharing the process (benchmarks/realtime.py).
WORKERS: Final = 8
#: Message-index look-ups of one fold chunk run side by side, at most this many.
LOOKUPS: Final = 8
#: Entries held in memory behind a busy subscription; more wait for the timer in the outbox alone.
MAX_WAITING: Final = 100
#: Entries one timer run looks at, and how long it waits for their attempts before returning.
DUE_PER_RUN: Final = 200
RUN_WAIT_SECONDS: Final = 45.0
#: Tombstones and dead subscriptions are kept until no retry of theirs can be due.
RETRY_HORIZON: Final = sum(RETRY_DELAYS, timedelta()) + LEASE


def outcome_body(partition: Partition, recipient: RecipientState) -> bytes:
    final = recipient.final
    assert final is not None
    bounce_type, bounce_source = bounce_of(final)
    outcome = RecipientOutcome(
        message_id=partition.message_id,
        recipient_id=recipient.address,
        final_delivery_status=final.status,
        final_status_time=final.time,
        bounce_type=bounce_type,
        bounce_type_source=bounce_source,
        smtp_status_code=final.smtp_status_code,
        enhanced_smtp_status_code=final.enhanced_smtp_status_code,
        failure_reason=final.failure_reason,
        failure_message=final.failure_message,
        recipient_mail_server_host_name=final.mail_server,
        internet_message_id=final.internet_message_id,
        sender=final.sender or recipient.sender or partition.sender,
        source=recipient.final_source,
    )
    return model_bytes(outcome)


def model_bytes(model: BaseModel) -> bytes:
    """The body as the API renders the same model (a message push is byte for byte GET's body, bar ``asOf``)."""
    return json.dumps(contract_body(model), ensure_ascii=False).encode("utf-8")


def _sender_matches(wanted: str, sender: str | None) -> bool:
    """A filter's sender is a username (DoNotReply) or a whole address; either matches case-insensitively."""
    if not sender:
        return False
    wanted, sender = wanted.lower(), sender.lower()
    return sender == wanted if "@" in wanted else sender.partition("@")[0] == wanted


def _send_learnt(change: PartitionChange) -> bool:
    """Whether *change* told when the message was sent (a message subscription's deadline counts from it)."""
    sent = change.after.send_time_bound()
    return sent is not None and sent != change.before.send_time_bound()


def filter_matches(subscription: SubscriptionRecord, partition: Partition, recipient: RecipientState) -> bool:
    final = recipient.final
    if final is None:
        return False
    if subscription.statuses and final.status not in subscription.statuses:
        return False
    sender = final.sender or recipient.sender or partition.sender
    return subscription.sender is None or _sender_matches(subscription.sender, sender)


class Push:
    def __init__(
        self,
        store: Callable[[], SubscriptionStore],
        *,
        state: Callable[[], StateStore],
        trace: Callable[[str], BaseModel],
        clock: Callable[[], datetime],
        status_grace: timedelta,
        allow_loopback_http: bool,
        resolve: Resolver | None = None,
        max_subscriptions: int = 1000,
        timeout: float = CALLBACK_TIMEOUT_SECONDS,
        workers: int = WORKERS,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """*resolve*: in Azure, how callback hosts are resolved (``system_resolver``), every address then held
        to be public at subscription and at each delivery; None locally. *wall_clock*: the time each push's
        ``webhook-timestamp`` carries (the receiver compares it with its own clock, never the test clock)."""
        self._store = store
        self._state = state
        self._trace = trace
        self.clock = clock
        self.status_grace = status_grace
        self.allow_loopback_http = allow_loopback_http
        self.resolve = resolve
        self.max_subscriptions = max_subscriptions
        self.wall_clock = wall_clock
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="push")
        #: The fold's look-ups of a chunk's messages' subscribers, side by side (never the callbacks' pool: a
        #: fold must not wait behind slow callbacks).
        self._lookups = ThreadPoolExecutor(max_workers=LOOKUPS, thread_name_prefix="push-lookup")
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        #: Entries that found their subscription busy, attempted in turn when it is free.
        self._waiting: dict[str, list[str]] = {}
        self._closed = False

    @property
    def store(self) -> SubscriptionStore:
        """The subscriptions table, built on first use (so bad input is answered 400 before it is needed)."""
        return self._store()

    # -- subscriptions ---------------------------------------------------------------------------

    def subscribe(self, body: CreateSubscriptionBody) -> Subscription:
        """Create a subscription (InvalidInput naming the field at fault); the answer carries its secret."""
        url = check_callback_url(body.callback_url, allow_loopback_http=self.allow_loopback_http, resolve=self.resolve)
        if (body.message_id is None) == (body.filter is None):
            raise InvalidInput.parameter("messageId", "give either messageId or filter (exactly one)")
        now = self.clock()
        if len(self.store.active(now)) >= self.max_subscriptions:
            raise Conflict(
                f"{self.max_subscriptions} subscriptions exist already (setting MAX_SUBSCRIPTIONS): delete one, "
                "or wait for one to expire",
                title="Too many subscriptions",
            )
        if body.message_id is not None:
            record = self.store.create(
                "message",
                url,
                now=now,
                expires_at=now + self.status_grace + MESSAGE_EXTRA_LIFETIME,
                message_id=body.message_id,
            )
            self._catch_up(record)
        else:
            assert body.filter is not None
            statuses = sorted(set(body.filter.statuses)) if body.filter.statuses else None
            record = self.store.create(
                "filter", url, now=now, expires_at=now + FILTER_LIFETIME, sender=body.filter.sender, statuses=statuses
            )
        return describe(record, with_secret=True)

    def unsubscribe(self, subscription_id: str) -> None:
        self.store.delete(subscription_id)

    # -- the fold's hook -------------------------------------------------------------------------------

    def hook(self) -> Callable[[Sequence[PartitionChange]], None] | None:
        """``on_change`` for the fold, or None while nobody subscribed (its writes are then cheaper: see
        ``shared.state.store.StateStore.apply``). Raises while the table cannot be read, so the
        batch is retried rather than an outcome missed."""
        return self.on_change if self.store.any_active(self.clock()) else None

    def on_change(self, changes: Sequence[PartitionChange]) -> None:
        """Outbox entries for what *changes* made final, then immediate attempts (not waited for).

        A message's subscribers are found by one point read of the message index, for the changes that can
        concern them (made final, or a send time learnt): on every instance at once, and without listing every
        subscription. The subscriptions are listed (cached) only for filters, when a recipient became final."""
        if not changes:
            return
        now = self.clock()
        watched = [change for change in changes if change.became_final or _send_learnt(change)]
        queued: list[str | OutboxEntry] = []
        if len(watched) == 1:
            queued += self._message_pushes(watched[0], now)
        elif watched:
            for found in self._lookups.map(lambda change: self._message_pushes(change, now), watched):
                queued += found
        became = [(change, change.recipients_became_final()) for change in changes]
        if any(recipients for _, recipients in became):
            filters = [s for s in self.store.active(now) if s.kind == "filter"]
            for change, recipients in became if filters else ():
                if recipients:
                    queued += self._filter_pushes(filters, change, recipients, now)
        for entry in queued:
            self.submit(entry)

    def _message_pushes(self, change: PartitionChange, now: datetime) -> list[str | OutboxEntry]:
        """What *change* does to its message's subscriptions: their pushes due now (taken for the attempt) when
        it made the message final; else, a send time learnt, their deadlines brought forward to it."""
        due: list[str | OutboxEntry] = []
        for subscription_id in self.store.subscribers(change.message_id, now):
            if change.became_final:
                due += self._take_message_push(subscription_id, change.message_id, now)
                continue
            sent = change.after.send_time_bound()
            entry_id = delivery_id(subscription_id, "final")
            if (
                sent is not None
                and self.store.advance(entry_id, now, sent + self.status_grace)
                and rules.expired(sent, now, self.status_grace)
            ):
                due.append(entry_id)
        return due

    def _filter_pushes(
        self,
        filters: list[SubscriptionRecord],
        change: PartitionChange,
        became: list[RecipientState],
        now: datetime,
    ) -> list[str | OutboxEntry]:
        queued: list[str | OutboxEntry] = []
        seen = self._as_read(change)
        for changed in became:
            recipient = seen.recipients.get(recipient_row_key(changed.address), changed)
            if recipient.final is None:
                continue
            body: bytes | None = None
            for subscription in filters:
                if filter_matches(subscription, seen, recipient):
                    body = body or outcome_body(seen, recipient)
                    queued += self._enqueue_outcome(subscription, seen, recipient, body, now)
        return queued

    def _as_read(self, change: PartitionChange) -> Partition:
        """The message as GET reads it: its partition with every journal shard's observations, not only those
        of the shard this fold folded. Writes go to random shards, so a fold can see an older ``Bounced`` while
        the later ``Delivered`` waits in another shard: pushing the fold's view sent ``Bounced`` (then
        ``Delivered``) where GET said ``Delivered`` all along. An outcome pushed here from the full view is
        deduplicated against the one the other shard's fold finds later (same outcome key). With the store
        unreadable the fold's own view is used (logged): a push from it beats none, which is what skipping would
        give, the fold being done."""
        try:
            seen = self._state().read(change.message_id)
        except ServiceError as exc:
            logger.warning("push: cannot read message state for a recipient outcome, using the fold's: %s", exc.title)
            return change.after
        return seen if seen is not None else change.after

    def _enqueue_message(self, subscription: SubscriptionRecord, now: datetime) -> list[str]:
        """The message's push due now: its waiting entry advanced, or (made before entries waited) written."""
        assert subscription.message_id is not None
        entry_id = delivery_id(subscription.id, "final")
        added = self.store.enqueue(subscription.id, subscription.message_id, "final", None, now)
        return [entry_id] if added or self.store.advance(entry_id, now) else []

    def _take_message_push(self, subscription_id: str, message_id: str, now: datetime) -> list[str | OutboxEntry]:
        """A message made final: its subscription's waiting entry claimed here for the attempt, which then reads
        neither the entry nor claims it again (two requests fewer on the way to the callback). Claimed, the entry
        is no longer waiting, so a second fold or a retried one finds nothing to do; should this process end
        before the attempt, the entry is due again when the lease ends. An entry not there (a subscription made
        before entries waited, or being made now) is written due now instead, once its subscription is read."""
        entry = self.store.entry(delivery_id(subscription_id, "final"))
        if entry is None:
            subscription = self.store.get(subscription_id)
            if subscription is None or not subscription.active(now) or subscription.message_id != message_id:
                return []  # deleted (its id lingers in the index) or expired
            return list(self._enqueue_message(subscription, now))
        if not entry.waiting:
            return []  # due, claimed or delivered already
        claimed = self.store.claim(entry, now + LEASE)
        return [claimed] if claimed is not None else []

    def message_final(self, message_id: str) -> None:
        """A trace's write-back made *message_id* final (no fold saw it): its subscribers' pushes become due.
        Never raises: the trace that calls it has answered already."""
        try:
            now = self.clock()
            for subscription_id in self.store.subscribers(message_id, now):
                for entry in self._take_message_push(subscription_id, message_id, now):
                    self.submit(entry)
        except ServiceError as exc:
            logger.warning("push: cannot queue the pushes of a message a trace made final: %s", exc.title)

    def _enqueue_outcome(
        self,
        subscription: SubscriptionRecord,
        partition: Partition,
        recipient: RecipientState,
        body: bytes,
        now: datetime,
    ) -> list[str]:
        final = recipient.final
        assert final is not None
        outcome = f"{partition.message_id}\n{recipient_row_key(recipient.address)}\n{final.status}"
        added = self.store.enqueue(subscription.id, partition.message_id, outcome, body, now)
        return [delivery_id(subscription.id, outcome)] if added else []

    def _catch_up(self, subscription: SubscriptionRecord) -> list[str]:
        """A new message subscription's one outbox entry: due now when the message is over with, else waiting
        for its deadline.

        Over with: final already, or past the status grace since its send without ever being final: the
        message will not change any more, so the flow waiting on it gets the trace as it stands (a definite
        end) rather than nothing. Not over: the entry waits until the grace ends since the send (or, for a
        message not seen yet, since now), unless the message becomes final first (``_enqueue_message``).
        """
        assert subscription.message_id is not None
        try:
            partition = self._state().read(subscription.message_id)
        except ServiceError as exc:  # the state store down: wait for the fold or the deadline
            logger.warning("push: cannot read the state for subscription %s: %s", subscription.id, exc.title)
            partition = None
        now = self.clock()
        started = (partition.send_time_bound() if partition is not None else None) or subscription.created_at
        if not (partition is not None and partition.final_at(now)) and not rules.expired(
            started, now, self.status_grace
        ):
            deadline = started + self.status_grace
            self.store.enqueue(subscription.id, subscription.message_id, "final", None, now, waiting_until=deadline)
            return []
        queued = self._enqueue_message(subscription, now)
        for entry_id in queued:
            self.submit(entry_id)
        return queued

    # -- the timer ---------------------------------------------------------------------------------

    def run_due(self) -> dict[str, Any]:
        """The timer's part: clean up, deliver what is due (bounded). It reads the outbox entries that are due
        and the subscriptions long expired, never the idle ones (message deadlines wait in the outbox)."""
        now = self.clock()
        removed = self._clean_up(now)
        self.store.build_index()  # once, after an upgrade (subscriptions older than the message index)
        futures = [f for entry in self.store.due(now, DUE_PER_RUN) if (f := self.submit(entry.id)) is not None]
        done, _ = wait(futures, timeout=RUN_WAIT_SECONDS)
        delivered = sum(1 for future in done if future.exception() is None and future.result())
        return {"removed": removed, "attempted": len(futures), "delivered": delivered}

    def _clean_up(self, now: datetime) -> int:
        """Subscriptions past expiry + retry horizon, and tombstones past the horizon, are deleted (bounded)."""
        dead = [s.id for s in self.store.expired_before(now - RETRY_HORIZON, DUE_PER_RUN)]
        for subscription_id in dead:
            with contextlib.suppress(ServiceError):
                self.store.delete(subscription_id)
        stale = self.store.delivered_before(now - RETRY_HORIZON, DUE_PER_RUN)
        for entry in stale:
            self.store.drop(entry)
        return len(dead) + len(stale)

    # -- attempts ----------------------------------------------------------------------------------

    def submit(self, entry: str | OutboxEntry) -> Future[bool] | None:
        """Attempt *entry* (an id, or an entry claimed already) on the pool, unless closed; never blocks."""
        with self._lock:
            if self._closed:
                return None
            try:
                return self._pool.submit(self.attempt, entry)
            except RuntimeError:  # shut down meanwhile
                return None

    def attempt(self, entry: str | OutboxEntry) -> bool:
        """One delivery attempt of one outbox entry; True when delivered. Errors are logged, never raised."""
        entry_id = entry if isinstance(entry, str) else entry.id
        try:
            return self._attempt(entry) if isinstance(entry, str) else self._attempt_claimed(entry)
        except ServiceError as exc:
            logger.warning("push: delivery %s not attempted: %s", entry_id, exc.title)
        except Exception as exc:  # a bug must not kill the pool's thread; no message text (it may hold data)
            logger.error("push: delivery %s failed unexpectedly: %s", entry_id, type(exc).__name__)
        return False

    def _attempt(self, entry_id: str) -> bool:
        now = self.clock()
        entry = self.store.entry(entry_id)
        if entry is None or entry.due_at is None or entry.due_at > now:
            # Delivered or claimed meanwhile (the timer and the chain below may both hold it): pass the turn on,
            # or the outcomes queued behind it would wait for the next timer run.
            if entry is not None:
                self._pass_turn(entry.subscription_id)
            return False
        subscription = self.store.get(entry.subscription_id)
        if subscription is None:
            self.store.drop(entry)  # unsubscribed: its pending outcomes go with it
            return False
        if not self._take_turn(subscription.id, entry.id):
            return False
        try:
            claimed = self.store.claim(entry, now + LEASE)
            if claimed is None:
                return False  # another worker has it
            return self._deliver(subscription, claimed)
        finally:
            self._end_turn(subscription.id)

    def _attempt_claimed(self, claimed: OutboxEntry) -> bool:
        """The attempt of an entry the fold claimed for it (``_take_message_push``)."""
        subscription = self.store.get(claimed.subscription_id)
        if subscription is None:
            self.store.drop(claimed)
            return False
        if not self._take_turn(subscription.id, claimed.id):
            return False  # claimed: due again for the timer when the lease ends
        try:
            return self._deliver(subscription, claimed)
        finally:
            self._end_turn(subscription.id)

    def _take_turn(self, subscription_id: str, entry_id: str) -> bool:
        """One attempt per subscription at a time: False (the entry queued behind the current one, and still due
        in the outbox for the timer should this process end first) while another is in flight."""
        with self._lock:
            if subscription_id in self._in_flight:
                waiting = self._waiting.setdefault(subscription_id, [])
                if entry_id not in waiting and len(waiting) < MAX_WAITING:
                    waiting.append(entry_id)
                return False
            self._in_flight.add(subscription_id)
            return True

    def _end_turn(self, subscription_id: str) -> None:
        with self._lock:
            self._in_flight.discard(subscription_id)
        self._pass_turn(subscription_id)

    def _deliver(self, subscription: SubscriptionRecord, claimed: OutboxEntry) -> bool:
        """Build (a message push's trace, unless kept from an earlier attempt), sign, POST and record."""
        try:
            body = claimed.body if claimed.body is not None else self._build(claimed)
        except ServiceError as exc:  # the trace's log source is down: retried on the schedule
            return self._record(subscription, claimed, None, Attempt(None, f"no trace ({exc.title})"))
        if body is None:  # not final yet: nothing is sent, and the attempt is retried
            return self._record(subscription, claimed, None, Attempt(None, "the message is not final yet"))
        attempt = post(
            subscription.callback_url,
            body,
            {
                **push_headers(subscription.secret, claimed.id, int(self.wall_clock()), body),
                DELIVERY_ID_HEADER: claimed.id,
                SUBSCRIPTION_ID_HEADER: subscription.id,
                ATTEMPT_HEADER: str(claimed.attempts + 1),
            },
            timeout=self.timeout,
            resolve=self.resolve,
        )
        return self._record(subscription, claimed, body, attempt)

    def _pass_turn(self, subscription_id: str) -> None:
        """Attempt the next outcome waiting for *subscription_id*, unless one is in flight."""
        with self._lock:
            if subscription_id in self._in_flight:
                return
            queue = self._waiting.get(subscription_id)
            following = queue.pop(0) if queue else None
            if queue is not None and not queue:
                del self._waiting[subscription_id]
        if following is not None:
            self.submit(following)

    def _build(self, entry: OutboxEntry) -> bytes | None:
        """A message subscription's body: the trace, built at the first attempt and then kept for the retries;
        None while the trace is still pending (a definite end, final or expired, is the only thing pushed)."""
        trace = self._trace(entry.message_id)
        if getattr(trace, "state", None) == "pending":
            return None
        return model_bytes(trace)

    def _record(
        self, subscription: SubscriptionRecord, entry: OutboxEntry, body: bytes | None, attempt: Attempt
    ) -> bool:
        now = self.clock()
        if attempt.delivered:
            self.store.delivered(entry, now)
            return True
        if attempt.gone:
            logger.warning("push: subscription %s answered 410; it is deleted", subscription.id)
            self.store.drop(entry)
            with contextlib.suppress(ServiceError):
                self.store.delete(subscription.id)
            return False
        if attempt.refused or entry.attempts >= len(RETRY_DELAYS):
            logger.warning(
                "push: delivery %s to subscription %s dropped after %d attempt(s): %s",
                entry.id,
                subscription.id,
                entry.attempts + 1,
                attempt.reason,
            )
            self.store.drop(entry)
            return False
        delay = RETRY_DELAYS[entry.attempts]
        log = logger.warning if attempt.blocked else logger.info
        log("push: delivery %s %s; retry in %s", entry.id, attempt.reason, delay)
        self.store.reschedule(entry, now + delay, body)
        if delay <= IN_PROCESS_RETRY:
            timer = threading.Timer(delay.total_seconds(), self.submit, args=(entry.id,))
            timer.daemon = True
            timer.start()
        return False

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._lookups.shutdown(wait=False, cancel_futures=True)


def describe(record: SubscriptionRecord, *, with_secret: bool = False) -> Subscription:
    return Subscription(
        id=record.id,
        kind=record.kind,
        message_id=record.message_id,
        sender=record.sender,
        statuses=list(record.statuses) if record.statuses else None,
        secret=record.secret if with_secret else None,
        created_at=record.created_at,
        expires_at=record.expires_at,
    )
