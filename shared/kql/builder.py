"""The seed's correlation query, built from named parts.

    send side      SendMail in the send window, filtered, one row per (message, resource)
    final side     StatusUpdates in [from, to + statusGrace), filtered, each recipient's latest
                   final status per (message, recipient, resource)
    join           send-anchored (search, stats, bounces) or message-anchored (trace)
    enrichment     latency with clock-skew flag, recipient domain, size category, bounce type
                   (reported or inferred from the code catalog), code explanations by lookup
    projection     the seed's output columns

Every filter lands before the join, on each side where its column exists; every table is
bounded by time. User values only ever appear as parameters (see ``shared.kql.query``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.kql.literals import timespan_literal
from shared.kql.query import KqlQuery, Param
from shared.models import (
    BIN_SPANS,
    SUMMARY_COUNT_COLUMNS,
    SUMMARY_RATE_COLUMNS,
    BouncesParams,
    EngagementParams,
    RecipientParams,
    ScopeParams,
    SearchParams,
    StatsParams,
    TimeSeriesParams,
)
from shared.schemas import FINAL_STATUSES, MESSAGE_TERMINAL_STATUSES

DEFAULT_STATUS_GRACE = timedelta(hours=72)

_FINALS = "(" + ", ".join(f'"{status}"' for status in FINAL_STATUSES) + ")"
_MESSAGE_TERMINALS = "(" + ", ".join(f'"{status}"' for status in MESSAGE_TERMINAL_STATUSES) + ")"

SEND_COLUMNS = (
    "SendTime",
    "MessageId",
    "MessageSize",
    "AttachmentsCount",
    "ToRecipientsCount",
    "CcRecipientsCount",
    "BccRecipientsCount",
    "UniqueRecipientsCount",
    "_ResourceId",
)

#: Output columns of a correlated row: the seed's columns plus bounceTypeSource, failureCategory, clockSkew.
CORRELATED_COLUMNS = (
    "MessageId",
    "InternetMessageId",
    "RecipientId",
    "RecipientDomain",
    "SenderUsername",
    "SenderDomain",
    "FinalDeliveryStatus",
    "BounceType",
    "BounceTypeSource",
    "SendTime",
    "FinalStatusTime",
    "DurationSeconds",
    "DurationMilliseconds",
    "ClockSkew",
    "MessageSize",
    "MessageSizeCategory",
    "AttachmentsCount",
    "ToRecipientsCount",
    "CcRecipientsCount",
    "BccRecipientsCount",
    "UniqueRecipientsCount",
    "SmtpStatusCode",
    "SmtpStatusCodeDetails",
    "EnhancedSmtpStatusCode",
    "EnhancedSmtpStatusCodeDetails",
    "FailureCategory",
    "FailureReason",
    "FailureMessage",
    "RecipientMailServerHostName",
    "_ResourceId",
)

EVENT_COLUMNS = (
    "TimeGenerated",
    "CorrelationId",
    "RecipientId",
    "DeliveryStatus",
    "SmtpStatusCode",
    "EnhancedSmtpStatusCode",
    "FailureReason",
    "FailureMessage",
    "IsHardBounce",
    "SenderDomain",
    "SenderUsername",
    "RecipientMailServerHostName",
    "InternetMessageId",
    "_ResourceId",
)

_FINAL_VALUES = (
    "DeliveryStatus",
    "SmtpStatusCode",
    "EnhancedSmtpStatusCode",
    "SenderDomain",
    "SenderUsername",
    "FailureMessage",
    "FailureReason",
    "IsHardBounce",
    "RecipientMailServerHostName",
    "InternetMessageId",
)


@dataclass
class _Bindings:
    """Collects the parameters of one query, in order."""

    params: list[Param] = field(default_factory=list)

    def add(self, name: str, kusto_type: str, value: object, *, obfuscated: bool = False) -> str:
        full = f"p_{name}"
        if any(p.name == full for p in self.params):
            raise ValueError(f"parameter {full} bound twice")
        self.params.append(Param(full, kusto_type, value, obfuscated))
        return full

    def once(self, name: str, kusto_type: str, value: object) -> str:
        """The parameter ``name``, bound now unless an earlier part of the query bound it (to the same value)."""
        full = f"p_{name}"
        for param in self.params:
            if param.name == full:
                if param.value != value:
                    raise ValueError(f"parameter {full} bound twice with different values")
                return full
        return self.add(name, kusto_type, value)


@dataclass(frozen=True)
class Window:
    """Sends in [start, end); status events in [start, end + status_grace)."""

    start: datetime
    end: datetime
    status_grace: timedelta = DEFAULT_STATUS_GRACE

    @property
    def status_end(self) -> datetime:
        return self.end + self.status_grace


@dataclass(frozen=True)
class Filters:
    """Filters of the correlated rows; None means not filtered."""

    message_id: str | None = None
    internet_message_id: str | None = None
    recipient: str | None = None
    recipient_domain: str | None = None
    sender: str | None = None
    sender_domain: str | None = None
    bounce_type: str | None = None  # "hard" | "soft" | "any" (hard, soft or unknown)
    min_duration_seconds: float | None = None
    min_size_mb: float | None = None
    has_attachments: bool | None = None
    resource_id: str | None = None
    #: Only these final statuses (bounce lists).
    statuses: tuple[str, ...] | None = None

    @classmethod
    def from_scope(cls, params: ScopeParams) -> Filters:
        """The sender and resource filters every aggregate accepts."""
        return cls(sender=params.sender, sender_domain=params.sender_domain, resource_id=params.resource_id)

    @property
    def by_sender(self) -> bool:
        return self.sender is not None or self.sender_domain is not None

    @classmethod
    def from_search(cls, params: SearchParams) -> Filters:
        return cls(
            message_id=params.message_id,
            internet_message_id=params.internet_message_id,
            recipient=params.recipient,
            recipient_domain=params.recipient_domain,
            sender=params.sender,
            sender_domain=params.sender_domain,
            statuses=params.status,
            bounce_type=params.bounce_type,
            min_duration_seconds=params.min_duration_seconds,
            min_size_mb=params.min_size_mb,
            has_attachments=params.has_attachments,
            resource_id=params.resource_id,
        )


# --------------------------------------------------------------------------- parts

#: A recipient's domain: the lowercased part after the last "@".
RECIPIENT_DOMAIN = r'tolower(extract(@"@([^@]+)$", 1, RecipientId))'

#: The seed's size categories (Size is in MB; upper bounds are exclusive), computed once, on the send side.
SIZE_CATEGORY = """case(
        isnull(Size), "",
        Size < 0.1, "Tiny (<100KB)",
        Size < 1.0, "Small (100KB-1MB)",
        Size < 5.0, "Medium (1-5MB)",
        Size < 10.0, "Large (5-10MB)",
        "Very Large (>10MB)")"""


def _window_lets(b: _Bindings, window: Window) -> None:
    b.add("from", "datetime", window.start)
    b.add("to", "datetime", window.end)
    b.add("status_to", "datetime", window.status_end)


def send_side(
    b: _Bindings, f: Filters, name: str = "Sends", *, senders: str | None = None, size_category: bool = True
) -> str:
    """Sends in the window, filtered, one row per (message, resource): exact duplicates count once.
    ``senders`` names a table of (CorrelationId, _ResourceId) the sends must be in (see sender_messages);
    ``size_category`` False leaves out MessageSizeCategory where nothing reads it (the daily summary, to stay
    under 8 KB per Log Analytics request)."""
    lines = [f"let {name} = SendMail", "    | where TimeGenerated >= p_from and TimeGenerated < p_to"]
    if senders is not None:
        lines.append(f"    | join kind=leftsemi ({senders}) on CorrelationId, _ResourceId")
    if f.message_id is not None:
        lines.append(f"    | where CorrelationId == {b.add('message_id', 'string', f.message_id)}")
    if f.resource_id is not None:
        lines.append(f"    | where _ResourceId =~ {b.add('resource_id', 'string', f.resource_id)}")
    if f.min_size_mb is not None:
        lines.append(f"    | where Size >= {b.add('min_size_mb', 'real', f.min_size_mb)}")
    if f.has_attachments is not None:
        lines.append("    | where AttachmentsCount > 0" if f.has_attachments else "    | where AttachmentsCount == 0")
    lines += [
        "    | summarize arg_min(TimeGenerated, Size, AttachmentsCount, ToRecipientsCount, CcRecipientsCount,",
        "        BccRecipientsCount, UniqueRecipientsCount) by CorrelationId, _ResourceId",
        "    | project SendTime = TimeGenerated, MessageId = CorrelationId, MessageSize = Size,",
        *([f"        MessageSizeCategory = {SIZE_CATEGORY},"] if size_category else []),
        "        AttachmentsCount, ToRecipientsCount, CcRecipientsCount, BccRecipientsCount, UniqueRecipientsCount,",
        "        _ResourceId;",
    ]
    return "\n".join(lines)


def _event_filters(b: _Bindings, f: Filters) -> list[str]:
    """Filters on columns that partition a recipient's events: safe before taking the final status."""
    lines = []
    if f.message_id is not None:
        lines.append("    | where CorrelationId == p_message_id")
    if f.resource_id is not None:
        lines.append("    | where _ResourceId =~ p_resource_id")
    if f.recipient is not None:
        lines.append(f"    | where RecipientId =~ {b.add('recipient', 'string', f.recipient, obfuscated=True)}")
    if f.recipient_domain is not None:
        suffix = b.add("recipient_domain_suffix", "string", "@" + f.recipient_domain)
        lines.append(f"    | where RecipientId endswith {suffix}")
    return lines


