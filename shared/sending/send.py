"""Send and track (issue 17, part 5): send an email through ACS and register whom its trace waits for, at once.

The send's ``Operation-Id`` is its message id. With a ``repeatabilityRequestId`` it is a UUID derived from it
and the sender (uuid5), so a retried call is the same ACS operation: ACS (and the stand-in) answer the same id
and send once, and the registration, being the same, is stored once. Without one each call is a new send.

Never blocking: ``begin_send(..., polling=False)`` returns on ACS's 202 (the SDK would otherwise poll every 30 s,
each poll a rate-limited "Get Email Status" call); the caller follows the trace instead. The SDK retries a 5xx
once within the request's budget (the transport's timeouts are cut to what is left,
:class:`shared.storage.DeadlineTransport`), never a 429: ACS's throttle is the caller's quota, passed on with
its ``Retry-After``.

Registration happens after ACS accepted and before the answer; when it fails the send still happened, so the
answer is still 202, with a warning (and a log line naming the message, never an address).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import TYPE_CHECKING, Any, Final

from azure.core.exceptions import AzureError, HttpResponseError

from shared.errors import Conflict, InvalidInput, ParameterError, ServiceError, Throttled, Unavailable, UpstreamFailure
from shared.sending.models import SendAccepted, SendEmailBody

if TYPE_CHECKING:
    from azure.communication.email import EmailClient

    from shared.services import Services

log = logging.getLogger("acs_email_insights")

#: Namespace of send operation ids derived from a repeatabilityRequestId (uuid5): a fixed UUID of this project.
SEND_NAMESPACE: Final = uuid.UUID("3c9b5e1a-7d24-5f08-b6e3-91a0d4c27f55")
#: When ACS throttles or fails without saying when to come back.
DEFAULT_RETRY_AFTER: Final = 60.0
_ERROR_CODE = re.compile(r"[^A-Za-z0-9_.\-]")


class SendError(UpstreamFailure):
    """ACS refused the app (credentials, role, endpoint)."""

    title = "ACS refused the send"


class SendUnavailable(Unavailable, SendError):
    """ACS is unreachable, timed out or failed: the same call (same repeatabilityRequestId) may be retried."""

    title = "ACS unavailable"


class SendThrottled(Throttled, SendUnavailable):
    """ACS throttles this resource's sends: its 429, passed on with its Retry-After."""

    title = "ACS send quota reached"


class SendRejected(InvalidInput):
    """ACS refused the message itself (400): its error code is given, never its message (it can quote addresses)."""

    title = "ACS refused the message"

    def __init__(self, code: str) -> None:
        reason = f"ACS refused the message: {code}"
        super().__init__(reason, [ParameterError("body", reason)])
        self.fields = {"acsErrorCode": code}


def operation_id(body: SendEmailBody) -> str:
    """The send's operation id (= its message id): derived from the request id and the sender, or new."""
    if body.repeatability_request_id is None:
        return str(uuid.uuid4())
    key = f"send|{body.sender_address.lower()}|{body.repeatability_request_id}"
    return str(uuid.uuid5(SEND_NAMESPACE, key))


def send_email(services: Services, client: EmailClient, body: SendEmailBody) -> SendAccepted:
    """Send *body* through ACS and register its recipients; raises the errors above (nothing sent on a 4xx)."""
    message_id = operation_id(body)
    recipients = body.recipients.addresses()
    _refuse_a_different_retry(services, message_id, recipients)
    try:
        poller = client.begin_send(body.acs_message(), operation_id=message_id, polling=False)
        accepted = poller.result() or {}
    except HttpResponseError as exc:
        raise _mapped(exc) from None
    except AzureError as exc:
        raise SendUnavailable(f"ACS did not answer the send ({type(exc).__name__})", retry_after=5) from None
    message_id = str(accepted.get("id") or message_id)
    registered, warning = _register(services, message_id, recipients)
    log.info("sent message %s to %d recipient(s), registered=%s", message_id, len(recipients), registered)
    return SendAccepted(
        message_id=message_id,
        status=str(accepted.get("status") or "Running"),
        expected_recipients=len(recipients),
        registered=registered,
        warning=warning,
    )


def _refuse_a_different_retry(services: Services, message_id: str, recipients: list[str]) -> None:
    """A retry (same request id) whose recipients differ from the registered send: 409, nothing sent (ACS would
    take it as the same operation and send nothing new). A state store that cannot be read does not stop a send."""
    from shared.state.observations import RegistrationObservation

    try:
        partition = services.state.read(message_id)
    except ServiceError as exc:
        log.warning("send %s: the registration could not be checked first: %s", message_id, type(exc).__name__)
        return
    stored = partition.message.registration if partition is not None else None
    if stored is None:
        return
    candidate = RegistrationObservation(
        message_id=message_id, time=stored.time, expected_recipients=len(recipients), recipients=tuple(recipients)
    )
    if not stored.same_as(candidate):
        raise Conflict(
            f"repeatabilityRequestId names message {message_id}, sent to other recipients: use a new id",
            title="Repeated request differs",
            fields={"messageId": message_id},
        )


def _register(services: Services, message_id: str, recipients: list[str]) -> tuple[bool, str | None]:
    from shared.models import RegisterMessageBody
    from shared.tracing import register_message

    try:
        register_message(services, message_id, RegisterMessageBody(recipients=recipients))
    except ServiceError as exc:
        log.warning("message %s sent but not registered: %s", message_id, type(exc).__name__)
        return False, (
            f"Sent, but its recipients could not be registered ({exc.title}): the trace waits for the send to be "
            "logged before it can be final."
        )
    return True, None


def _retry_after(exc: HttpResponseError) -> float:
    response: Any = exc.response
    header = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(1.0, float(header)) if header else DEFAULT_RETRY_AFTER
    except ValueError:
        return DEFAULT_RETRY_AFTER


def _code(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    code = str(getattr(error, "code", None) or getattr(exc, "error_code", None) or exc.reason or "")
    return _ERROR_CODE.sub("", code)[:64] or "unknown"


def _mapped(exc: HttpResponseError) -> ServiceError:
    """ACS's answer as ours: never its message (it can quote addresses), its code and status only."""
    status, code = exc.status_code or 0, _code(exc)
    if status == 429:
        return SendThrottled(
            f"ACS throttles this resource's sends ({code}): retry after the Retry-After; a quota increase is "
            "requested from Azure support (docs/sending.md)",
            retry_after=_retry_after(exc),
        )
    if status == 400:
        return SendRejected(code)
    if status in (401, 403):
        return SendError(
            f"ACS refused the app's credentials (HTTP {status}, {code}): give the app's identity the send role on "
            "the Communication Services resource (infra/app/acs-sender.bicep), or check ACS_CONNECTION_STRING's key"
        )
    if status >= 500:
        return SendUnavailable(f"ACS failed the send (HTTP {status}, {code})", retry_after=_retry_after(exc))
    return SendError(f"ACS answered HTTP {status} ({code}): check ACS_ENDPOINT / ACS_CONNECTION_STRING")
