"""How long the delivery state keeps what it holds, and the bookkeeping that lets a timer find what is old.

Two kinds of entity would otherwise stay for ever:

* **Message partitions** are deleted once every entity of the partition was first stored
  (``FirstSeen``) more than ``STATE_RETENTION_DAYS`` ago: "older" is first seen, so a message's state lives
  that long from the last time something new of it (the message, one of its recipients) arrived. Later
  updates of an entity (a status, an open, a click) do not extend it: a message's outcome is known within
  ``STATUS_GRACE_HOURS``, and the log trace covers the logs' own retention. A write after the deletion
  (a very late open) starts a small partition of its own, which lives its own ``STATE_RETENTION_DAYS``.
* **"First asked" markers** (a 404 for an id nobody has reported: the notFound ``Retry-After`` rule's clock)
  are one small entity per id in the expiry table (``STATE_TABLE`` + ``Expiry``), ``PartitionKey``
  :data:`ASKED_PARTITION`, ``RowKey`` the id, ``FirstAsked``;
  they are pruned once the 30-minute window is over (``NOT_FOUND_RETRY_WINDOW``), not kept for the
  retention period. An id asked again after its marker was pruned starts a new window.

Finding what is old without scanning the table: Table Storage indexes only ``PartitionKey`` + ``RowKey``, so
a filter on a property (``FirstSeen lt ...``) reads every entity of the table on every run; and Azurite
answers any query by scanning the whole table. So each write that creates entities first records its
message in a **day index** in the expiry table: ``PartitionKey`` ``~day:YYYY-MM-DD`` (the store clock's day),
``RowKey`` unique, properties ``Ids0`` .. listing message ids (once per message, day and process; the fold
indexes a chunk's messages with one request). The timer reads the index partitions of days before the cutoff
(a ``PartitionKey`` range: what the service's index serves directly), checks each message's partition (one
partition query), deletes it if old, and deletes the index entry either way (one stopped half-way keeps the
ids not processed yet): a message with a younger entity was written on a later day, so a later day's index
holds it. Markers live in one partition whose size is bounded by the questions of the
last window, so their filtered single-partition query stays small.

The index is written before the entities (an index entry without entities is harmless; entities without an
entry would never be found). Each run works in bounded batches within its time budget and resumes where
it stopped on the next run: what it processed is gone from the index.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared import deadline
from shared.errors import ServiceError, Unavailable, UpstreamFailure
from shared.storage import TableStore, client_options

if TYPE_CHECKING:
    from shared.state.store import StateStore

#: The index and the markers live beside the state's table, in ``STATE_TABLE`` + this suffix: on Azurite every
#: query scans its whole table, so a day index in the state's own table would slow every partition read (the
#: fold, measured: ~30 % slower); Table Storage does not care either way.
TABLE_SUFFIX: Final = "Expiry"

#: Partition of the "first asked" markers (no message id starts with "~").
ASKED_PARTITION: Final = "~asked"
#: Prefix of the day index partitions ("~day:2026-03-10"); "~day;" is the first key after every one of them.
DAY_PREFIX: Final = "~day:"
_DAY_END: Final = "~day;"
#: Markers read per page.
BATCH: Final = 100
#: Message ids to an index entity (at most 128 characters each: 2,000 fill at most ~260,000 of its 1 MiB), kept
#: in properties ``Ids0`` .. ``IdsN`` of :data:`CHUNK_CHARS` characters (a string property holds 32 K).
IDS_PER_ENTITY: Final = 2_000
CHUNK_CHARS: Final = 30_000
#: Index entities read per page.
INDEX_PAGE: Final = 10
#: Seconds of a run's budget left unused (the last partition's deletes end before it).
RUN_MARGIN: Final = 2.0
#: A retention run's time budget: the timer's other work (none) and its next tick are far off.
RUN_SECONDS: Final = 60.0
#: (table, day) -> message ids this process indexed on that day: repeats cost no request.
_INDEXED: dict[tuple[str, str], set[str]] = {}
_INDEXED_LOCK = threading.Lock()
#: Ids remembered per day before the memory is cleared (a day's first write of each id then costs one upsert).
_MAX_REMEMBERED: Final = 200_000


def day_partition(day: datetime) -> str:
    return DAY_PREFIX + day.astimezone(UTC).date().isoformat()


class RetentionError(UpstreamFailure):
    title = "Delivery state expiry index failed"


class RetentionUnavailable(Unavailable, RetentionError):
    title = "Delivery state expiry index unavailable"


@dataclass
class ExpiryTable(TableStore):
    """The day index and the "first asked" markers of one state table (same account, same credential)."""

    what: ClassVar[str] = "delivery state expiry index"
    failed: ClassVar[type[ServiceError]] = RetentionError
    unavailable: ClassVar[type[ServiceError]] = RetentionUnavailable


_TABLES: dict[tuple[str, str], ExpiryTable] = {}
_TABLES_LOCK = threading.Lock()


def expiry_table(store: StateStore) -> ExpiryTable:
    """The expiry table beside *store*'s table (one client per state table and process)."""
    key = (store.client.url, store.client.table_name)
    with _TABLES_LOCK:
        table = _TABLES.get(key)
        if table is None:
            name = store.client.table_name + TABLE_SUFFIX
            client = TableClient(store.client.url, name, credential=store.client.credential, **client_options())
            description = store.description.replace(store.client.table_name, name, 1)
            table = _TABLES[key] = ExpiryTable(client, description, store.secrets)
        return table


