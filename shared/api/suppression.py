"""Suppression routes and timer (issue 18, part 3), and the CLI commands that do the same: the use cases are in
``shared.suppression``; this module finds their dependencies in the services."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any, Final

import azure.functions as func
from pydantic import BaseModel

from shared.api.http import Call
from shared.api.signatures import HttpHandler, TimerHandler
from shared.errors import ServiceError
from shared.kql.literals import is_control_char
from shared.services import Services
from shared.suppression.models import RemoveSuppressionParams, SendabilityParams

#: Header App Service authentication sets to the signed-in caller's name (absent with key-only access).
PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL-NAME"


def check_sendability(services: Services, params: SendabilityParams) -> BaseModel:
    """The address is PII: it reaches the query only as an obfuscated literal, ARM as the entry it looks for."""
    from shared.suppression.sendability import sendability

    try:
        suppression_list, list_error = services.suppression_list, None
    except ServiceError as exc:  # a malformed SUPPRESSION_LIST_ID: the history still answers
        suppression_list, list_error = None, exc.detail
    try:
        records = services.suppression_records if suppression_list is not None else None
    except ServiceError:
        records = None
    return sendability(
        services.insights, params, suppression_list=suppression_list, records=records, list_error=list_error
    )


def remove_from_list(services: Services, params: RemoveSuppressionParams, principal: str | None) -> BaseModel:
    from shared.suppression.arm import SuppressionListUnset
    from shared.suppression.removal import remove_suppression

    suppression_list = services.suppression_list
    if suppression_list is None:
        raise SuppressionListUnset("SUPPRESSION_LIST_ID is not set: this deployment has no suppression list")
    return remove_suppression(
        suppression_list,
        services.suppression_records,
        params.address,
        requested_by=params.requested_by,
        principal=principal,
        now=services.clock(),
    )


def sync_now(services: Services) -> dict[str, Any]:
    """One run of the timer; {"configured": false} when SUPPRESSION_LIST_ID is unset."""
    suppression_list = services.suppression_list
    if suppression_list is None:
        return {"configured": False}
    from shared.suppression.sync import run_timer

    run = run_timer(
        services.insights,
        suppression_list,
        services.suppression_records,
        now=services.clock(),
        lookback=services.status_grace,
    )
    return {"configured": True, **asdict(run)}


# --------------------------------------------------------------------------- HTTP and timer


def get_recipient_sendability(call: Call) -> BaseModel:
    return check_sendability(call.services, call.params)


def _principal(request: func.HttpRequest) -> str | None:
    value = (request.headers.get(PRINCIPAL_HEADER) or "").strip()[:200]
    return value if value and not any(is_control_char(ch) for ch in value) else None


def remove_suppression(call: Call) -> BaseModel:
    return remove_from_list(call.services, call.params, _principal(call.request))


def suppress_hard_bounces(timer: func.TimerRequest, services: Services) -> None:
    """Hard bounces of the last STATUS_GRACE_HOURS into the list (nothing when SUPPRESSION_LIST_ID is unset)."""
    sync_now(services)


# --------------------------------------------------------------------------- CLI

COMMANDS = ("sendability", "unsuppress", "suppress-bounces")


def add_commands(commands: Any, window_options: Any) -> None:
    sendability = commands.add_parser("sendability", help="would a send to this address be attempted now, and why not")
    sendability.add_argument("address", metavar="ADDRESS")
    window_options(sendability)
    unsuppress = commands.add_parser("unsuppress", help="remove an address from our suppression list (recorded)")
    unsuppress.add_argument("address", metavar="ADDRESS")
    unsuppress.add_argument("--requested-by", required=True, help="who asks (a name or ticket), recorded")
    commands.add_parser("suppress-bounces", help="add the recent hard bounces to the suppression list now")


def run_command(services: Services, args: argparse.Namespace, raw: dict[str, Any], out: Any) -> int:
    from shared.api.params import parse_params
    from shared.api.render import to_json

    if args.command == "sendability":
        print(to_json(check_sendability(services, parse_params(SendabilityParams, raw)), indent=2), file=out)
    elif args.command == "unsuppress":
        params = parse_params(RemoveSuppressionParams, raw)
        print(to_json(remove_from_list(services, params, principal=None), indent=2), file=out)
    else:
        print(json.dumps(sync_now(services), indent=2), file=out)
    return 0


#: Checked against the handler signatures; ``shared.api.spec`` finds them here by name.
HTTP_HANDLERS: Final[tuple[HttpHandler, ...]] = (get_recipient_sendability, remove_suppression)
TIMER_HANDLERS: Final[tuple[TimerHandler, ...]] = (suppress_hard_bounces,)
