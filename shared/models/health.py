"""The health route's answer."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from shared.models.common import _Out


class ComponentHealth(_Out):
    name: str
    reachable: bool
    detail: str


class Health(_Out):
    status: Literal["ok", "degraded"]
    log_source: ComponentHealth
    table_store: ComponentHealth
    report_email: ComponentHealth | None = Field(
        None, description="Whether the latest daily report email went out; null when no report email is configured."
    )
    link_signing: str = Field(
        "configured",
        description="The key of poll links and continuation tokens: 'configured' (LINK_SIGNING_KEY), 'development "
        "key' (a local run without one: public, protects nothing), or 'missing: ' and the reason (Azure without a "
        "usable key: signed routes answer 503 and the service is degraded).",
    )
    set_aside: int | None = Field(
        None,
        description="Events and log rows the delivery state set aside (a time not within reason of their arrival, "
        "or a message whose state could not be written); null when the state store cannot be read.",
    )
