"""``DELETE /api/suppressions/{address}`` (admin key): the address out of our list, and who asked, recorded.

Every entry of the address goes (ours and any someone else added under another id), then the removal is recorded
against our address id (when, who asked, the platform's principal when App Service authentication names one), so
the timer does not put the address back for a bounce logged before the removal. Nothing in the list: 404.
The log line says that a removal happened and how many entries, never the address, its id or who asked.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Final

from shared.errors import NotFound
from shared.suppression.arm import SuppressionList, address_id
from shared.suppression.models import SuppressionEntry, SuppressionRemoval
from shared.suppression.records import SuppressionRecords

logger = logging.getLogger(__name__)

NOTE: Final = (
    "Removed from our customer-managed list only. ACS's own managed suppression (after a hard bounce: 24 h, "
    "doubled by each send during it, up to 14 days) has no API: it ends by itself, or through a support request."
)


def remove_suppression(
    suppression_list: SuppressionList,
    records: SuppressionRecords,
    email: str,
    *,
    requested_by: str,
    principal: str | None,
    now: datetime,
) -> SuppressionRemoval:
    lookup = suppression_list.remove(email)
    if not lookup.entries:
        detail = "the address is not in our suppression list"
        if not lookup.complete:
            detail += " (as far as the first pages of the list show)"
        raise NotFound(detail)
    records.merge(
        address_id(email),
        {
            "RemovedAt": now,
            "RemovedBy": requested_by,
            "RemovedPrincipal": principal or "",
            "RemovedEntries": len(lookup.entries),
        },
    )
    logger.info("suppression list: %d entr(ies) removed on request", len(lookup.entries))
    return SuppressionRemoval(
        removed=[
            SuppressionEntry(address_id=e.address_id, ours=e.ours, since=e.since, notes=e.notes) for e in lookup.entries
        ],
        requested_by=requested_by,
        requested_at=now,
        complete=lookup.complete,
        note=NOTE,
    )
