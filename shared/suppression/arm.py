"""Our customer-managed suppression list in Azure Resource Manager, through ``azure-mgmt-communication`` 3.0.0.

The list is ``SUPPRESSION_LIST_ID``: the ARM id of one suppression list of one email domain
(``/subscriptions/S/resourceGroups/G/providers/Microsoft.Communication/emailServices/E/domains/D/suppressionLists/L``).
Each suppressed recipient is one address resource under it, keyed by an ``addressId`` the caller chooses, not by
the email (the email is a property of the resource). Ours is :func:`address_id`: a SHA-256 of the lowercased
address, so adding the same recipient again is a PUT of the same resource (idempotent), and "is X in the list" is
one GET. Entries someone else added (the portal, a script: GUID ids) are found by listing the list and matching
the email in any case; a listing is paged and bounded (:data:`MAX_SCAN_PAGES`), and says when it stopped short.

Failures never quote the service's message (it can quote the address): the status and ARM error code only.
401/403 and a missing list are :class:`SuppressionListRefused` (502: fix the role or the setting), 429 and 5xx
:class:`SuppressionListUnavailable` (503 with the service's ``Retry-After``), 409 :class:`~shared.errors.Conflict`.
The SDK retries 429 and 5xx itself (:class:`BoundedRetry`) unless the wait asked for is long.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import RetryPolicy

from shared import deadline
from shared.errors import Conflict, NotFound, ServiceError, Unavailable, UpstreamFailure
from shared.logs.log_analytics import is_loopback

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.communication import CommunicationServiceManagementClient

_T = TypeVar("_T")

_LIST_ID: Final = re.compile(
    r"^/subscriptions/(?P<subscription>[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12})"
    r"/resourceGroups/(?P<group>[-\w.()]{1,90})"
    r"/providers/Microsoft\.Communication/emailServices/(?P<service>[a-zA-Z0-9-]{1,63})"
    r"/domains/(?P<domain>[a-zA-Z0-9.-]{1,253})"
    r"/suppressionLists/(?P<list>[a-zA-Z0-9-]{1,253})/?$",
    re.IGNORECASE,
)
#: Prefix of our address ids (the name rule is ``^[a-zA-Z0-9-]+$``, 1-253 characters).
ADDRESS_ID_PREFIX: Final = "eia-"
#: Pages a lookup by email reads before it gives up (and says so).
MAX_SCAN_PAGES: Final = 50
#: A Retry-After longer than this is not waited for within a call: the caller answers 503 / tries next run.
MAX_RETRY_AFTER_SECONDS: Final = 10.0
#: What a wait must leave of the request's budget for the answer.
BUDGET_MARGIN_SECONDS: Final = 2.0


class SuppressionListUnset(NotFound):
    """SUPPRESSION_LIST_ID is not set: there is no list of ours to act on."""

    title = "No suppression list"


class SuppressionListRefused(UpstreamFailure):
    """ARM refused us: the identity lacks the role, the list does not exist, or the setting is malformed."""

    title = "Suppression list refused the request"


class AddressRefused(SuppressionListRefused):
    """ARM refused one request as invalid (400): a poisoned address, not a reason to stop the others."""


class SuppressionListUnavailable(Unavailable):
    """ARM is unreachable, failing or throttling: the same call may work after ``retry_after`` seconds."""

    title = "Suppression list unavailable"


@dataclass(frozen=True)
class SuppressionListId:
    subscription_id: str
    resource_group: str
    email_service: str
    domain: str
    list_name: str

    @classmethod
    def parse(cls, text: str) -> SuppressionListId:
        match = _LIST_ID.match(text.strip())
        if match is None:
            raise SuppressionListRefused(
                "SUPPRESSION_LIST_ID must be the ARM id of a suppression list: /subscriptions/SUB/resourceGroups/RG/"
                "providers/Microsoft.Communication/emailServices/NAME/domains/DOMAIN/suppressionLists/LIST"
            )
        return cls(*(match.group(name) for name in ("subscription", "group", "service", "domain", "list")))

    def path(self) -> tuple[str, str, str, str]:
        """The SDK's leading positional arguments: resource group, email service, domain, list."""
        return self.resource_group, self.email_service, self.domain, self.list_name


def normalize(email: str) -> str:
    """The form an address is compared and hashed in: trimmed, lowercased (as the bounce list reports it)."""
    return email.strip().lower()


