"""Table Storage connections, resolved the way Azure Functions bindings resolve them, and SDK errors described.

A connection setting prefix ``P`` names either an app setting holding a connection string
(``UseDevelopmentStorage=true`` for Azurite) or identity-based ``P__tableServiceUri`` / ``P__accountName``
(+ ``P__credential``, ``P__clientId``). Every table of ours (daily summaries, delivery state,
subscriptions) connects through :func:`connect_table`; each store maps :class:`StorageUnavailable` and
:func:`describe_error` onto its own error classes. Secrets never appear in error messages or logs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient

from shared import deadline
from shared.errors import ServiceError, Unavailable

if TYPE_CHECKING:
    from shared.settings import Settings

#: Azurite's well-known development account (public, documented).
DEV_ACCOUNT: Final = "devstoreaccount1"
DEV_KEY: Final = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEV_TABLE_PORT: Final = 10002

_SECRET_PATTERNS: Final = (
    re.compile(r"(AccountKey\s*=\s*)[^;]+", re.I),
    re.compile(r"(SharedAccessSignature\s*=\s*)[^;]+", re.I),
    re.compile(r"([?&]sig=)[^&\s'\"]+", re.I),
)


class StorageUnavailable(Unavailable):
    """No storage connection is configured, it is malformed, or the service cannot be reached."""

    title = "Table storage unavailable"


@dataclass(frozen=True)
class TableConnection:
    client: TableClient
    #: Where the table lives, for messages (no secrets).
    description: str
    #: Values to redact from any message about this connection.
    secrets: Sequence[str] = field(default=())


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """*text* without account keys, SAS signatures or any of *secrets*."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


