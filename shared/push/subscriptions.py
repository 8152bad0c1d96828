"""The subscriptions table (``SUBSCRIPTIONS_TABLE``, Azurite locally): subscriptions and their outbox.

One table, three partitions. ``subscription`` holds one entity per subscription (row key: its id), with the
callback URL and the signing secret (neither is ever logged): the one source of truth. ``outbox`` holds one
entity per outcome to push (row key: a digest of the subscription id and the outcome, so a duplicate event or a
second writer finds the entity there and adds nothing): its due time, attempts so far and, once built, the exact
body. ``message`` indexes the message subscriptions by message id (row key: a digest of the message id; one
entity per message, holding its subscriptions' ids), so the fold finds a message's subscribers with one point
read, on every instance at once, instead of listing every subscription (a list a cache keeps seconds behind
the other instances, and which Azurite answers by scanning the whole table).

The index only ever names too many: a subscription is written before its id is added, and its id is taken out
after it is deleted, so an id in the index whose subscription is gone is skipped (and pruned) by its reader.
Subscriptions made before the index existed are added to it once, by the first reader
(:meth:`SubscriptionStore.subscribers`).

An outbox entity is claimed before each attempt by moving its due time past the attempt (ETag-conditioned:
of two workers only one wins), so an entry is POSTed by one worker at a time, and a worker that dies
leaves it due again once the lease ends. A delivered entry is kept, with no due time, as the outcome's
tombstone until its subscription is gone, so the same outcome reported again is not pushed twice.

A message subscription's one entry is written when it is made, ``Waiting`` and due when the message's
status grace ends (its push as it stands): so the timer reads only what is due, never the idle
subscriptions. When the message becomes final sooner, :meth:`SubscriptionStore.advance` makes the entry due
at once (the first claim drops ``Waiting``, so a claimed entry is never advanced into a second attempt).

The storage connection is the summaries' (``SUMMARY_STORAGE``, resolved by :mod:`shared.storage`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

from shared.errors import Conflict, NotFound, ServiceError, Unavailable, UpstreamFailure
from shared.push.callbacks import new_secret
from shared.settings import Settings
from shared.storage import TableStore, public_endpoint

logger = logging.getLogger(__name__)

SUBSCRIPTION_PARTITION: Final = "subscription"
OUTBOX_PARTITION: Final = "outbox"
MESSAGE_INDEX_PARTITION: Final = "message"
#: The index entity that says every subscription made before the index existed is in it (not a digest).
INDEX_BUILT_ROW: Final = "built"
#: A message's subscriber ids are kept as 16 bytes each in one binary property (64 KiB at most).
MAX_PER_MESSAGE: Final = 4000
#: Table Storage binary properties hold at most 64 KiB; a body is split over properties of this size.
BODY_CHUNK_BYTES: Final = 60_000
MAX_BODY_CHUNKS: Final = 15
#: How long the active-subscription list read by ingestion is reused (a subscription created on another
#: instance is seen by this one at most this much later; one created here, at once).
CACHE_SECONDS: Final = 10.0

Kind = Literal["message", "filter"]


class SubscriptionStoreError(UpstreamFailure):
    title = "Subscription store failed"


class SubscriptionStoreUnavailable(Unavailable, SubscriptionStoreError):
    title = "Subscription store unavailable"


@dataclass(frozen=True)
class SubscriptionRecord:
    id: str
    kind: Kind
    callback_url: str = field(repr=False)
    secret: str = field(repr=False)
    created_at: datetime
    expires_at: datetime
    message_id: str | None = None
    sender: str | None = None
    statuses: tuple[str, ...] | None = None

    def active(self, now: datetime) -> bool:
        return now < self.expires_at


@dataclass(frozen=True)
class OutboxEntry:
    id: str
    subscription_id: str
    message_id: str
    outcome: str
    attempts: int
    due_at: datetime | None
    created_at: datetime
    body: bytes | None = field(default=None, repr=False)
    etag: str | None = field(default=None, repr=False, compare=False)
    #: Due only at its message's deadline unless advanced (see the module docstring); never attempted yet.
    waiting: bool = False


def delivery_id(subscription_id: str, outcome: str) -> str:
    """The outbox row key and the ``X-Delivery-Id`` of one outcome for one subscription."""
    return hashlib.sha256(f"{subscription_id}\n{outcome}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


def index_row(message_id: str) -> str:
    """The index row key of *message_id* (a digest: any message id, whatever characters row keys refuse)."""
    return hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _ids_of(entity: Mapping[str, Any]) -> list[str]:
    packed = bytes(entity.get("Subscriptions") or b"")
    return [packed[i : i + 16].hex() for i in range(0, len(packed) - 15, 16)]


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, UTC)


def _body_properties(body: bytes | None) -> dict[str, Any]:
    if body is None or len(body) > BODY_CHUNK_BYTES * MAX_BODY_CHUNKS:
        return {"BodyChunks": 0}  # too large to keep: built again for each attempt
    chunks = [body[i : i + BODY_CHUNK_BYTES] for i in range(0, len(body), BODY_CHUNK_BYTES)] or [b""]
    return {"BodyChunks": len(chunks), **{f"Body{i}": chunk for i, chunk in enumerate(chunks)}}


def _body_of(entity: Mapping[str, Any]) -> bytes | None:
    count = int(entity.get("BodyChunks") or 0)
    if not count:
        return None
    return b"".join(bytes(entity.get(f"Body{i}") or b"") for i in range(count))


@dataclass
class SubscriptionStore(TableStore):
    _cache: tuple[float, list[SubscriptionRecord]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _index_built: bool = False

    what: ClassVar[str] = "subscriptions"
    failed: ClassVar[type[ServiceError]] = SubscriptionStoreError
    unavailable: ClassVar[type[ServiceError]] = SubscriptionStoreUnavailable

    @classmethod
    def table_name(cls, settings: Settings) -> str:
        return settings.subscriptions_table

    @classmethod
    def from_connection_string(cls, connection_string: str, table: str = "Subscriptions") -> SubscriptionStore:
        return super().from_connection_string(connection_string, table)

    def _query(self, action: str, query: str, parameters: dict[str, Any]) -> list[Any]:
        try:
            return list(self.client.query_entities(query, parameters=parameters))
        except ResourceNotFoundError:
            self._table_ready = False
            return []
        except AzureError as exc:
            raise self.error(action, exc) from exc

    # -- subscriptions -------------------------------------------------------------------------

    def create(
        self,
        kind: Kind,
        callback_url: str,
        *,
        now: datetime,
        expires_at: datetime,
        message_id: str | None = None,
        sender: str | None = None,
        statuses: Sequence[str] | None = None,
    ) -> SubscriptionRecord:
        self.ensure_table()
        record = SubscriptionRecord(
            id=secrets.token_hex(16),
            kind=kind,
            callback_url=callback_url,
            secret=new_secret(),
            created_at=now,
            expires_at=expires_at,
            message_id=message_id,
            sender=sender,
            statuses=tuple(statuses) if statuses else None,
        )
        entity = {
            "PartitionKey": SUBSCRIPTION_PARTITION,
            "RowKey": record.id,
            "Kind": kind,
            "CallbackUrl": callback_url,
            "Secret": record.secret,
            "CreatedAt": now,
            "ExpiresAt": expires_at,
            "MessageId": message_id,
            "Sender": sender,
            "Statuses": ",".join(record.statuses) if record.statuses else None,
        }
        try:
            self.client.create_entity({k: v for k, v in entity.items() if v is not None})
        except AzureError as exc:
            raise self.error("creating a subscription", exc) from exc
        if message_id is not None:
            try:
                self._index(message_id, add=record.id)
            except ServiceError:  # not findable by the fold: not made
                with contextlib.suppress(AzureError):
                    self.client.delete_entity(SUBSCRIPTION_PARTITION, record.id)
                raise
        with self._lock:  # seen at once by this instance, without reading every subscription again
            if self._cache is not None:
                self._cache = (self._cache[0], [*self._cache[1], record])
        return record

    def get(self, subscription_id: str) -> SubscriptionRecord | None:
        try:
            entity = self.client.get_entity(SUBSCRIPTION_PARTITION, subscription_id)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self.error("reading a subscription", exc) from exc
        return _record(entity)

    def delete(self, subscription_id: str) -> None:
        """Delete a subscription (NotFound when there is none); its pending pushes are dropped when next due."""
        record = self.get(subscription_id)
        if record is None:
            raise NotFound(f"No subscription {subscription_id}.", title="Subscription not found")
        try:
            self.client.delete_entity(SUBSCRIPTION_PARTITION, subscription_id)
        except AzureError as exc:
            raise self.error("deleting a subscription", exc) from exc
        self.forget()
        if record.message_id is not None:
            try:
                self._index(record.message_id, remove=subscription_id)
            except ServiceError as exc:  # deleted all the same: its id stays in the index, where readers skip it
                logger.warning("push: subscription %s left in the message index: %s", subscription_id, exc.title)

    # -- the message index ---------------------------------------------------------------------

    def subscribers(self, message_id: str, now: datetime) -> list[str]:
        """The ids of *message_id*'s subscriptions, by one point read (see the module's docstring): a superset,
        since a deleted subscription's id may linger; never one missing, on this instance or any other. Until
        the index holds the subscriptions made before it existed (:meth:`build_index`, the timer's), those are
        found in the (cached) list too."""
        try:
            ids = _ids_of(self.client.get_entity(MESSAGE_INDEX_PARTITION, index_row(message_id)))
        except ResourceNotFoundError:
            ids = []
        except AzureError as exc:
            raise self.error("reading the message index", exc) from exc
        if not self.index_built():
            ids += [r.id for r in self.active(now) if r.message_id == message_id and r.id not in ids]
        return ids

    def index_built(self) -> bool:
        """Whether every subscription made before the message index existed is in it (read until it is)."""
        if not self._index_built:
            try:
                self.client.get_entity(MESSAGE_INDEX_PARTITION, INDEX_BUILT_ROW)
                self._index_built = True
            except ResourceNotFoundError:
                pass
            except AzureError as exc:
                raise self.error("reading the message index", exc) from exc
        return self._index_built

    def build_index(self) -> int:
        """Index the message subscriptions made before the index existed, once: then the ``built`` marker. The
        timer's (an upgrade's one-off: a read and a write per such subscription); the number indexed."""
        if self.index_built():
            return 0
        records = [record for record in self.all() if record.message_id is not None]
        for record in records:
            assert record.message_id is not None
            self._index(record.message_id, add=record.id)
        self._mark_index_built()
        return len(records)

    def _mark_index_built(self) -> None:
        try:
            self.client.create_entity({"PartitionKey": MESSAGE_INDEX_PARTITION, "RowKey": INDEX_BUILT_ROW})
        except ResourceExistsError:
            pass
        except ResourceNotFoundError:  # no table, so no subscription: the one that makes it marks it (ensure_table)
            self._table_ready = False
        except AzureError as exc:
            raise self.error("updating the message index", exc) from exc
        self._index_built = True

    def ensure_table(self) -> None:
        """Create the table unless it exists; a table made here holds no subscription older than the message
        index, which is therefore complete from the start."""
        if self._table_ready:
            return
        try:
            self.client.create_table()
        except AzureError:
            super().ensure_table()  # there already (or the error, described as for every store)
            return
        self._table_ready = True
        self._mark_index_built()

    def _index(self, message_id: str, *, add: str | None = None, remove: str | None = None) -> None:
        """Add or remove one subscription id in *message_id*'s index entity (ETag-conditioned, again on a race;
        the entity goes with its last id)."""
        self.ensure_table()
        row = index_row(message_id)
        while True:
            try:
                entity = self.client.get_entity(MESSAGE_INDEX_PARTITION, row)
            except ResourceNotFoundError:
                entity = None
            except AzureError as exc:
                raise self.error("reading the message index", exc) from exc
            ids = [i for i in (_ids_of(entity) if entity is not None else []) if i not in (add, remove)]
            ids += [add] if add is not None else []
            if len(ids) > MAX_PER_MESSAGE:
                raise Conflict(
                    f"{MAX_PER_MESSAGE} subscriptions to this message exist already", title="Too many subscriptions"
                )
            if self._write_index(row, entity, ids):
                return

    def _write_index(self, row: str, entity: Any, ids: list[str]) -> bool:
        """Write *ids* over *entity* as read (None: none was); False when it changed meanwhile."""
        values = {"PartitionKey": MESSAGE_INDEX_PARTITION, "RowKey": row, "Subscriptions": _packed(ids)}
        try:
            if entity is None:
                if ids:
                    self.client.create_entity(values)
                return True
            etag, condition = entity.metadata["etag"], MatchConditions.IfNotModified
            if ids:
                self.client.update_entity(values, mode=UpdateMode.REPLACE, etag=etag, match_condition=condition)
            else:
                self.client.delete_entity(MESSAGE_INDEX_PARTITION, row, etag=etag, match_condition=condition)
            return True
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return False
        except HttpResponseError as exc:
            if exc.status_code in (404, 409, 412):
                return False
            raise self.error("updating the message index", exc) from exc
        except AzureError as exc:
            raise self.error("updating the message index", exc) from exc

    def all(self) -> list[SubscriptionRecord]:
        entities = self._query("reading the subscriptions", "PartitionKey eq @pk", {"pk": SUBSCRIPTION_PARTITION})
        return [_record(entity) for entity in entities]

    def active(self, now: datetime) -> list[SubscriptionRecord]:
        """Unexpired subscriptions, read at most every CACHE_SECONDS (ingestion asks for every batch)."""
        with self._lock:
            if self._cache is not None and time.monotonic() - self._cache[0] < CACHE_SECONDS:
                records = self._cache[1]
            else:
                records = self.all()
                self._cache = (time.monotonic(), records)
        return [record for record in records if record.active(now)]

    def any_active(self, now: datetime) -> bool:
        """Whether an unexpired subscription exists: yes when the fresh cached list has one, else one entity read
        (a cached "none" is not trusted: another instance may have made one since, which the fold must see)."""
        with self._lock:
            fresh = self._cache is not None and time.monotonic() - self._cache[0] < CACHE_SECONDS
            if fresh and self._cache is not None and any(record.active(now) for record in self._cache[1]):
                return True
        try:
            pages = self.client.query_entities(
                "PartitionKey eq @pk and ExpiresAt gt @now",
                parameters={"pk": SUBSCRIPTION_PARTITION, "now": now},
                results_per_page=1,
                select=["RowKey"],
            )
            return next(iter(pages), None) is not None
        except ResourceNotFoundError:
            self._table_ready = False
            return False
        except AzureError as exc:
            raise self.error("reading the subscriptions", exc) from exc

    def expired_before(self, cutoff: datetime, limit: int) -> list[SubscriptionRecord]:
        """Subscriptions that expired before *cutoff* (at most *limit*): the timer's clean-up reads only these."""
        try:
            pages = self.client.query_entities(
                "PartitionKey eq @pk and ExpiresAt lt @cutoff",
                parameters={"pk": SUBSCRIPTION_PARTITION, "cutoff": cutoff},
                results_per_page=min(limit, 1000),
            )
            return [_record(entity) for _, entity in zip(range(limit), pages, strict=False)]
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise self.error("reading the subscriptions", exc) from exc

    def forget(self) -> None:
        with self._lock:
            self._cache = None

    # -- outbox --------------------------------------------------------------------------------

    def enqueue(
        self,
        subscription_id: str,
        message_id: str,
        outcome: str,
        body: bytes | None,
        now: datetime,
        *,
        waiting_until: datetime | None = None,
    ) -> bool:
        """Add an outcome to push, due now (or, ``Waiting``, at *waiting_until*); False when it is there already."""
        self.ensure_table()
        entity = {
            "PartitionKey": OUTBOX_PARTITION,
            "RowKey": delivery_id(subscription_id, outcome),
            "SubscriptionId": subscription_id,
            "MessageId": message_id,
            "Outcome": outcome,
            "Attempts": 0,
            "DueAt": waiting_until or now,
            "CreatedAt": now,
            **({"Waiting": True} if waiting_until is not None else {}),
            **_body_properties(body),
        }
        try:
            self.client.create_entity(entity)
        except ResourceExistsError:
            return False
        except AzureError as exc:
            raise self.error("adding to the outbox", exc) from exc
        return True

    def due(self, now: datetime, limit: int) -> list[OutboxEntry]:
        try:
            pages = self.client.query_entities(
                "PartitionKey eq @pk and DueAt le @now",
                parameters={"pk": OUTBOX_PARTITION, "now": now},
                results_per_page=min(limit, 1000),
            )
            entries: list[OutboxEntry] = []
            for entity in pages:
                entries.append(_entry(entity))
                if len(entries) >= limit:
                    break
            return entries
        except ResourceNotFoundError:
            self._table_ready = False
            return []
        except AzureError as exc:
            raise self.error("reading the outbox", exc) from exc

    def delivered_before(self, cutoff: datetime, limit: int) -> list[OutboxEntry]:
        """Tombstones of outcomes delivered before *cutoff* (at most *limit*)."""
        try:
            pages = self.client.query_entities(
                "PartitionKey eq @pk and DeliveredAt lt @cutoff",
                parameters={"pk": OUTBOX_PARTITION, "cutoff": cutoff},
                results_per_page=min(limit, 1000),
            )
            return [_entry(entity) for _, entity in zip(range(limit), pages, strict=False)]
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise self.error("reading the outbox", exc) from exc

    def entry(self, entry_id: str) -> OutboxEntry | None:
        try:
            return _entry(self.client.get_entity(OUTBOX_PARTITION, entry_id))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self.error("reading the outbox", exc) from exc

    def outbox(self) -> list[OutboxEntry]:
        """Every outbox entity, delivered ones included (tests and clean-up)."""
        entities = self._query("reading the outbox", "PartitionKey eq @pk", {"pk": OUTBOX_PARTITION})
        return [_entry(entity) for entity in entities]

    def advance(self, entry_id: str, now: datetime, due_at: datetime | None = None) -> bool:
        """Make a ``Waiting`` entry due *now* (or, still waiting, at a sooner *due_at*); False when it is not
        waiting (claimed, attempted, delivered) or due by then already."""
        entry = self.entry(entry_id)
        due_at = now if due_at is None or due_at <= now else due_at
        if entry is None or not entry.waiting or entry.due_at is None or entry.due_at <= due_at:
            return False
        waiting = {"Waiting": True} if due_at > now else {}
        return self._update(entry, {"DueAt": due_at, **waiting}) is not None

    def claim(self, entry: OutboxEntry, until: datetime) -> OutboxEntry | None:
        """Take *entry* for one attempt (its due time moves to *until*); None when another worker has it."""
        return self._update(entry, {"DueAt": until})

    def reschedule(self, entry: OutboxEntry, due_at: datetime, body: bytes | None) -> None:
        self._update(replace(entry, body=body), {"DueAt": due_at, "Attempts": entry.attempts + 1})

    def delivered(self, entry: OutboxEntry, now: datetime) -> None:
        """Keep the entry, with no due time, as the outcome's tombstone (see the module's docstring)."""
        self._update(replace(entry, body=None), {"DueAt": None, "Attempts": entry.attempts + 1, "DeliveredAt": now})

    def drop(self, entry: OutboxEntry) -> None:
        try:
            self.client.delete_entity(OUTBOX_PARTITION, entry.id)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise self.error("deleting from the outbox", exc) from exc

    def _update(self, entry: OutboxEntry, values: Mapping[str, Any]) -> OutboxEntry | None:
        entity = {
            "PartitionKey": OUTBOX_PARTITION,
            "RowKey": entry.id,
            "SubscriptionId": entry.subscription_id,
            "MessageId": entry.message_id,
            "Outcome": entry.outcome,
            "Attempts": entry.attempts,
            "DueAt": entry.due_at,
            "CreatedAt": entry.created_at,
            **_body_properties(entry.body),
            **values,
        }
        entity = {key: value for key, value in entity.items() if value is not None}
        try:
            metadata = self.client.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=entry.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        except HttpResponseError as exc:
            if exc.status_code in (404, 409, 412):
                return None
            raise self.error("updating the outbox", exc) from exc
        except AzureError as exc:
            raise self.error("updating the outbox", exc) from exc
        return _entry(entity, etag=str(metadata.get("etag")) if metadata else None)

    def check(self) -> tuple[bool, str]:
        try:
            next(self.client.query_entities("PartitionKey eq 'x'", results_per_page=1).by_page(), None)
        except ResourceNotFoundError:
            return True, f"{self.description} is reachable; the table is created by the first subscription"
        except AzureError as exc:
            return False, self.error("checking the subscriptions table", exc).detail
        return True, f"{self.description} is reachable"

    def __repr__(self) -> str:
        return f"SubscriptionStore({public_endpoint(self.client.url)}, table={self.client.table_name})"