# --------------------------------------------------------------------------- on the write path


def index_message(store: StateStore, message_id: str) -> None:
    """Record that *message_id* is written today (before its entities are), once per process and day."""
    index_messages(store, [message_id])


def index_messages(store: StateStore, message_ids: Iterable[str]) -> None:
    """Record that *message_ids* are written today: those this process has not indexed today, many to an
    entity (one request for a fold chunk's messages; Azurite spends ~0.6 s on an entity-group transaction of
    100). The fold indexes each chunk's messages so, before writing them; then each write finds its message
    indexed already and costs no request for it."""
    partition = day_partition(store.clock())
    table = expiry_table(store)
    key = (table.client.table_name, partition)
    with _INDEXED_LOCK:
        known = _INDEXED.get(key, set())
        wanted = sorted({message_id for message_id in message_ids if message_id not in known})
    if wanted:
        table.ensure_table()
    for start in range(0, len(wanted), IDS_PER_ENTITY):
        batch = wanted[start : start + IDS_PER_ENTITY]
        try:
            table.client.create_entity(_index_entity(partition, str(time.time_ns()) + os.urandom(4).hex(), batch))
        except ResourceNotFoundError as exc:
            table._table_ready = False
            raise table.error("indexing the delivery state by day", exc) from exc
        except AzureError as exc:
            raise table.error("indexing the delivery state by day", exc) from exc
        _remember(key, batch)


def _index_entity(partition: str, row: str, message_ids: Sequence[str]) -> dict[str, Any]:
    text = " ".join(message_ids)
    entity: dict[str, Any] = {"PartitionKey": partition, "RowKey": row}
    for index in range(0, len(text), CHUNK_CHARS):
        entity[f"Ids{index // CHUNK_CHARS}"] = text[index : index + CHUNK_CHARS]
    return entity


def indexed_ids(entity: Mapping[str, Any]) -> list[str]:
    """The message ids an index entity lists."""
    parts, count = [], 0
    while f"Ids{count}" in entity:
        parts.append(str(entity[f"Ids{count}"]))
        count += 1
    return "".join(parts).split()


def _remember(key: tuple[str, str], message_ids: Iterable[str]) -> None:
    with _INDEXED_LOCK:
        for other in [k for k in _INDEXED if k[0] == key[0] and k != key]:
            del _INDEXED[other]  # an earlier day's ids are not written under today's partition
        remembered = _INDEXED.setdefault(key, set())
        if len(remembered) >= _MAX_REMEMBERED:
            remembered.clear()
        remembered.update(message_ids)


def record_asked(store: StateStore, message_id: str) -> datetime:
    """When a trace first asked for *message_id* (one small marker, created now if there is none)."""
    now = store.clock()
    table = expiry_table(store)
    table.ensure_table()
    for _ in range(2):
        try:
            return _utc(table.client.get_entity(ASKED_PARTITION, message_id)["FirstAsked"]) or now
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise table.error("reading when the message was first asked for", exc) from exc
        try:
            table.client.create_entity({"PartitionKey": ASKED_PARTITION, "RowKey": message_id, "FirstAsked": now})
            return now
        except ResourceExistsError:
            continue  # another trace asked at the same moment: its time stands
        except ResourceNotFoundError as exc:
            table._table_ready = False
            raise table.error("recording when the message was first asked for", exc) from exc
        except AzureError as exc:
            raise table.error("recording when the message was first asked for", exc) from exc
    return now


# --------------------------------------------------------------------------- the timer


@dataclass
class Expiry:
    """What one run did."""

    markers: int = 0
    partitions: int = 0
    entities: int = 0
    kept: int = 0
    #: False when the budget ended first (the next run goes on).
    complete: bool = True


