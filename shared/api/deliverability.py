"""HTTP handlers of the deliverability operations (quota headroom, sender health, mailbox providers)."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel

from shared.api.http import Call
from shared.api.signatures import HttpHandler


def get_sending_quota(call: Call) -> BaseModel:
    from shared.deliverability.quota import quota

    return quota(call.services.insights, call.params, call.services.settings)


def get_senders_health(call: Call) -> BaseModel:
    from shared.deliverability.health import sender_health

    return sender_health(call.services.insights, call.params, call.services.settings.health)


def get_stats_providers(call: Call) -> BaseModel:
    from shared.deliverability.providers import provider_stats

    return provider_stats(call.services.insights, call.params)


#: Checked against ``HttpHandler``; ``shared.api.spec`` finds them here by name.
HTTP_HANDLERS: Final[tuple[HttpHandler, ...]] = (get_sending_quota, get_senders_health, get_stats_providers)