def _packed(ids: Sequence[str]) -> bytes:
    return b"".join(bytes.fromhex(i) for i in ids)


def _record(entity: Mapping[str, Any]) -> SubscriptionRecord:
    statuses = str(entity.get("Statuses") or "")
    kind: Kind = "message" if entity.get("Kind") == "message" else "filter"
    return SubscriptionRecord(
        id=str(entity["RowKey"]),
        kind=kind,
        callback_url=str(entity.get("CallbackUrl") or ""),
        secret=str(entity.get("Secret") or ""),
        created_at=_utc(entity.get("CreatedAt")) or datetime.min.replace(tzinfo=UTC),
        expires_at=_utc(entity.get("ExpiresAt")) or datetime.min.replace(tzinfo=UTC),
        message_id=entity.get("MessageId"),
        sender=entity.get("Sender"),
        statuses=tuple(statuses.split(",")) if statuses else None,
    )


def _entry(entity: Mapping[str, Any], etag: str | None = None) -> OutboxEntry:
    metadata = getattr(entity, "metadata", None) or {}
    return OutboxEntry(
        id=str(entity["RowKey"]),
        subscription_id=str(entity.get("SubscriptionId") or ""),
        message_id=str(entity.get("MessageId") or ""),
        outcome=str(entity.get("Outcome") or ""),
        attempts=int(entity.get("Attempts") or 0),
        due_at=_utc(entity.get("DueAt")),
        created_at=_utc(entity.get("CreatedAt")) or datetime.min.replace(tzinfo=UTC),
        body=_body_of(entity),
        etag=etag or metadata.get("etag"),
        waiting=bool(entity.get("Waiting")),
    )
