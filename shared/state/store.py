"""The delivery-state table (``STATE_TABLE``, Azurite locally): read a message's partition, merge, write back.

Layout and merge rules: :mod:`shared.state.partition`. Writes are optimistic: a partition is read with its
ETags, observations are merged in memory, and only entities whose content changed are written, each
conditioned on its ETag (``create`` for new entities). A concurrent writer makes a write fail (412 or
409); the partition is then read again and the merge redone, so no observation is lost and none counts
twice. An exact duplicate changes nothing and writes nothing. A message not stored yet is first tried
with plain creates and no read (most event batches are of new messages). A write of
:data:`TRANSACTION_MIN` entities or more goes as entity-group transactions (one partition, up to 100
operations each, all or nothing); fewer go one request each: measured on Azurite through the SDK, two
entities in a transaction cost more client CPU than two requests (7.4 vs 4.6 ms a message), four the same
CPU in half the wall time. Idempotent merges make a half-written partition harmless either way (the next
attempt completes it).

A message folded again (its events spread over several journal entries, or several deliveries) is usually one
this process wrote moments ago: :class:`KnownEntities` keeps the entities it last wrote or read, with their
ETags, and the next write merges into those and goes out If-Match without reading first (no failed create, no
point read: one request where there were three; a write that needs the whole partition reads it, and skips only
the failed create). Another writer meanwhile, or an entity expired since, fails
that write (412, 404) and the partition is read as above; nothing is trusted that the service did not confirm.

Event Grid events and the follower's log rows reach the partitions through the journal
(:mod:`shared.state.journal`, table ``STATE_TABLE`` + ``Journal``), folded by the follower's timer; until then
:meth:`StateStore.read` merges a message's journaled observations into its partition (in memory), so readers
never wait for the fold. Traces write what the log query found straight into the partition.

The storage connection is the summaries' (``SUMMARY_STORAGE``, resolved by :mod:`shared.storage`). When the
table cannot be reached, :class:`StateStoreUnavailable` (a :class:`shared.errors.Unavailable`) is raised:
ingestion answers 5xx so Event Grid retries, and the trace falls back to the log query.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

from shared.errors import ServiceError, Unavailable, UpstreamFailure
from shared.settings import Settings
from shared.state import retention
from shared.state.journal import TABLE_SUFFIX, Journal, encode
from shared.state.observations import Observation, StatusObservation, group_by_message, observation_time
from shared.state.partition import (
    MESSAGE_ROW_KEY,
    MessageState,
    Partition,
    RecipientState,
    copy_partition,
    partition_entities,
    partition_from_entities,
)
from shared.storage import TableStore, public_endpoint

logger = logging.getLogger(__name__)

#: Attempts of one partition write against concurrent writers before giving up (503, retried by the caller).
MAX_CONFLICT_RETRIES: Final = 8
#: Entities a partition write needs before it is sent as entity-group transactions (see the module docstring).
TRANSACTION_MIN: Final = 3
#: Operations in one entity-group transaction (the service's limit).
TRANSACTION_MAX: Final = 100
#: Entities :class:`KnownEntities` keeps (least recently used dropped first): about 1 KiB each, and enough for the
#: messages of the last few minutes at a few hundred observations a second.
KNOWN_ENTITIES: Final = 20_000
#: Partition of bookkeeping entities (the follower's watermark); no message id starts with "~".
SERVICE_PARTITION: Final = "~service"
#: Partition of the observations set aside (``Reason``, ``MessageId``, ``Observation``: its journal form).
SET_ASIDE_PARTITION: Final = "~setaside"
#: Set-aside entities counted for /api/health at most (the count says "at least" beyond it).
MAX_SET_ASIDE_COUNT: Final = 10_000

_T = TypeVar("_T")


class StateStoreError(UpstreamFailure):
    title = "Delivery state store failed"


class StateStoreUnavailable(Unavailable, StateStoreError):
    title = "Delivery state store unavailable"


class UnreadableState(StateStoreError):
    """One message's stored state cannot be read back (written by an older version, or by hand): that message
    alone is answered from the logs, and the fold sets its observations aside."""

    title = "Delivery state unreadable"


class _Conflict(Exception):
    """Another writer changed the partition since it was read; ``written`` entities of ours went in before, over
    ``before`` (what the failed attempt merged into, when that was not what the service holds)."""

    def __init__(self, written: int, before: Partition | None = None) -> None:
        super().__init__(written)
        self.written = written
        self.before = before


class _Known(dict[str, Any]):
    """An entity as this process last wrote or read it, shaped as the SDK's (its ETag in ``metadata``)."""

    def __init__(self, values: Mapping[str, Any], etag: str) -> None:
        super().__init__(values)
        self.metadata = {"etag": etag}


