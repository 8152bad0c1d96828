"""Validation of the values users give: message ids, addresses, domains, senders, resource ids, status lists
(each refused with a 400 naming the parameter, never echoing control characters).
"""

from __future__ import annotations

import re
from typing import Annotated, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainSerializer,
    WithJsonSchema,
)

from shared.kql.literals import is_control_char
from shared.models.common import FinalStatus


def _no_controls(value: str, what: str) -> str:
    if any(is_control_char(ch) for ch in value):
        raise ValueError(f"{what} must not contain control characters or line breaks")
    return value


MESSAGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
_MESSAGE_ID = re.compile(MESSAGE_ID_PATTERN)
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?\.)*"
    r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?$"
)
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\uffff]{1,64}$")
#: RFC 5321 quoted local part, e.g. "john..doe"@example.com or "a@b"@example.com.
_QUOTED_LOCAL_PART = re.compile(r'^"(?:[^"\\]|\\.){1,62}"$')
_RESOURCE_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/\s]{1,90}/providers/"
    r"Microsoft\.Communication/CommunicationServices/[^/\s]{1,63}$",
    re.I,
)


def validate_message_id(value: str) -> str:
    value = value.strip()
    if not _MESSAGE_ID.match(value):
        raise ValueError("must be an ACS message id (letters, digits, '-', '.', '_', ':'; up to 128 characters)")
    return value


def validate_domain(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if not _DOMAIN.match(value):
        raise ValueError("must be a domain name such as contoso.com")
    return value


def validate_address(value: str) -> str:
    value = _no_controls(value.strip(), "address")
    local, at, domain = value.rpartition("@")
    if not at or not (_LOCAL_PART.match(local) or _QUOTED_LOCAL_PART.match(local)) or not _DOMAIN.match(domain):
        raise ValueError("must be an email address such as user@contoso.com")
    return value


def validate_sender(value: str) -> str:
    value = _no_controls(value.strip(), "sender")
    if "@" in value:
        return validate_address(value)
    if not _LOCAL_PART.match(value):
        raise ValueError("must be a sender username (e.g. DoNotReply) or address")
    return value


def validate_internet_message_id(value: str) -> str:
    value = _no_controls(value.strip(), "internetMessageId")
    if not 3 <= len(value) <= 998 or " " in value:
        raise ValueError("must be an Internet Message-ID such as <abc@contoso.com>")
    return value


def validate_resource_id(value: str) -> str:
    value = value.strip()
    if not _RESOURCE_ID.match(value):
        raise ValueError(
            "must be an ACS resource id (/subscriptions/.../providers/Microsoft.Communication/"
            "CommunicationServices/NAME)"
        )
    return value


_FINAL_STATUS_NAMES = {status.lower(): status for status in get_args(FinalStatus)}


def validate_statuses(value: object) -> tuple[str, ...]:
    """One or more final statuses, comma-separated (or a list), in any case -> their canonical names."""
    parts = value if isinstance(value, list | tuple) else str(value).split(",")
    statuses: list[str] = []
    for part in parts:
        name = str(part).strip()
        if not name:
            continue
        canonical = _FINAL_STATUS_NAMES.get(name.lower())
        if canonical is None:
            raise ValueError("must be final statuses, comma-separated: " + ", ".join(get_args(FinalStatus)))
        if canonical not in statuses:
            statuses.append(canonical)
    if not statuses:
        raise ValueError("must name at least one final status")
    return tuple(statuses)


MessageId = Annotated[
    str, AfterValidator(validate_message_id), WithJsonSchema({"type": "string", "pattern": MESSAGE_ID_PATTERN})
]
Domain = Annotated[str, AfterValidator(validate_domain)]
Address = Annotated[str, AfterValidator(validate_address)]
Sender = Annotated[str, AfterValidator(validate_sender)]
InternetMessageId = Annotated[str, AfterValidator(validate_internet_message_id)]
ResourceId = Annotated[str, AfterValidator(validate_resource_id)]
StatusList = Annotated[
    tuple[str, ...],
    BeforeValidator(validate_statuses),
    PlainSerializer(lambda value: ",".join(value), return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^\\s*[A-Za-z]+\\s*(,\\s*[A-Za-z]+\\s*)*$",
            "examples": ["Bounced,Failed"],
        }
    ),
]


#: Descriptions of query parameters that several endpoints share (OpenAPI and the connector show them).
MESSAGE_ID_DESCRIPTION = "The message id returned by the ACS send API (operation id)."
SENDER_DESCRIPTION = "Sender username (e.g. DoNotReply) or full sender address."
SENDER_DOMAIN_DESCRIPTION = "Sender domain, e.g. notify.contoso.com (case-insensitive)."
RESOURCE_ID_DESCRIPTION = "Only sends of this ACS resource (/subscriptions/.../CommunicationServices/NAME)."
RECIPIENT_DOMAIN_DESCRIPTION = "Recipient domain, e.g. contoso.com (case-insensitive)."
TOP_DESCRIPTION = "Maximum number of rows to return."
