"""Callback URLs: which ones are accepted, how a push is signed, and the one HTTP POST that delivers it.

The rule: https, to a host name or a public IP address, with no user name or password in it. Plain http
is accepted only to a loopback host (``localhost``, 127.0.0.0/8, ``::1``) and only when the service runs
locally (``Settings.in_azure`` false: no workspace, no Azure instance: the dev host, ``make run``). A
callback URL can hold its own credential (Power Automate's carry a ``sig``): it is never logged, and
neither is a subscription's secret.

In Azure a callback reaches the public internet only. A host is read the way resolvers read it (``127.1``,
``2130706433``, ``0x7f000001`` and ``017700000001`` are all 127.0.0.1, as ``inet_aton`` has it) and a name
is resolved (``socket.getaddrinfo``, or the resolver given): every address must be public
(:func:`address_refusal`: no loopback, private, link-local, CGNAT, unique-local, multicast or reserved
address, none of those embedded in an IPv6 one, not Azure's 168.63.129.16 or the metadata endpoint). That
is checked when subscribing (400 naming ``callbackUrl``) and again at every delivery, inside the connection
itself: the addresses checked are the addresses connected to (:class:`_PublicHTTPSConnection`), so a DNS
answer that changes between the check and the connect (rebinding) cannot slip in; TLS still verifies the
certificate against the host name. Proxies from the environment are not used (a proxy would resolve the
name itself), and redirects are never followed. A refused delivery is a failed attempt, never sent.

Signatures: each push carries the Standard Webhooks headers (``webhook-id``, the delivery id, the same for
every attempt; ``webhook-timestamp``, Unix seconds of this attempt; ``webhook-signature``, ``v1,`` and the
base64 HMAC-SHA256 of ``id.timestamp.body``) keyed with the secret's bytes (base64 after ``whsec_``), and,
for receivers written before them, ``X-Signature`` (hex HMAC-SHA256 of the body alone, keyed with the UTF-8
of the whole secret string; it does not cover the time, so it cannot tell a replay). A secret made before
secrets took the ``whsec_`` form keys the Standard Webhooks signature with its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import http.client
import ipaddress
import secrets
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from shared.errors import InvalidInput

#: Seconds a callback has to accept the connection and to answer; a slower one is retried later.
CALLBACK_TIMEOUT_SECONDS: Final = 10.0
SIGNATURE_HEADER: Final = "X-Signature"
#: Standard Webhooks (https://www.standardwebhooks.com): the id (the delivery id), the time and the signature.
WEBHOOK_ID_HEADER: Final = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER: Final = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER: Final = "webhook-signature"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the prefix of every secret, not one
SECRET_BYTES: Final = 32
#: The same for every attempt of one outcome: receivers drop duplicates by it (delivery is at least once).
DELIVERY_ID_HEADER: Final = "X-Delivery-Id"
SUBSCRIPTION_ID_HEADER: Final = "X-Subscription-Id"
ATTEMPT_HEADER: Final = "X-Delivery-Attempt"
USER_AGENT: Final = "acs-email-insights-push/1"
#: What each push's headers mean (the OpenAPI document's callbacks say it to receivers).
PUSH_HEADERS: Final = {
    WEBHOOK_ID_HEADER: "Standard Webhooks id: the delivery id, the same for every attempt of one outcome.",
    WEBHOOK_TIMESTAMP_HEADER: "Standard Webhooks timestamp: Unix seconds when this attempt was sent; refuse old ones.",
    WEBHOOK_SIGNATURE_HEADER: "Standard Webhooks signature: v1, and the base64 HMAC-SHA256 of id.timestamp.body, "
    "keyed with the bytes of the secret (base64 after whsec_); verify with any Standard Webhooks library.",
    SIGNATURE_HEADER: "sha256= and the hex HMAC-SHA256 of the exact body bytes, keyed with the UTF-8 of the whole "
    "secret string (kept for existing receivers: it does not cover the time, so it cannot tell a replay).",
    DELIVERY_ID_HEADER: "The same for every attempt of one outcome: drop a delivery whose id you have seen.",
    SUBSCRIPTION_ID_HEADER: "The subscription this push is for.",
    ATTEMPT_HEADER: "1 for the first attempt, then 2, 3 and so on.",
}

_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Host and port to the addresses a connection may go to (``socket.getaddrinfo`` in Azure; tests pass theirs).
Resolver = Callable[[str, int], Sequence[str]]

#: Never reached, whatever ``ipaddress`` thinks of them (Python 3.11 calls 192.0.0.0/24 and multicast global).
_REFUSED_NETWORKS: Final = tuple(
    (ipaddress.ip_network(network), reason)
    for network, reason in (
        ("168.63.129.16/32", "Azure's platform address (wire server, DNS)"),
        ("169.254.169.254/32", "the instance metadata endpoint"),
        ("0.0.0.0/8", "a 'this network' address"),
        ("100.64.0.0/10", "a carrier-grade NAT address"),
        ("192.0.0.0/24", "an IETF protocol address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("64:ff9b::/96", "a NAT64 address"),
        ("64:ff9b:1::/48", "a NAT64 address"),
        ("fc00::/7", "a unique-local address"),
        ("fec0::/10", "a site-local address"),
    )
)


class CallbackRefused(OSError):
    """A callback host that must not be reached (an OSError so that urllib hands it back as the reason)."""


def ipv4_of(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address *host* means to ``inet_aton`` (and so to ``getaddrinfo``): one to four parts, each
    decimal, ``0x`` hex or ``0`` octal, the last filling the remaining bytes (``127.1``, ``2130706433``,
    ``0x7f000001``, ``017700000001``, ``10.1.1``); None when it is not such a number."""
    parts = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        lowered = part.lower()
        try:
            if lowered.startswith("0x"):
                values.append(int(lowered[2:], 16) if lowered[2:] else 0)
            elif lowered.startswith("0") and len(lowered) > 1:
                values.append(int(lowered[1:], 8))
            else:
                values.append(int(lowered, 10) if lowered.isdigit() else -1)
        except ValueError:
            return None
    *head, last = values
    if any(not 0 <= value <= 255 for value in head) or not 0 <= last < 256 ** (4 - len(head)):
        return None
    number = last
    for index, value in enumerate(head):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _ip(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return ipv4_of(host)


def _embedded(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries: mapped, NAT64, 6to4, Teredo's client, or IPv4-compatible."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d (deprecated IPv4-compatible form)
        return ipaddress.IPv4Address(int(address))
    return None


def address_refusal(address: Address) -> str | None:
    """Why a callback must not connect to *address*, or None when it is a public internet address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            address = ipaddress.IPv6Address(str(address).split("%")[0])
        inner = _embedded(address)
        if inner is not None and (reason := address_refusal(inner)) is not None:
            return f"{reason}, embedded in an IPv6 address"
    for network, reason in _REFUSED_NETWORKS:
        if address.version == network.version and address in network:
            return reason
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified or address.is_reserved or not address.is_global:
        return "a private or reserved address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``socket.getaddrinfo`` gives for *host* (TCP), as the connection would use them."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise CallbackRefused("its host name does not resolve") from exc
    return [str(sockaddr[0]) for *_, sockaddr in found]


def public_addresses(
    host: str, port: int, resolve: Resolver, refusal: Callable[[Address], str | None] = address_refusal
) -> list[Address]:
    """The addresses *host* stands for, every one of them acceptable; else CallbackRefused saying why."""
    if host.lower().rstrip(".") in _LOOPBACK_NAMES:
        raise CallbackRefused("its host is a loopback name")
    literal = _ip(host)
    if literal is not None:
        addresses: list[Address] = [literal]
    else:
        try:
            addresses = [ipaddress.ip_address(text.split("%")[0]) for text in resolve(host, port)]
        except CallbackRefused:
            raise
        except (OSError, ValueError, UnicodeError) as exc:
            raise CallbackRefused("its host name does not resolve") from exc
    if not addresses:
        raise CallbackRefused("its host name does not resolve")
    for address in addresses:
        reason = refusal(address)
        if reason is not None:
            where = "is" if literal is not None else "resolves to"
            raise CallbackRefused(f"its host {where} {reason}; callbacks go to public internet addresses only")
    return addresses


def is_loopback(host: str) -> bool:
    address = _ip(host)
    return host.lower() in _LOOPBACK_NAMES if address is None else address.is_loopback


def new_secret() -> str:
    """A subscription's secret: ``whsec_`` and the base64 of 32 random bytes (Standard Webhooks' form)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def webhook_key(secret: str) -> bytes:
    """The HMAC key of the Standard Webhooks signature: the bytes after ``whsec_``, else the secret's UTF-8."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except ValueError:
            pass
    return secret.encode("utf-8")


def push_headers(secret: str, delivery_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The signature headers of one attempt: Standard Webhooks' three and ``X-Signature``."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    mac = base64.b64encode(hmac.new(webhook_key(secret), signed, hashlib.sha256).digest()).decode()
    return {
        WEBHOOK_ID_HEADER: delivery_id,
        WEBHOOK_TIMESTAMP_HEADER: str(timestamp),
        WEBHOOK_SIGNATURE_HEADER: f"v1,{mac}",
        SIGNATURE_HEADER: signature(secret, body),
    }


def check_callback_url(url: str, *, allow_loopback_http: bool, resolve: Resolver | None = None) -> str:
    """*url* when it may receive pushes, else InvalidInput naming ``callbackUrl`` (never quoting the URL).

    With *resolve* (Azure), the host's every address must be public (:func:`public_addresses`)."""

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
    if address is not None and address_refusal(address) is not None and not (loopback and allow_loopback_http):
        raise bad("must not point at a private, loopback or link-local address")
    if resolve is not None:
        try:
            public_addresses(host, port or 443, resolve)
        except CallbackRefused as exc:
            raise bad(str(exc)) from None
    return url


def signature(secret: str, body: bytes) -> str:
    """The ``X-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Attempt:
    """How one POST went: the status (None when no answer came) and a reason fit for logs (no URL)."""

    status: int | None
    reason: str
    #: Not sent: the callback's host resolved to an address it must not reach (retried: DNS may change back).
    blocked: bool = False

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


def _connect_public(
    resolve: Resolver,
    refusal: Callable[[Address], str | None],
    address: tuple[str, int],
    timeout: float | None = None,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """``socket.create_connection`` to the addresses just checked, and only to them (no second lookup)."""
    host, port = address
    failure: OSError = CallbackRefused("no address to connect to")
    for checked in public_addresses(host, port, resolve, refusal):
        try:
            return socket.create_connection((str(checked), port), timeout, source_address)
        except OSError as exc:
            failure = exc
    raise failure


class _PublicHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, checked_connect: Callable[..., socket.socket], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # http.client opens its socket through this attribute (set in __init__): the one seam for our connect.
        vars(self)["_create_connection"] = checked_connect


class _PublicHTTPSConnection(http.client.HTTPSConnection):
    """TLS as usual (SNI and the certificate checked against the URL's host), to an address checked first."""

    def __init__(self, *args: Any, checked_connect: Callable[..., socket.socket], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        vars(self)["_create_connection"] = checked_connect


class _PublicHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, checked_connect: Callable[..., socket.socket]) -> None:
        super().__init__()
        self._connection = functools.partial(_PublicHTTPConnection, checked_connect=checked_connect)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)


class _PublicHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, checked_connect: Callable[..., socket.socket]) -> None:
        super().__init__()
        self._connection = functools.partial(_PublicHTTPSConnection, checked_connect=checked_connect)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)


