"""The body of ``POST /api/messages`` (the ACS Email send body, as ``azure-communication-email`` takes it) and
its 202 answer: the one definition of their fields.

ACS's limits are checked here, before anything is sent (Azure docs, Communication Services service limits,
email section): at most
:data:`MAX_MESSAGE_RECIPIENTS` recipients in all (To, Cc and Bcc), attachments whose content is base64; the
whole request is bounded by the operation's body limit (:data:`MAX_SEND_BYTES`, 10 MB as ACS's).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from shared.models import MAX_MESSAGE_RECIPIENTS, Address, _no_controls, _Out, _Params

#: ACS refuses a request larger than this, attachments included (the service limits page).
MAX_SEND_BYTES = 10 * 1024 * 1024
MAX_SUBJECT_CHARS = 998  # one RFC 5322 header line
MAX_REQUEST_ID_CHARS = 128
MAX_HEADERS = 50


def _plain(value: str, what: str) -> str:
    return _no_controls(value, what)


def _base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 (RFC 4648, no line breaks)") from None
    return value


def _request_id(value: str) -> str:
    value = _no_controls(value.strip(), "repeatabilityRequestId")
    if not value:
        raise ValueError("must not be empty")
    return value


Base64Text = Annotated[str, AfterValidator(_base64)]
RequestId = Annotated[str, AfterValidator(_request_id)]
DisplayName = Annotated[str, AfterValidator(lambda value: _plain(value, "displayName"))]
HeaderText = Annotated[str, AfterValidator(lambda value: _plain(value, "header"))]


class EmailAddress(_Params):
    address: Address = Field(description="The email address.")
    display_name: DisplayName | None = Field(None, max_length=256, description="The name shown with it.")


class EmailRecipients(_Params):
    to: list[EmailAddress] = Field(default_factory=list, description="To recipients.")
    cc: list[EmailAddress] = Field(default_factory=list, description="Cc recipients.")
    bcc: list[EmailAddress] = Field(default_factory=list, description="Bcc recipients.")

    @model_validator(mode="after")
    def _count(self) -> EmailRecipients:
        count = len(self.to) + len(self.cc) + len(self.bcc)
        if count == 0:
            raise ValueError("give at least one recipient (to, cc or bcc)")
        if count > MAX_MESSAGE_RECIPIENTS:
            raise ValueError(f"ACS takes at most {MAX_MESSAGE_RECIPIENTS} recipients in all (to, cc and bcc)")
        return self

    def addresses(self) -> list[str]:
        """Every recipient's address, To then Cc then Bcc, each once (in any case): whom the trace waits for."""
        seen: dict[str, str] = {}
        for entry in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(entry.address.lower(), entry.address)
        return list(seen.values())


class EmailContent(_Params):
    subject: Annotated[str, AfterValidator(lambda value: _plain(value, "subject"))] = Field(
        min_length=1, max_length=MAX_SUBJECT_CHARS, description="The subject."
    )
    plain_text: str | None = Field(None, description="The plain-text body.")
    html: str | None = Field(None, description="The HTML body.")

    @model_validator(mode="after")
    def _a_body(self) -> EmailContent:
        if not self.plain_text and not self.html:
            raise ValueError("give plainText or html (or both)")
        return self


class EmailAttachment(_Params):
    name: Annotated[str, AfterValidator(lambda value: _plain(value, "name"))] = Field(
        min_length=1, max_length=255, description="The file name."
    )
    content_type: Annotated[str, AfterValidator(lambda value: _plain(value, "contentType"))] = Field(
        min_length=3, max_length=255, pattern=r"^[\w.+-]+/[\w.+-]+$", description="Its MIME type, e.g. image/png."
    )
    content_in_base64: Base64Text = Field(min_length=1, description="The content, base64-encoded.")
    content_id: Annotated[str, AfterValidator(lambda value: _plain(value, "contentId"))] | None = Field(
        None, max_length=255, description="Makes it inline: the HTML refers to it as cid:<contentId>."
    )


class SendEmailBody(_Params):
    """An email to send through Azure Communication Services, as the ACS send API takes it."""

    sender_address: Address = Field(description="The sender: an address of a domain linked to the ACS resource.")
    recipients: EmailRecipients = Field(
        description=f"To, Cc and Bcc: at least one recipient, at most {MAX_MESSAGE_RECIPIENTS} in all."
    )
    content: EmailContent = Field(description="The subject and the plain-text and/or HTML body.")
    attachments: list[EmailAttachment] | None = Field(None, description="Files, or inline images (contentId).")
    reply_to: list[EmailAddress] | None = Field(None, max_length=MAX_MESSAGE_RECIPIENTS, description="Reply-To.")
    headers: dict[HeaderText, HeaderText] | None = Field(
        None, max_length=MAX_HEADERS, description="Custom headers (names and values as text)."
    )
    user_engagement_tracking_disabled: bool | None = Field(
        None, description="True: no open and click tracking for this message."
    )
    repeatability_request_id: RequestId | None = Field(
        None,
        max_length=MAX_REQUEST_ID_CHARS,
        description="Your id of this send (a UUID, say): a retried call with the same id (and sender) is the same "
        "send, answered with the same message id and sent once. Without it each call is a new send.",
    )

    def acs_message(self) -> dict[str, object]:
        """The ACS send body (camelCase, unset fields left out; the request id is ours, not ACS's)."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude={"repeatability_request_id"})


class SendAccepted(_Out):
    """ACS accepted the message: its id, and whom its trace waits for."""

    message_id: str = Field(description="The ACS message id (the send's operation id): GET /api/messages/{id}.")
    status: str = Field(description="What ACS said of the send operation (Running, Succeeded...).")
    expected_recipients: int = Field(description="The distinct recipients (To, Cc, Bcc) the trace waits for.")
    registered: bool = Field(description="Whether the recipients were registered (see warning when not).")
    warning: str | None = Field(None, description="Sent, but the registration failed: the trace waits for the logs.")
