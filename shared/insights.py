"""The use cases: trace, search, stats, bounces and the daily summary aggregation.

Each builds its KQL with :mod:`shared.kql.builder`, runs it on a :class:`LogSource` and turns
rows into the response models of :mod:`shared.models`. Nothing here knows HTTP.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import hashlib
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from shared.errors import InvalidInput, ParameterError
from shared.kql import builder
from shared.kql.builder import Window
from shared.kql.query import KqlQuery
from shared.logs.source import LogSource, QueryResult
from shared.models import (
    BIN_SPANS,
    EARLIEST,
    LATEST,
    MAX_CLICKED_URLS,
    MAX_SERIES_BINS,
    MAX_TRACE_EVENTS,
    MAX_WINDOW_DAYS,
    STATS_ROW_MODELS,
    BounceList,
    BounceRow,
    BouncesParams,
    Completeness,
    EngagementParams,
    EngagementResult,
    EngagementRow,
    RecipientEngagement,
    RecipientHistory,
    RecipientMessage,
    RecipientParams,
    SearchPage,
    SearchParams,
    SearchRow,
    StatsParams,
    StatsResult,
    StatusCounts,
    StatusEvent,
    Suppression,
    TimeSeriesParams,
    TimeSeriesResult,
    TimeSeriesRow,
    TimeWindowParams,
    TraceParams,
    TraceRecipient,
    TraceResult,
    TraceSendInfo,
)
from shared.schemas import FINAL_STATUSES, MESSAGE_TERMINAL_STATUSES
from shared.signing import Signer
from shared.state import rules
from shared.state.rules import EXPANDED

#: How far past "now" a trace still looks, for clocks that run slightly ahead.
TRACE_CLOCK_TOLERANCE = timedelta(minutes=5)

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@functools.lru_cache(maxsize=1024)
def snake(column: str) -> str:
    """KQL output column -> model field: ``_ResourceId`` -> ``resource_id``, ``P95DurationSeconds`` -> ``p95_...``."""
    return _CAMEL.sub("_", column.lstrip("_")).lower()


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    return {snake(key): value for key, value in record.items()}


class InvalidToken(InvalidInput):
    """A continuation token that is malformed, forged, or belongs to another query."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"continuationToken: {reason}", [ParameterError("continuationToken", reason)])


#: Rows tied at one send time that a token may skip (ties beyond a page are rare; this bounds a forged skip).
MAX_CURSOR_SKIP = 1_000_000
_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class PageCursor:
    window_start: datetime
    window_end: datetime
    send_time: datetime
    skip: int
    filters: str

    def encode(self, signer: Signer) -> str:
        payload = {
            "w": [self.window_start.isoformat(), self.window_end.isoformat()],
            "t": self.send_time.isoformat(),
            "s": self.skip,
            "f": self.filters,
        }
        return signer.sign("search", payload)

    @classmethod
    def decode(cls, token: str, signer: Signer) -> PageCursor:
        """The cursor of a token this service signed, its fields held to the query parameters' limits."""
        try:
            payload = signer.verify("search", token, "continuationToken")
        except InvalidInput:
            raise InvalidToken("is not a token this service issued, or was altered") from None
        try:
            start, end = (datetime.fromisoformat(value) for value in payload["w"])
            cursor = cls(start, end, datetime.fromisoformat(payload["t"]), payload["s"], payload["f"])
        except (ValueError, KeyError, TypeError):
            raise InvalidToken("is not a token this service issued") from None
        cursor.validate()
        return cursor

    def validate(self) -> None:
        times = (self.window_start, self.window_end, self.send_time)
        if any(value.tzinfo is None or not EARLIEST <= value < LATEST for value in times):
            raise InvalidToken(f"holds a time outside {EARLIEST.year}-{LATEST.year}")
        if not self.window_start < self.window_end <= self.window_start + timedelta(days=MAX_WINDOW_DAYS):
            raise InvalidToken(f"holds a window that is empty or longer than {MAX_WINDOW_DAYS} days")
        if not self.window_start <= self.send_time <= self.window_end:
            raise InvalidToken("holds a position outside its window")
        if not isinstance(self.skip, int) or isinstance(self.skip, bool) or not 0 <= self.skip <= MAX_CURSOR_SKIP:
            raise InvalidToken(f"holds a skip outside 0-{MAX_CURSOR_SKIP}")
        if not isinstance(self.filters, str) or not _FINGERPRINT.match(self.filters):
            raise InvalidToken("is not a token this service issued")