def _final_status() -> list[str]:
    values = ", ".join(_FINAL_VALUES)
    return [
        # RecipientId is a string column of the table: "" (never null) for message-level events.
        f'    | where RecipientId != "" and DeliveryStatus in {_FINALS}',
        f"    | summarize arg_max(TimeGenerated, {values})",
        "        by MessageId = CorrelationId, RecipientId, _ResourceId",
        "    | project MessageId, RecipientId, _ResourceId, FinalStatusTime = TimeGenerated,",
        "        FinalDeliveryStatus = DeliveryStatus, SmtpStatusCode, EnhancedSmtpStatusCode, SenderDomain,",
        "        SenderUsername, FailureMessage, FailureReason, IsHardBounce, RecipientMailServerHostName,",
        "        InternetMessageId",
    ]


def sender_condition(b: _Bindings, f: Filters) -> str:
    """The sender filters on a status event's SenderUsername / SenderDomain (any case)."""
    conditions = []
    if f.sender is not None:
        username, at, domain = f.sender.rpartition("@")
        conditions.append(f"SenderUsername =~ {b.once('sender_username', 'string', username if at else f.sender)}")
        if at:
            conditions.append(f"SenderDomain =~ {b.once('sender_domain', 'string', domain)}")
    if f.sender_domain is not None:
        conditions.append(f"SenderDomain =~ {b.once('sender_domain_filter', 'string', f.sender_domain)}")
    return " and ".join(conditions)


