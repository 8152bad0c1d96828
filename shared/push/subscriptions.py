"""The subscriptions table (``SUBSCRIPTIONS_TABLE``, Azurite locally): subscriptions and their outbox.

One table, two partitions. ``subscription`` holds one entity per subscription (row key: its id), with the
callback URL and the signing secret (neither is ever logged). ``outbox`` holds one entity per outcome to
push (row key: a digest of the subscription id and the outcome, so a duplicate event or a second writer
finds the entity there and adds nothing): its due time, attempts so far and, once built, the exact body.

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

import hashlib
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

from shared.errors import NotFound, ServiceError, Unavailable, UpstreamFailure
from shared.push.callbacks import new_secret
from shared.settings import Settings
from shared.storage import TableStore, public_endpoint

SUBSCRIPTION_PARTITION: Final = "subscription"
OUTBOX_PARTITION: Final = "outbox"
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
    #: A message subscription whose outcome is in the outbox already.
    queued: bool = False

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
            "Queued": False,
        }
        try:
            self.client.create_entity({k: v for k, v in entity.items() if v is not None})
        except AzureError as exc:
            raise self.error("creating a subscription", exc) from exc
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
        if self.get(subscription_id) is None:
            raise NotFound(f"No subscription {subscription_id}.", title="Subscription not found")
        try:
            self.client.delete_entity(SUBSCRIPTION_PARTITION, subscription_id)
        except AzureError as exc:
            raise self.error("deleting a subscription", exc) from exc
        self.forget()

    def mark_queued(self, subscription_id: str) -> None:
        entity = {"PartitionKey": SUBSCRIPTION_PARTITION, "RowKey": subscription_id, "Queued": True}
        try:
            self.client.update_entity(entity, mode=UpdateMode.MERGE)
        except ResourceNotFoundError:
            pass  # deleted meanwhile
        except AzureError as exc:
            raise self.error("updating a subscription", exc) from exc
        self.forget()

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
        """Whether an unexpired subscription exists: the cached list when fresh, else one entity read."""
        with self._lock:
            if self._cache is not None and time.monotonic() - self._cache[0] < CACHE_SECONDS:
                return any(record.active(now) for record in self._cache[1])
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
        queued=bool(entity.get("Queued")),
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