def _filters_fingerprint(params: SearchParams) -> str:
    relevant = params.model_dump(mode="json", exclude={"top", "continuation_token", "from_", "to"})
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


class Insights:
    def __init__(
        self,
        source: LogSource,
        *,
        status_grace: timedelta = builder.DEFAULT_STATUS_GRACE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        signer: Signer | Callable[[], Signer] | None = None,
    ) -> None:
        self.source = source
        self.status_grace = status_grace
        self.clock = clock
        self._signer = signer or Signer.from_setting(None)

    @property
    def signer(self) -> Signer:
        """The key of continuation tokens (``Services`` hands a provider that raises in Azure without a key)."""
        return self._signer if isinstance(self._signer, Signer) else self._signer()

    def signing_with(self, signer: Callable[[], Signer]) -> Insights:
        """These use cases over the same source and clock, signing with *signer*."""
        clone = copy.copy(self)
        clone._signer = signer
        return clone

    # -- query construction (also used by `python -m shared kql`) ----------------------------

    def window(self, start: datetime, end: datetime) -> Window:
        return Window(start, end, self.status_grace)

    def trace_query(self, params: TraceParams) -> KqlQuery:
        now = self.clock()
        window = Window(now - timedelta(days=params.lookback_days), now + TRACE_CLOCK_TOLERANCE, timedelta(0))
        return builder.build_trace_query(params.message_id, window)

    def _search_plan(self, params: SearchParams) -> tuple[KqlQuery, PageCursor | None, str]:
        fingerprint = _filters_fingerprint(params)
        cursor = None
        if params.continuation_token:
            cursor = PageCursor.decode(params.continuation_token, self.signer)
            if cursor.filters != fingerprint:
                raise InvalidToken("belongs to a search with other filters")
            start, end = cursor.window_start, cursor.window_end
            if (params.from_ and params.from_ != start) or (params.to and params.to != end):
                raise InvalidToken("belongs to a search with another time window")
        else:
            start, end = params.window(self.clock())
        query = builder.build_search_query(
            params,
            self.window(start, end),
            # Datetimes in Log Analytics carry 100 ns ticks; a cursor truncated to microseconds must
            # still include every row that Python sees as equal to it.
            cursor_end=None if cursor is None else cursor.send_time + timedelta(microseconds=1),
            skip=0 if cursor is None else cursor.skip,
        )
        return query, cursor, fingerprint

    def search_query(self, params: SearchParams) -> KqlQuery:
        return self._search_plan(params)[0]

    def send_window(self, params: TimeWindowParams) -> Window:
        """The request's send window with its defaults filled in from the clock, read once."""
        return self.window(*params.window(self.clock()))

    def stats_query(self, kind: str, params: StatsParams) -> KqlQuery:
        return builder.build_stats_query(kind, params, self.send_window(params))

    def bounces_query(self, params: BouncesParams) -> KqlQuery:
        return builder.build_bounces_query(params, self.send_window(params))

    def timeseries_query(self, params: TimeSeriesParams) -> KqlQuery:
        start, end = params.window(self.clock())
        if (end - start) / BIN_SPANS[params.bin] > MAX_SERIES_BINS:
            raise InvalidInput.parameter("bin", f"the window holds more than {MAX_SERIES_BINS} bins: use a larger bin")
        return builder.build_timeseries_query(params, start, end, self.status_grace)

    def engagement_query(self, params: EngagementParams) -> KqlQuery:
        return builder.build_engagement_query(params, self.send_window(params))

    def recipient_query(self, params: RecipientParams) -> KqlQuery:
        return builder.build_recipient_history_query(params, self.send_window(params))

    def daily_summary_query(self, day: date) -> KqlQuery:
        return builder.build_daily_summary_query(datetime.combine(day, time(0), UTC), self.status_grace)

    # -- use cases ----------------------------------------------------------------------------

    def trace(self, params: TraceParams) -> TraceResult:
        return self.trace_with_rows(params)[0]

    def trace_with_rows(self, params: TraceParams) -> tuple[TraceResult, QueryResult]:
        """The trace from the logs, and the rows it was assembled from (written back into the state)."""
        result = self.source.run(self.trace_query(params))
        return assemble_trace(params.message_id, result, now=self.clock(), status_grace=self.status_grace), result

    def search(self, params: SearchParams) -> SearchPage:
        signer = self.signer  # first: without a usable key the search is refused before it runs
        query, cursor, fingerprint = self._search_plan(params)
        result = self.source.run(query)
        rows = [SearchRow.model_validate(_fields(record)) for record in result.records()]
        if cursor is not None:
            # Drop the rows the previous pages already returned: those tied at the cursor's send time.
            # Counting only rows still at that time means a changed tie group never skips older rows.
            dropped = 0
            while dropped < min(cursor.skip, len(rows)) and rows[dropped].send_time == cursor.send_time:
                dropped += 1
            rows = rows[dropped:]
        page, more = rows[: params.top], len(rows) > params.top
        token = None
        if more and page:
            last = page[-1].send_time
            ties = sum(1 for row in page if row.send_time == last)
            if cursor is not None and cursor.send_time == last:
                ties += cursor.skip
            start, end = query.timespan[0], query.timespan[1] - self.status_grace
            token = PageCursor(start, end, last, ties, fingerprint).encode(signer)
        return SearchPage(value=page, continuation_token=token, **_partial(result))

    def stats(self, kind: str, params: StatsParams) -> StatsResult:
        # One window for both queries, so the completeness describes exactly the rows counted.
        window = self.send_window(params)
        query = builder.build_stats_query(kind, params, window)
        completeness_query = builder.build_completeness_query(window, builder.Filters.from_scope(params))
        result, completeness_result = self._run_both(query, completeness_query)
        model = STATS_ROW_MODELS[kind]
        value = [model.model_validate(_fields(record)).model_dump(mode="json") for record in result.records()]
        completeness, failed_messages = _completeness(completeness_result)
        return StatsResult(
            value=value,
            completeness=completeness,
            failed_messages=failed_messages,
            **_partial_of(result, completeness_result),
        )

    def bounces(self, params: BouncesParams) -> BounceList:
        result = self.source.run(self.bounces_query(params))
        rows = [BounceRow.model_validate(_fields(record)) for record in result.records()]
        return BounceList(value=rows, **_partial(result))

    def timeseries(self, params: TimeSeriesParams) -> TimeSeriesResult:
        query = self.timeseries_query(params)
        start, end = params.window(self.clock())
        # Completeness of the sends whose final statuses the series can hold.
        completeness_query = builder.build_completeness_query(
            self.window(start - self.status_grace, end), builder.Filters.from_scope(params)
        )
        result, completeness_result = self._run_both(query, completeness_query)
        rows = [TimeSeriesRow.model_validate(_fields(record)) for record in result.records()]
        completeness, _ = _completeness(completeness_result)
        return TimeSeriesResult(value=rows, completeness=completeness, **_partial_of(result, completeness_result))

    def engagement(self, params: EngagementParams) -> EngagementResult:
        result = self.source.run(self.engagement_query(params))
        rows = [EngagementRow.model_validate(_fields(record)) for record in result.records()]
        return EngagementResult(value=rows, **_partial(result))

    def recipient_history(self, params: RecipientParams) -> RecipientHistory:
        result = self.source.run(self.recipient_query(params))
        messages = [RecipientMessage.model_validate(_fields(record)) for record in result.records()]
        latest = messages[0] if messages else None
        latest_status = None if latest is None else latest.final_delivery_status or latest.last_event_status
        suppression = None
        if latest is not None and latest_status == "Suppressed":
            suppression = suppression_cause(latest, messages[1:], self.clock())
        return RecipientHistory(
            messages=messages, latest_status=latest_status, suppression=suppression, **_partial(result)
        )

    def _run_both(self, first: KqlQuery, second: KqlQuery) -> tuple[QueryResult, QueryResult]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            # Each in a copy of this context, so the request's time budget (shared.deadline) follows the query.
            a = pool.submit(contextvars.copy_context().run, self.source.run, first)
            b = pool.submit(contextvars.copy_context().run, self.source.run, second)
            return a.result(), b.result()

    def daily_summary(self, day: date) -> tuple[list[dict[str, Any]], str | None]:
        """Per-dimension aggregates for sends of one UTC day, and a partial-result warning if any."""
        result = self.source.run(self.daily_summary_query(day))
        return result.records(), result.partial_error

    def run_query(self, query: KqlQuery) -> QueryResult:
        return self.source.run(query)