def sender_messages(b: _Bindings, f: Filters, name: str = "SenderMessages") -> str:
    """Messages any of whose status events names the sender: SendMail has no sender column, so a send's
    sender is known only from its events (a send without any event yet cannot be attributed)."""
    return "\n".join(
        [
            f"let {name} = StatusUpdates",
            "    | where TimeGenerated >= p_from and TimeGenerated < p_status_to",
            f"    | where {sender_condition(b, f)}",
            "    | distinct CorrelationId, _ResourceId;",
        ]
    )


def final_side(b: _Bindings, f: Filters, name: str = "Finals") -> str:
    """Each recipient's latest final status, with the filters that need only status columns."""
    lines = [
        f"let {name} = StatusUpdates",
        "    | where TimeGenerated >= p_from and TimeGenerated < p_status_to",
        *_event_filters(b, f),
        *_final_status(),
    ]
    if f.statuses is not None:
        listed = ", ".join(f'"{status}"' for status in f.statuses)
        lines.append(f"    | where FinalDeliveryStatus in ({listed})")
    if f.by_sender:
        lines.append(f"    | where {sender_condition(b, f)}")
    if f.internet_message_id is not None:
        imid = b.add("internet_message_id", "string", f.internet_message_id)
        lines.append(f"    | where InternetMessageId == {imid}")
    lines[-1] += ";"
    return "\n".join(lines)


# Written so both engines agree and the embedded translation stays small. A column from an unmatched
# `lookup` is "" in Log Analytics but NULL in DuckDB: "first known explanation" chains test
# `isnotnull(X) and X != ""`, which skips both (and translates far smaller than `coalesce` or `isnotempty`).
# Kusto cannot read a column assigned in the same `extend`, so DurationSeconds and LatencySeconds repeat the
# expressions of DurationMilliseconds and ClockSkew rather than cost the embedded engine another stage.
ENRICHMENT = r"""    | extend RecipientDomain = {RECIPIENT_DOMAIN},
        EnhancedSubject = extract(@"^([245]\.[0-9]{1,3})\.[0-9]{1,3}$", 1, EnhancedSmtpStatusCode),
        CodeClass = coalesce(extract(@"^([245])\.", 1, EnhancedSmtpStatusCode),
            extract(@"^([245])[0-9][0-9]$", 1, SmtpStatusCode))
    | lookup kind=leftouter SmtpCodeCatalog on SmtpStatusCode
    | lookup kind=leftouter EnhancedCodeCatalog on EnhancedSmtpStatusCode
    | lookup kind=leftouter EnhancedSubjectCatalog on EnhancedSubject
    | extend ClockSkew = isnotnull(SendTime) and FinalStatusTime < SendTime,
        DurationMilliseconds = datetime_diff("millisecond", FinalStatusTime, SendTime),
        DurationSeconds = round(datetime_diff("millisecond", FinalStatusTime, SendTime) / 1000.0, 3),
        LatencySeconds = iff(isnotnull(SendTime) and FinalStatusTime < SendTime, real(null),
            round(datetime_diff("millisecond", FinalStatusTime, SendTime) / 1000.0, 3)),
        SmtpStatusCodeDetails = case(
            isnotnull(SmtpStatusCodeDetails) and SmtpStatusCodeDetails != "", SmtpStatusCodeDetails,
            SmtpStatusCode != "", replace_string("Unmapped SMTP code: {code}", "{code}", SmtpStatusCode),
            FinalDeliveryStatus == "Delivered", "Not applicable (Delivered)",
            "Unknown / not provided"),
        EnhancedSmtpStatusCodeDetails = case(
            isnotnull(EnhancedSmtpStatusCodeDetails) and EnhancedSmtpStatusCodeDetails != "",
                EnhancedSmtpStatusCodeDetails,
            isnotnull(EnhancedSubjectDetails) and EnhancedSubjectDetails != "", EnhancedSubjectDetails,
            EnhancedSmtpStatusCode != "",
                replace_string("Unmapped enhanced code: {code}", "{code}", EnhancedSmtpStatusCode),
            FinalDeliveryStatus == "Delivered", "Not applicable (Delivered)",
            "Unknown / not provided"),
        FailureCategory = case(
            FinalDeliveryStatus == "Delivered", "",
            isnotnull(EnhancedFailureCategory) and EnhancedFailureCategory !in ("", "none"), EnhancedFailureCategory,
            isnotnull(EnhancedSubjectFailureCategory) and EnhancedSubjectFailureCategory !in ("", "none"),
                EnhancedSubjectFailureCategory,
            isnotnull(SmtpFailureCategory) and SmtpFailureCategory !in ("", "none"), SmtpFailureCategory,
            FinalDeliveryStatus in ("Quarantined", "FilteredSpam"), "content/spam",
            "other"),
        BounceType = case(
            FinalDeliveryStatus !in ("Bounced", "Failed"),
                iff(isempty(FinalDeliveryStatus), "Unknown", "Not Applicable"),
            IsHardBounce =~ "true", "Hard Bounce",
            IsHardBounce =~ "false", "Soft Bounce",
            EnhancedBounce == "hard", "Hard Bounce",
            EnhancedBounce == "soft", "Soft Bounce",
            EnhancedSubjectBounce == "hard", "Hard Bounce",
            EnhancedSubjectBounce == "soft", "Soft Bounce",
            SmtpBounce == "hard", "Hard Bounce",
            SmtpBounce == "soft", "Soft Bounce",
            CodeClass == "5", "Hard Bounce",
            CodeClass == "4", "Soft Bounce",
            "Unknown"),
        BounceTypeSource = case(
            FinalDeliveryStatus !in ("Bounced", "Failed"),
                iff(isempty(FinalDeliveryStatus), "unknown", "notApplicable"),
            IsHardBounce in~ ("true", "false"), "reported",
            (EnhancedBounce in ("hard", "soft")
                or EnhancedSubjectBounce in ("hard", "soft") or SmtpBounce in ("hard", "soft")
                or CodeClass in ("5", "4")), "inferred",
            "unknown")""".replace("{RECIPIENT_DOMAIN}", RECIPIENT_DOMAIN)


