"""KQL of the deliverability answers: send volume against the quota, sender health, mailbox providers.

Built from the correlation's named parts (``shared.kql.builder``): the same send side, final side and
enrichment, so a hard bounce, a send window and a sender filter mean here what they mean in every other
aggregate. Aggregation runs server-side; each query returns a few rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.kql.builder import (
    HARD_BOUNCE,
    PLACEHOLDER_WINDOW,
    Filters,
    Window,
    _Bindings,
    _query,
    _scoped_sends,
    _window_lets,
    correlated,
)
from shared.kql.literals import timespan_literal
from shared.kql.query import KqlQuery
from shared.providers import PROVIDER_ENRICHMENT
from shared.settings import VerdictRule

#: Final statuses that say the receiving side judged the mail as spam: ACS has no complaint feed, these are
#: the closest signal (FilteredSpam: refused as spam; Quarantined: held in the recipient's quarantine).
SPAM_STATUSES = ("Quarantined", "FilteredSpam")
SPAM = '(FinalDeliveryStatus in ("Quarantined", "FilteredSpam"))'
#: Busiest minutes a quota answer lists.
BUSIEST_MINUTES = 5

_MINUTE = timespan_literal(timedelta(minutes=1))
_HOUR = timespan_literal(timedelta(hours=1))
_DAY = timespan_literal(timedelta(days=1))

#: Per-bin aggregates of the quota query, one row per bin size (RowKind "minute" / "hour").
_PERIOD_SUMMARY = (
    "summarize Periods = count(), PeakMessages = max(Messages), PeakRecipients = max(Recipients),\n"
    "        P95Messages = percentile(Messages, 95), P95Recipients = percentile(Recipients, 95),\n"
    "        OverLimit = countif(Messages > {limit}), TotalMessages = sum(Messages), TotalRecipients = sum(Recipients)"
)


def _volume_lets(b: _Bindings, f: Filters) -> list[str]:
    """Sends of the window (sender-scoped when asked) and their messages / recipients per minute and hour."""
    return [
        *_scoped_sends(b, f),
        "let PerMinute = Sends",
        "    | summarize Messages = count(), Recipients = tolong(sum(UniqueRecipientsCount))",
        f"        by Time = bin(SendTime, {_MINUTE});",
    ]


def build_quota_query(
    f: Filters, window: Window, *, minute_limit: int, hour_limit: int, last_hour_start: datetime
) -> KqlQuery:
    """Send requests (messages) and recipients per minute and per hour in the window, against the limits.

    Rows by ``RowKind``: "minute" and "hour" (one each: busy periods, peak, p95, periods over the limit, totals;
    p95 over periods with at least one send), "busiest" (the busiest minutes) and "lastHour" (each minute of
    the last hour before the window's end that had sends).
    """
    b = _Bindings()
    _window_lets(b, window)
    minute = b.add("minute_limit", "long", minute_limit)
    hour = b.add("hour_limit", "long", hour_limit)
    last_hour = b.add("last_hour_from", "datetime", last_hour_start)
    body = [
        *_volume_lets(b, f),
        "let PerHour = PerMinute",
        f"    | summarize Messages = sum(Messages), Recipients = sum(Recipients) by Time = bin(Time, {_HOUR});",
        "union",
        f'    (PerMinute | {_PERIOD_SUMMARY.format(limit=minute)} | extend RowKind = "minute"),',
        f'    (PerHour | {_PERIOD_SUMMARY.format(limit=hour)} | extend RowKind = "hour"),',
        f'    (PerMinute | order by Messages desc, Time asc | take {BUSIEST_MINUTES} | extend RowKind = "busiest"),',
        f'    (PerMinute | where Time >= {last_hour} | extend RowKind = "lastHour")',
    ]
    return _query("deliverability-quota", b, body, window)


def build_quota_evidence_query(f: Filters, window: Window, *, week_start: datetime) -> KqlQuery:
    """Peak messages and recipients per minute, hour and UTC day over the window (30 days) and its last 7 days
    (from ``week_start``): the volumes a quota-increase request asks for. One row per bin size."""
    b = _Bindings()
    _window_lets(b, window)
    week = b.add("week_from", "datetime", week_start)

    def peaks(source: str, kind: str) -> str:
        return (
            f"    ({source} | summarize PeakMessages30d = max(Messages), PeakRecipients30d = max(Recipients),\n"
            f"        PeakMessages7d = max(iff(Time >= {week}, Messages, long(null))),\n"
            f"        PeakRecipients7d = max(iff(Time >= {week}, Recipients, long(null)))"
            f' | extend RowKind = "{kind}")'
        )

    body = [
        *_volume_lets(b, f),
        "let PerHour = PerMinute",
        f"    | summarize Messages = sum(Messages), Recipients = sum(Recipients) by Time = bin(Time, {_HOUR});",
        "let PerDay = PerHour",
        f"    | summarize Messages = sum(Messages), Recipients = sum(Recipients) by Time = bin(Time, {_DAY});",
        "union",
        peaks("PerMinute", "minute") + ",",
        peaks("PerHour", "hour") + ",",
        peaks("PerDay", "day"),
    ]
    return _query("deliverability-quota-evidence", b, body, window)


#: Counts of one sender health row (the rates are computed from them, in Python and in the alert's KQL).
HEALTH_COUNTS = (
    "Recipients = count()",
    'Delivered = countif(FinalDeliveryStatus == "Delivered")',
    f"HardBounces = countif({HARD_BOUNCE})",
    f"Spam = countif({SPAM})",
)


def build_sender_health_query(f: Filters, window: Window, *, current_start: datetime) -> KqlQuery:
    """Recipients with a final status, delivered, hard bounces and spam signals per sender (username and
    lowercased domain), for the current window [current_start, end) and the previous one [start, current_start):
    ``Period`` is "current" or "previous". Domain rows are sums of their senders' rows."""
    b = _Bindings()
    _window_lets(b, window)
    current = b.add("current_from", "datetime", current_start)
    body = [
        correlated(b, f, size_category=False),
        "Correlated",
        f'| extend Period = iff(SendTime >= {current}, "current", "previous"), SenderDomain = tolower(SenderDomain)',
        f"| summarize {', '.join(HEALTH_COUNTS)}",
        "    by Period, SenderDomain, SenderUsername",
        "| order by SenderDomain asc, SenderUsername asc, Period asc",
    ]
    return _query("deliverability-sender-health", b, body, window)


def verdict_expression(rules: tuple[VerdictRule, ...], min_recipients: int) -> str:
    """The verdict as one KQL ``case``: the first atRisk rule met, then watch; below ``min_recipients`` an
    atRisk is only a watch (too few to judge). The same rules the Python verdict applies."""

    def met(level: str) -> str:
        conditions = [f"{rule.metric} >= {rule.percent!r}" for rule in rules if rule.verdict == level]
        return " or ".join(conditions) or "false"

    return (
        f'case(Recipients >= {min_recipients} and ({met("atRisk")}), "atRisk",\n'
        f'        ({met("atRisk")}) or ({met("watch")}), "watch", "ok")'
    )


def build_sender_health_alert_query(
    rules: tuple[VerdictRule, ...], min_recipients: int, window: Window = PLACEHOLDER_WINDOW
) -> KqlQuery:
    """One row, ``AtRiskDomains``: sender domains whose verdict over the window is atRisk (the alert rule)."""
    b = _Bindings()
    _window_lets(b, window)
    body = [
        correlated(b, Filters(), size_category=False),
        "Correlated",
        f"| summarize {', '.join(HEALTH_COUNTS)} by SenderDomain = tolower(SenderDomain)",
        "| extend HardBounceRate = 100.0 * HardBounces / Recipients, SpamRate = 100.0 * Spam / Recipients,",
        "    FailureRate = 100.0 * (Recipients - Delivered) / Recipients",
        f"| extend Verdict = {verdict_expression(rules, min_recipients)}",
        '| summarize AtRiskDomains = countif(Verdict == "atRisk"), WatchDomains = countif(Verdict == "watch"),',
        "    Domains = count()",
        "| extend AtRiskDomains = coalesce(AtRiskDomains, long(0))",
    ]
    return _query("alert-sender-health", b, body, window)


def build_provider_stats_query(f: Filters, window: Window) -> KqlQuery:
    """Per mailbox provider: final statuses, delivery / bounce / spam counts and send-to-final latency (rows
    "provider"); and failures per provider and status code (rows "code"), for the top failure codes."""
    b = _Bindings()
    _window_lets(b, window)
    body = [
        correlated(b, f, size_category=False),
        "let Providers = Correlated",
        PROVIDER_ENRICHMENT + ";",
        "union",
        "    (Providers",
        f"    | summarize {', '.join(HEALTH_COUNTS)},",
        '        Bounced = countif(FinalDeliveryStatus in ("Bounced", "Failed")),',
        "        P50LatencySeconds = percentile(LatencySeconds, 50),",
        "        P95LatencySeconds = percentile(LatencySeconds, 95)",
        '        by MailboxProvider | extend RowKind = "provider"),',
        "    (Providers",
        '    | where FinalDeliveryStatus != "Delivered"',
        "    | summarize Count = count() by MailboxProvider, FinalDeliveryStatus, SmtpStatusCode,",
        "        EnhancedSmtpStatusCode",
        '    | extend RowKind = "code")',
    ]
    return _query("stats-providers", b, body, window)
