"""Timers on their schedules and queue triggers on Azurite's queue service, run as the Functions host runs them.

Timers (:class:`TimerRunner`): each timer function on its own thread, invoked at every occurrence of its
NCRONTAB schedule (:mod:`tools.devhost.schedule`; ``%NAME%`` read from the settings). One invocation of a
timer at a time, as the host's singleton lock makes it: an occurrence missed while the previous run was still
going is run once when it ends, with ``past_due`` true (``useMonitor``'s report; the schedule status is kept
in memory, not in storage). ``runOnStartup`` runs it once when the host starts.

Queue triggers (:class:`QueueListener`): polls the queue named by ``queueName`` on the storage named by
``connection``, with the queue extension's rules and ``host.json`` ``extensions.queues`` options
(:class:`QueueOptions`): up to ``batchSize`` messages a poll, run concurrently on the worker's pool, and the
next poll as soon as no more than ``newBatchThreshold`` of them are still running (a slow message does not
hold up the rest); a poll that finds nothing waits twice as long as the last (from 100 ms up to
``maxPollingInterval``). A message is held invisible while it runs; done, it is deleted; failed, it becomes
visible again after ``visibilityTimeout``, and once it has been dequeued ``maxDequeueCount`` times it is moved
to ``<queue>-poison`` instead. Bodies are base64 (the runtime's default ``messageEncoding``); one that is not
fails like a failed invocation, so it ends in the poison queue too.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient, QueueMessage

from tools.devhost.schedule import Schedule

log = logging.getLogger("devhost")

#: How long a message being run stays invisible to other pollers (the host renews its lease; a run here is
#: bounded by host.json's functionTimeout of 10 minutes).
RUNNING_VISIBILITY = timedelta(minutes=10)
MIN_POLL_SECONDS = 0.1


def _timespan(value: Any, default: float) -> float:
    """Seconds of a host.json TimeSpan ("00:00:02", "00:01:00") or a number of seconds."""
    if value is None:
        return default
    if isinstance(value, int | float):
        return float(value)
    hours, minutes, seconds = [*str(value).split(":"), "0", "0"][:3]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues`` of host.json, with the extension's defaults."""

    batch_size: int = 16
    #: Running messages at or below which the next batch is fetched (the extension's default: batchSize / 2).
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 60.0

    @classmethod
    def from_host_file(cls, host_file: str | Path | None) -> QueueOptions:
        if host_file is None or not Path(host_file).is_file():
            return cls()
        data = json.loads(Path(host_file).read_text(encoding="utf-8-sig"))
        queues = (data.get("extensions") or {}).get("queues") or {}
        batch_size = max(1, min(32, int(queues.get("batchSize", 16))))
        return cls(
            batch_size=batch_size,
            new_batch_threshold=max(0, int(queues.get("newBatchThreshold", batch_size // 2))),
            max_dequeue_count=max(1, int(queues.get("maxDequeueCount", 5))),
            visibility_timeout=_timespan(queues.get("visibilityTimeout"), 0.0),
            max_polling_interval=max(MIN_POLL_SECONDS, _timespan(queues.get("maxPollingInterval"), 60.0)),
        )


class DevQueueMessage(func.QueueMessage):
    """The message as the Python worker hands it to a function (with its dequeue count and times)."""

    def __init__(self, message: QueueMessage, body: bytes) -> None:
        super().__init__(id=message.id, body=body, pop_receipt=message.pop_receipt)
        self._message = message

    @property
    def dequeue_count(self) -> int | None:
        return self._message.dequeue_count

    @property
    def insertion_time(self) -> datetime | None:
        return self._message.inserted_on

    @property
    def expiration_time(self) -> datetime | None:
        return self._message.expires_on

    @property
    def time_next_visible(self) -> datetime | None:
        return self._message.next_visible_on


class TimerRunner:
    """One timer function on its schedule (see the module's docstring)."""

    def __init__(self, name: str, schedule: Schedule, invoke: Callable[[TimerRequest], None], *, on_startup: bool):
        self.name, self.schedule, self.invoke, self.on_startup = name, schedule, invoke, on_startup
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"devhost-timer-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, past_due: bool, last: datetime | None, upcoming: datetime) -> None:
        status = {
            "Last": (last or upcoming).isoformat(),
            "Next": upcoming.isoformat(),
            "LastUpdated": datetime.now(UTC).isoformat(),
        }
        try:
            self.invoke(TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True}))
        except Exception as exc:  # logged as the host does; the schedule goes on
            log.warning("timer %s failed: %s", self.name, type(exc).__name__)
        self.runs += 1

    def _loop(self) -> None:
        last: datetime | None = None
        due = self.schedule.next_after(datetime.now(UTC))
        if self.on_startup:
            self._run(False, None, due)
        while not self._stop.is_set():
            wait_seconds = (due - datetime.now(UTC)).total_seconds()
            if wait_seconds > 0 and self._stop.wait(wait_seconds):
                return
            after = self.schedule.next_after(due)
            self._run(False, last, after)
            last = due
            now = datetime.now(UTC)
            if after < now:  # occurrences passed while it ran: one past-due run, then back on the schedule
                after = self.schedule.next_after(now)
                self._run(True, last, after)
            due = after


class QueueListener:
    """One queue-triggered function fed from its queue (see the module's docstring)."""

    def __init__(
        self,
        name: str,
        queue: QueueClient,
        poison: QueueClient,
        invoke: Callable[[func.QueueMessage], None],
        options: QueueOptions,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.name, self.queue, self.poison, self.invoke, self.options = name, queue, poison, invoke, options
        self.pool = pool
        self._running = 0
        self._settled = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"devhost-queue-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.queue.close()
        self.poison.close()

    def _loop(self) -> None:
        delay = MIN_POLL_SECONDS
        while not self._stop.is_set():
            with self._settled:
                if not self._settled.wait_for(
                    lambda: self._running <= self.options.new_batch_threshold or self._stop.is_set(), timeout=1.0
                ):
                    continue
            try:
                batch = list(
                    self.queue.receive_messages(
                        messages_per_page=self.options.batch_size,
                        max_messages=self.options.batch_size,
                        visibility_timeout=int(RUNNING_VISIBILITY.total_seconds()),
                    )
                )
            except ResourceNotFoundError:
                self._create(self.queue)
                batch = []
            except AzureError as exc:
                log.warning("queue %s: polling failed: %s", self.name, type(exc).__name__)
                batch = []
            if not batch:
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.options.max_polling_interval)
                continue
            delay = MIN_POLL_SECONDS
            with self._settled:
                self._running += len(batch)
            for message in batch:
                self.pool.submit(self._handle, message)

    @staticmethod
    def _create(queue: QueueClient) -> None:
        try:
            queue.create_queue()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            log.warning("queue %s cannot be created: %s", queue.queue_name, type(exc).__name__)

    def _handle(self, message: QueueMessage) -> None:
        try:
            self._settle(message)
        finally:
            with self._settled:
                self._running -= 1
                self._settled.notify_all()

    def _settle(self, message: QueueMessage) -> None:
        try:
            succeeded = self._run(message)
            if succeeded:
                self.queue.delete_message(message)
            elif (message.dequeue_count or 0) >= self.options.max_dequeue_count:
                self._to_poison(message)
            else:
                self.queue.update_message(message, visibility_timeout=int(self.options.visibility_timeout))
        except AzureError as exc:  # the message reappears when its visibility ends
            log.warning("queue %s: settling a message failed: %s", self.name, type(exc).__name__)

    def _run(self, message: QueueMessage) -> bool:
        if (message.dequeue_count or 0) > self.options.max_dequeue_count:
            return False  # dequeued too often already (a run that never settled it): straight to poison
        try:
            body = base64.b64decode(str(message.content), validate=True)
        except (binascii.Error, ValueError):
            log.warning("queue %s: message %s is not base64", self.name, message.id)
            return False
        try:
            self.invoke(DevQueueMessage(message, body))
        except Exception as exc:  # the type only: the message may quote data
            log.warning("function %s failed on message %s: %s", self.name, message.id, type(exc).__name__)
            return False
        return True

    def _to_poison(self, message: QueueMessage) -> None:
        log.warning("queue %s: message %s moved to %s", self.name, message.id, self.poison.queue_name)
        try:
            self.poison.send_message(message.content)
        except ResourceNotFoundError:
            self._create(self.poison)
            self.poison.send_message(message.content)
        self.queue.delete_message(message)
