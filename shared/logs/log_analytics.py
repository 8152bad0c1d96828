"""LogAnalyticsSource: runs the Log Analytics form of our KQL through azure-monitor-query.

Authentication is Microsoft Entra ID only (DefaultAzureCredential, which picks the managed
identity named by AZURE_CLIENT_ID in Azure). 429 and 5xx answers are retried with backoff by the
SDK's retry policy (honouring Retry-After), but only while the wait fits the request's budget
(``shared.deadline``): a ``Retry-After: 120`` during a 25 s request answers 503 with ``Retry-After: 120``
at once instead of holding the connection past Azure's 230 s front-end limit. What is still failing
becomes, for the API:

* 503 + Retry-After: throttling (429), a transient failure of the service (5xx), a timeout, no connection;
* 502 without Retry-After and with the fix in the detail: a configuration failure (401/403: the identity
  lacks Log Analytics Reader; 404: wrong workspace id; no credential), or a query the service refused (400).

A partial result is kept, flagged, with the service's warning.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from azure.core.pipeline.policies import RetryPolicy

from shared import deadline
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
#: Seconds of a request's budget kept for answering once Log Analytics has answered.
ANSWER_MARGIN = 2.0
ROLE_FIX = (
    "give the app's identity (AZURE_CLIENT_ID) the Log Analytics Reader role on the workspace "
    "(infra/app/workspace-rbac.bicep does this on deployment)"
)


class _OutOfBudget(Exception):
    """The next retry's wait does not fit the request's budget; ``wait`` is what the service asked for."""

    def __init__(self, wait: float, status: int | None) -> None:
        super().__init__(f"retry in {wait:.0f} s does not fit the budget")
        self.wait, self.status = wait, status


class BudgetRetryPolicy(RetryPolicy):  # type: ignore[type-arg]
    """azure-core's retry policy, except that it never sleeps past the current request's deadline."""

    def sleep(self, settings: dict[str, Any], transport: Any, response: Any = None) -> None:
        wait = (self.get_retry_after(response) if response is not None else None) or self.get_backoff_time(settings)
        left = deadline.remaining()
        if left is not None and wait > left - ANSWER_MARGIN:
            status = getattr(getattr(response, "http_response", None), "status_code", None)
            raise _OutOfBudget(max(wait, 1.0), status)
        super().sleep(settings, transport, response)


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
        kwargs: dict[str, Any] = {
            "endpoint": self.endpoint,
            "retry_policy": BudgetRetryPolicy(**self._retry),
            "read_timeout": self.server_timeout + 30,
        }
        if is_loopback(self.endpoint):  # a test stand-in: ask for tokens of the public cloud's audience
            kwargs["audience"] = PUBLIC_ENDPOINT
        self._client = LogsQueryClient(credential, **kwargs)
        return self._client

    def query_text(self, query: KqlQuery) -> str:
        return query.log_analytics_text()

    def _send(self, query: KqlQuery) -> Any:
        """The SDK call within the request's budget, its failures mapped to our errors."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        # Queries are read-only, so a POST may be retried (azure-core retries POST only on some statuses).
        extra: dict[str, Any] = {"retry_on_methods": frozenset({"POST"})}
        if self._plain_http:
            extra["enforce_https"] = False
        server_timeout = self.server_timeout
        left = deadline.remaining()
        if left is not None:  # within a request: the server gives up, and we stop waiting, before the budget ends
            if left <= ANSWER_MARGIN:
                raise LogSourceUnavailable("the request's time budget is spent; retry", retry_after=5)
            server_timeout = max(1, min(server_timeout, int(left - ANSWER_MARGIN)))
            extra["read_timeout"] = left - ANSWER_MARGIN / 2
            extra["timeout"] = left - ANSWER_MARGIN / 2
        try:
            return self._get_client().query_workspace(
                self.workspace_id,
                query.log_analytics_text(),
                timespan=query.timespan,
                server_timeout=server_timeout,
                **extra,
            )
        except _OutOfBudget as exc:
            if exc.status == 429:
                raise LogQueryThrottled("Log Analytics is throttling queries", retry_after=exc.wait) from None
            raise LogSourceUnavailable(
                f"Log Analytics failed (HTTP {exc.status}) and a retry does not fit the request's time budget",
                retry_after=exc.wait,
            ) from None
        except ClientAuthenticationError as exc:
            if getattr(exc, "status_code", None) == 401:  # the service refused the token it got
                raise _map_http_error(exc) from exc
            raise _credential_failure(exc) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise LogSourceUnavailable(
                f"Log Analytics could not be reached or did not answer in time: {exc.message}"
            ) from exc
        except HttpResponseError as exc:
            # query_workspace re-raises a credential failure as a bare HttpResponseError.
            if isinstance(exc.__context__, ClientAuthenticationError):
                raise _credential_failure(exc) from exc
            raise _map_http_error(exc) from exc

    def run(self, query: KqlQuery) -> QueryResult:
        from azure.monitor.query import LogsQueryPartialResult

        response = self._send(query)
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


def _credential_failure(exc: Any) -> LogQueryError:
    return LogQueryError(
        f"could not get a token for Log Analytics ({exc.message}): check that the app has its managed identity and "
        "that AZURE_CLIENT_ID names it"
    )


def _retry_after(exc: Any, default: float) -> float:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    with contextlib.suppress(TypeError, ValueError):
        return float(headers.get("Retry-After", default))
    return default


def _map_http_error(exc: Any) -> LogQueryError:
    status = getattr(exc, "status_code", None)
    model = getattr(exc, "model", None)
    code = getattr(model, "code", None) or None
    message = getattr(model, "message", None) or exc.message or str(exc)
    if status == 429:
        return LogQueryThrottled(
            f"Log Analytics is throttling queries: {message}", retry_after=_retry_after(exc, 30.0), code=code
        )
    if status == 401:
        return LogQueryError(
            "the workspace refused the app's token (HTTP 401): check that AZURE_CLIENT_ID names the app's managed "
            "identity and that it belongs to the workspace's tenant",
            code=code,
        )
    if status == 403:
        return LogQueryError(f"not authorised to query the workspace (HTTP 403): {ROLE_FIX}", code=code)
    if status == 400:
        return LogQueryRejected(f"Log Analytics rejected the query: {message}", code=code)
    if status == 404:
        return LogQueryError(
            f"workspace not found (HTTP 404): check LOG_ANALYTICS_WORKSPACE_ID (the workspace's customerId GUID): "
            f"{message}",
            code=code,
        )
    if status is not None and status >= 500:
        return LogSourceUnavailable(
            f"Log Analytics failed (HTTP {status}): {message}", retry_after=_retry_after(exc, 30.0), code=code
        )
    return LogQueryError(f"Log Analytics failed (HTTP {status}): {message}", code=code)
