"""Handlers of the suppression routes and timer (issue 18, part 3): the use cases are in ``shared.suppression``."""

from __future__ import annotations

import azure.functions as func
from pydantic import BaseModel

from shared.api.http import Call
from shared.errors import ServiceError
from shared.kql.literals import is_control_char
from shared.services import Services

#: Header App Service authentication sets to the signed-in caller's name (absent with key-only access).
PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL-NAME"


def get_recipient_sendability(call: Call) -> BaseModel:
    """The address is PII: it reaches the query only as an obfuscated literal, ARM as the entry it looks for."""
    from shared.suppression.sendability import sendability

    services = call.services
    try:
        suppression_list, list_error = services.suppression_list, None
    except ServiceError as exc:  # a malformed SUPPRESSION_LIST_ID: the history still answers
        suppression_list, list_error = None, exc.detail
    try:
        records = services.suppression_records if suppression_list is not None else None
    except ServiceError:
        records = None
    return sendability(
        services.insights, call.params, suppression_list=suppression_list, records=records, list_error=list_error
    )


def _principal(request: func.HttpRequest) -> str | None:
    value = (request.headers.get(PRINCIPAL_HEADER) or "").strip()[:200]
    return value if value and not any(is_control_char(ch) for ch in value) else None


def remove_suppression(call: Call) -> BaseModel:
    from shared.suppression.arm import SuppressionListUnset
    from shared.suppression.removal import remove_suppression

    services = call.services
    suppression_list = services.suppression_list
    if suppression_list is None:
        raise SuppressionListUnset("SUPPRESSION_LIST_ID is not set: this deployment has no suppression list")
    return remove_suppression(
        suppression_list,
        services.suppression_records,
        call.params.address,
        requested_by=call.params.requested_by,
        principal=_principal(call.request),
        now=services.clock(),
    )


def suppress_hard_bounces(timer: func.TimerRequest, services: Services) -> None:
    """Hard bounces of the last STATUS_GRACE_HOURS into the list (nothing when SUPPRESSION_LIST_ID is unset)."""
    suppression_list = services.suppression_list
    if suppression_list is None:
        return
    from shared.suppression.sync import run_timer

    run_timer(
        services.insights,
        suppression_list,
        services.suppression_records,
        now=services.clock(),
        lookback=services.status_grace,
    )
