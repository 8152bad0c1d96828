"""A loopback stand-in for the ARM suppression-list endpoints, as ``azure-mgmt-communication`` 3.0.0 calls them.

    {list} = /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Communication/emailServices/{e}
             /domains/{d}/suppressionLists/{l}
    GET    {list}/suppressionListAddresses?api-version=2025-09-01         -> 200 {"value": [...], "nextLink"?}
    GET    {list}/suppressionListAddresses/{addressId}?api-version=...    -> 200 resource | 404
    PUT    {list}/suppressionListAddresses/{addressId}?api-version=...    -> 201 created | 200 updated
           {"properties": {"email": ..., "notes"?, "firstName"?, "lastName"?}}
    DELETE {list}/suppressionListAddresses/{addressId}?api-version=...    -> 200 | 204 absent? no: 404 absent

Every request needs ``Authorization: Bearer <token>`` (401 otherwise) and an ``api-version``; a list that was not
created answers 404 ``ResourceNotFound`` to everything under it, an unknown address 404 ``NotFound``; an addressId
outside ``^[a-zA-Z0-9-]{1,253}$`` or a body without ``properties.email`` 400. With ``unique_emails`` (default) a PUT
of an email the list holds under another id answers 409 ``Conflict`` (what the stand-in assumes ARM does; ARM's
own rule is undocumented). Listing pages hold ``page_size`` entries, linked by an absolute ``nextLink``.
``standin.script(Throttle(retry_after=1), Failure(500))`` answers the next requests with those faults, in order.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from loopback import Answer, LoopbackService, Request, error

TOKEN = "arm-standin-token"
API_VERSION = "2025-09-01"
SUBSCRIPTION = "00000000-0000-4000-8000-0000000a11ce"
LIST_PATH = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-mail/providers/Microsoft.Communication/emailServices/"
    "mail-svc/domains/notify.contoso.com/suppressionLists/bounces"
)
_PATH = re.compile(
    r"^(?P<list>/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Communication/emailServices/[^/]+"
    r"/domains/[^/]+/suppressionLists/[^/]+)/suppressionListAddresses(?:/(?P<id>[^/]*))?/?$",
    re.IGNORECASE,
)
_ADDRESS_ID = re.compile(r"^[a-zA-Z0-9-]{1,253}$")


@dataclass(frozen=True)
class Throttle:
    retry_after: int = 1
    times: int = 1


@dataclass(frozen=True)
class Failure:
    status: int = 500
    code: str = "InternalServerError"
    times: int = 1


@dataclass
class ArmSuppressionStandIn(LoopbackService):
    token: str = TOKEN
    page_size: int = 100
    unique_emails: bool = True
    #: List paths (lowercased) that exist.
    lists: set[str] = field(default_factory=lambda: {LIST_PATH.lower()})
    #: list path (lowercased) -> addressId -> stored resource.
    addresses: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    _faults: list[Throttle | Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    methods: ClassVar[tuple[str, ...]] = ("GET", "PUT", "DELETE")

    @property
    def endpoint(self) -> str:
        return self.origin

    def entries(self, list_path: str = LIST_PATH) -> dict[str, dict[str, Any]]:
        return self.addresses.setdefault(list_path.lower(), {})

    def seed(self, address_id: str, email: str, list_path: str = LIST_PATH) -> None:
        """An entry someone else added (the portal: a GUID id)."""
        self.entries(list_path)[address_id] = _resource(list_path, address_id, {"email": email}, datetime.now(UTC))

    def calls(self, method: str) -> list[Request]:
        return [r for r in self.requests if r.method == method]

    # -- protocol -------------------------------------------------------------------------------

    def answer(self, request: Request, path_and_query: str, raw: bytes) -> Answer:
        with self._lock:  # one request at a time changes the lists
            return self._answer(request)

    def _answer(self, request: Request) -> Answer:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return error(401, "AuthenticationFailed", "The access token is missing or invalid.")
        if request.query.get("api-version") != [API_VERSION]:
            return error(400, "InvalidApiVersionParameter", "Unsupported api-version.")
        fault = self._faults.pop(0) if self._faults else None
        if isinstance(fault, Throttle):
            status, body, headers = error(429, "TooManyRequests", "Too many requests.")
            return status, body, {**headers, "Retry-After": str(fault.retry_after)}
        if isinstance(fault, Failure):
            return error(fault.status, fault.code, "Scripted failure.")
        match = _PATH.match(request.path)
        if match is None:
            return error(404, "NotFound", "No such route.")
        list_path, address_id = match.group("list"), match.group("id")
        if list_path.lower() not in self.lists:
            return error(404, "ResourceNotFound", "The suppression list was not found.")
        entries = self.entries(list_path)
        if address_id is None:
            if request.method != "GET":
                return error(405, "MethodNotAllowed", "Only GET lists addresses.")
            return 200, self._page(list_path, entries, request), {}
        if not _ADDRESS_ID.match(address_id):
            return error(400, "InvalidResourceName", "addressId must match ^[a-zA-Z0-9-]+$.")
        if request.method == "GET":
            found = entries.get(address_id)
            return (200, found, {}) if found else error(404, "NotFound", "The address was not found.")
        if request.method == "DELETE":
            if entries.pop(address_id, None) is None:
                return error(404, "NotFound", "The address was not found.")
            return 200, None, {}
        return self._put(list_path, entries, address_id, request.body)

    def _put(
        self, list_path: str, entries: dict[str, dict[str, Any]], address_id: str, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        properties = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(properties, dict) or not isinstance(properties.get("email"), str):
            return error(400, "InvalidRequestContent", "properties.email is required.")
        email = properties["email"]
        if self.unique_emails and any(
            entry["properties"]["email"].lower() == email.lower() and key != address_id
            for key, entry in entries.items()
        ):
            return error(409, "Conflict", "The address is already in the list.")
        existing = entries.get(address_id)
        created = existing["systemData"]["createdAt"] if existing else None
        resource = _resource(list_path, address_id, properties, datetime.now(UTC), created)
        entries[address_id] = resource
        return (200 if existing else 201), resource, {}

    def _page(self, list_path: str, entries: dict[str, dict[str, Any]], request: Request) -> dict[str, Any]:
        skip = int((request.query.get("$skipToken") or ["0"])[0])
        values = list(entries.values())
        page: dict[str, Any] = {"value": values[skip : skip + self.page_size]}
        if skip + self.page_size < len(values):
            page["nextLink"] = (
                f"{self.endpoint}{list_path}/suppressionListAddresses?api-version={API_VERSION}"
                f"&$skipToken={skip + self.page_size}"
            )
        return page


def _resource(
    list_path: str, address_id: str, properties: dict[str, Any], now: datetime, created: str | None = None
) -> dict[str, Any]:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kept = {key: properties[key] for key in ("email", "firstName", "lastName", "notes") if key in properties}
    return {
        "id": f"{list_path}/suppressionListAddresses/{address_id}",
        "name": address_id,
        "type": "Microsoft.Communication/emailServices/domains/suppressionLists/suppressionListAddresses",
        "systemData": {"createdAt": created or stamp, "lastModifiedAt": stamp},
        "properties": {**kept, "lastModified": stamp, "dataLocation": "unitedstates"},
    }