def public_endpoint(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


#: Table requests fail fast: an unreachable store is known within ~4 s (2 retries, short back-off, 3 s to connect),
#: so a trace falls back to the log query, and ingestion answers 5xx for Event Grid to retry, well within the
#: request's budget (REQUEST_BUDGET_SECONDS); the SDK's defaults spent ~5-6 s of retries per call. A store that
#: accepts connections but never answers (frozen) is bounded by the read timeout: within a request, by what is
#: left of its budget (:class:`DeadlineTransport`); outside one (timers, CLI), by ``read_timeout`` per attempt.
CLIENT_OPTIONS: Final[dict[str, Any]] = {
    "retry_total": 2,
    "retry_backoff_factor": 0.2,
    "retry_backoff_max": 1.0,
    "connection_timeout": 3,
    "read_timeout": 20,
}

#: Seconds of a budget a Table request leaves unused: the retry policy's back-off after a timed-out attempt
#: (0 s, then 0.4 s), so the call ends within the budget.
STORAGE_MARGIN: Final = 0.5

#: Proxy settings the requests library looks up in the environment on every request when allowed to.
_PROXY_ENVIRONMENT: Final = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy", "netrc"})


#: Connections kept per host by one client: at least the invocations that may share it at once
#: (``PYTHON_THREADPOOL_THREAD_COUNT``, 32 in Bicep and the sample settings).
POOL_CONNECTIONS: Final = 32


class BudgetSpent(ServiceRequestTimeoutError):
    """The request's time budget left no time for this Table request (an attempt is not even started)."""


class DeadlineTransport(RequestsTransport):  # type: ignore[misc]  # azure-core ships it untyped
    """The requests transport, each attempt's connect and read timeouts cut to the current budget.

    Without it a frozen store (connections accepted, no answer) held a trace for 34.5 s and an Event Grid
    delivery for 41-45 s (2 retries of a 20 s read timeout). Inside a budget (:mod:`shared.deadline`) every
    attempt waits at most what is left less :data:`STORAGE_MARGIN`, and none starts once nothing is left, so
    a call ends within the budget whatever its retries; the caller maps the failure to 503 (or falls back).
    """

    def _init_session(self, session: Any) -> None:
        """azure-core's session set-up, with a connection pool as large as the invocations that share a client:
        requests keeps 10 connections per host, so the dev host's and the Python worker's 32 threads (and the
        folds' parallel writes) discarded one on most requests and logged a warning for each ("Connection pool
        is full": 1,515 lines in a minute of ``make run``)."""
        super()._init_session(session)
        for protocol in self._protocols:
            mounted = session.get_adapter(protocol)  # azure-core's adapter: its class and retry settings, kept
            session.mount(protocol, type(mounted)(max_retries=mounted.max_retries, pool_maxsize=POOL_CONNECTIONS))

    def send(self, request: Any, **kwargs: Any) -> Any:
        left = deadline.remaining()
        if left is not None:
            left -= STORAGE_MARGIN
            if left <= 0.05:
                raise BudgetSpent("the request's time budget is spent")
            kwargs["connection_timeout"] = min(float(kwargs.get("connection_timeout") or left), left)
            kwargs["read_timeout"] = min(float(kwargs.get("read_timeout") or left), left)
        return super().send(request, **kwargs)


def client_options() -> dict[str, Any]:
    """:data:`CLIENT_OPTIONS` with a :class:`DeadlineTransport`; it skips requests' scan of the environment and
    of ``~/.netrc`` on every request (measured: 10-20 % of the CPU of a Table write) when no proxy is
    configured; a CA bundle named by ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` is read once, here, as
    requests would use it."""
    options = dict(CLIENT_OPTIONS)
    # A transport given to the client is used as built: its timeouts (and CA bundle) are set here.
    timeouts = {name: CLIENT_OPTIONS[name] for name in ("connection_timeout", "read_timeout")}
    home = Path.home()
    if any(name.lower() in _PROXY_ENVIRONMENT for name in os.environ) or any(
        (home / name).exists() for name in (".netrc", "_netrc")
    ):
        options["transport"] = DeadlineTransport(use_env_settings=True, **timeouts)
        return options
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        timeouts["connection_verify"] = bundle
    options["transport"] = DeadlineTransport(use_env_settings=False, **timeouts)
    return options


def _development_client(value: str, table: str) -> tuple[TableClient, str]:
    """``UseDevelopmentStorage=true[;DevelopmentStorageProxyUri=URI]`` -> Azurite's well-known account.

    A proxy URI replaces scheme and host; unlike the classic emulator rules, an explicit port in
    it is honoured (so a test Azurite on any port can be addressed), else the port is 10002.
    """
    options: dict[str, str] = {}
    for part in value.split(";"):
        name, sep, setting = part.partition("=")
        if sep:
            options[name.strip().lower()] = setting.strip()
    proxy = options.get("developmentstorageproxyuri")
    scheme, host, port = "http", "127.0.0.1", DEV_TABLE_PORT
    if proxy:
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if not parts.hostname:
            raise StorageUnavailable("DevelopmentStorageProxyUri is not a URI")
        scheme, host, port = parts.scheme or "http", parts.hostname, parts.port or DEV_TABLE_PORT
    if ":" in host:
        host = f"[{host}]"
    endpoint = f"{scheme}://{host}:{port}/{DEV_ACCOUNT}"
    credential = AzureNamedKeyCredential(DEV_ACCOUNT, DEV_KEY)
    return TableClient(endpoint, table, credential=credential, **client_options()), endpoint


def _identity_credential(kind: str | None, client_id: str | None) -> TokenCredential:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if (kind or "").strip().lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return DefaultAzureCredential()


def connect_with_string(connection_string: str, table: str) -> TableConnection:
    value = connection_string.strip()
    secrets = [value, *re.findall(r"(?:AccountKey|SharedAccessSignature)\s*=\s*([^;]+)", value, re.I)]
    if value.lower().startswith("usedevelopmentstorage=true"):
        client, endpoint = _development_client(value, table)
        return TableConnection(client, f"table {table} on the development storage at {endpoint}")
    try:
        client = TableClient.from_connection_string(value, table, **client_options())
    except (ValueError, TypeError, AzureError):
        # The SDK's message could quote the string; ours never does.
        raise StorageUnavailable(
            "the storage connection string is malformed or incomplete (expected "
            "DefaultEndpointsProtocol=...;AccountName=...;AccountKey=...[;TableEndpoint=...])"
        ) from None
    return TableConnection(client, f"table {table} at {public_endpoint(client.url)}", secrets)


def connect_table(
    prefix: str, table: str, *, client_id: str | None = None, environ: Mapping[str, str]
) -> TableConnection:
    """The table *table* on the storage named by the connection setting prefix *prefix*."""

    def setting(name: str) -> str | None:
        value = environ.get(name)
        return value.strip() if value and value.strip() else None

    connection_string = setting(prefix)
    if connection_string:
        try:
            return connect_with_string(connection_string, table)
        except StorageUnavailable as exc:
            raise StorageUnavailable(f"setting {prefix}: {exc.detail}") from None
    service_uri = setting(f"{prefix}__tableServiceUri")
    account = setting(f"{prefix}__accountName")
    if service_uri or account:
        if service_uri:
            parts = urlsplit(service_uri)
            if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
                raise StorageUnavailable(
                    f"setting {prefix}__tableServiceUri must be an https URL such as "
                    "https://ACCOUNT.table.core.windows.net"
                )
            endpoint = service_uri.rstrip("/")
        else:
            if not re.fullmatch(r"[a-z0-9]{3,24}", account or ""):
                raise StorageUnavailable(f"setting {prefix}__accountName is not a storage account name")
            endpoint = f"https://{account}.table.core.windows.net"
        credential = _identity_credential(setting(f"{prefix}__credential"), setting(f"{prefix}__clientId") or client_id)
        client = TableClient(endpoint, table, credential=credential, **client_options())
        return TableConnection(client, f"table {table} at {endpoint} (managed identity)")
    raise StorageUnavailable(
        f"no Table Storage connection is configured: set {prefix} to a connection string "
        f"(UseDevelopmentStorage=true for Azurite) or {prefix}__tableServiceUri / {prefix}__accountName "
        "for identity-based access"
    )


def describe_error(action: str, exc: Exception, description: str, secrets: Sequence[str] = ()) -> tuple[bool, str]:
    """``(transient, detail)`` for an SDK failure: transient ones (unreachable, auth, 429, 503) are worth a retry."""
    if isinstance(exc, ClientAuthenticationError):
        detail = f"{action}: authentication to {description} failed"
        error_code = getattr(exc, "error_code", None)
        code = str(getattr(error_code, "value", error_code) or "")
        return True, redact(f"{detail} ({code})" if code else detail, secrets)
    if isinstance(exc, BudgetSpent):
        return True, f"{action}: the request's time budget ran out before {description} answered"
    if isinstance(exc, ServiceRequestError):
        return True, redact(f"{action}: cannot reach {description}", secrets)
    if isinstance(exc, ServiceResponseError):  # a read timed out, or the connection broke mid-answer
        return True, redact(f"{action}: {description} did not answer in time", secrets)
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        error_code = getattr(exc, "error_code", None)
        code = str(getattr(error_code, "value", error_code) or exc.reason or "")
        message = str(getattr(exc, "message", "") or "").splitlines()[0:1]
        detail = f"{action}: {description} answered {status} {code}".rstrip()
        if message:
            detail += f": {message[0]}"
        return status in (401, 403, 429, 503), redact(detail, secrets)
    return False, redact(f"{action}: {type(exc).__name__}: {exc}", secrets)


@dataclass
class TableStore:
    """What every table-backed store of ours does the same way: built from a connection string or the app's
    settings, the table created once, SDK failures mapped to the store's own errors (5xx and unreachable:
    ``unavailable``, so callers answer 503 and event deliveries are retried; anything else: ``failed``).

    Subclasses are dataclasses (their own fields with defaults) and name their ``what`` (for messages), their
    two error classes and which setting names their table.
    """

    what: ClassVar[str]
    failed: ClassVar[type[ServiceError]]
    unavailable: ClassVar[type[ServiceError]]
    client: TableClient
    description: str
    secrets: Sequence[str] = ()
    _table_ready: bool = False

    @classmethod
    def table_name(cls, settings: Settings) -> str:
        raise NotImplementedError

    @classmethod
    def from_connection_string(cls, connection_string: str, table: str) -> Self:
        try:
            connection = connect_with_string(connection_string, table)
        except StorageUnavailable as exc:
            raise cls.unavailable(exc.detail) from None
        return cls(connection.client, connection.description, connection.secrets)

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> Self:
        """The store's table on the storage named by ``SUMMARY_STORAGE`` (one storage account for all tables)."""
        try:
            connection = connect_table(
                settings.summary_storage,
                cls.table_name(settings),
                client_id=settings.client_id,
                environ=os.environ if environ is None else environ,
            )
        except StorageUnavailable as exc:
            raise cls.unavailable(exc.detail) from None
        return cls(connection.client, connection.description, connection.secrets)

    def close(self) -> None:
        self.client.close()

    def error(self, action: str, exc: Exception) -> ServiceError:
        transient, detail = describe_error(action, exc, self.description, self.secrets)
        if isinstance(exc, HttpResponseError) and (exc.status_code or 500) >= 500:
            transient = True
        return (self.unavailable if transient else self.failed)(detail)

    def ensure_table(self) -> None:
        """Create the table unless it exists (once per store object)."""
        if self._table_ready:
            return
        try:
            self.client.create_table()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise self.error(f"creating the {self.what} table", exc) from exc
        self._table_ready = True
