"""Tokens this service hands out and must recognise again: continuation tokens and poll links.

A token is ``base64url(payload JSON) + "." + base64url(HMAC-SHA256(purpose + payload))`` under the key of
setting ``LINK_SIGNING_KEY``. The purpose is part of the MAC, so a continuation token can never pass as a
poll token or the other way round. A token that was altered, forged, signed with another key, or has
expired is refused with ``InvalidInput`` naming the parameter; what it decodes to is validated again by the
caller against the same limits as the query parameters (a valid MAC proves origin, not sanity).

Only the canonical encoding of a token is accepted: unpadded base64url in the URL-safe alphabet that
re-encodes to the same text (no ``=``, no spare bits), so one signed payload has exactly one spelling.

Rolling the key (deploy docs) invalidates every outstanding token: old links answer 400 and clients
start over. Without the setting, a fixed development key is used locally and ``Signer.development`` is
True (``/api/health`` says so). In Azure (``Settings.in_azure``) there is no key to fall back to:
:func:`link_signer` raises :class:`LinkSigningUnavailable` (503, the reason in the detail), so every route
that signs or verifies a token is refused until the deployment sets a key of at least 32 characters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.errors import InvalidInput, Unavailable

#: Used only when LINK_SIGNING_KEY is unset (local runs); public, so it protects nothing in Azure.
DEVELOPMENT_KEY = "acs-email-insights-development-signing-key-not-secret"
MIN_KEY_LENGTH = 32
MAX_TOKEN_LENGTH = 2048
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class LinkSigningUnavailable(Unavailable):
    """Azure mode without a usable ``LINK_SIGNING_KEY``: nothing is signed or verified with a public key."""

    title = "Link signing not configured"
    DEFAULT_RETRY_AFTER = 300.0


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    """The bytes of canonical unpadded base64url *text*; ValueError for any other spelling of them."""
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:  # spare bits set in the last character: another spelling of the same bytes
        raise ValueError("not canonical base64url")
    return raw


def link_signer(value: str | None, *, in_azure: bool) -> Signer:
    """The signer of setting ``LINK_SIGNING_KEY``; in Azure a missing or short key raises (never a fallback)."""
    if value and len(value) >= MIN_KEY_LENGTH:
        return Signer(value.encode())
    if value:
        reason = f"LINK_SIGNING_KEY is shorter than {MIN_KEY_LENGTH} characters"
    elif in_azure:
        reason = "LINK_SIGNING_KEY is not set"
    else:
        return Signer(DEVELOPMENT_KEY.encode(), development=True)
    raise LinkSigningUnavailable(
        f"{reason}: continuation tokens and poll links are refused until the deployment sets a key of at least "
        f"{MIN_KEY_LENGTH} characters (docs/deploy.md)."
    )


@dataclass(frozen=True)
class Signer:
    key: bytes
    development: bool = False

    @classmethod
    def from_setting(cls, value: str | None) -> Signer:
        """The signer of a local run: the development key when *value* is empty (see :func:`link_signer`)."""
        return link_signer(value, in_azure=False)

    def _mac(self, purpose: str, payload: bytes) -> bytes:
        return hmac.new(self.key, purpose.encode() + b"\x00" + payload, hashlib.sha256).digest()

    def sign(self, purpose: str, payload: dict[str, Any]) -> str:
        raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(raw)}.{_b64(self._mac(purpose, raw))}"

    def verify(self, purpose: str, token: str, parameter: str) -> dict[str, Any]:
        """The payload of a token this service signed for ``purpose``; InvalidInput naming ``parameter`` if not."""
        refused = InvalidInput.parameter(parameter, "not a token this service issued, or altered")
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise refused
        body, mac = token.split(".")
        try:
            raw, given = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            raise refused from None
        if not hmac.compare_digest(given, self._mac(purpose, raw)):
            raise refused
        try:
            payload = json.loads(raw)
        except ValueError:
            raise refused from None
        if not isinstance(payload, dict):
            raise refused
        return payload

    # -- poll links: one message, a short life -------------------------------------------------

    def poll_token(self, message_id: str, now: datetime, life: timedelta) -> str:
        return self.sign("poll", {"m": message_id, "e": int((now + life).timestamp())})

    def check_poll_token(self, token: str, message_id: str, now: datetime, life: timedelta) -> None:
        """Refuse a token for another message, expired, or expiring later than *life* from now (no token
        outlives the life links are issued with, whatever its signer wrote in it)."""
        payload = self.verify("poll", token, "token")
        if payload.get("m") != message_id:
            raise InvalidInput.parameter("token", "was issued for another message")
        expires = payload.get("e")
        if not isinstance(expires, int) or isinstance(expires, bool) or now.timestamp() >= expires:
            raise InvalidInput.parameter("token", "has expired; trace the message again with a function key")
        if expires > (now + life).timestamp():
            raise InvalidInput.parameter("token", "claims a longer life than this service gives a poll link")