def _completeness(result: QueryResult) -> tuple[Completeness, int]:
    """The completeness query's one row -> (Completeness, failed messages)."""
    records = result.records()
    first = records[0] if records else {}
    completeness = Completeness(
        pending_recipients=int(first.get("PendingRecipients") or 0),
        latest_event_time=first.get("LatestEventTime"),
    )
    return completeness, int(first.get("FailedMessages") or 0)


def _partial_of(*results: QueryResult) -> dict[str, Any]:
    warnings = [result.partial_error for result in results if result.partial_error]
    return {"partial": True, "warning": "; ".join(warnings)} if warnings else {}


#: How the suppression answer words a cause it could not find.
NO_HARD_BOUNCE_NOTE = (
    "No hard bounce of this address before the suppressed message in the window: widen `from`, or the address "
    "was suppressed for another reason (a complaint, an unsubscribe or a manual entry)."
)


def suppression_cause(suppressed: RecipientMessage, earlier: list[RecipientMessage], now: datetime) -> Suppression:
    """The newest hard bounce logged before the suppressed message's status: the most likely cause (ACS adds an
    address to the suppression list after a hard bounce)."""
    at = suppressed.final_status_time or suppressed.last_event_time
    bounces = [m for m in earlier if m.hard_bounce and m.final_status_time is not None and m.final_status_time <= at]
    if not bounces:
        return Suppression(message_id=None, note=NO_HARD_BOUNCE_NOTE)
    cause = max(bounces, key=lambda m: m.final_status_time or at)
    bounced_at = cause.final_status_time or at
    return Suppression(
        message_id=cause.message_id,
        time=bounced_at,
        smtp_status_code=cause.smtp_status_code,
        enhanced_smtp_status_code=cause.enhanced_smtp_status_code,
        enhanced_smtp_status_code_details=cause.enhanced_smtp_status_code_details,
        failure_reason=cause.failure_reason,
        seconds_ago=round((now - bounced_at).total_seconds(), 3),
        seconds_before_suppression=round((at - bounced_at).total_seconds(), 3),
        note="The newest hard bounce of this address before the suppressed message: the most likely cause.",
    )