def address_id(email: str) -> str:
    """Our deterministic ``addressId`` of *email*: the same recipient, in any case, is always the same resource."""
    return ADDRESS_ID_PREFIX + hashlib.sha256(normalize(email).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ListedAddress:
    """One address resource of the list."""

    address_id: str
    email: str
    notes: str | None
    #: When the entry was created (ARM systemData), else last modified; None when ARM says neither.
    since: datetime | None

    @property
    def ours(self) -> bool:
        return self.address_id == address_id(self.email)


@dataclass(frozen=True)
class Lookup:
    """The entries of one email, and whether every page of the list was read to find them."""

    entries: tuple[ListedAddress, ...]
    complete: bool


class BoundedRetry(RetryPolicy):  # type: ignore[type-arg]
    """azure-core's retry (429, 5xx, connection errors; it honours Retry-After), except that a throttle asking
    for a long wait, or for more than the request's time budget has left (``shared.deadline``), is answered at
    once: a request or timer run must not block on it, and the caller answers 503 with the Retry-After."""

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        retry_after = self.get_retry_after(response)
        limit = MAX_RETRY_AFTER_SECONDS
        left = deadline.remaining()
        if left is not None:
            limit = min(limit, left - BUDGET_MARGIN_SECONDS)
        if retry_after is not None and retry_after > limit:
            return False
        return bool(super().is_retry(settings, response))


def _retry_after(exc: HttpResponseError) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(1.0, float(value)) if value else None
    except ValueError:
        return None


def describe_failure(action: str, exc: Exception) -> ServiceError:
    """An SDK failure as our error: status and ARM error code, never the message (it can quote the address)."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return SuppressionListUnavailable(f"{action}: cannot reach Azure Resource Manager")
    if not isinstance(exc, HttpResponseError):  # another AzureError: a timeout, a connection dropped
        return SuppressionListUnavailable(f"{action}: {type(exc).__name__} talking to Azure Resource Manager")
    status = exc.status_code
    error = getattr(exc, "error", None)
    code = str(getattr(error, "code", None) or getattr(exc, "error_code", None) or "").strip()
    said = f"{action}: Azure Resource Manager answered {status} {code}".rstrip()
    if status is None and isinstance(exc, ClientAuthenticationError):
        return SuppressionListRefused(f"{action}: no Azure Resource Manager token for the app's identity")
    if status in (401, 403):
        return SuppressionListRefused(
            f"{said}: the app's identity may not use the suppression list (the role of docs/suppression.md)"
        )
    if status == 404:
        return SuppressionListRefused(f"{said}: the list of SUPPRESSION_LIST_ID does not exist")
    if status == 409:
        return Conflict(f"{said}: the list changed meanwhile; retry", retry_after=5.0)
    if status == 429 or status is None or status >= 500:
        return SuppressionListUnavailable(said, retry_after=_retry_after(exc))
    if status == 400:
        return AddressRefused(said)
    return SuppressionListRefused(said)


def _listed(resource: Any) -> ListedAddress:
    properties = resource.get("properties") or {}
    system = resource.get("systemData") or {}
    since = system.get("createdAt") or properties.get("lastModified")
    return ListedAddress(
        address_id=str(resource.get("name") or ""),
        email=str(properties.get("email") or ""),
        notes=properties.get("notes"),
        since=_datetime(since),
    )


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


class SuppressionList:
    """The list of one ``SUPPRESSION_LIST_ID``; the SDK client is built on first use, once."""

    def __init__(
        self,
        list_id: SuppressionListId,
        *,
        credential: TokenCredential | None = None,
        client_id: str | None = None,
        endpoint: str | None = None,
        retry_total: int = 3,
        retry_backoff_factor: float = 0.5,
    ) -> None:
        self.list_id = list_id
        self.endpoint = (endpoint or "").rstrip("/") or None
        plain_http = self.endpoint is not None and urlsplit(self.endpoint).scheme.lower() == "http"
        if plain_http and not is_loopback(str(self.endpoint)):
            raise SuppressionListRefused("ARM_ENDPOINT must be https (plain http only for loopback test servers)")
        #: Per-call options: a loopback stand-in over plain http gets the bearer token too.
        self._options: dict[str, Any] = {"enforce_https": False} if plain_http else {}
        self._credential = credential
        self._client_id = client_id
        self._retry = {"retry_total": retry_total, "retry_backoff_factor": retry_backoff_factor}
        self._client: CommunicationServiceManagementClient | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, setting: str | None, **kwargs: Any) -> SuppressionList:
        if not (setting or "").strip():
            raise SuppressionListUnset("SUPPRESSION_LIST_ID is not set: this deployment feeds no suppression list")
        return cls(SuppressionListId.parse(str(setting)), **kwargs)

    def _get_client(self) -> CommunicationServiceManagementClient:
        with self._lock:
            if self._client is None:
                from azure.mgmt.communication import CommunicationServiceManagementClient

                credential = self._credential
                if credential is None:
                    from azure.identity import DefaultAzureCredential

                    credential = DefaultAzureCredential(managed_identity_client_id=self._client_id)
                self._client = CommunicationServiceManagementClient(
                    credential,
                    self.list_id.subscription_id,
                    base_url=self.endpoint,  # type: ignore[arg-type]  # None: the cloud's ARM endpoint
                    retry_policy=BoundedRetry(**self._retry),
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _call(self, action: str, operation: Callable[[], _T]) -> _T:
        try:
            return operation()
        except AzureError as exc:  # every SDK failure, mapped once (a bug of ours stays a 500)
            raise describe_failure(action, exc) from None

    # -- one address ---------------------------------------------------------------------------

    def get(self, email: str) -> ListedAddress | None:
        """Our entry of *email* (one GET), or None."""
        addresses = self._get_client().suppression_list_addresses

        def get() -> ListedAddress | None:
            try:
                resource = addresses.get(*self.list_id.path(), address_id(email), **self._options)
            except ResourceNotFoundError:
                return None
            return _listed(resource)

        return self._call("reading the suppression list", get)

    def add(self, email: str, notes: str) -> ListedAddress:
        """PUT our entry of *email* (idempotent: the same id every time). A 409 is answered by a lookup: when the
        address is in the list under another id already, that entry is returned."""
        addresses = self._get_client().suppression_list_addresses
        body = {"properties": {"email": email.strip(), "notes": notes[:1000]}}
        try:
            resource = addresses.create_or_update(*self.list_id.path(), address_id(email), body, **self._options)
        except HttpResponseError as exc:
            failure = describe_failure("adding to the suppression list", exc)
            if isinstance(failure, Conflict):
                found = self.find(email).entries
                if found:
                    return found[0]
            raise failure from None
        except AzureError as exc:
            raise describe_failure("adding to the suppression list", exc) from None
        return _listed(resource)

    def find(self, email: str, *, all_entries: bool = True) -> Lookup:
        """Every entry of *email* (any case): ours by one GET, others' by listing (bounded, see ``complete``).
        Without ``all_entries``, ours alone answers when it exists (no listing)."""
        mine = self.get(email)
        wanted = normalize(email)
        found = [mine] if mine is not None else []
        complete = True
        if mine is not None and not all_entries:
            return Lookup((mine,), True)
        pages = self._call("listing the suppression list", lambda: self._pages())
        for index in range(MAX_SCAN_PAGES + 1):
            page = self._call("listing the suppression list", lambda: next(pages, None))
            if page is None:
                break
            if index == MAX_SCAN_PAGES:
                complete = False
                break
            for resource in page:
                entry = _listed(resource)
                if normalize(entry.email) == wanted and (mine is None or entry.address_id != mine.address_id):
                    found.append(entry)
        return Lookup(tuple(found), complete)

    def _pages(self) -> Iterator[list[Any]]:
        paged = self._get_client().suppression_list_addresses.list(*self.list_id.path(), **self._options)
        for page in paged.by_page():
            yield list(page)

    def remove(self, email: str) -> Lookup:
        """Delete every entry of *email* (ours and others'); returns the entries deleted. A 404 on delete is
        someone else's removal meanwhile: not an error."""
        lookup = self.find(email)
        addresses = self._get_client().suppression_list_addresses
        for entry in lookup.entries:

            def delete(entry: ListedAddress = entry) -> None:
                with contextlib.suppress(ResourceNotFoundError):  # removed by someone else meanwhile
                    addresses.delete(*self.list_id.path(), entry.address_id, **self._options)

            self._call("removing from the suppression list", delete)
        return lookup
