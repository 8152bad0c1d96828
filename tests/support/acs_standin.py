"""A loopback stand-in for the ACS Email REST API, as ``azure-communication-email`` 1.1.0 calls it.

    POST /emails:send?api-version=2025-09-01
        x-ms-date, x-ms-content-sha256 (base64 SHA-256 of the body), Host,
        Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<base64>
        Operation-Id: <uuid> (optional; the SDK's ``operation_id``)
        {"senderAddress", "recipients": {"to": [...], "cc", "bcc"}, "content": {"subject", "plainText", "html"},
         "attachments": [{"name", "contentType", "contentInBase64", "contentId"}], ...}
    -> 202 {"id", "status": "Running"}  Operation-Location: <base>/emailOperations/<id>?api-version=..., Retry-After
    GET /emailOperations/{id}?api-version=...  -> 200 {"id", "status": "Succeeded", "error": null} | 404

The signature is checked the way the service does: ``VERB\\n<path?query>\\n<x-ms-date>;<host>;<content hash>``
signed with HMAC-SHA256 under the base64-decoded access key; a wrong key, a stale date or a body that does
not match its hash answers 401. A repeated ``Operation-Id`` is idempotent: 202 with the same operation and
no second email. ``standin.script(Throttle(retry_after=1), Failure(500))`` answers the next requests with
those faults in order. ``standin.requests`` records every request; ``standin.emails`` every accepted email.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

from loopback import Answer, LoopbackService, Request, error

SIGNED_HEADERS = "x-ms-date;host;x-ms-content-sha256"
_AUTHORIZATION = re.compile(r"^HMAC-SHA256 SignedHeaders=(?P<headers>[^&]+)&Signature=(?P<signature>\S+)$")
_OPERATION = re.compile(r"^/emailOperations/(?P<id>[^/?#]+)$")
#: The service refuses requests whose x-ms-date is further than this from its clock.
CLOCK_TOLERANCE = timedelta(minutes=15)


@dataclass(frozen=True)
class Throttle:
    """Answer 429 with ``Retry-After`` (seconds)."""

    retry_after: int = 1
    times: int = 1


@dataclass(frozen=True)
class Failure:
    """Answer ``status`` (500 by default) with an ACS error body (and ``Retry-After`` when given)."""

    status: int = 500
    times: int = 1
    retry_after: int | None = None


@dataclass
class Email:
    operation_id: str
    message: dict[str, Any]
    accepted_at: datetime
    sends: int = 1  # POSTs that carried this operation id


@dataclass
class AcsEmailStandIn(LoopbackService):
    access_key: str = field(default_factory=lambda: base64.b64encode(secrets.token_bytes(32)).decode())
    requests: list[Request] = field(default_factory=list)
    emails: dict[str, Email] = field(default_factory=dict)
    _faults: list[Throttle | Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    methods: ClassVar[tuple[str, ...]] = ("POST", "GET")

    @property
    def endpoint(self) -> str:
        return self.origin + "/"

    @property
    def connection_string(self) -> str:
        return f"endpoint={self.endpoint};accesskey={self.access_key}"

    def sends(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]

    # -- protocol -------------------------------------------------------------------------------

    def answer(self, request: Request, path_and_query: str, raw: bytes) -> Answer:
        if not request.query.get("api-version"):
            return error(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
        problem = self._authenticate(request, path_and_query, raw)
        if problem:
            return error(401, "Denied", problem)
        fault = self.next_fault()
        if isinstance(fault, Throttle):
            status, body, headers = error(429, "TooManyRequests", "Too many requests.")
            return status, body, {**headers, "Retry-After": str(fault.retry_after)}
        if isinstance(fault, Failure):
            status, body, headers = error(fault.status, "InternalServerError", "Something went wrong.")
            if fault.retry_after is not None:
                headers = {**headers, "Retry-After": str(fault.retry_after)}
            return status, body, headers
        version = request.query["api-version"][0]
        if request.method == "POST" and request.path == "/emails:send":
            return self._send(request, version)
        match = _OPERATION.match(request.path)
        if request.method == "GET" and match:
            email = self.emails.get(match.group("id"))
            if email is None:
                return error(404, "NotFound", "No such operation.")
            return 200, {"id": email.operation_id, "status": "Succeeded", "error": None}, {}
        return error(404, "NotFound", f"{request.method} {request.path} is not an ACS Email operation.")

    def _authenticate(self, request: Request, path_and_query: str, raw: bytes) -> str | None:
        """None when the HMAC signature is valid, else why not (the service's checks)."""
        headers = request.headers
        match = _AUTHORIZATION.match(headers.get("authorization", ""))
        if not match or match.group("headers") != SIGNED_HEADERS:
            return "Authorization must be HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=..."
        stamp, content_hash, host = headers.get("x-ms-date"), headers.get("x-ms-content-sha256"), headers.get("host")
        if not stamp or not content_hash or not host:
            return "x-ms-date, x-ms-content-sha256 and Host are required"
        try:
            sent_at = parsedate_to_datetime(stamp)
        except (TypeError, ValueError):
            return "x-ms-date is not an HTTP date"
        if abs(datetime.now(UTC) - sent_at) > CLOCK_TOLERANCE:
            return "x-ms-date is too far from the server's clock"
        if base64.b64encode(hashlib.sha256(raw).digest()).decode() != content_hash:
            return "x-ms-content-sha256 does not match the body"
        to_sign = f"{request.method}\n{path_and_query}\n{stamp};{host};{content_hash}"
        try:
            key = base64.b64decode(self.access_key)
            given = base64.b64decode(match.group("signature"), validate=True)
        except (binascii.Error, ValueError):
            return "the signature is not base64"
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).digest()
        return None if hmac.compare_digest(given, expected) else "the signature does not match"

    def _send(self, request: Request, version: str) -> tuple[int, Any, dict[str, str]]:
        message = request.body
        problem = _invalid_message(message)
        if problem or message is None:
            return error(400, "InvalidRequest", problem or "the body is not JSON")
        operation_id = request.headers.get("operation-id") or str(uuid.uuid4())
        with self._lock:
            email = self.emails.get(operation_id)
            if email is None:
                self.emails[operation_id] = Email(operation_id, message, datetime.now(UTC))
            else:
                email.sends += 1  # the same operation again: accepted, not sent twice
        location = f"{self.endpoint}emailOperations/{operation_id}?api-version={version}"
        headers = {"Operation-Location": location, "Retry-After": "30", "Operation-Id": operation_id}
        return 202, {"id": operation_id, "status": "Running", "error": None}, headers


def _invalid_message(message: Any) -> str | None:
    if not isinstance(message, dict):
        return "the body must be a JSON object"
    if not message.get("senderAddress"):
        return "senderAddress is required"
    recipients = message.get("recipients") or {}
    if not any(recipients.get(kind) for kind in ("to", "cc", "bcc")):
        return "at least one recipient is required"
    content = message.get("content") or {}
    if not content.get("subject") or not (content.get("html") or content.get("plainText")):
        return "content needs a subject and an html or plainText body"
    for attachment in message.get("attachments") or []:
        if not attachment.get("name") or not attachment.get("contentType"):
            return "an attachment needs a name and a contentType"
        try:
            base64.b64decode(attachment.get("contentInBase64") or "", validate=True)
        except (binascii.Error, ValueError):
            return "contentInBase64 is not base64"
    return None
