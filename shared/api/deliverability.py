"""HTTP handlers of the deliverability operations (quota headroom, sender health, mailbox providers)."""

from __future__ import annotations

from pydantic import BaseModel

from shared.api.http import Call


def get_sending_quota(call: Call) -> BaseModel:
    from shared.deliverability.quota import quota

    return quota(call.services.insights, call.params, call.services.settings)


def get_senders_health(call: Call) -> BaseModel:
    from shared.deliverability.health import sender_health

    return sender_health(call.services.insights, call.params, call.services.settings.health)


def get_stats_providers(call: Call) -> BaseModel:
    from shared.deliverability.providers import provider_stats

    return provider_stats(call.services.insights, call.params)