#: A hard bounce: a Bounced or Failed recipient whose bounce type (reported or inferred) is hard. The one
#: definition for stats, bounces, search, daily summaries and alerts.
HARD_BOUNCE = '(FinalDeliveryStatus in ("Bounced", "Failed") and BounceType == "Hard Bounce")'
#: A soft bounce: a Bounced or Failed recipient whose bounce type is soft; nothing else (a Suppressed, Quarantined
#: or FilteredSpam recipient with IsHardBounce "False" is not a bounce at all; an unknown type is neither).
SOFT_BOUNCE = '(FinalDeliveryStatus in ("Bounced", "Failed") and BounceType == "Soft Bounce")'


def _post_join_filters(b: _Bindings, f: Filters) -> list[str]:
    lines = []
    if f.bounce_type == "hard":
        lines.append(f"    | where {HARD_BOUNCE}")
    elif f.bounce_type == "soft":
        lines.append(f"    | where {SOFT_BOUNCE}")
    if f.min_duration_seconds is not None:
        limit = b.add("min_duration_seconds", "real", f.min_duration_seconds)
        lines.append(f"    | where not(ClockSkew) and DurationSeconds >= {limit}")
    return lines


def correlated(b: _Bindings, f: Filters, name: str = "Correlated", *, size_category: bool = True) -> str:
    """Send-anchored correlation: the seed's join, enriched, filtered; one row per recipient."""
    return "\n".join(
        [
            send_side(b, f, size_category=size_category),
            final_side(b, f),
            f"let {name} = Sends",
            "    | join kind=inner (Finals) on MessageId, _ResourceId",
            "    | project-away MessageId1, _ResourceId1",
            ENRICHMENT,
            *_post_join_filters(b, f),
            "    ;",
        ]
    )


def _take_bucket(count: int) -> int:
    """Round a row count up to a power of two so few distinct templates (translations) exist."""
    bucket = 16
    while bucket < count:
        bucket *= 2
    return bucket


def _query(operation: str, b: _Bindings, body: list[str], window: Window) -> KqlQuery:
    return KqlQuery(operation, "\n".join(body), tuple(b.params), (window.start, window.status_end))


# --------------------------------------------------------------------------- operations

#: A fixed window for queries whose time bounds are replaced by relative expressions (alerts, workbook).
PLACEHOLDER_WINDOW = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 2, tzinfo=UTC))


def build_search_query(
    params: SearchParams, window: Window, *, cursor_end: datetime | None = None, skip: int = 0
) -> KqlQuery:
    """Newest send first, keyset-paged: rows sent before ``cursor_end``; the caller drops the
    first ``skip`` rows (those tied with the previous page's last send time)."""
    b = _Bindings()
    _window_lets(b, window)
    f = Filters.from_search(params)
    parts = [correlated(b, f)]
    lines = ["Correlated"]
    if cursor_end is not None:
        lines.append(f"| where SendTime < {b.add('cursor_end', 'datetime', cursor_end)}")
    lines += [
        "| order by SendTime desc, MessageId asc, RecipientId asc, _ResourceId asc",
        f"| take {_take_bucket(params.top + skip + 1)}",
        "| project " + ", ".join(CORRELATED_COLUMNS),
    ]
    return _query("search", b, [*parts, "\n".join(lines)], window)


