"""What the use cases run against, built once from the settings and handed to handlers and the CLI.

``Services`` holds the settings and builds each dependency on first use (so a health check can report a
store that cannot be built, and a CLI command that needs no Table Storage never touches it). One per
process in the Functions host (``process_services``); tests and benchmarks build their own, passing the
parts they want to replace, instead of patching module globals.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.insights import Insights
from shared.logs.source import LogSource
from shared.settings import Settings
from shared.signing import Signer, link_signer

if TYPE_CHECKING:
    from collections.abc import Callable

    from azure.communication.email import EmailClient

    from shared.push.delivery import Push
    from shared.push.subscriptions import SubscriptionStore
    from shared.state.folds import FoldRequests
    from shared.state.store import StateStore
    from shared.summaries.table import SummaryStore
    from shared.suppression.arm import SuppressionList
    from shared.suppression.records import SuppressionRecords


def make_source(settings: Settings) -> LogSource:
    """Log Analytics when a workspace id is set, else the embedded DuckDB store."""
    if settings.workspace_id:
        from shared.logs.log_analytics import LogAnalyticsSource

        return LogAnalyticsSource(
            settings.workspace_id,
            endpoint=settings.log_analytics_endpoint,
            client_id=settings.client_id,
            server_timeout=settings.query_timeout_seconds,
        )
    from local.embedded import DuckDbSource

    return DuckDbSource(settings.local_store)


class Services:
    def __init__(
        self,
        settings: Settings,
        *,
        insights: Insights | None = None,
        summaries: SummaryStore | None = None,
        state: StateStore | None = None,
        subscriptions: SubscriptionStore | None = None,
        clock: Callable[[], datetime] | None = None,
        suppression_list: SuppressionList | None = None,
        suppression_records: SuppressionRecords | None = None,
        folds: FoldRequests | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or (insights.clock if insights is not None else lambda: datetime.now(UTC))
        # An Insights handed in (tests) signs with this deployment's key too: one key per Services.
        self._insights = insights.signing_with(lambda: self.signer) if insights is not None else None
        self._summaries = summaries
        self._state = state
        self._subscriptions = subscriptions
        self._push: Push | None = None
        self._suppression_list = suppression_list
        self._suppression_records = suppression_records
        self._folds = folds
        self._folds_built = folds is not None
        self._email_client: Any = None
        self._state_wired = False
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> Services:
        return cls(Settings.from_env())

    @property
    def status_grace(self) -> timedelta:
        return timedelta(hours=self.settings.status_grace_hours)

    @property
    def signer(self) -> Signer:
        """The key of poll links and continuation tokens (``LINK_SIGNING_KEY``); in Azure without one, raises
        ``LinkSigningUnavailable`` (503 naming the setting) rather than fall back to the public development key."""
        return link_signer(self.settings.link_signing_key, in_azure=self.settings.in_azure)

    @property
    def insights(self) -> Insights:
        """The use cases over the configured log source (one source, and its connections, per Services)."""
        with self._lock:
            if self._insights is None:
                self._insights = Insights(
                    make_source(self.settings),
                    status_grace=self.status_grace,
                    clock=self.clock,
                    signer=lambda: self.signer,
                )
            return self._insights

    @property
    def summaries(self) -> SummaryStore:
        """The daily summary table; raises (Unavailable, with the reason) while it cannot be built."""
        with self._lock:
            if self._summaries is None:
                from shared.summaries.table import SummaryStore

                self._summaries = SummaryStore.from_settings(self.settings)
            return self._summaries

    @property
    def state(self) -> StateStore:
        """The delivery state table (one partition a message); raises (Unavailable) while it cannot be built."""
        with self._lock:
            if self._state is None:
                from shared.state.store import StateStore

                self._state = StateStore.from_settings(self.settings)
            if not self._state_wired and self._state.journal is not None:
                folds = self._fold_requests()
                if folds is not None and self._state.journal.on_written is None:
                    self._state.journal.on_written = folds.request
                self._state_wired = True
            return self._state

    @property
    def folds(self) -> FoldRequests | None:
        """The fold queue (``FOLD_QUEUE`` on AzureWebJobsStorage), or None when that storage has no queue service:
        then the follower's timer folds the journal itself."""
        with self._lock:
            return self._fold_requests()

    def _fold_requests(self) -> FoldRequests | None:
        if not self._folds_built:
            import os

            from shared.queues import connect_queue
            from shared.settings import QUEUE_CONNECTION
            from shared.state.folds import FoldRequests
            from shared.storage import StorageUnavailable

            self._folds_built = True
            try:
                queue = connect_queue(
                    QUEUE_CONNECTION, self.settings.fold_queue, client_id=self.settings.client_id, environ=os.environ
                )
            except StorageUnavailable:
                queue = None
            self._folds = None if queue is None else FoldRequests(queue)
        return self._folds

    @property
    def subscriptions(self) -> SubscriptionStore:
        """The push subscriptions table and its outbox; raises (Unavailable) while it cannot be built."""
        with self._lock:
            if self._subscriptions is None:
                from shared.push.subscriptions import SubscriptionStore

                self._subscriptions = SubscriptionStore.from_settings(self.settings)
            return self._subscriptions

    @property
    def push(self) -> Push:
        """Subscriptions matched to state changes and delivered (one delivery pool per Services).

        Plain http callbacks to a loopback host are accepted only when no workspace is configured (the service
        runs locally on the embedded store); see ``shared.push.callbacks``.
        """
        with self._lock:
            if self._push is None:
                from shared.push.callbacks import system_resolver
                from shared.push.delivery import Push
                from shared.tracing import push_trace

                self._push = Push(
                    lambda: self.subscriptions,
                    state=lambda: self.state,
                    # What GET /api/messages/{id} answers: the state first, no log query once it is final.
                    trace=lambda message_id: push_trace(self, message_id),
                    clock=self.clock,
                    status_grace=self.status_grace,
                    allow_loopback_http=not self.settings.in_azure,
                    resolve=system_resolver if self.settings.in_azure else None,
                    max_subscriptions=self.settings.max_subscriptions,
                )
            return self._push

    @property
    def suppression_list(self) -> SuppressionList | None:
        """Our customer-managed suppression list (SUPPRESSION_LIST_ID), None when unset; raises
        (SuppressionListRefused) when the setting is not a suppression list's ARM id."""
        with self._lock:
            if self._suppression_list is None and self.settings.suppression_list_id:
                from shared.suppression.arm import SuppressionList

                self._suppression_list = SuppressionList.of(
                    self.settings.suppression_list_id,
                    client_id=self.settings.client_id,
                    endpoint=self.settings.arm_endpoint,
                )
            return self._suppression_list

    @property
    def suppression_records(self) -> SuppressionRecords:
        """What we added to and removed from the list (a partition of the summary table)."""
        with self._lock:
            if self._suppression_records is None:
                from shared.suppression.records import SuppressionRecords

                self._suppression_records = SuppressionRecords.from_settings(self.settings)
            return self._suppression_records

    @property
    def email_client(self) -> EmailClient:
        """The ACS EmailClient of the send route (ACS_CONNECTION_STRING or ACS_ENDPOINT), built once; raises
        ``SendingNotConfigured`` (503 naming the settings) when neither is set."""
        with self._lock:
            if self._email_client is None:
                from shared.sending.client import AcsAccess, SendingNotConfigured, send_client

                access = AcsAccess.of(self.settings)
                if access is None:
                    raise SendingNotConfigured("set ACS_ENDPOINT (managed identity) or ACS_CONNECTION_STRING to send")
                self._email_client = send_client(access)
            return self._email_client  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            if self._email_client is not None:
                self._email_client.close()
                self._email_client = None
            for closable in (self._suppression_list, self._suppression_records):
                if closable is not None:
                    closable.close()
            self._suppression_list, self._suppression_records = None, None
            if self._push is not None:
                self._push.close()
            if self._insights is not None:
                closer = getattr(self._insights.source, "close", None)
                if callable(closer):
                    closer()
            for store in (self._summaries, self._state, self._subscriptions, self._folds):
                if store is not None:
                    store.close()
            self._insights, self._summaries, self._state = None, None, None
            self._subscriptions, self._push = None, None


_process_services: Services | None = None
_process_lock = threading.Lock()


def process_services() -> Services:
    """The Functions host's one ``Services`` (translations, SDK clients and connections reused across calls)."""
    global _process_services
    with _process_lock:
        if _process_services is None:
            _process_services = Services.from_env()
        return _process_services
