"""Is a send to this address likely to be attempted now? The use case behind
``GET /api/recipients/{address}/sendability`` (definitions in docs/suppression.md).

Three lookups, run at once: the address's history (the recipient-history query over the window, default the 90
days before now), the recipient domain's results over the same window, and our suppression list (one GET of our
entry, else a bounded listing for others' entries). A lookup that fails leaves its part empty and the answer
``partial`` with a warning: the others still answer.

A send is *blocked* (``sendable: false``) when

* the address is in our customer-managed suppression list, or
* ACS's managed suppression is likely still on: it has no API, so it is estimated from the history by the
  documented rule (:func:`managed_lease`), or
* the newest message to the address was ``Suppressed`` within the shortest lease (24 h), whatever the cause
  (the managed list spans the platform: another sender's hard bounce may have put the address there).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from shared.errors import ServiceError
from shared.insights import Insights
from shared.kql.sendability import build_domain_results_query
from shared.models import MAX_TOP, RecipientHistory, RecipientMessage, RecipientParams
from shared.suppression.arm import SuppressionList, address_id
from shared.suppression.models import (
    DomainResults,
    HardBounce,
    ManagedSuppression,
    Sendability,
    SendabilityParams,
    SendabilityReason,
    SuppressionEntry,
    SuppressionListStatus,
)
from shared.suppression.records import SuppressionRecords

_T = TypeVar("_T")

#: ACS's managed suppression: the first hard bounce suppresses the address for 24 h; each send during the lease
#: renews it with the next length, up to 14 days (learn.microsoft.com, ACS email: managed suppression list).
LEASES: Final = (
    timedelta(hours=24),
    timedelta(hours=48),
    timedelta(hours=96),
    timedelta(days=7),
    timedelta(days=14),
)
#: Below this delivered rate the recipient domain's results are named as a (non-blocking) reason.
DOMAIN_DELIVERED_RATE_NOTE: Final = 0.9


@dataclass(frozen=True)
class Lease:
    since: datetime
    until: datetime
    length: timedelta
    renewals: int


def _sent_at(message: RecipientMessage) -> datetime:
    return message.send_time or message.last_event_time


def managed_lease(messages: list[RecipientMessage]) -> Lease | None:
    """The managed suppression the history implies, or None when it holds no hard bounce.

    In send order: a hard bounce outside a lease starts one (24 h from the bounce); a send during a lease renews
    it with the next length (48 h, 96 h, 7 d, then 14 d each time) from that send. A hard bounce after a lease
    ended starts again at 24 h (the documented rule says nothing of a memory beyond the lease).
    """
    lease: Lease | None = None
    step = 0
    for message in sorted(messages, key=_sent_at):
        sent = _sent_at(message)
        if lease is not None and sent < lease.until:
            step = min(step + 1, len(LEASES) - 1)
            lease = Lease(lease.since, sent + LEASES[step], LEASES[step], lease.renewals + 1)
        if message.hard_bounce and message.final_status_time is not None:
            bounced = message.final_status_time
            if lease is None or bounced >= lease.until:
                step = 0
                lease = Lease(bounced, bounced + LEASES[0], LEASES[0], 0)
    return lease


def last_hard_bounce(messages: list[RecipientMessage]) -> HardBounce | None:
    bounces = [m for m in messages if m.hard_bounce and m.final_status_time is not None]
    if not bounces:
        return None
    newest = max(bounces, key=lambda m: m.final_status_time or m.last_event_time)
    return HardBounce(
        message_id=newest.message_id,
        time=newest.final_status_time or newest.last_event_time,
        smtp_status_code=newest.smtp_status_code,
        enhanced_smtp_status_code=newest.enhanced_smtp_status_code,
        enhanced_smtp_status_code_details=newest.enhanced_smtp_status_code_details,
        failure_reason=newest.failure_reason,
    )


def list_status(
    address: str,
    suppression_list: SuppressionList | None,
    records: SuppressionRecords | None,
    list_error: str | None = None,
) -> SuppressionListStatus:
    """Our list's entries of *address*; a failure to read it is said, not raised."""
    if list_error is not None:
        return SuppressionListStatus(configured=True, error=list_error)
    if suppression_list is None:
        return SuppressionListStatus(configured=False)
    try:
        lookup = suppression_list.find(address, all_entries=False)
    except ServiceError as exc:
        return SuppressionListStatus(configured=True, error=exc.detail)
    removed_at = None
    if records is not None:
        try:
            removed_at = (records.get(address_id(address)) or {}).get("RemovedAt")
        except ServiceError:
            removed_at = None
    return SuppressionListStatus(
        configured=True,
        listed=bool(lookup.entries) if lookup.entries or lookup.complete else None,
        entries=[
            SuppressionEntry(address_id=e.address_id, ours=e.ours, since=e.since, notes=e.notes) for e in lookup.entries
        ],
        complete=lookup.complete,
        removed_at=removed_at,
    )


def domain_results(domain: str, record: dict[str, Any] | None) -> DomainResults:
    row = record or {}

    def count(name: str) -> int:
        return int(row.get(name) or 0)

    total = count("Total")
    return DomainResults(
        recipient_domain=domain,
        total=total,
        delivered=count("Delivered"),
        bounced=count("Bounced"),
        failed=count("Failed"),
        suppressed=count("Suppressed"),
        quarantined=count("Quarantined"),
        filtered_spam=count("FilteredSpam"),
        hard_bounces=count("HardBounces"),
        delivered_rate=round(count("Delivered") / total, 4) if total else None,
    )


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


