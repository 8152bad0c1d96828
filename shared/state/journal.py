"""The journal of the delivery state: observations as they arrive, many to an entity, folded into the message
partitions afterwards (:func:`shared.state.ingest.fold_journal`, run per shard by the queue-triggered fold of
:mod:`shared.state.folds`, which each write asks for).

Why a journal: a message partition costs at least one Table Storage request per message written, and the
Python SDK spends about 1.6 ms of CPU on a request (0.6 ms on an entity inside a transaction), whatever the
server: an Event Grid event or a log row written straight into its partition caps ingestion at a few hundred
per second per process (``benchmarks/state.py``). Appending is one request for many observations; the fold,
which does pay per message, runs off the delivery path, groups every observation of a message into one
write, and may lag behind a burst without losing anything, because readers look at both:
:meth:`shared.state.store.StateStore.read` merges the message's journaled observations into its partition.

Layout (table ``STATE_TABLE`` + ``Journal``): ``PartitionKey`` ``j0`` .. ``j31``, the shards (chosen by the
writer at random, to spread writes; each folded by one folder at a time, :mod:`shared.state.folds`),
``RowKey`` the write time in nanoseconds (20 digits) and a random suffix, so entities list in arrival order;
``WrittenAt`` (an observation's "first seen"), ``Count``, and ``Body0`` .. ``BodyN``: one JSON array of
observations (ASCII), cut in chunks of :data:`CHUNK_CHARS` (a string property holds 32 K UTF-16 characters;
an entity at most 1 MiB). Entities are immutable; the fold deletes them once folded. A write
retried after a timeout may store its observations twice: merges are idempotent, so that changes nothing.

Concurrent writers in one process share requests (:class:`GroupCommit`): the Functions host runs the events
of one Event Grid delivery as concurrent invocations, and each invocation's observations join the next
append; each returns once its own observations are stored (or raises, so the host answers 5xx and Event
Grid delivers again).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared import deadline
from shared.errors import ServiceError, Unavailable, UpstreamFailure
from shared.settings import Settings
from shared.state.observations import (
    EngagementObservation,
    Observation,
    RegistrationObservation,
    SendObservation,
    StatusObservation,
    group_by_message,
)
from shared.storage import TableStore

#: Characters per body property (32,768 allowed, UTF-16).
CHUNK_CHARS: Final = 30_000
#: Body characters per entity (an entity holds at most 1 MiB).
ENTITY_CHARS: Final = 15 * CHUNK_CHARS
#: Shards: how many folders can work side by side (see ``docs/scale.md``).
PARTITIONS: Final = 32
TABLE_SUFFIX: Final = "Journal"
#: New entries a reader fetches one by one; more are read with one query of the whole journal.
POINT_READS: Final = 16
#: A write that fails after this many seconds found the store stuck (accepting, not answering): appends then fail
#: at once for :data:`STUCK_SECONDS`, so invocations queued behind the stuck ones (the host's threads are few)
#: answer 5xx within Event Grid's 30 s too, instead of each waiting out its own budget in turn.
STUCK_AFTER: Final = 2.0
STUCK_SECONDS: Final = 5.0

_KINDS: Final[dict[str, type[Any]]] = {
    "status": StatusObservation,
    "send": SendObservation,
    "engagement": EngagementObservation,
    "registration": RegistrationObservation,
}
_KIND_OF: Final = {cls: kind for kind, cls in _KINDS.items()}
_TIMES: Final = frozenset({"time", "send_time"})
#: Fields without a default, which may still be None (a message-level status has no recipient).
_REQUIRED: Final = {
    kind: tuple(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING)
    for kind, cls in _KINDS.items()
}


class JournalError(UpstreamFailure):
    title = "Delivery state journal failed"


class JournalUnavailable(Unavailable, JournalError):
    title = "Delivery state journal unavailable"


# --------------------------------------------------------------------------- codec


def encode(observation: Observation) -> dict[str, Any]:
    """An observation as JSON values (no nulls; times in ISO 8601)."""
    values: dict[str, Any] = {"k": _KIND_OF[type(observation)]}
    for item in fields(observation):
        value = getattr(observation, item.name)
        if value is not None:
            values[item.name] = value.isoformat() if isinstance(value, datetime) else value
    return values


def decode(values: dict[str, Any]) -> Observation:
    values = dict(values)
    kind = values.pop("k")
    cls = _KINDS[kind]
    for name in _REQUIRED[kind]:
        values.setdefault(name, None)
    for name in _TIMES & values.keys():
        values[name] = datetime.fromisoformat(values[name])
    observation: Observation = cls(**values)
    return observation


@dataclass(frozen=True)
class JournalEntry:
    partition_key: str
    row_key: str
    etag: str | None
    written_at: datetime
    observations: tuple[Observation, ...]


def _entities(observations: Sequence[Observation], now: datetime) -> list[dict[str, Any]]:
    """Entities holding *observations*, each body at most :data:`ENTITY_CHARS` characters."""
    groups: list[list[str]] = [[]]
    size = 0
    for observation in observations:
        text = json.dumps(encode(observation), separators=(",", ":"))
        if groups[-1] and size + len(text) + 1 > ENTITY_CHARS:
            groups.append([])
            size = 0
        groups[-1].append(text)
        size += len(text) + 1
    entities = []
    for group in groups:
        if not group:
            continue
        body = "[" + ",".join(group) + "]"
        entity: dict[str, Any] = {
            "PartitionKey": f"j{random.randrange(PARTITIONS)}",
            "RowKey": f"{time.time_ns():020d}{os.urandom(6).hex()}",
            "WrittenAt": now,
            "Count": len(group),
        }
        for index in range(0, len(body), CHUNK_CHARS):
            entity[f"Body{index // CHUNK_CHARS}"] = body[index : index + CHUNK_CHARS]
        entities.append(entity)
    return entities


def _entry(entity: Any) -> JournalEntry:
    body = "".join(entity[f"Body{index}"] for index in range(_chunks(entity)))
    written = entity.get("WrittenAt")
    written_at = written.astimezone(UTC) if isinstance(written, datetime) else datetime.now(UTC)
    metadata = getattr(entity, "metadata", None) or {}
    return JournalEntry(
        partition_key=str(entity["PartitionKey"]),
        row_key=str(entity["RowKey"]),
        etag=metadata.get("etag"),
        written_at=written_at,
        observations=tuple(decode(values) for values in json.loads(body)),
    )


def _chunks(entity: Any) -> int:
    count = 0
    while f"Body{count}" in entity:
        count += 1
    return count


# --------------------------------------------------------------------------- group commit


@dataclass(eq=False)
class _Waiter:
    items: Sequence[Observation]
    wake: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    lead: bool = False
    error: BaseException | None = None


class GroupCommit:
    """Concurrent callers' observations written together: one caller at a time writes everything waiting.

    No caller waits for company: the first to arrive writes at once, and those arriving meanwhile go in the
    next write, which the first of them makes once the current one ends. Each returns when its own
    observations are written, or raises what the write raised.

    Nor does a caller wait past its own budget (:mod:`shared.deadline`; a write is bounded by its writer's):
    one whose budget ends while it waits raises :attr:`timeout` (its observations may still be written by
    the write under way: a later delivery of them again changes nothing), and a waiter handed the next write
    after its budget ended hands it on to the next in line, so no one is left waiting for a writer that left.
    """

    def __init__(
        self, write: Callable[[list[Observation]], None], timeout: Callable[[], BaseException] = TimeoutError
    ) -> None:
        self._write = write
        self._timeout = timeout
        self._lock = threading.Lock()
        self._pending: list[_Waiter] = []
        self._busy = False

    def submit(self, items: Sequence[Observation]) -> None:
        waiter = _Waiter(items)
        with self._lock:
            self._pending.append(waiter)
            if not self._busy:
                self._busy = waiter.lead = True
        if not waiter.lead and not waiter.wake.wait(deadline.remaining()):
            self._give_up(waiter)
        if not waiter.done:
            self._round()
        if waiter.error is not None:
            raise waiter.error

    def _give_up(self, waiter: _Waiter) -> None:
        """The waiter's budget ended: out of the queue (handing on the lead if it was given), then raise."""
        with self._lock:
            if waiter.done:
                return  # written (or failed) just now: the caller hears how
            if waiter in self._pending:
                self._pending.remove(waiter)
                if waiter.lead:
                    self._hand_on()
        raise self._timeout()

    def _hand_on(self) -> None:
        """The next waiter in line leads the next write (or no one writes until a caller arrives); lock held."""
        if self._pending:
            successor = self._pending[0]
            successor.lead = True
            successor.wake.set()
        else:
            self._busy = False

    def _round(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        error: BaseException | None = None
        try:
            self._write([item for waiter in batch for item in waiter.items])
        except BaseException as exc:  # handed to every caller of the batch, who re-raises it
            error = exc
        with self._lock:
            for waiter in batch:
                waiter.error, waiter.done = error, True
                waiter.wake.set()
            self._hand_on()


# --------------------------------------------------------------------------- the table

#: An entry as :meth:`Journal.pending` keeps it: when written, and its observations by message id.
_Cached = tuple[datetime, dict[str, list[Observation]]]


@dataclass
class Journal(TableStore):
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _commit: GroupCommit = field(init=False, repr=False)
    #: Entries read by :meth:`pending`, each with its observations by message id.
    _cache: dict[tuple[str, str], _Cached] = field(default_factory=dict, repr=False)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: Only this shard's entries are listed (a folder's view of the journal); None: every shard.
    shard: str | None = None
    #: Called with the shards each write wrote to, once it is stored (the fold requests); it must not raise.
    on_written: Callable[[list[str]], object] | None = field(default=None, repr=False)
    #: Until when (monotonic) appends fail at once: the last write hung before failing (see :data:`STUCK_AFTER`).
    _stuck_until: float = field(default=0.0, repr=False)

    what: ClassVar[str] = "delivery state journal"
    failed: ClassVar[type[ServiceError]] = JournalError
    unavailable: ClassVar[type[ServiceError]] = JournalUnavailable

    def __post_init__(self) -> None:
        self._commit = GroupCommit(
            self._write,
            timeout=lambda: self.unavailable(
                "the delivery state journal did not store the observations within the time budget", retry_after=5
            ),
        )

    @classmethod
    def table_name(cls, settings: Settings) -> str:
        return settings.state_table + TABLE_SUFFIX

    def append(self, observations: Iterable[Observation]) -> None:
        """Store *observations* (returns once they are; concurrent callers share the request)."""
        items = list(observations)
        if items and time.monotonic() < self._stuck_until:
            raise self.unavailable("the delivery state journal's last write hung before failing; retry", retry_after=5)
        if items:
            self._commit.submit(items)

    def _write(self, observations: list[Observation]) -> None:
        started = time.monotonic()
        try:
            self._create_entries(observations)
        except ServiceError:
            if time.monotonic() - started >= STUCK_AFTER:
                self._stuck_until = time.monotonic() + STUCK_SECONDS
            raise

    def _create_entries(self, observations: list[Observation]) -> None:
        self.ensure_table()
        shards: dict[str, None] = {}
        try:
            for entity in _entities(observations, self.clock()):
                self.client.create_entity(entity)
                shards[entity["PartitionKey"]] = None
        except ResourceNotFoundError as exc:
            self._table_ready = False
            raise self.error("writing the delivery state journal", exc) from exc
        except AzureError as exc:
            raise self.error("writing the delivery state journal", exc) from exc
        finally:
            if shards and self.on_written is not None:
                self.on_written(list(shards))

    def entries(self) -> list[JournalEntry]:
        """Every entry (of :attr:`shard`, when set), oldest first."""
        try:
            if self.shard is None:
                listed = self.client.list_entities()
            else:
                listed = self.client.query_entities("PartitionKey eq @pk", parameters={"pk": self.shard})
            found = [_entry(entity) for entity in listed]
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise self.error("reading the delivery state journal", exc) from exc
        return sorted(found, key=lambda entry: entry.row_key)

    def shards(self) -> list[str]:
        """The shards holding entries (one query of keys only)."""
        try:
            keys = {str(e["PartitionKey"]) for e in self.client.list_entities(select=["PartitionKey"])}
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise self.error("reading the delivery state journal", exc) from exc
        return sorted(keys)

    def delete(self, entries: Iterable[JournalEntry]) -> None:
        """Remove folded entries (one already gone, or rewritten, is left as it is)."""
        for entry in entries:
            try:
                self.client.delete_entity(
                    entry.partition_key,
                    entry.row_key,
                    etag=entry.etag,
                    match_condition=MatchConditions.IfNotModified if entry.etag else MatchConditions.Unconditionally,
                )
            except ResourceNotFoundError:
                continue
            except AzureError as exc:
                raise self.error("deleting folded journal entries", exc) from exc
            with self._cache_lock:
                self._cache.pop((entry.partition_key, entry.row_key), None)

    def _read_entries(self, keys: Sequence[tuple[str, str]]) -> list[JournalEntry]:
        """The entries *keys* names: read one by one when few, else with the whole journal in one paged query
        (after a burst the first reader would otherwise pay a request per entry)."""
        if len(keys) > POINT_READS:
            wanted = set(keys)
            return [entry for entry in self.entries() if (entry.partition_key, entry.row_key) in wanted]
        found = []
        for key in keys:
            try:
                found.append(_entry(self.client.get_entity(*key)))
            except ResourceNotFoundError:
                continue  # folded meanwhile
            except AzureError as exc:
                raise self.error("reading the delivery state journal", exc) from exc
        return found

    def pending(self, message_id: str) -> list[tuple[Observation, datetime]]:
        """The journaled observations of *message_id* not folded yet, with when each was written.

        One request lists the entries' keys; entries not seen before are read once and kept (they never
        change), so a trace usually costs one small request here.
        """
        try:
            keys = [
                (str(e["PartitionKey"]), str(e["RowKey"]))
                for e in self.client.list_entities(select=["PartitionKey", "RowKey"])
            ]
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise self.error("reading the delivery state journal", exc) from exc
        with self._cache_lock:
            missing = [key for key in keys if key not in self._cache]
            for entry in self._read_entries(missing):
                key = (entry.partition_key, entry.row_key)
                self._cache[key] = (entry.written_at, group_by_message(entry.observations))
            live = set(keys)
            for stale in [key for key in self._cache if key not in live]:
                del self._cache[stale]
            return [
                (observation, written_at)
                for key in sorted(live & self._cache.keys(), key=lambda key: key[1])
                for written_at, by_message in [self._cache[key]]
                for observation in by_message.get(message_id, ())
            ]
