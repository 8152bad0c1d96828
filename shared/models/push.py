"""Push subscriptions, message registrations and the bodies pushes carry."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from shared.models.common import BoundedText, FinalStatus, UtcDateTime, _Out, _Params
from shared.models.validators import MESSAGE_ID_DESCRIPTION, SENDER_DESCRIPTION, Address, MessageId, Sender

#: Longest callback URL accepted (Power Automate's callback URLs, signature included, are about 400 characters).
MAX_CALLBACK_URL_CHARS = 2048
SUBSCRIPTION_ID_PATTERN = r"^[0-9a-f]{32}$"
CALLBACK_URL_DESCRIPTION = (
    "Where outcomes are POSTed: an https URL (http only to a loopback host when the service runs locally)."
)


class SubscriptionFilter(_Params):
    """Which recipients' outcomes to push: by sender and final status (both optional)."""

    sender: Sender | None = Field(None, description=SENDER_DESCRIPTION)
    statuses: list[FinalStatus] | None = Field(
        None, min_length=1, max_length=6, description="Final statuses to push; all of them when left out."
    )


#: Recipients one email may have (To, Cc and Bcc together): ACS's limit per send request.
MAX_MESSAGE_RECIPIENTS = 50
REGISTERED_RECIPIENTS_DESCRIPTION = (
    "The message's recipients (To, Cc and Bcc), as sent: the trace lists them waiting from the first second and "
    f"is final as soon as each has a final status. At most {MAX_MESSAGE_RECIPIENTS}; an address twice (in any "
    "case) counts once."
)


def _distinct_addresses(addresses: list[str] | None) -> list[str] | None:
    if addresses is None:
        return None
    seen: dict[str, str] = {}
    for address in addresses:
        seen.setdefault(address.lower(), address)
    return list(seen.values())


class RegisterMessageBody(_Params):
    """What the app knows of a message it sent: its recipients, or how many there are."""

    recipients: list[Address] | None = Field(
        None, min_length=1, max_length=MAX_MESSAGE_RECIPIENTS, description=REGISTERED_RECIPIENTS_DESCRIPTION
    )
    expected_recipients: int | None = Field(
        None,
        ge=1,
        le=MAX_MESSAGE_RECIPIENTS,
        description="How many distinct recipients the message was sent to, when their addresses are not given.",
    )

    @model_validator(mode="after")
    def _one_count(self) -> RegisterMessageBody:
        distinct = _distinct_addresses(self.recipients)
        if distinct is None and self.expected_recipients is None:
            raise ValueError("give recipients or expectedRecipients")
        if distinct is not None and self.expected_recipients not in (None, len(distinct)):
            raise ValueError("expectedRecipients differs from the number of distinct recipients")
        return self

    def distinct_recipients(self) -> list[str]:
        return _distinct_addresses(self.recipients) or []

    def count(self) -> int:
        return len(self.distinct_recipients()) or int(self.expected_recipients or 0)


class RegisterParams(_Params):
    message_id: MessageId = Field(description=MESSAGE_ID_DESCRIPTION)


class MessageRegistration(_Out):
    message_id: str
    expected_recipients: int = Field(description="The recipients the trace waits for.")
    recipients: list[str] | None = Field(None, description="Their addresses, when they were given.")
    registered_at: UtcDateTime = Field(description="When the message was first registered.")


class CreateSubscriptionBody(_Params):
    """A push subscription: one message (messageId) or every recipient outcome matching a filter."""

    callback_url: str = Field(min_length=1, max_length=MAX_CALLBACK_URL_CHARS, description=CALLBACK_URL_DESCRIPTION)
    message_id: MessageId | None = Field(
        None, description="Push this message's trace once it is final. Give messageId or filter, not both."
    )
    filter: SubscriptionFilter | None = Field(
        None, description="Push each recipient outcome that matches. Give messageId or filter, not both."
    )
    recipients: list[Address] | None = Field(
        None,
        min_length=1,
        max_length=MAX_MESSAGE_RECIPIENTS,
        description="With messageId: registers the message's recipients too (as PUT /api/messages/{messageId}), so "
        "the push comes as soon as each has a final status.",
    )


class MessageSubscriptionBody(_Params):
    """The Power Automate trigger's subscription: the flow's callback URL and the message to wait for."""

    callback_url: str = Field(
        max_length=MAX_CALLBACK_URL_CHARS,
        description="The flow's callback URL (set by Power Automate).",
        json_schema_extra={"x-ms-notification-url": True, "x-ms-visibility": "internal"},
    )
    message_id: MessageId = Field(description=MESSAGE_ID_DESCRIPTION)
    recipients: list[Address] | None = Field(
        None, min_length=1, max_length=MAX_MESSAGE_RECIPIENTS, description=REGISTERED_RECIPIENTS_DESCRIPTION
    )


class SubscriptionParams(_Params):
    id: str = Field(pattern=SUBSCRIPTION_ID_PATTERN, description="The subscription id the create answer gave.")


class Subscription(_Out):
    id: str
    kind: Literal["message", "filter"]
    message_id: str | None = None
    sender: str | None = Field(None, description="The filter's sender, when it has one.")
    statuses: list[str] | None = Field(None, description="The filter's final statuses, when it has them.")
    secret: str | None = Field(
        None,
        description="The signing secret (whsec_ and base64 of 32 bytes), shown only when the subscription is "
        "created: verify each push's webhook-signature with any Standard Webhooks library (keyed with the bytes "
        "after whsec_), or its X-Signature (sha256= hex HMAC-SHA256 of the body, keyed with this whole string).",
    )
    created_at: UtcDateTime
    expires_at: UtcDateTime


class RecipientOutcome(_Out):
    """What a filter subscription is sent: one recipient's final status."""

    message_id: str
    recipient_id: str
    final_delivery_status: str
    final_status_time: UtcDateTime
    bounce_type: str | None = None
    bounce_type_source: str | None = None
    smtp_status_code: str | None = None
    enhanced_smtp_status_code: str | None = None
    failure_reason: BoundedText = None
    failure_message: BoundedText = None
    recipient_mail_server_host_name: str | None = None
    internet_message_id: str | None = None
    sender: str | None = None
    source: str | None = Field(None, description="Where the status came from: events, logs or both.")
