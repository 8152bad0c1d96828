"""``POST /api/messages``: send through ACS and answer 202 with the poll link of the message's trace (issue 17,
part 5), and ``python -m shared send FILE.json``. The use case is :mod:`shared.sending.send`; this module shapes
the answer."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import azure.functions as func

from shared.api.handlers import POLL_LINK_LIFE, TRACE_PENDING_RETRY_AFTER
from shared.api.http import Call, json_response, retry_after_header
from shared.api.signatures import HttpHandler
from shared.errors import InvalidInput
from shared.services import Services


def send_message(call: Call) -> func.HttpResponse:
    """202 with the message id, a ``Location`` that polls its trace (anonymous, signed for this message) and
    ``Retry-After``: the asynchronous pattern Power Automate follows until the trace is final (200)."""
    from shared.sending.send import send_email

    services = call.services
    signer = services.signer  # refused before sending when no usable link key: the 202 needs a poll link
    client = services.email_client  # 503 naming the settings when unset, before anything is sent
    accepted = send_email(services, client, call.body)
    token = signer.poll_token(accepted.message_id, services.clock(), POLL_LINK_LIFE)
    path = urlsplit(call.url).path.rstrip("/") + f"/{accepted.message_id}/poll"
    headers = {"Location": call.link(path, token=token), **retry_after_header(TRACE_PENDING_RETRY_AFTER)}
    return json_response(accepted, 202, headers)


# --------------------------------------------------------------------------- CLI

COMMANDS = ("send",)


def add_commands(commands: Any) -> None:
    send = commands.add_parser("send", help="send an email through ACS (the POST /api/messages body) and register it")
    send.add_argument("file", metavar="FILE.json", help="the send body as JSON ('-': standard input)")


def run_command(services: Services, args: argparse.Namespace, out: Any) -> int:
    """Prints the 202 body (the message id: follow it with ``trace``); bad input exits 2 before any send."""
    from shared.api.params import parse_params
    from shared.api.render import to_json
    from shared.sending.models import MAX_SEND_BYTES, SendEmailBody
    from shared.sending.send import send_email

    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise InvalidInput.parameter("FILE", f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_SEND_BYTES:
        raise InvalidInput.parameter("FILE", f"must be at most {MAX_SEND_BYTES} bytes")
    try:
        document = json.loads(data)
    except ValueError:
        raise InvalidInput.parameter("FILE", "must hold a JSON object") from None
    if not isinstance(document, dict):
        raise InvalidInput.parameter("FILE", "must hold a JSON object")
    body = parse_params(SendEmailBody, document)
    print(to_json(send_email(services, services.email_client, body), indent=2), file=out)
    return 0


HTTP_HANDLERS: Final[tuple[HttpHandler, ...]] = (send_message,)
