"""Tokens this service hands out and must recognise again: continuation tokens and poll links.

A token is ``base64url(payload JSON) + "." + base64url(HMAC-SHA256(purpose + payload))`` under the key of
setting ``LINK_SIGNING_KEY``. The purpose is part of the MAC, so a continuation token can never pass as a
poll token or the other way round. A token that was altered, forged, signed with another key, or has
expired is refused with ``InvalidInput`` naming the parameter; what it decodes to is validated again by the
caller against the same limits as the query parameters (a valid MAC proves origin, not sanity).

Rolling the key (deploy docs) invalidates every outstanding token: old links answer 400 and clients
start over. Without the setting, a fixed development key is used and ``Signer.development`` is True
(``/api/health`` says so); a deployment always sets one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.errors import InvalidInput

#: Used only when LINK_SIGNING_KEY is unset (local runs); public, so it protects nothing in Azure.
DEVELOPMENT_KEY = "acs-email-insights-development-signing-key-not-secret"
MIN_KEY_LENGTH = 32
MAX_TOKEN_LENGTH = 2048


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Signer:
    key: bytes
    development: bool = False

    @classmethod
    def from_setting(cls, value: str | None) -> Signer:
        if not value:
            return cls(DEVELOPMENT_KEY.encode(), development=True)
        if len(value) < MIN_KEY_LENGTH:
            raise ValueError(f"setting LINK_SIGNING_KEY must be at least {MIN_KEY_LENGTH} characters")
        return cls(value.encode())

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

    def check_poll_token(self, token: str, message_id: str, now: datetime) -> None:
        payload = self.verify("poll", token, "token")
        if payload.get("m") != message_id:
            raise InvalidInput.parameter("token", "was issued for another message")
        expires = payload.get("e")
        if not isinstance(expires, int) or now.timestamp() >= expires:
            raise InvalidInput.parameter("token", "has expired; trace the message again with a function key")