def build_trace_query(message_id: str, window: Window) -> KqlQuery:
    """Message-anchored: every event of the message, each recipient's final status, the send row if any.

    Rows carry ``RowKind``: "send" (the send row), "event" (one distinct status event), "final" (a recipient's
    final status, joined to the send row when there is one, enriched) and "engagement" (one distinct view or
    click; none unless the sender domain tracks engagement).
    """
    b = _Bindings()
    _window_lets(b, window)
    f = Filters(message_id=message_id)
    events = ", ".join(EVENT_COLUMNS)
    body = [
        send_side(b, f, "Send"),
        "let Events = StatusUpdates",
        "    | where TimeGenerated >= p_from and TimeGenerated < p_status_to",
        "    | where CorrelationId == p_message_id",
        f"    | distinct {events}",
        f"    | extend RecipientDomain = {RECIPIENT_DOMAIN};",
        "let Finals = Events",
        *_final_status(),
        "    ;",
        "let Engaged = Engagements",
        "    | where TimeGenerated >= p_from and TimeGenerated < p_status_to",
        "    | where CorrelationId == p_message_id",
        "    | distinct TimeGenerated, RecipientId, EngagementType, EngagementContext, _ResourceId;",
        "Finals",
        "| join kind=leftouter (Send) on MessageId, _ResourceId",
        # Dropped here, not only by the projection below: fewer columns through every enrichment stage.
        "| project-away MessageId1, _ResourceId1",
        ENRICHMENT,
        "| project " + ", ".join(CORRELATED_COLUMNS) + ', RowKind = "final"',
        '| union (Send | extend RowKind = "send"),',
        '    (Events | extend RowKind = "event"),',
        '    (Engaged | extend RowKind = "engagement")',
    ]
    return _query("trace", b, body, window)


def status_counts(total: str = "count()") -> str:
    """Recipients per final status and bounce type: domain stats and daily summaries count the same way."""
    return ", ".join(
        [
            f"Total = {total}",
            *(f'{status} = countif(FinalDeliveryStatus == "{status}")' for status in FINAL_STATUSES),
            f"HardBounces = countif({HARD_BOUNCE})",
            f"SoftBounces = countif({SOFT_BOUNCE})",
        ]
    )


STATUS_COUNTS = status_counts()

_STATS_AGGREGATES: dict[str, list[str]] = {
    "domains": [
        "Correlated",
        f"| summarize {STATUS_COUNTS},",
        "    AvgDurationSeconds = avg(LatencySeconds), P50DurationSeconds = percentile(LatencySeconds, 50),",
        "    P95DurationSeconds = percentile(LatencySeconds, 95)",
        "    by RecipientDomain",
        "| extend SuccessRate = round(100.0 * Delivered / Total, 2), AvgDurationSeconds = round(AvgDurationSeconds, 3)",
        "| order by Total desc, RecipientDomain asc",
    ],
    "senders": [
        "Correlated",
        '| summarize TotalSent = count(), Delivered = countif(FinalDeliveryStatus == "Delivered"),',
        f"    HardBounces = countif({HARD_BOUNCE}), SoftBounces = countif({SOFT_BOUNCE})",
        "    by SenderUsername, SenderDomain",
        "| extend HardBounceRate = round(100.0 * HardBounces / TotalSent, 2),",
        "    SoftBounceRate = round(100.0 * SoftBounces / TotalSent, 2)",
        "| order by HardBounceRate desc, TotalSent desc, SenderUsername asc, SenderDomain asc",
    ],
    "mail-servers": [
        "Correlated",
        '| summarize Total = count(), Delivered = countif(FinalDeliveryStatus == "Delivered"),',
        "    AvgDurationSeconds = avg(LatencySeconds), P95DurationSeconds = percentile(LatencySeconds, 95)",
        "    by RecipientMailServerHostName",
        "| extend Failures = Total - Delivered, AvgDurationSeconds = round(AvgDurationSeconds, 3)",
        "| extend FailureRate = round(100.0 * Failures / Total, 2)",
        "| order by Total desc, RecipientMailServerHostName asc",
    ],
    "failures": [
        "Correlated",
        '| where FinalDeliveryStatus != "Delivered"',
        "| summarize Count = count() by FailureReason, FinalDeliveryStatus, SmtpStatusCode,",
        "    EnhancedSmtpStatusCode, EnhancedSmtpStatusCodeDetails, FailureCategory",
        "| order by Count desc, FailureReason asc, EnhancedSmtpStatusCode asc, SmtpStatusCode asc",
    ],
}


def message_failures(name: str = "MessageFailures") -> str:
    """Messages that failed as a whole: a message-level (empty RecipientId) Failed or Dropped event."""
    return "\n".join(
        [
            f"let {name} = StatusUpdates",
            "    | where TimeGenerated >= p_from and TimeGenerated < p_status_to",
            f'    | where RecipientId == "" and DeliveryStatus in {_MESSAGE_TERMINALS}',
            "    | distinct MessageId = CorrelationId, _ResourceId;",
        ]
    )


#: Recipients expected to get a final status: those of sends that did not fail as a whole. The pending rule of
#: both the daily summary and stats completeness: pending = EXPECTED_RECIPIENTS - (sends joined to final statuses).
EXPECTED_RECIPIENTS = (
    "toscalar(Sends | join kind=leftanti (MessageFailures) on MessageId, _ResourceId"
    " | summarize tolong(sum(UniqueRecipientsCount)))"
)
#: Sends of the window that failed as a whole (``failedMessages``).
FAILED_MESSAGES = "toscalar(Sends | join kind=leftsemi (MessageFailures) on MessageId, _ResourceId | count)"


def _scoped_sends(b: _Bindings, f: Filters) -> list[str]:
    """The Sends part for queries that read sends without their recipients' final statuses."""
    if not f.by_sender:
        return [send_side(b, f)]
    return [sender_messages(b, f), send_side(b, f, senders="SenderMessages")]


