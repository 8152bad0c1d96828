"""The follower's query: log rows that arrived since a watermark, in arrival order, bounded per run.

One query per run, whatever the traffic: the send rows and the status rows whose *arrival* time lies in ``[p_since,
p_until)`` (those that arrived exactly at ``p_since`` only from ``TimeGenerated`` ``p_time`` on) but not in the gap
``[p_gap_from, p_gap_until)`` (rows read already and not yet due for their second read: see
:mod:`shared.state.follower`), oldest arrival first, at most ``take`` rows. Arrival time is ``IngestedAt``, defined
by the prelude, so the body is the same on both engines:

* Log Analytics: ``ingestion_time()``; ``p_from`` bounds ``TimeGenerated`` as well (the API timespan), a day
  before ``p_since``, since diagnostic rows arrive minutes after their time;
* embedded store: the store-side column ``_IngestedAt`` (when the import committed the row), or, for stores
  without it, ``TimeGenerated`` itself (the documented fallback, with a wider overlap; see
  :mod:`shared.state.follower`).

Rows that arrived at the same instant (Log Analytics stamps whole ingestion batches alike) are ordered by
``TimeGenerated``, so a run that stops at ``take`` rows continues from its last row's (arrival, time) pair,
re-reading only the rows tied with it (merges are idempotent). Kusto has no ``>`` on strings and duckdb-kql
no ``strcmp``/``hash``, hence a time, not a row key, as the tie-break.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from shared.kql.builder import EVENT_COLUMNS
from shared.kql.literals import literal
from shared.kql.query import KqlQuery, Param, log_analytics_view
from shared.schemas import SEND_MAIL, STATUS_UPDATE

EmbeddedArrival = Literal["_IngestedAt", "TimeGenerated"]
#: The embedded store's arrival-time column the importer adds (type datetime, UTC, the commit's time).
INGESTED_AT: Final = "_IngestedAt"
#: How far before the watermark Log Analytics rows may be by TimeGenerated (bounds the scanned data).
LOG_ANALYTICS_TIME_SLACK: Final = timedelta(days=1)

#: The rows' arrival and kind, the status columns the trace reads (the send row leaves them null), the send
#: facts (null on status rows), and the resource.
FOLLOW_COLUMNS: Final = (
    "IngestedAt",
    "RowKind",
    *(column for column in EVENT_COLUMNS if column != "_ResourceId"),
    "Size",
    "AttachmentsCount",
    "ToRecipientsCount",
    "CcRecipientsCount",
    "BccRecipientsCount",
    "UniqueRecipientsCount",
    "_ResourceId",
)

_BODY: Final = """let Arrived = union
    (FollowSends
        | where IngestedAt >= p_since and IngestedAt < p_until
        | where IngestedAt < p_gap_from or IngestedAt >= p_gap_until
        | project IngestedAt, RowKind = "send", TimeGenerated, CorrelationId, RecipientId = "", DeliveryStatus = "",
            SmtpStatusCode = "", EnhancedSmtpStatusCode = "", FailureReason = "", FailureMessage = "",
            IsHardBounce = "", SenderUsername = "", SenderDomain = "", RecipientMailServerHostName = "",
            InternetMessageId = "", Size, AttachmentsCount, ToRecipientsCount, CcRecipientsCount,
            BccRecipientsCount, UniqueRecipientsCount, _ResourceId),
    (FollowStatus
        | where IngestedAt >= p_since and IngestedAt < p_until
        | where IngestedAt < p_gap_from or IngestedAt >= p_gap_until
        | project IngestedAt, RowKind = "status", TimeGenerated, CorrelationId, RecipientId, DeliveryStatus,
            SmtpStatusCode, EnhancedSmtpStatusCode, FailureReason, FailureMessage, IsHardBounce, SenderUsername,
            SenderDomain, RecipientMailServerHostName, InternetMessageId, Size = real(null),
            AttachmentsCount = int(null), ToRecipientsCount = int(null), CcRecipientsCount = int(null),
            BccRecipientsCount = int(null), UniqueRecipientsCount = int(null), _ResourceId);
Arrived
| where IngestedAt > p_since or TimeGenerated >= p_time
| order by IngestedAt asc, TimeGenerated asc
| take {take}
| project {columns}"""


@dataclass(frozen=True)
class FollowerQuery(KqlQuery):
    """A :class:`KqlQuery` whose preludes define the arrival time of each table (see the module docstring)."""

    embedded_arrival: EmbeddedArrival = INGESTED_AT

    def log_analytics_text(
        self, expressions: dict[str, str] | None = None, *, catalog_functions: bool | None = None
    ) -> str:
        """The Log Analytics form (the follower reads no code catalog, so ``catalog_functions`` changes nothing)."""
        lets = [f"let {p.name} = {literal(p.value, p.kusto_type, obfuscated=p.obfuscated)};" for p in self.params]
        views = [
            _view("FollowSends", log_analytics_view("SendMail"), "ingestion_time()"),
            _view("FollowStatus", log_analytics_view("StatusUpdates"), "ingestion_time()"),
        ]
        return "\n".join([*lets, *views, self.body])

    def embedded_text(self) -> str:
        declared = ", ".join(f"{p.name}:{p.kusto_type}" for p in self.params)
        views = [
            f"let FollowSends = {SEND_MAIL.name} | where TimeGenerated >= p_from"
            f" | extend IngestedAt = {self.embedded_arrival};",
            f"let FollowStatus = {STATUS_UPDATE.name} | where TimeGenerated >= p_from"
            f" | extend IngestedAt = {self.embedded_arrival};",
        ]
        return "\n".join([f"declare query_parameters({declared});", *views, self.body])


def _view(name: str, table_view: str, arrival: str) -> str:
    """``let SendMail = ...;`` (with its column_ifexists) renamed, bounded by p_from, with IngestedAt."""
    source = table_view.split(" = ", 1)[1].rstrip(";")
    return f"let {name} = {source}\n    | where TimeGenerated >= p_from\n    | extend IngestedAt = {arrival};"


def build_follow_query(
    since: datetime,
    since_time: datetime,
    until: datetime,
    take: int,
    *,
    time_from: datetime,
    gap: tuple[datetime, datetime] | None = None,
    embedded_arrival: EmbeddedArrival = INGESTED_AT,
) -> FollowerQuery:
    """Rows that arrived in ``[since, until)`` (at ``since`` only from ``since_time`` on) and not in ``gap``,
    oldest first.

    At most ``take`` rows.

    ``take`` is part of the text (a constant per deployment, so one translation); ``time_from`` bounds
    ``TimeGenerated`` (the Log Analytics timespan).
    """
    if take < 1:
        raise ValueError("take must be positive")
    gap_from, gap_until = gap or (since, since)  # an empty gap
    params = (
        Param("p_since", "datetime", since),
        Param("p_time", "datetime", since_time),
        Param("p_until", "datetime", until),
        Param("p_from", "datetime", time_from),
        Param("p_gap_from", "datetime", gap_from),
        Param("p_gap_until", "datetime", gap_until),
    )
    body = _BODY.replace("{take}", str(int(take))).replace("{columns}", ", ".join(FOLLOW_COLUMNS))
    return FollowerQuery("follow", body, params, (time_from, until), embedded_arrival=embedded_arrival)