def expire_state(
    store: StateStore,
    *,
    now: datetime,
    retention: timedelta,
    asked_window: timedelta,
    budget_seconds: float = RUN_SECONDS,
) -> Expiry:
    """Prune "first asked" markers older than *asked_window*, then delete message partitions first seen more
    than *retention* before *now*, oldest days first, until done or the budget is spent."""
    run = Expiry()
    with deadline.budget(budget_seconds):
        run.complete = _prune_markers(store, now - asked_window, run) and _expire_partitions(
            store, now - retention, run
        )
    return run


def _time_left() -> bool:
    left = deadline.remaining()
    return left is None or left > RUN_MARGIN


def _pages(
    store: TableStore, query: str, parameters: dict[str, Any], what: str, *, keys_only: bool = True
) -> Iterator[list[Any]]:
    select = ["PartitionKey", "RowKey"] if keys_only else None
    try:
        pages = store.client.query_entities(
            query, parameters=parameters, select=select, results_per_page=BATCH if keys_only else INDEX_PAGE
        ).by_page()
        for page in pages:
            yield list(page)
    except ResourceNotFoundError:
        return
    except AzureError as exc:
        raise store.error(f"reading {what}", exc) from exc


def _delete(store: TableStore, partition: str, row: str, etag: str | None = None) -> bool:
    """Delete one entity (conditioned on *etag* if given); False if it changed meanwhile."""
    try:
        if etag:
            store.client.delete_entity(partition, row, etag=etag, match_condition=MatchConditions.IfNotModified)
        else:
            store.client.delete_entity(partition, row)
    except ResourceNotFoundError:
        return True
    except ResourceModifiedError:
        return False
    except AzureError as exc:
        if getattr(exc, "status_code", None) == 412:
            return False
        raise store.error("deleting expired delivery state", exc) from exc
    return True


def _prune_markers(store: StateStore, cutoff: datetime, run: Expiry) -> bool:
    if not _time_left():
        return False
    table = expiry_table(store)
    query = "PartitionKey eq @pk and FirstAsked lt @cutoff"
    for page in _pages(table, query, {"pk": ASKED_PARTITION, "cutoff": cutoff}, "first-asked markers"):
        for entity in page:
            if not _time_left():
                return False
            _delete(table, ASKED_PARTITION, str(entity["RowKey"]))
            run.markers += 1
    return True


def _expire_partitions(store: StateStore, cutoff: datetime, run: Expiry) -> bool:
    # Days wholly before the cutoff: every write indexed there happened before it.
    bound = min(day_partition(cutoff), _DAY_END)
    if not _time_left():
        return False
    table = expiry_table(store)
    query = "PartitionKey ge @first and PartitionKey lt @bound"
    parameters = {"first": DAY_PREFIX, "bound": bound}
    for page in _pages(table, query, parameters, "the delivery state's day index", keys_only=False):
        for entry in page:
            message_ids = indexed_ids(entry)
            for position, message_id in enumerate(message_ids):
                if not _time_left():
                    _keep_rest(table, entry, message_ids[position:])
                    return False
                _expire_message(store, message_id, cutoff, run)
            _delete(table, str(entry["PartitionKey"]), str(entry["RowKey"]))
    return True


def _keep_rest(table: ExpiryTable, entry: Any, message_ids: Sequence[str]) -> None:
    """The index entry, left with the ids not processed yet: the next run starts there."""
    try:
        table.client.update_entity(
            _index_entity(str(entry["PartitionKey"]), str(entry["RowKey"]), message_ids), mode=UpdateMode.REPLACE
        )
    except AzureError as exc:
        raise table.error("updating the delivery state's day index", exc) from exc


def _expire_message(store: StateStore, message_id: str, cutoff: datetime, run: Expiry) -> None:
    """Delete the message's partition if every entity of it was first seen before *cutoff*."""
    try:
        entities = list(store.client.query_entities("PartitionKey eq @pk", parameters={"pk": message_id}))
    except ResourceNotFoundError:
        return
    except AzureError as exc:
        raise store.error("reading the delivery state", exc) from exc
    if not entities:
        return
    seen = [_utc(entity.get("FirstSeen")) for entity in entities]
    if any(first is not None and first >= cutoff for first in seen):
        run.kept += 1
        return
    deleted = 0
    for entity in entities:
        if _delete(store, message_id, str(entity["RowKey"]), entity.metadata.get("etag")):
            deleted += 1
    run.partitions += 1
    run.entities += deleted


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
