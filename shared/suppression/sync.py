"""The ``suppress_hard_bounces`` timer: hard bounces from the logs into our suppression list, idempotently.

One bounce query a run (the bounce list's own query: hard bounces of the sends of the last ``STATUS_GRACE_HOURS``,
one row per lowercased address, its newest bounce), then for each address that :func:`suppressible` accepts:

* nothing, when our record says we listed it and nobody removed it since, or a removal was asked for after this
  bounce (``shared.suppression.records``): a Table read, no ARM call;
* else one PUT of our address resource (deterministic id: a rerun writes the same resource), then the record.

Throttling (429 after the SDK's own retries) or a refusal (403: no role; 404: no list) ends the run: the rest waits
for the next run, which sees the same bounces again. One bad row (an address the logs hold in a form ARM refuses,
a 409) is counted and skipped. Log lines carry counts, never an address or its id.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from shared.errors import Conflict, InvalidInput, ServiceError
from shared.insights import Insights
from shared.models import MAX_TOP, BounceRow, BouncesParams, validate_address
from shared.suppression.arm import (
    AddressRefused,
    SuppressionList,
    SuppressionListRefused,
    SuppressionListUnavailable,
    address_id,
)
from shared.suppression.records import SuppressionRecords, listed_by_us, removed_after

logger = logging.getLogger(__name__)

#: Enhanced codes of subject 1 (addressing: bad mailbox, bad domain, ...): the only inferred bounces we suppress.
ADDRESS_STATUS: Final = re.compile(r"^5\.1\.\d{1,3}$")
#: ARM writes a run makes at most (ARM allows about 1,200 writes an hour per subscription and principal).
MAX_ADDS_PER_RUN: Final = 200
#: The bounce query's row limit (it lists the newest bounces first).
MAX_BOUNCE_ROWS: Final = MAX_TOP * 10


def suppressible(row: BounceRow) -> bool:
    """A hard bounce that says the address itself is bad: reported hard by ACS, or inferred hard from a 5.1.x
    enhanced code. A 5.7.x policy rejection or an inferred hard bounce from a bare 550 says nothing certain about
    the address, so it is left to ACS's own managed list."""
    if row.bounce_type != "Hard Bounce":
        return False
    if row.bounce_type_source == "reported":
        return True
    return bool(ADDRESS_STATUS.match(row.enhanced_smtp_status_code or ""))


def notes_of(row: BounceRow) -> str:
    """The entry's notes in the list: which bounce put it there (no address: the entry already holds it)."""
    codes = " ".join(code for code in (row.smtp_status_code, row.enhanced_smtp_status_code) if code)
    when = row.last_bounce_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"ACS Email Insights: hard bounce {codes or '(no code)'} at {when}, message {row.last_message_id}"


@dataclass
class SyncRun:
    """What one run did (the timer logs it; tests read it)."""

    candidates: int = 0
    added: int = 0
    already_listed: int = 0
    removed_on_request: int = 0
    skipped: int = 0
    failed: int = 0
    stopped: str | None = None
    notes: list[str] = field(default_factory=list)


def sync_hard_bounces(
    insights: Insights,
    suppression_list: SuppressionList,
    records: SuppressionRecords,
    *,
    now: datetime,
    lookback: timedelta,
    max_adds: int = MAX_ADDS_PER_RUN,
) -> SyncRun:
    run = SyncRun()
    params = BouncesParams.model_validate({"type": "hard", "from": now - lookback, "to": now, "top": MAX_BOUNCE_ROWS})
    bounces = insights.bounces(params)
    rows = [row for row in bounces.value if suppressible(row)]
    run.candidates = len(rows)
    for row in reversed(rows):  # oldest first: what is left for the next run is the newest
        if run.added >= max_adds:
            run.stopped = f"at most {max_adds} additions a run"
            break
        try:
            outcome = _sync_one(row, suppression_list, records, now)
        except (Conflict, InvalidInput, AddressRefused) as exc:
            run.failed += 1
            run.notes.append(type(exc).__name__)
            continue
        except (SuppressionListUnavailable, SuppressionListRefused) as exc:
            run.stopped = exc.detail
            break
        setattr(run, outcome, getattr(run, outcome) + 1)
    return run


def _sync_one(row: BounceRow, suppression_list: SuppressionList, records: SuppressionRecords, now: datetime) -> str:
    try:
        email = validate_address(row.recipient_id)
    except ValueError:
        return "skipped"  # not an address ARM would take; counted, never logged
    key = address_id(email)
    record = records.get(key)
    if listed_by_us(record):
        return "already_listed"
    if removed_after(record, row.last_bounce_time):
        return "removed_on_request"
    suppression_list.add(email, notes_of(row))
    records.merge(
        key,
        {
            "AddedAt": now,
            "BounceTime": row.last_bounce_time,
            "MessageId": row.last_message_id,
            "SmtpStatusCode": row.smtp_status_code or "",
            "EnhancedSmtpStatusCode": row.enhanced_smtp_status_code or "",
            "BounceTypeSource": row.bounce_type_source or "",
        },
    )
    return "added"


def run_timer(
    insights: Insights,
    suppression_list: SuppressionList,
    records: SuppressionRecords,
    *,
    now: datetime,
    lookback: timedelta,
) -> SyncRun:
    """The timer's run, logged by counts; a store or query failure is logged and re-raised (the host records a
    failed run; the next run starts over)."""
    try:
        run = sync_hard_bounces(insights, suppression_list, records, now=now, lookback=lookback)
    except ServiceError as exc:
        logger.error("suppression sync failed: %s %s", type(exc).__name__, exc.status)
        raise
    level = logging.WARNING if run.stopped or run.failed else logging.INFO
    logger.log(
        level,
        "suppression sync: %d candidate(s), %d added, %d already listed, %d removed on request, %d skipped, "
        "%d failed%s",
        run.candidates,
        run.added,
        run.already_listed,
        run.removed_on_request,
        run.skipped,
        run.failed,
        f"; stopped: {run.stopped}" if run.stopped else "",
    )
    return run