# long: one rule a reason, read top to bottom
def reasons_of(
    now: datetime,
    listed: SuppressionListStatus,
    lease: Lease | None,
    bounce: HardBounce | None,
    latest: RecipientMessage | None,
    domain: DomainResults | None,
) -> list[SendabilityReason]:
    reasons: list[SendabilityReason] = []
    if listed.listed:
        since = min((e.since for e in listed.entries if e.since is not None), default=None)
        reasons.append(
            SendabilityReason(
                kind="customerSuppressionList",
                blocking=True,
                detail="The address is in our suppression list (SUPPRESSION_LIST_ID): ACS drops every send to it.",
                since=since,
            )
        )
    if lease is not None and lease.until > now:
        reasons.append(
            SendabilityReason(
                kind="managedSuppression",
                blocking=True,
                detail=f"A hard bounce at {_when(lease.since)} most likely put the address on ACS's managed "
                f"suppression list; the lease ({lease.length.total_seconds() / 3600:g} h after "
                f"{lease.renewals} renewal(s)) most likely ends at {_when(lease.until)}. It has no API.",
                since=lease.since,
                until=lease.until,
            )
        )
    if latest is not None and (latest.final_delivery_status or latest.last_event_status) == "Suppressed":
        at = latest.final_status_time or latest.last_event_time
        recent = now - at < LEASES[0]
        explained = bool(listed.listed) or (lease is not None and lease.until > now)
        reasons.append(
            SendabilityReason(
                kind="recentlySuppressed",
                blocking=recent and not explained,
                detail=f"The newest message to the address was Suppressed at {_when(at)}"
                + (
                    ""
                    if explained
                    else " without a hard bounce in the window to explain it: another sender's "
                    "hard bounce (the managed list spans the platform) or another customer list may hold it"
                )
                + ".",
                since=at,
            )
        )
    if bounce is not None and not (lease is not None and lease.until > now):
        code = bounce.enhanced_smtp_status_code or bounce.smtp_status_code or "no code"
        reasons.append(
            SendabilityReason(
                kind="earlierHardBounce",
                blocking=False,
                detail=f"The address hard-bounced ({code}) at {_when(bounce.time)}; the managed suppression it "
                "caused has most likely ended. A send may bounce again.",
                since=bounce.time,
            )
        )
    if domain is not None and domain.delivered_rate is not None and domain.delivered_rate < DOMAIN_DELIVERED_RATE_NOTE:
        reasons.append(
            SendabilityReason(
                kind="recipientDomain",
                blocking=False,
                detail=f"{domain.recipient_domain}: {domain.delivered} of {domain.total} recipients delivered in "
                f"the window ({domain.hard_bounces} hard bounce(s), {domain.suppressed} suppressed).",
            )
        )
    reasons.sort(key=lambda reason: not reason.blocking)
    return reasons


def _in_context(pool: ThreadPoolExecutor, call: Callable[[], _T]) -> Any:
    return pool.submit(contextvars.copy_context().run, call)


def sendability(
    insights: Insights,
    params: SendabilityParams,
    *,
    suppression_list: SuppressionList | None,
    records: SuppressionRecords | None,
    list_error: str | None = None,
) -> Sendability:
    now = insights.clock()
    start, end = params.window(now)
    domain = params.address.rpartition("@")[2].lower()
    history_params = RecipientParams.model_validate(
        {"address": params.address, "from": start, "to": end, "top": MAX_TOP}
    )
    domain_query = build_domain_results_query(domain, insights.window(start, end))
    warnings: list[str] = []
    with ThreadPoolExecutor(max_workers=3) as pool:
        history_future = _in_context(pool, lambda: insights.recipient_history(history_params))
        domain_future = _in_context(pool, lambda: insights.run_query(domain_query))
        listed = _in_context(pool, lambda: list_status(params.address, suppression_list, records, list_error)).result()
        history: RecipientHistory = history_future.result()
        domain_result = domain_future.result()
    for warning in (history.warning, domain_result.partial_error, listed.error):
        if warning:
            warnings.append(warning)
    records_ = domain_result.records()
    domain_part = domain_results(domain, records_[0] if records_ else None)
    messages = history.messages
    lease = managed_lease(messages)
    bounce = last_hard_bounce(messages)
    latest = messages[0] if messages else None
    reasons = reasons_of(now, listed, lease, bounce, latest, domain_part)
    return Sendability(
        sendable=not any(reason.blocking for reason in reasons),
        checked_at=now,
        window_from=start,
        window_to=end,
        reasons=reasons,
        suppression_list=listed,
        last_hard_bounce=bounce,
        managed_suppression=None
        if lease is None
        else ManagedSuppression(
            likely_active=lease.until > now,
            since=lease.since,
            until=lease.until,
            lease_hours=lease.length.total_seconds() / 3600,
            renewals=lease.renewals,
        ),
        recipient_domain=domain_part,
        latest_status=history.latest_status,
        messages=len(messages),
        **({"partial": True, "warning": "; ".join(warnings)} if warnings else {}),
    )