def _public_opener(resolve: Resolver, refusal: Callable[[Address], str | None]) -> urllib.request.OpenerDirector:
    checked_connect = functools.partial(_connect_public, resolve, refusal)
    return urllib.request.build_opener(
        _NoRedirects,
        urllib.request.ProxyHandler({}),
        _PublicHTTPHandler(checked_connect),
        _PublicHTTPSHandler(checked_connect),
    )


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float = CALLBACK_TIMEOUT_SECONDS,
    resolve: Resolver | None = None,
    refusal: Callable[[Address], str | None] = address_refusal,
) -> Attempt:
    """POST *body* to *url*; never raises for what the receiver or the network does.

    With *resolve* (Azure), only to addresses *refusal* finds nothing against, checked as the socket opens."""
    if urlsplit(url).scheme.lower() not in ("https", "http"):
        return Attempt(None, "not an http(s) URL")
    # Only http(s) reaches here (checked above and by check_callback_url when subscribing).
    request = urllib.request.Request(  # noqa: S310
        url, body, {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    )
    request.method = "POST"
    opener = _OPENER if resolve is None else _public_opener(resolve, refusal)
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(64 * 1024)
            return Attempt(response.status, f"answered {response.status}")
    except urllib.error.HTTPError as error:
        error.close()
        return Attempt(error.code, f"answered {error.code}")
    except TimeoutError:
        return Attempt(None, "timed out")
    except CallbackRefused as refused:
        return Attempt(None, f"not sent: {refused}", blocked=True)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, CallbackRefused):
            return Attempt(None, f"not sent: {reason}", blocked=True)
        return Attempt(None, f"unreachable ({type(reason).__name__})")