def _partial(result: QueryResult) -> dict[str, Any]:
    if result.partial_error:
        return {"partial": True, "warning": result.partial_error}
    return {}


RecipientKey = tuple[str, str | None]


def engagement_of(rows: list[dict[str, Any]]) -> RecipientEngagement | None:
    """Distinct view/click rows of one recipient -> counts, first and last time, clicked URLs (bounded)."""
    if not rows:
        return None
    kinds = [str(row.get("EngagementType") or "").lower() for row in rows]
    times = [row["TimeGenerated"] for row in rows if row.get("TimeGenerated") is not None]
    urls = sorted(
        {
            str(row["EngagementContext"])
            for row, kind in zip(rows, kinds, strict=True)
            if kind == "click" and row.get("EngagementContext")
        }
    )
    return RecipientEngagement(
        views=kinds.count("view"),
        clicks=kinds.count("click"),
        first_time=min(times, default=None),
        last_time=max(times, default=None),
        clicked_urls=urls[:MAX_CLICKED_URLS],
    )


def _trace_recipients(
    events_by_recipient: dict[RecipientKey, list[StatusEvent]],
    finals: dict[RecipientKey, dict[str, Any]],
    domains: dict[RecipientKey, str | None],
    engaged: dict[RecipientKey, list[dict[str, Any]]],
) -> list[TraceRecipient]:
    """One entry per (recipient, resource), by address: its final status, its newest events (oldest first) and
    its views and clicks (matched in any case of the address)."""
    recipients: list[TraceRecipient] = []
    for key, events in sorted(events_by_recipient.items(), key=lambda item: (item[0][0].lower(), item[0][1] or "")):
        events.sort(key=lambda event: (event.time, event.delivery_status))
        omitted = max(0, len(events) - MAX_TRACE_EVENTS) or None
        events = events[-MAX_TRACE_EVENTS:]
        final = finals.get(key)
        if final is not None:
            recipient = TraceRecipient.model_validate({**final, "events": events, "events_omitted": omitted})
        else:
            recipient = TraceRecipient(
                recipient_id=key[0], recipient_domain=domains.get(key), events=events, events_omitted=omitted
            )
        recipient.engagement = engagement_of(engaged.get((key[0].lower(), key[1]), []))
        recipients.append(recipient)
    return recipients


