"""What we did to the suppression list: one row per address id we added or removed, in the summary table.

Layout: ``PartitionKey = "suppression-list"`` (beside the daily summaries' day partitions and the report sends'
``"report-email"``), ``RowKey`` = the address id (:func:`shared.suppression.arm.address_id`). A row holds the hard
bounce that put the address in the list (message id, time, codes), when we added it, and the latest removal (when,
who asked). It never holds the address: the list itself holds that.

The timer reads the row before it writes to the list: an address we added and nobody removed is not written again
(one Table read instead of an ARM write per run), and a removal outranks every bounce logged before it: an address
removed on request comes back only with a newer hard bounce.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.errors import Unavailable, UpstreamFailure
from shared.settings import Settings
from shared.storage import TableStore

PARTITION: Final = "suppression-list"


class SuppressionRecordsError(UpstreamFailure):
    title = "Suppression records failed"


class SuppressionRecordsUnavailable(Unavailable, SuppressionRecordsError):
    title = "Suppression records unavailable"


@dataclass
class SuppressionRecords(TableStore):
    what: ClassVar[str] = "summary"
    failed: ClassVar[type[UpstreamFailure]] = SuppressionRecordsError
    unavailable: ClassVar[type[UpstreamFailure]] = SuppressionRecordsUnavailable

    @classmethod
    def table_name(cls, settings: Settings) -> str:
        return settings.summary_table

    def get(self, address_id: str) -> dict[str, Any] | None:
        self.ensure_table()
        try:
            return dict(self.client.get_entity(PARTITION, address_id))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self.error("reading a suppression record", exc) from exc

    def merge(self, address_id: str, properties: Mapping[str, Any]) -> None:
        """Create the row or update the given properties (the others are kept)."""
        self.ensure_table()
        entity = {"PartitionKey": PARTITION, "RowKey": address_id, **properties}
        try:
            self.client.upsert_entity(entity, mode=UpdateMode.MERGE)
        except AzureError as exc:
            raise self.error("writing a suppression record", exc) from exc


def listed_by_us(record: Mapping[str, Any] | None) -> bool:
    """We added the address and nobody removed it since."""
    if not record or record.get("AddedAt") is None:
        return False
    removed = record.get("RemovedAt")
    return removed is None or _after(record["AddedAt"], removed)


def removed_after(record: Mapping[str, Any] | None, bounce_time: datetime) -> bool:
    """A removal was asked for after this bounce was logged: the bounce no longer puts the address in the list."""
    removed = (record or {}).get("RemovedAt")
    return removed is not None and not _after(bounce_time, removed)


def _after(first: Any, second: Any) -> bool:
    return bool(first > second)
