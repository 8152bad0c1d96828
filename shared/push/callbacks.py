"""Callback URLs: which ones are accepted, how a push is signed, and the one HTTP POST that delivers it.

The rule: https, to a host name or a public IP address, with no user name or password in it. Plain http
is accepted only to a loopback host (``localhost``, 127.0.0.0/8, ``::1``) and only when the service runs
locally, which is when no Log Analytics workspace is configured (the embedded store: the dev host, ``make
run``); in Azure the workspace is always set, so only https goes. A callback URL can hold its own
credential (Power Automate's carry a ``sig``): it is never logged, and neither is a subscription's secret.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from shared.errors import InvalidInput

#: Seconds a callback has to accept the connection and to answer; a slower one is retried later.
CALLBACK_TIMEOUT_SECONDS: Final = 10.0
SIGNATURE_HEADER: Final = "X-Signature"
#: The same for every attempt of one outcome: receivers drop duplicates by it (delivery is at least once).
DELIVERY_ID_HEADER: Final = "X-Delivery-Id"
SUBSCRIPTION_ID_HEADER: Final = "X-Subscription-Id"
ATTEMPT_HEADER: Final = "X-Delivery-Attempt"
USER_AGENT: Final = "acs-email-insights-push/1"
#: What each push's headers mean (the OpenAPI document's callbacks say it to receivers).
PUSH_HEADERS: Final = {
    SIGNATURE_HEADER: "sha256= and the hex HMAC-SHA256 of the exact body bytes, keyed with the subscription's secret.",
    DELIVERY_ID_HEADER: "The same for every attempt of one outcome: drop a delivery whose id you have seen.",
    SUBSCRIPTION_ID_HEADER: "The subscription this push is for.",
    ATTEMPT_HEADER: "1 for the first attempt, then 2, 3 and so on.",
}

_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    address = _ip(host)
    return host.lower() in _LOOPBACK_NAMES if address is None else address.is_loopback


def check_callback_url(url: str, *, allow_loopback_http: bool) -> str:
    """*url* when it may receive pushes, else InvalidInput naming ``callbackUrl`` (never quoting the URL)."""

    def bad(reason: str) -> InvalidInput:
        return InvalidInput.parameter("callbackUrl", reason)

    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise bad("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise bad("must be an absolute URL") from None
    host = parts.hostname or ""
    if parts.scheme.lower() not in ("https", "http") or not host:
        raise bad("must be an absolute https URL")
    if parts.username is not None or parts.password is not None:
        raise bad("must not carry a user name or password")
    if parts.fragment:
        raise bad("must not have a fragment")
    if port == 0:
        raise bad("must not use port 0")
    loopback = is_loopback(host)
    if parts.scheme.lower() == "http":
        if not loopback:
            raise bad("must use https (plain http only to a loopback host when the service runs locally)")
        if not allow_loopback_http:
            raise bad("must use https: plain http to a loopback host is accepted only when the service runs locally")
        return url
    address = _ip(host)
    if address is not None and not address.is_global and not (loopback and allow_loopback_http):
        raise bad("must not point at a private, loopback or link-local address")
    return url


def signature(secret: str, body: bytes) -> str:
    """The ``X-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Attempt:
    """How one POST went: the status (None when no answer came) and a reason fit for logs (no URL)."""

    status: int | None
    reason: str

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """The receiver says the subscription is gone (410): stop pushing to it."""
        return self.status == 410

    @property
    def refused(self) -> bool:
        """The receiver will never take this body (400, 413): retrying cannot help."""
        return self.status in (400, 413)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed delivery: following one would POST the body (and its signature) elsewhere."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER: Final = urllib.request.build_opener(_NoRedirects)


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float = CALLBACK_TIMEOUT_SECONDS,
) -> Attempt:
    """POST *body* to *url*; never raises for what the receiver or the network does."""
    if urlsplit(url).scheme.lower() not in ("https", "http"):
        return Attempt(None, "not an http(s) URL")
    # Only http(s) reaches here (checked above and by check_callback_url when subscribing).
    request = urllib.request.Request(  # noqa: S310
        url, body, {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    )
    request.method = "POST"
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(64 * 1024)
            return Attempt(response.status, f"answered {response.status}")
    except urllib.error.HTTPError as error:
        error.close()
        return Attempt(error.code, f"answered {error.code}")
    except TimeoutError:
        return Attempt(None, "timed out")
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return Attempt(None, f"unreachable ({type(reason).__name__})")
