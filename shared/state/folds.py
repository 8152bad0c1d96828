"""The fold, scaled out: journal shards folded by queue-triggered functions, one folder per shard at a time.

The journal (:mod:`shared.state.journal`) spreads its entries over :data:`~shared.state.journal.PARTITIONS`
shards (its partition keys ``j0`` ..). Each journal write asks for its shards to be folded: one message
``{"shard": "j3"}`` per shard written, per write (a group commit of many events is one write), on the queue
``FOLD_QUEUE`` (:class:`FoldRequests`). The queue-triggered ``fold_journal_shard`` runs :func:`fold_shard`:
:func:`shared.state.ingest.fold_journal`, unchanged, over that one shard, then push. Instances take messages
side by side, so shards fold in parallel; a failing shard's message is retried and, after the queue's
``maxDequeueCount``, set aside in ``<queue>-poison`` without holding up the others.

One folder per shard (:class:`ShardLeases`): an entity per shard (partition ``~fold-<shard>`` of the state table)
holds the owner and until when, taken and given back with ETag-conditioned writes, so of two instances only
one wins. Why a Table entity rather than a blob lease: the state table is already there and reachable with
the same identity and role; a lease needs no renewal here because a fold's run is bounded (its budget, then a
continuation message) well inside :data:`LEASE_SECONDS`, after which a dead holder's lease lapses.

No request is lost between two folders: a fold that finds the shard taken marks the entity ``Dirty``
(ETag-conditioned, so the mark cannot be overwritten unseen); the holder gives the lease back with a write
conditioned on the ETag it took it with, which fails if the entity was marked, and then folds again. Entries
written after the holder's last look are therefore folded by the holder, or by the next request's folder.

Safety net: the follower's timer (every minute) asks for every shard with entries (:func:`fold_backlog`), so
a lost message delays a fold by a minute, never loses it. Without a queue service (a connection string that
names a Table endpoint only, as some tests use), :func:`fold_backlog` folds those shards in line instead,
under the same leases.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.storage.queue import QueueClient

from shared.state.ingest import FoldReport, fold_journal
from shared.state.store import PartitionChange, StateStore

logger = logging.getLogger(__name__)

#: Lease entities: partition ``~fold-<shard>`` of the state table (no message id starts with "~"), one partition a
#: shard, so the leases' requests (three or so a fold) spread like the folds (2,000 a second per partition).
LEASE_PREFIX: Final = "~fold-"
LEASE_ROW: Final = "lease"
#: How long a folder holds a shard: far more than one run (its budget plus one chunk of the fold).
LEASE_SECONDS: Final = 120.0
#: Seconds one queue-triggered fold spends before handing the rest to a continuation message.
FOLD_BUDGET_SECONDS: Final = 40.0
#: How long fold requests are not tried after one failed (the follower's timer asks every minute meanwhile).
FAILURE_PAUSE_SECONDS: Final = 30.0
#: What a shard name looks like (the journal's partition keys).
SHARD_PATTERN: Final = re.compile(r"j\d{1,4}")
_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)


class FoldRequestError(ValueError):
    """A fold request message that is not ``{"shard": "j<N>"}`` (the queue sets it aside after its retries)."""


def fold_request(shard: str) -> str:
    return json.dumps({"shard": shard}, separators=(",", ":"))


def read_fold_request(body: bytes) -> str:
    """The shard a queue message asks to fold."""
    try:
        shard = json.loads(body).get("shard")
    except (ValueError, AttributeError):
        raise FoldRequestError("a fold request is a JSON object") from None
    if not isinstance(shard, str) or not SHARD_PATTERN.fullmatch(shard):
        raise FoldRequestError('a fold request names its shard: {"shard": "j<N>"}')
    return shard


@dataclass
class FoldRequests:
    """Fold requests sent to the fold queue. Sending never raises: a request that cannot be sent is logged and
    left to the timer's safety net (the observations are journaled already; only their fold waits).

    After a failure, requests are not even tried for :data:`FAILURE_PAUSE_SECONDS`: each try at an unreachable
    queue costs its retries (about 2 s), and journal writes send the requests before they return, so with the
    queue down every Event Grid delivery waited seconds per write (a 500-event delivery: over a minute)."""

    queue: QueueClient
    pause_seconds: float = FAILURE_PAUSE_SECONDS
    _paused_until: float = field(default=0.0, repr=False)

    def request(self, shards: Iterable[str]) -> int:
        """One message per shard; the number sent."""
        sent = 0
        for shard in dict.fromkeys(shards):
            if time.monotonic() < self._paused_until:
                break  # the timer asks for every shard with a backlog
            try:
                self._send(fold_request(shard))
                sent += 1
            except AzureError as exc:
                self._paused_until = time.monotonic() + self.pause_seconds
                logger.warning(
                    "fold request for shard %s not sent; none tried for %.0f s (the timer will ask): %s",
                    shard,
                    self.pause_seconds,
                    type(exc).__name__,
                )
        return sent

    def _send(self, text: str) -> None:
        try:
            self.queue.send_message(text)
        except ResourceNotFoundError:  # the first request ever: the queue is created, once
            with contextlib.suppress(ResourceExistsError):
                self.queue.create_queue()
            self.queue.send_message(text)

    def close(self) -> None:
        self.queue.close()


@dataclass
class Lease:
    shard: str
    owner: str
    etag: str
    #: The shard's previous fold failed or its holder vanished: this fold announces what it folds as new.
    unclean: bool = False


@dataclass
class ShardLeases:
    """One holder per shard (see the module's docstring); wall-clock times, whatever the store's clock."""

    client: TableClient
    seconds: float = LEASE_SECONDS
    owner: str = field(default_factory=lambda: f"{os.getpid()}-{os.urandom(6).hex()}")

    @classmethod
    def of(cls, store: StateStore) -> ShardLeases:
        return cls(store.client)

    def acquire(self, shard: str) -> Lease | None:
        """The shard's lease, or None when another folder holds it (which is then told to fold again)."""
        while True:
            now = datetime.now(UTC)
            try:
                entity = self.client.get_entity(LEASE_PREFIX + shard, LEASE_ROW)
            except ResourceNotFoundError:
                values = {"PartitionKey": LEASE_PREFIX + shard, "RowKey": LEASE_ROW, **self._held(now, False)}
                try:
                    return Lease(shard, self.owner, self.client.create_entity(values)["etag"])
                except ResourceExistsError:
                    continue
            etag = str(entity.metadata["etag"])
            until = entity.get("Until")
            owner = entity.get("Owner")
            held = isinstance(until, datetime) and until > now and owner not in ("", self.owner)
            # A lease that lapsed in someone else's hands: that fold died somewhere between its writes and
            # its deletes, as one that failed (and said so) did.
            unclean = bool(entity.get("Unclean")) or (not held and owner not in ("", None, self.owner))
            try:
                if held:
                    marked = {"Owner": owner, "Until": until, "Dirty": True, "Unclean": unclean}
                    self._update(shard, marked, etag)
                    return None
                return Lease(shard, self.owner, self._update(shard, self._held(now, unclean), etag), unclean)
            except ResourceModifiedError:
                continue

    def release(self, lease: Lease, *, whatever: bool = False, failed: bool = False) -> bool:
        """Give the lease back: True, or False (still held, renewed) when a request came meanwhile: fold again.
        ``whatever=True`` gives it back even then (a folder that stops: failed, or left a continuation).
        ``failed=True`` (or a lease taken unclean and left with a continuation) leaves the shard unclean."""
        released: dict[str, Any] = {"Owner": "", "Until": _EPOCH, "Dirty": False, "Unclean": failed}
        while True:
            try:
                self._update(lease.shard, released, lease.etag)
                return True
            except ResourceModifiedError:
                pass
            entity = self.client.get_entity(LEASE_PREFIX + lease.shard, LEASE_ROW)
            if entity.get("Owner") != lease.owner:
                return True  # lapsed and taken: the new holder folds what is there
            etag = str(entity.metadata["etag"])
            if whatever:
                lease.etag = etag
                continue
            try:
                lease.etag = self._update(lease.shard, self._held(datetime.now(UTC), lease.unclean), etag)
                return False
            except ResourceModifiedError:
                continue  # marked again meanwhile

    def _held(self, now: datetime, unclean: bool) -> dict[str, Any]:
        return {"Owner": self.owner, "Until": now + timedelta(seconds=self.seconds), "Dirty": False, "Unclean": unclean}

    def _update(self, shard: str, values: dict[str, Any], etag: str) -> str:
        entity = {"PartitionKey": LEASE_PREFIX + shard, "RowKey": LEASE_ROW, **values}
        result = self.client.update_entity(
            entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
        )
        return str(result["etag"])


@dataclass
class ShardFold(FoldReport):
    """One shard's fold: what was folded, whether another folder had it, whether a continuation was asked."""

    shard: str = ""
    busy: bool = False
    continued: bool = False
    rounds: int = 0


def _add(total: FoldReport, report: FoldReport) -> None:
    total.messages += report.messages
    total.entities_written += report.entities_written
    total.became_final += report.became_final
    total.entries += report.entries
    total.observations += report.observations
    total.left = report.left


def fold_shard(
    store: StateStore,
    shard: str,
    *,
    leases: ShardLeases,
    on_change: Callable[[Sequence[PartitionChange]], None] | None = None,
    requests: FoldRequests | None = None,
    budget_seconds: float = FOLD_BUDGET_SECONDS,
) -> ShardFold:
    """Fold *shard* under its lease until it is empty (and nobody asked again meanwhile) or the budget is spent
    (then one continuation request, when there is a queue). A failure gives the lease back and raises, so
    the queue retries the message."""
    result = ShardFold(shard=shard)
    if store.journal is None:
        return result
    store.ensure_table()  # the leases live in the state table
    lease = leases.acquire(shard)
    if lease is None:
        result.busy = True
        return result
    view = replace(store, journal=replace(store.journal, shard=shard, on_written=None))
    started = time.monotonic()
    released, failed = False, True
    try:
        while True:
            left = budget_seconds - (time.monotonic() - started)
            report = fold_journal(view, on_change=on_change, budget_seconds=left, replay=lease.unclean)
            _add(result, report)
            result.rounds += 1
            if report.left or time.monotonic() - started >= budget_seconds:
                result.continued = requests is not None and requests.request([shard]) > 0
                break
            if leases.release(lease):
                released = True
                break
        failed = False
    finally:
        if not released:
            try:
                # A continuation of an unclean fold stays unclean: its older entries may be among those left.
                leases.release(lease, whatever=True, failed=failed or lease.unclean)
            except AzureError as exc:  # it lapses by itself
                logger.warning("the lease of shard %s was not given back: %s", shard, type(exc).__name__)
    return result


def fold_backlog(
    store: StateStore,
    *,
    requests: FoldRequests | None,
    on_change: Callable[[Sequence[PartitionChange]], None] | None = None,
    budget_seconds: float = FOLD_BUDGET_SECONDS,
) -> list[str]:
    """The timer's safety net: every shard with journal entries is asked for (or, with no queue, folded here
    within the budget). Returns those shards."""
    if store.journal is None:
        return []
    shards = store.journal.shards()
    if requests is not None:
        requests.request(shards)
        return shards
    leases = ShardLeases.of(store)
    started = time.monotonic()
    for shard in shards:
        left = budget_seconds - (time.monotonic() - started)
        if left <= 0:
            break
        fold_shard(store, shard, leases=leases, on_change=on_change, budget_seconds=left)
    return shards