def build_stats_query(kind: str, params: StatsParams, window: Window) -> KqlQuery:
    b = _Bindings()
    _window_lets(b, window)
    f = Filters.from_scope(params)
    take = f"| take {params.top}"
    if kind == "sizes":
        body = [
            *_scoped_sends(b, f),
            "Sends",
            "| summarize Messages = count(), Recipients = sum(UniqueRecipientsCount),",
            "    AvgMessageSize = round(avg(MessageSize), 4) by MessageSizeCategory",
            "| order by MessageSizeCategory asc",
        ]
        return _query("stats-sizes", b, body, window)
    if kind == "latency":
        # The bin size is one of a fixed set (validated), written as a timespan literal.
        bin_span = timespan_literal(BIN_SPANS[params.bin])
        body = [
            correlated(b, f),
            "Correlated",
            '| where FinalDeliveryStatus == "Delivered" and not(ClockSkew)',
            "| summarize Count = count(), AvgDurationSeconds = round(avg(LatencySeconds), 3),",
            f"    P95DurationSeconds = percentile(LatencySeconds, 95) by Time = bin(SendTime, {bin_span})",
            "| order by Time asc",
        ]
        return _query("stats-latency", b, body, window)
    if kind not in _STATS_AGGREGATES:
        raise ValueError(f"unknown stats kind {kind}")
    body = [correlated(b, f), "\n".join([*_STATS_AGGREGATES[kind], take])]
    return _query(f"stats-{kind}", b, body, window)


def build_completeness_query(window: Window, f: Filters | None = None) -> KqlQuery:
    """How complete the window's data is: expected recipients still without a final status (the daily
    summary's pending rule), sends that failed as a whole, and the newest event seen."""
    f = f or Filters()
    b = _Bindings()
    _window_lets(b, window)
    body = [
        *_scoped_sends(b, f),
        final_side(b, f),
        message_failures(),
        f"let Expected = {EXPECTED_RECIPIENTS};",
        "let Resolved = toscalar(Sends | join kind=inner (Finals) on MessageId, _ResourceId | count);",
        "StatusUpdates",
        "| where TimeGenerated >= p_from and TimeGenerated < p_status_to",
        "| summarize LatestEventTime = max(TimeGenerated)",
        "| extend PendingRecipients = max_of(coalesce(Expected, long(0)) - Resolved, long(0)),",
        f"    FailedMessages = {FAILED_MESSAGES}",
    ]
    return _query("completeness", b, body, window)


def build_bounces_query(params: BouncesParams, window: Window) -> KqlQuery:
    """One row per recipient address (lowercased) whose final status was Bounced or Failed."""
    b = _Bindings()
    _window_lets(b, window)
    f = Filters(
        recipient_domain=params.recipient_domain,
        sender=params.sender,
        sender_domain=params.sender_domain,
        resource_id=params.resource_id,
        statuses=("Bounced", "Failed"),
        bounce_type=None if params.type == "all" else params.type,
    )
    body = [
        correlated(b, f),
        "Correlated",
        "| extend Recipient = tolower(RecipientId)",
        "| summarize arg_max(FinalStatusTime, MessageId, SmtpStatusCode, EnhancedSmtpStatusCode,",
        "    EnhancedSmtpStatusCodeDetails, FailureCategory, FailureReason, FinalDeliveryStatus, BounceType,",
        "    BounceTypeSource, RecipientDomain), BounceCount = count(), FirstBounceTime = min(FinalStatusTime)",
        "    by Recipient",
        "| project RecipientId = Recipient, RecipientDomain, BounceType, BounceTypeSource, BounceCount,",
        "    FirstBounceTime, LastBounceTime = FinalStatusTime, LastMessageId = MessageId, SmtpStatusCode,",
        "    EnhancedSmtpStatusCode, EnhancedSmtpStatusCodeDetails, FailureCategory, FailureReason,",
        "    LastStatus = FinalDeliveryStatus",
        "| order by LastBounceTime desc, RecipientId asc",
        f"| take {params.top}",
    ]
    return _query("bounces", b, body, window)


def build_daily_summary_query(day_start: datetime, status_grace: timedelta) -> KqlQuery:
    """Per-dimension totals for sends of one UTC day; aggregation runs server-side.

    Rows: Dimension (total, domain, sender, status, mailServer), Key, counts by final status,
    Pending (expected recipients without a final status), bounces, success rate and latency.
    """
    window = Window(day_start, day_start + timedelta(days=1), status_grace)
    b = _Bindings()
    _window_lets(b, window)
    f = Filters()
    latency = (
        "AvgDurationSeconds = avg(LatencySeconds), P50DurationSeconds = percentile(LatencySeconds, 50), "
        "P95DurationSeconds = percentile(LatencySeconds, 95)"
    )
    # The datatable row makes sure a day without any final status still has its total row: it counts in no column
    # (Total counts rows with a final status). Each recipient then comes once per dimension into one aggregate.
    counts = f"{status_counts('countif(isnotempty(FinalDeliveryStatus))')}, {latency}"
    body = [
        correlated(b, f, size_category=False),
        message_failures(),
        f"let Expected = {EXPECTED_RECIPIENTS};",
        f"let FailedSends = {FAILED_MESSAGES};",
        "let Dimensions = Correlated",
        '    | extend Sender = iff(isempty(SenderDomain), SenderUsername, strcat(SenderUsername, "@", SenderDomain));',
        "union",
        '    (datatable(Dimension:string, Key:string)["total", "all"]),',
        '    (Dimensions | extend Dimension = "total", Key = "all"),',
        '    (Dimensions | extend Dimension = "domain", Key = RecipientDomain),',
        '    (Dimensions | extend Dimension = "sender", Key = Sender),',
        '    (Dimensions | extend Dimension = "status", Key = FinalDeliveryStatus),',
        '    (Dimensions | extend Dimension = "mailServer", Key = RecipientMailServerHostName)',
        f"| summarize {counts} by Dimension, Key",
        '| order by Dimension == "total" desc, Dimension asc, Key asc',
        '| extend Pending = iff(Dimension == "total", max_of(coalesce(Expected, long(0)) - Total, long(0)), long(0)),',
        '    FailedMessages = iff(Dimension == "total", FailedSends, long(0))',
        "| extend SuccessRate = iff(Total == 0, real(0), round(100.0 * Delivered / Total, 2)),",
        "    AvgDurationSeconds = round(AvgDurationSeconds, 3)",
        "| project Dimension, Key, " + ", ".join(SUMMARY_COUNT_COLUMNS + SUMMARY_RATE_COLUMNS),
    ]
    return _query("daily-summary", b, body, window)