def assemble_trace(
    message_id: str,
    result: QueryResult,
    *,
    now: datetime | None = None,
    status_grace: timedelta = builder.DEFAULT_STATUS_GRACE,
) -> TraceResult:
    """Rows of the trace query (send / event / final) -> the trace contract (``now``: when it is read)."""
    send: TraceSendInfo | None = None
    senders: set[str] = set()
    message_events: list[StatusEvent] = []
    events_by_recipient: dict[RecipientKey, list[StatusEvent]] = {}
    domains: dict[RecipientKey, str | None] = {}
    finals: dict[RecipientKey, dict[str, Any]] = {}
    engaged: dict[RecipientKey, list[dict[str, Any]]] = {}
    for record in result.records():
        kind = record.get("RowKind")
        fields = _fields(record)
        if kind == "send":
            send = TraceSendInfo.model_validate(fields)
        elif kind == "event":
            event = StatusEvent.model_validate({**fields, "time": record["TimeGenerated"]})
            username, domain = record.get("SenderUsername"), record.get("SenderDomain")
            if username and domain:
                senders.add(f"{username}@{domain}")
            recipient = record.get("RecipientId")
            if not recipient:
                message_events.append(event)
                continue
            key = (recipient, record.get("_ResourceId"))
            events_by_recipient.setdefault(key, []).append(event)
            domains[key] = record.get("RecipientDomain")
        elif kind == "final":
            finals[(record["RecipientId"], record.get("_ResourceId"))] = fields
        elif kind == "engagement" and record.get("RecipientId"):
            key = (str(record["RecipientId"]).lower(), record.get("_ResourceId"))
            engaged.setdefault(key, []).append(record)

    recipients = _trace_recipients(events_by_recipient, finals, domains, engaged)
    message_events.sort(key=lambda event: (event.time, event.delivery_status))
    if send is not None and senders:
        send.sender = min(senders)
    trace = TraceResult(
        message_id=message_id,
        state="notFound",
        source="logs",
        as_of=now,
        send=send,
        message_events=message_events,
        recipients=recipients,
        **_partial(result),
    )
    if send is None and not message_events and not recipients:
        return trace
    return conclude_trace(trace, now=now, status_grace=status_grace)