class KnownEntities:
    """The state entities this process last wrote or read, with their ETags, by message and row key (bounded,
    least recently used dropped first; thread-safe). Only a hint: a write from it is conditioned on the ETag."""

    def __init__(self, limit: int = KNOWN_ENTITIES) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, str], _Known] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, message_id: str, keys: Iterable[str]) -> dict[str, _Known]:
        found = {}
        with self._lock:
            for key in keys:
                entity = self._items.get((message_id, key))
                if entity is not None:
                    self._items.move_to_end((message_id, key))
                    found[key] = entity
        return found

    def remember(self, entity: Mapping[str, Any], etag: str | None) -> None:
        """*entity* as stored now (keys and properties as :func:`partition_entities` builds them)."""
        key = (str(entity["PartitionKey"]), str(entity["RowKey"]))
        with self._lock:
            if not etag:
                self._items.pop(key, None)
                return
            self._items[key] = _Known(entity, etag)
            self._items.move_to_end(key)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def forget(self, message_id: str, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._items.pop((message_id, key), None)


@dataclass(frozen=True)
class PartitionChange:
    """What one write did to a message's state."""

    message_id: str
    #: Entities written (0: nothing new, e.g. an exact duplicate).
    written: int
    before: Partition
    after: Partition

    @property
    def became_final(self) -> bool:
        return self.after.final and not self.before.final

    def recipients_became_final(self) -> list[RecipientState]:
        """Recipients whose final status is new or changed by this write."""
        changed = []
        for key, recipient in self.after.recipients.items():
            final = recipient.final
            if final is None:
                continue
            previous = self.before.recipients.get(key)
            old = None if previous is None else previous.final
            if old is None or (old.status, old.time) != (final.status, final.time):
                changed.append(recipient)
        return changed


def _without_metadata(entity: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entity.items() if key not in ("PartitionKey", "RowKey")}


@dataclass
class StateStore(TableStore):
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: Observations not folded into their partitions yet (:mod:`shared.state.journal`); None: writes go
    #: straight to the partitions.
    journal: Journal | None = None
    #: What this process last wrote or read (see the module docstring).
    known: KnownEntities = field(default_factory=KnownEntities, repr=False, compare=False)

    what: ClassVar[str] = "delivery state"
    failed: ClassVar[type[ServiceError]] = StateStoreError
    unavailable: ClassVar[type[ServiceError]] = StateStoreUnavailable

    @classmethod
    def table_name(cls, settings: Settings) -> str:
        return settings.state_table

    @classmethod
    def from_connection_string(cls, connection_string: str, table: str = "DeliveryState") -> StateStore:
        store = super().from_connection_string(connection_string, table)
        return store._with(Journal.from_connection_string(connection_string, table + TABLE_SUFFIX))

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> StateStore:
        store = super().from_settings(settings, environ)
        return store._with(Journal.from_settings(settings, environ))

    def _with(self, journal: Journal) -> StateStore:
        """This store with *journal*, whose entries are stamped by this store's clock (tests may set it later)."""
        journal.clock = lambda: self.clock()
        self.journal = journal
        return self

    def close(self) -> None:
        super().close()
        if self.journal is not None:
            self.journal.close()

    # -- reads ---------------------------------------------------------------------------------

    def read(self, message_id: str) -> Partition | None:
        """The message's state (its partition and its journaled observations), or None when nothing is stored."""
        entities = self._entities(message_id)
        return self.overlay(_decoded(message_id, entities) if entities else None, message_id)

    def overlay(self, partition: Partition | None, message_id: str) -> Partition | None:
        """*partition* with the message's observations still in the journal merged in (in memory only)."""
        pending = self.journal.pending(message_id) if self.journal is not None else []
        if not pending:
            return partition
        merged = copy_partition(partition) if partition is not None else empty_partition(message_id)
        for observation, written_at in pending:
            merged.apply(observation, seen_at=written_at)
        return merged

    def append(self, observations: Sequence[Observation]) -> None:
        """Journal *observations* (folded into their partitions later); without a journal, write them now."""
        if self.journal is None:
            for message_id, group in group_by_message(observations).items():
                self.apply(message_id, group)
            return
        self.journal.append(observations)

    def _entities(self, message_id: str) -> list[Any]:
        try:
            return list(self.client.query_entities("PartitionKey eq @pk", parameters={"pk": message_id}))
        except ResourceNotFoundError:
            self._table_ready = False
            return []
        except AzureError as exc:
            raise self.error("reading the delivery state", exc) from exc
        except (ValueError, OverflowError, TypeError) as exc:  # the SDK cannot decode a property (year 1, ...)
            raise _unreadable(exc) from exc

    # -- writes --------------------------------------------------------------------------------

    def apply(
        self,
        message_id: str,
        observations: Sequence[Observation],
        *,
        whole_partition: bool = True,
        seen_at: datetime | None = None,
    ) -> PartitionChange:
        """Merge *observations* (all of *message_id*) into the stored state; retried on concurrent writes.

        ``whole_partition=False`` lets a write that only created entities skip reading the rest of the
        partition: the entities are right either way, but the change then knows only the created entities,
        so its ``became_final`` is not to be trusted (the fold asks for it only when someone subscribed).
        ``seen_at``: when the observations were first stored (their journal entry), else now.
        """
        now = seen_at or self.clock()
        return self.update(
            message_id, lambda partition: _apply_all(partition, observations, now), whole_partition=whole_partition
        )

    def update(
        self, message_id: str, change: Callable[[Partition], None], *, whole_partition: bool = True
    ) -> PartitionChange:
        """Read the partition, let *change* merge into it, write what changed (ETag-conditioned)."""
        self.ensure_table()
        baseline: Partition | None = None
        keys = _touched_keys(message_id, change)
        try:
            if not whole_partition:
                first = self._update_known(message_id, change, keys)
                return first if first is not None else self._create_fresh(message_id, change)
            # A whole partition is always read; a message known to be stored skips the creates bound to fail.
            if not self.known.get(message_id, keys):
                return self._with_rest(self._create_fresh(message_id, change))
        except _Conflict as conflict:
            if conflict.written:
                baseline = conflict.before or empty_partition(message_id)
        for _ in range(MAX_CONFLICT_RETRIES):
            entities = self._entities(message_id) if whole_partition else self._entities_touched(message_id, keys)
            for entity in entities:
                row = {"PartitionKey": message_id, "RowKey": str(entity["RowKey"]), **_comparable(entity)}
                self.known.remember(row, entity.metadata.get("etag"))
            before = _decoded(message_id, entities)
            after = copy_partition(before)
            change(after)
            stored = {str(entity["RowKey"]): entity for entity in entities}
            try:
                written = self._write(after, stored)
            except _Conflict:
                # Entities are written one by one (entity-group transactions cost the SDK and Azurite several
                # times more than single requests): a retry may find some of ours written already. Merges are
                # idempotent, so that is harmless; what changed is judged against the first read.
                baseline = baseline or before
                continue
            self.set_aside(after.set_aside)
            return PartitionChange(message_id, written, baseline or before, after)
        raise StateStoreUnavailable(
            f"the delivery state of a message kept changing under {MAX_CONFLICT_RETRIES} attempts to write it",
            retry_after=1,
        )

    def _update_known(
        self, message_id: str, change: Callable[[Partition], None], keys: Sequence[str]
    ) -> PartitionChange | None:
        """*change* merged into the entities it touches (*keys*) as this process last saw them, written If-Match
        without reading first; None when none of them is known. Raises :class:`_Conflict` when the service holds
        something else now (the caller then reads)."""
        stored = self.known.get(message_id, keys)
        if not stored:
            return None
        before = _decoded(message_id, stored.values())
        after = copy_partition(before)
        change(after)
        try:
            written = self._write(after, stored)
        except _Conflict as conflict:
            self.known.forget(message_id, keys)
            raise _Conflict(conflict.written, before) from None
        self.set_aside(after.set_aside)
        return PartitionChange(message_id, written, before, after)

    def _entities_touched(self, message_id: str, keys: Sequence[str]) -> list[Any]:
        """The stored entities of *keys* (those a change would write: :func:`_touched_keys`), by point reads:
        enough to merge into, and a point read stays cheap where a partition query is a scan (Azurite scans the
        whole table for every query)."""
        found = []
        for key in keys:
            try:
                found.append(self.client.get_entity(message_id, key))
            except ResourceNotFoundError:
                continue
            except AzureError as exc:
                raise self.error("reading the delivery state", exc) from exc
        return found

    def _create_fresh(self, message_id: str, change: Callable[[Partition], None]) -> PartitionChange:
        """Most writes are of messages not stored yet: try creating their entities without reading first.

        Saves the read (half the round trips of an event batch). An entity that exists already fails its
        create (409) and the caller reads and merges as usual; entities this attempt created merge again
        idempotently.
        """
        before = empty_partition(message_id)
        after = copy_partition(before)
        change(after)
        written = self._write(after, {})
        self.set_aside(after.set_aside)
        return PartitionChange(message_id, written, before, after)

    def _with_rest(self, fresh: PartitionChange) -> PartitionChange:
        """A change made by creates only, completed with the partition's other entities (read once).

        An empty message entity was not written (``_write``): a stored one (a registration, a send) is one of
        the others, else the change would lose it and never see the message become final."""
        created = {key for key, entity in partition_entities(fresh.after).items() if not _says_nothing(key, entity)}
        others = [entity for entity in self._entities(fresh.message_id) if str(entity["RowKey"]) not in created]
        if not others:
            return fresh
        before = partition_from_entities(fresh.message_id, others)
        after = partition_from_entities(fresh.message_id, others)
        if MESSAGE_ROW_KEY in created and fresh.written:
            after.message = fresh.after.message
        after.recipients.update(fresh.after.recipients)
        written = fresh.written
        after.settle()
        if after.set_aside:  # a send just created, statuses stored before it dated earlier: rewritten without them
            written += self._write(after, {str(entity["RowKey"]): entity for entity in others})
            self.set_aside(after.set_aside)
        return PartitionChange(fresh.message_id, written, before, after)

    def _write(self, partition: Partition, stored: Mapping[str, Any]) -> int:
        operations: list[tuple[Any, ...]] = []
        for key, entity in partition_entities(partition).items():
            if key not in stored and _says_nothing(key, entity):
                continue  # an empty message entity: nothing to say yet
            previous = stored.get(key)
            if previous is None:
                operations.append(("create", entity))
            elif _without_metadata(entity) != _comparable(previous):
                etag = previous.metadata.get("etag")
                operations.append(
                    ("update", entity, {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": _IF_MATCH})
                )
        if any(operation[0] == "create" for operation in operations):
            retention.index_message(self, partition.message_id)  # before the entities: see shared.state.retention
        done = 0
        try:
            if len(operations) >= TRANSACTION_MIN:
                for start in range(0, len(operations), TRANSACTION_MAX):
                    batch = operations[start : start + TRANSACTION_MAX]
                    results = self.client.submit_transaction(batch)  # type: ignore[arg-type]
                    for operation, result in zip(batch, results, strict=False):
                        self.known.remember(operation[1], result.get("etag"))
                    done += len(batch)
            else:
                for operation in operations:
                    if operation[0] == "create":
                        result = self.client.create_entity(operation[1])
                    else:
                        result = self.client.update_entity(operation[1], **operation[2])
                    self.known.remember(operation[1], result.get("etag"))
                    done += 1
        except (ResourceExistsError, ResourceModifiedError):
            raise _Conflict(done) from None
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                raise _Conflict(done) from None
            if exc.status_code == 404:
                if any(operation[0] == "update" for operation in operations):
                    raise _Conflict(done) from None  # an entity read before is gone (expired): read again
                self._table_ready = False
            raise self.error("writing the delivery state", exc) from exc
        except AzureError as exc:
            raise self.error("writing the delivery state", exc) from exc
        return len(operations)

    def record_asked(self, message_id: str) -> datetime:
        """When a trace first asked for *message_id* (stored now if never): the notFound retry rule's clock.
        One small marker per id, pruned after the notFound window (:mod:`shared.state.retention`)."""
        return retention.record_asked(self, message_id)

    # -- observations set aside ----------------------------------------------------------------

    def set_aside(self, items: Sequence[tuple[Observation, str]]) -> None:
        """Keep *items* apart with their reasons (one entity each, the same observation once), never merged."""
        if not items:
            return
        self.ensure_table()
        now = self.clock()
        for observation, reason in items:
            text = json.dumps(encode(observation), separators=(",", ":"), sort_keys=True)
            entity = {
                "PartitionKey": SET_ASIDE_PARTITION,
                "RowKey": _set_aside_key(observation),
                "MessageId": observation.message_id,
                "Reason": reason[:1024],
                "Observation": text[:30_000],
                "SetAsideAt": now,
            }
            try:
                self.client.upsert_entity(entity, mode=UpdateMode.REPLACE)
            except AzureError as exc:
                raise self.error("setting an observation aside", exc) from exc
        logger.warning("delivery state: %d observation(s) set aside: %s", len(items), items[0][1])

    def set_aside_entries(self) -> list[dict[str, Any]]:
        """What was set aside: message id, reason, observation (its journal form), when."""
        try:
            found = self.client.query_entities("PartitionKey eq @pk", parameters={"pk": SET_ASIDE_PARTITION})
            return [dict(entity) for entity in itertools.islice(found, MAX_SET_ASIDE_COUNT)]
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise self.error("reading what was set aside", exc) from exc

    def set_aside_count(self) -> int:
        """How many observations were set aside (counted up to :data:`MAX_SET_ASIDE_COUNT`)."""
        try:
            found = self.client.query_entities(
                "PartitionKey eq @pk", parameters={"pk": SET_ASIDE_PARTITION}, select=["RowKey"]
            )
            return sum(1 for _ in itertools.islice(found, MAX_SET_ASIDE_COUNT))
        except ResourceNotFoundError:
            return 0
        except AzureError as exc:
            raise self.error("counting what was set aside", exc) from exc

    # -- bookkeeping (the follower's watermark) ------------------------------------------------

    def read_service(self, name: str) -> dict[str, Any] | None:
        try:
            entity = self.client.get_entity(SERVICE_PARTITION, name)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self.error(f"reading {name}", exc) from exc
        return {**entity, "_etag": entity.metadata.get("etag")}

    def write_service(self, name: str, values: Mapping[str, Any]) -> None:
        self.ensure_table()
        entity = {"PartitionKey": SERVICE_PARTITION, "RowKey": name, **values}
        try:
            self.client.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise self.error(f"writing {name}", exc) from exc

    def check(self) -> tuple[bool, str]:
        """Whether the table can be reached (for /api/health)."""
        try:
            pages = self.client.query_entities(
                "PartitionKey eq @pk", parameters={"pk": SERVICE_PARTITION}, select=["PartitionKey"], results_per_page=1
            ).by_page()
            next(pages, None)
        except ResourceNotFoundError:
            return True, f"{self.description} is reachable; the table is created by the first write"
        except AzureError as exc:
            return False, self.error("checking the delivery state table", exc).detail
        return True, f"{self.description} is reachable"

    def __repr__(self) -> str:
        return f"StateStore({public_endpoint(self.client.url)}, table={self.client.table_name})"


_IF_MATCH: Final = MatchConditions.IfNotModified


def _says_nothing(key: str, entity: Mapping[str, Any]) -> bool:
    """A message entity with only its keys and kind: nothing said of the message as a whole."""
    return key == MESSAGE_ROW_KEY and len(entity) <= 3


def _touched_keys(message_id: str, change: Callable[[Partition], None]) -> list[str]:
    """The row keys *change* would write into a partition (a message entity that says nothing is never written)."""
    probe = empty_partition(message_id)
    change(probe)
    return [key for key, entity in partition_entities(probe).items() if not _says_nothing(key, entity)]


def _comparable(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A stored entity as :func:`partition_entities` would build it (the SDK returns datetimes as a subclass)."""
    values = _without_metadata(entity)
    for key, value in values.items():
        if isinstance(value, datetime):
            values[key] = datetime(
                value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, UTC
            )
    return values


def _set_aside_key(observation: Observation) -> str:
    """The same report set aside twice (as it came, or as a stored record rebuilt) is one entity."""
    identity = [type(observation).__name__, observation.message_id, observation_time(observation).isoformat()]
    if isinstance(observation, StatusObservation):
        identity += [(observation.recipient or "").lower(), observation.status, observation.source]
    else:
        identity.append(json.dumps(encode(observation), sort_keys=True))
    return hashlib.sha256("\x1f".join(identity).encode("utf-8", "surrogatepass")).hexdigest()


def _unreadable(exc: Exception) -> UnreadableState:
    return UnreadableState(f"a message's delivery state cannot be read back ({type(exc).__name__})")


def _decoded(message_id: str, entities: Iterable[Mapping[str, Any]]) -> Partition:
    try:
        return partition_from_entities(message_id, entities)
    except (ValueError, OverflowError, TypeError, KeyError) as exc:
        raise _unreadable(exc) from exc


def _apply_all(partition: Partition, observations: Iterable[Observation], now: datetime) -> None:
    for observation in observations:
        partition.apply(observation, seen_at=now)


def empty_partition(message_id: str) -> Partition:
    return Partition(MessageState(message_id))