def build_hard_bounce_rate_query(window: Window = PLACEHOLDER_WINDOW) -> KqlQuery:
    """One row, ``HardBounceRate``: percent of final per-recipient statuses of sends in the window that are
    hard bounces (reported or inferred). For the hard-bounce alert rule."""
    b = _Bindings()
    _window_lets(b, window)
    body = [
        correlated(b, Filters()),
        "Correlated",
        f"| summarize Total = count(), HardBounces = countif({HARD_BOUNCE})",
        "| extend HardBounceRate = iff(Total == 0, real(0), round(100.0 * HardBounces / Total, 2))",
        "| project HardBounceRate, HardBounces, Total",
    ]
    return _query("alert-hard-bounce-rate", b, body, window)


def build_p95_latency_query(window: Window = PLACEHOLDER_WINDOW) -> KqlQuery:
    """One row, ``P95DurationSeconds``: p95 send-to-delivered latency of sends in the window (clock-skewed
    rows left out). For the latency alert rule; needs no code catalog, so it stays small."""
    b = _Bindings()
    _window_lets(b, window)
    body = [
        send_side(b, Filters()),
        final_side(b, Filters(statuses=("Delivered",))),
        "Sends",
        "| join kind=inner (Finals) on MessageId, _ResourceId",
        "| where FinalStatusTime >= SendTime",
        '| extend DurationSeconds = datetime_diff("millisecond", FinalStatusTime, SendTime) / 1000.0',
        "| summarize P95DurationSeconds = percentile(DurationSeconds, 95), Delivered = count()",
        "| extend P95DurationSeconds = iff(Delivered == 0, real(0), P95DurationSeconds)",
    ]
    return _query("alert-p95-latency", b, body, window)


# --------------------------------------------------------------------------- time series, engagement, recipients


def build_timeseries_query(
    params: TimeSeriesParams, start: datetime, end: datetime, status_grace: timedelta
) -> KqlQuery:
    """Final statuses per time bin by *event* time (the time of each recipient's final status), keyed by status
    or recipient domain, with delivery rates and send-to-final latency.

    Event-anchored: final statuses in [start, end), of sends up to ``status_grace`` before ``start`` (a send
    found for latency; finals whose send is not logged are left out, as in every send-anchored aggregate).
    """
    window = Window(start - status_grace, end, status_grace)
    b = _Bindings()
    _window_lets(b, window)
    series_from, series_to = b.add("series_from", "datetime", start), b.add("series_to", "datetime", end)
    # The bin size is one of a fixed set (validated), written as a timespan literal.
    bin_span = timespan_literal(BIN_SPANS[params.bin])
    key = "FinalDeliveryStatus" if params.by == "status" else "RecipientDomain"
    delivered = 'countif(FinalDeliveryStatus == "Delivered")'
    body = [
        correlated(b, Filters.from_scope(params)),
        "let Binned = Correlated",
        f"    | where FinalStatusTime >= {series_from} and FinalStatusTime < {series_to}",
        f"    | extend Time = bin(FinalStatusTime, {bin_span});",
        "Binned",
        f"| summarize Count = count(), Delivered = {delivered},",
        "    P50LatencySeconds = percentile(LatencySeconds, 50), P95LatencySeconds = percentile(LatencySeconds, 95)",
        f"    by Time, Key = {key}",
        f"| join kind=inner (Binned | summarize BinTotal = count(), BinDelivered = {delivered} by Time) on Time",
        "| extend DeliveryRate = round(100.0 * Delivered / Count, 2),",
        "    BinDeliveryRate = round(100.0 * BinDelivered / BinTotal, 2)",
        "| project Time, Key, Count, Delivered, DeliveryRate, BinTotal, BinDeliveryRate, P50LatencySeconds,",
        "    P95LatencySeconds",
        "| order by Time asc, Key asc",
    ]
    return _query("stats-timeseries", b, body, window)