def _resolved(recipient: TraceRecipient) -> bool:
    return recipient.final_delivery_status is not None


def _expanded(recipient: TraceRecipient) -> bool:
    """A distribution list: no final status, its latest event ``Expanded`` (its members report on their own)."""
    return not _resolved(recipient) and bool(recipient.events) and recipient.events[-1].delivery_status == EXPANDED


_COUNT_FIELDS = {status: snake(status) for status in FINAL_STATUSES}


def conclude_trace(
    trace: TraceResult, *, now: datetime | None, status_grace: timedelta, expected: int | None = None
) -> TraceResult:
    """Fill in state, outcome, counts and the recipients still without a final status: the one rule.

    * final by :func:`shared.state.rules.message_final`: failed as a whole, or the expected recipients known
      (the send row's count, else ``expected``: the app's registration) and every known recipient final, as
      many as expected (a distribution list resolves through its members, once they have been quiet);
    * final: delivered (every final status Delivered), notDelivered (none), partiallyDelivered (some);
    * not final: pending, or expired once the send (or, unknown, its earliest event) is older than the status
      grace: a definite end, the unresolved recipients listed by address and counted against the expected.
    """
    counts: dict[str, int] = {}
    for recipient in trace.recipients:
        status = recipient.final_delivery_status
        if status in _COUNT_FIELDS:
            counts[_COUNT_FIELDS[status]] = counts.get(_COUNT_FIELDS[status], 0) + 1
    trace.counts = StatusCounts(**counts)
    if trace.warning == NO_EXPECTED_WARNING:  # said by a part merged here, which knew less
        trace.warning = None
    if trace.send is not None and trace.send.unique_recipients_count is not None:
        expected = trace.send.unique_recipients_count
    trace.expected_recipients = expected
    finals = sum(1 for recipient in trace.recipients if _resolved(recipient))
    unresolved = [r.recipient_id for r in trace.recipients if not _resolved(r) and not _expanded(r)]
    terminal = any(event.delivery_status in MESSAGE_TERMINAL_STATUSES for event in trace.message_events)
    final = rules.message_final(
        terminal=terminal,
        expected=expected,
        finals=finals,
        waiting=len(unresolved),
        lists=sum(1 for recipient in trace.recipients if _expanded(recipient)),
        latest=max(_observed_times(trace), default=None),
        now=now,
    )
    trace.pending_recipients = [] if final else unresolved
    trace.unresolved_count = None if final else rules.unresolved_count(expected, finals)
    if final:
        trace.state = "final"
        delivered = counts.get("delivered", 0)
        others = sum(counts.values()) - delivered
        if terminal:
            trace.outcome = "failed"
        else:
            trace.outcome = (
                "delivered" if delivered and not others else "partiallyDelivered" if delivered else ("notDelivered")
            )
        return trace
    started = _send_time_bound(trace)
    if now is not None and started is not None and rules.expired(started, now, status_grace):
        trace.state = trace.outcome = "expired"
    else:
        trace.state = trace.outcome = "pending"
    if not expected and not terminal:
        trace.warning = trace.warning or NO_EXPECTED_WARNING
    return trace


#: Why a message whose every known recipient is final still waits.
NO_EXPECTED_WARNING = (
    "The number of recipients is not known yet (no send row logged, no registration): the message is final once "
    "it is. Register the send with PUT /api/messages/{messageId} to be told at once."
)


def _observed_times(trace: TraceResult) -> list[datetime]:
    times = [event.time for event in trace.message_events]
    times += [event.time for recipient in trace.recipients for event in recipient.events]
    times += [r.final_status_time for r in trace.recipients if r.final_status_time is not None]
    return times


def _send_time_bound(trace: TraceResult) -> datetime | None:
    """The send time, or when there is no send row the earliest event (the send came before it)."""
    return rules.send_time_bound(trace.send.send_time if trace.send is not None else None, _observed_times(trace))
