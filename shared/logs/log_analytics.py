"""LogAnalyticsSource: runs the Log Analytics form of our KQL through azure-monitor-query.

Authentication is Microsoft Entra ID only (DefaultAzureCredential, which picks the managed
identity named by AZURE_CLIENT_ID in Azure). 429 answers are retried with backoff by the
SDK's retry policy (honouring Retry-After); what is still throttled after that becomes
``LogQueryThrottled`` so the API can answer 503 with Retry-After. A partial result is kept,
flagged, with the service's warning.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from shared.kql.query import KqlQuery
from shared.logs.source import (
    LogQueryError,
    LogQueryRejected,
    LogQueryThrottled,
    LogSourceUnavailable,
    QueryResult,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.monitor.query import LogsQueryClient

PUBLIC_ENDPOINT = "https://api.loganalytics.io"


def is_loopback(endpoint: str) -> bool:
    host = urlparse(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LogAnalyticsSource:
    name = "logAnalytics"

    def __init__(
        self,
        workspace_id: str,
        *,
        endpoint: str | None = None,
        credential: TokenCredential | None = None,
        client_id: str | None = None,
        server_timeout: int = 180,
        retry_total: int = 3,
        retry_backoff_factor: float = 0.8,
        retry_backoff_max: float = 20.0,
    ) -> None:
        self.workspace_id = workspace_id
        self.endpoint = (endpoint or PUBLIC_ENDPOINT).rstrip("/")
        self._plain_http = urlparse(self.endpoint).scheme.lower() == "http"
        if self._plain_http and not is_loopback(self.endpoint):
            raise ValueError("Log Analytics must be reached over https (plain http only for loopback test servers)")
        self._credential = credential
        self._client_id = client_id
        self.server_timeout = server_timeout
        self._retry = {
            "retry_total": retry_total,
            "retry_backoff_factor": retry_backoff_factor,
            "retry_backoff_max": retry_backoff_max,
        }
        self._client: LogsQueryClient | None = None
        self._client_lock = threading.Lock()

    def _get_client(self) -> LogsQueryClient:
        with self._client_lock:
            return self._client or self._build_client()

    def _build_client(self) -> LogsQueryClient:
        from azure.monitor.query import LogsQueryClient

        credential = self._credential
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=self._client_id)
        kwargs: dict[str, Any] = {"endpoint": self.endpoint, **self._retry, "read_timeout": self.server_timeout + 30}
        if is_loopback(self.endpoint):  # a test stand-in: ask for tokens of the public cloud's audience
            kwargs["audience"] = PUBLIC_ENDPOINT
        self._client = LogsQueryClient(credential, **kwargs)
        return self._client

    def query_text(self, query: KqlQuery) -> str:
        return query.log_analytics_text()

    def run(self, query: KqlQuery) -> QueryResult:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
        from azure.monitor.query import LogsQueryPartialResult

        # Queries are read-only, so a POST may be retried (azure-core retries POST only on some statuses).
        extra: dict[str, Any] = {"retry_on_methods": frozenset({"POST"})}
        if self._plain_http:
            extra["enforce_https"] = False
        try:
            response = self._get_client().query_workspace(
                self.workspace_id,
                query.log_analytics_text(),
                timespan=query.timespan,
                server_timeout=self.server_timeout,
                **extra,
            )
        except ClientAuthenticationError as exc:
            raise LogSourceUnavailable(f"could not authenticate to Log Analytics: {exc.message}") from exc
        except ServiceRequestError as exc:
            raise LogSourceUnavailable(f"Log Analytics could not be reached: {exc.message}") from exc
        except HttpResponseError as exc:
            # query_workspace re-raises a credential failure as a bare HttpResponseError.
            if isinstance(exc, ClientAuthenticationError) or isinstance(exc.__context__, ClientAuthenticationError):
                raise LogSourceUnavailable(f"could not authenticate to Log Analytics: {exc.message}") from exc
            raise _map_http_error(exc) from exc

        if isinstance(response, LogsQueryPartialResult):
            tables = response.partial_data
            error = response.partial_error
            message = getattr(error, "message", None) or "Log Analytics returned a partial result"
            warning = ": ".join(part for part in (getattr(error, "code", None), message) if part)
        else:
            tables = response.tables
            warning = None
        if not tables:
            return QueryResult([], [], partial_error=warning)
        table = tables[0]
        columns = [column if isinstance(column, str) else column.name for column in table.columns]
        rows = [tuple(row) for row in table.rows]
        return QueryResult(columns, rows, partial_error=warning or None)

    def check(self) -> tuple[bool, str]:
        from shared.kql.query import KqlQuery as _Query

        probe = _Query("health", "print Ok = 1", (), _probe_timespan())
        try:
            self.run(probe)
        except LogQueryError as exc:
            return False, exc.detail
        return True, f"Log Analytics workspace {self.workspace_id} at {self.endpoint}"


def _probe_timespan() -> tuple[Any, Any]:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    return (now - timedelta(minutes=5), now)


def _map_http_error(exc: Any) -> LogQueryError:
    status = getattr(exc, "status_code", None)
    model = getattr(exc, "model", None)
    code = getattr(model, "code", None) or None
    message = getattr(model, "message", None) or exc.message or str(exc)
    if status == 429:
        retry_after = 30.0
        response = getattr(exc, "response", None)
        if response is not None:
            with contextlib.suppress(TypeError, ValueError):
                retry_after = float(response.headers.get("Retry-After", retry_after))
        return LogQueryThrottled(f"Log Analytics is throttling queries: {message}", retry_after=retry_after, code=code)
    if status in (401, 403):
        return LogSourceUnavailable(f"not authorised to query the workspace (HTTP {status}): {message}", code=code)
    if status == 400:
        return LogQueryRejected(f"Log Analytics rejected the query: {message}", code=code)
    if status == 404:
        return LogSourceUnavailable(f"workspace not found: {message}", code=code)
    return LogQueryError(f"Log Analytics failed (HTTP {status}): {message}", code=code)