def engagement_side(f: Filters, name: str = "Engagement", *, detail: bool = False) -> str:
    """Views and clicks per (message, lowercased recipient, resource) from ACSEmailUserEngagementOperational.
    Engagement exists only for custom sender domains with user engagement tracking enabled.

    Reads [p_from, p_status_to); with ``f.message_id`` only that message (``p_message_id`` must be bound, e.g.
    by send_side). ``detail`` adds the first and last time of each kind and up to 20 clicked URLs
    (``ClickedUrls``, a dynamic array). The trace can join it on (MessageId, Recipient = tolower(RecipientId),
    _ResourceId) with kind=leftouter: recipients without engagement get null counts.
    """
    head = [
        "Engagements",
        "    | where TimeGenerated >= p_from and TimeGenerated < p_status_to",
        *(["    | where CorrelationId == p_message_id"] if f.message_id is not None else []),
    ]
    keys = "by MessageId = CorrelationId, Recipient = tolower(RecipientId), _ResourceId"
    lines = [
        f"let {name} = " + head[0],
        *head[1:],
        '    | extend IsView = EngagementType =~ "View", IsClick = EngagementType =~ "Click"',
    ]
    aggregates = ["Views = countif(IsView)", "Clicks = countif(IsClick)"]
    if detail:
        # min/max of iff(..., null) rather than minif/maxif: both engines skip the nulls.
        aggregates += [
            f"{edge}{kind}Time = {fn}(iff(Is{kind}, TimeGenerated, datetime(null)))"
            for kind in ("View", "Click")
            for edge, fn in (("First", "min"), ("Last", "max"))
        ]
    lines.append("    | summarize " + ",\n        ".join(aggregates))
    lines.append(f"        {keys}")
    if detail:
        lines += [
            f"    | join kind=leftouter ({head[0]}",
            *("    " + line for line in head[1:]),
            '        | where EngagementType =~ "Click" and EngagementContext != ""',
            f"        | summarize ClickedUrls = make_set(EngagementContext, 20) {keys})",
            "        on MessageId, Recipient, _ResourceId",
            "    | project-away MessageId1, Recipient1, _ResourceId1",
        ]
    lines[-1] += ";"
    return "\n".join(lines)


ENGAGEMENT_KEYS = {
    "sender": 'strcat(SenderUsername, "@", SenderDomain)',
    "senderDomain": "SenderDomain",
    "recipientDomain": "RecipientDomain",
}


def build_engagement_query(params: EngagementParams, window: Window) -> KqlQuery:
    """Open and click rates among delivered recipients of the window's sends, by sender, sender domain or
    recipient domain. A click counts as an open too (images may be blocked while links are followed)."""
    b = _Bindings()
    _window_lets(b, window)
    f = Filters.from_scope(params)
    body = [
        correlated(b, f),
        engagement_side(f),
        "Correlated",
        '| where FinalDeliveryStatus == "Delivered"',
        "| extend Recipient = tolower(RecipientId)",
        "| join kind=leftouter (Engagement) on MessageId, Recipient, _ResourceId",
        "| summarize Delivered = count(), Opened = countif(Views > 0 or Clicks > 0), Clicked = countif(Clicks > 0),",
        f"    Views = sum(Views), Clicks = sum(Clicks) by Key = {ENGAGEMENT_KEYS[params.by]}",
        "| extend OpenRate = round(100.0 * Opened / Delivered, 2), ClickRate = round(100.0 * Clicked / Delivered, 2),",
        "    Views = coalesce(Views, long(0)), Clicks = coalesce(Clicks, long(0))",
        "| project Key, Delivered, Opened, Clicked, OpenRate, ClickRate, Views, Clicks",
        "| order by Delivered desc, Key asc",
        f"| take {params.top}",
    ]
    return _query("stats-engagement", b, body, window)


def build_recipient_history_query(params: RecipientParams, window: Window) -> KqlQuery:
    """Every message with a status event for one address (any case), newest first: its final status (enriched)
    or, while it has none, its latest event. The address is bound as an obfuscated parameter."""
    b = _Bindings()
    _window_lets(b, window)
    recipient = b.add("recipient", "string", params.address, obfuscated=True)
    body = [
        send_side(b, Filters()),
        "let Events = StatusUpdates",
        "    | where TimeGenerated >= p_from and TimeGenerated < p_status_to",
        f"    | where RecipientId =~ {recipient};",
        "let Finals = Events",
        *_final_status(),
        "    ;",
        "Events",
        "| summarize arg_max(TimeGenerated, DeliveryStatus) by MessageId = CorrelationId, _ResourceId",
        "| project MessageId, _ResourceId, LastEventTime = TimeGenerated, LastEventStatus = DeliveryStatus",
        "| join kind=leftouter (Finals) on MessageId, _ResourceId",
        "| project-away MessageId1, _ResourceId1",
        "| join kind=leftouter (Sends) on MessageId, _ResourceId",
        "| project-away MessageId1, _ResourceId1",
        ENRICHMENT,
        f"| extend HardBounce = {HARD_BOUNCE}",
        "| project MessageId, SendTime, LastEventTime, LastEventStatus, FinalDeliveryStatus, FinalStatusTime,",
        "    BounceType, HardBounce, SmtpStatusCode, EnhancedSmtpStatusCode, EnhancedSmtpStatusCodeDetails,",
        "    FailureCategory, FailureReason, SenderUsername, SenderDomain, InternetMessageId, _ResourceId",
        "| order by LastEventTime desc, MessageId asc",
        f"| take {params.top}",
    ]
    return _query("recipient-history", b, body, window)
