"""``POST /api/messages``: send through ACS and answer 202 with the poll link of the message's trace (issue 17,
part 5). The use case is :mod:`shared.sending.send`; this module shapes the answer."""

from __future__ import annotations

from urllib.parse import urlsplit

import azure.functions as func

from shared.api.handlers import POLL_LINK_LIFE, TRACE_PENDING_RETRY_AFTER
from shared.api.http import Call, json_response, retry_after_header


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
