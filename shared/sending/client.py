"""The one place an ACS ``EmailClient`` is built from the settings: the daily report and ``POST /api/messages``
both send through it.

``ACS_CONNECTION_STRING`` (an access key: local runs, tests) wins over ``ACS_ENDPOINT`` (Entra ID: the app's
managed identity, ``AZURE_CLIENT_ID``). The SDK's own ``from_connection_string`` keeps only the host and always
builds ``https://``, which cannot reach an ``http://`` loopback stand-in; the endpoint is kept whole here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from shared.errors import Unavailable, UpstreamFailure
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.communication.email import EmailClient
    from azure.core.pipeline.policies import RetryPolicy

#: Retries of the send route after a 5xx or a dropped connection (the same operation id: ACS sends once);
#: a 429 is never retried there.
SEND_RETRIES: Final = 1


class SendingNotConfigured(Unavailable):
    title = "Sending not configured"


class AcsSettingsError(UpstreamFailure):
    """ACS_CONNECTION_STRING / ACS_ENDPOINT cannot be used (never quotes them)."""

    title = "ACS email settings unusable"


@dataclass(frozen=True)
class AcsAccess:
    """Through which ACS resource, and as whom, email is sent (ACS_* settings)."""

    endpoint: str | None
    connection_string: str | None
    client_id: str | None

    @classmethod
    def of(cls, settings: Settings) -> AcsAccess | None:
        """None when neither ACS_ENDPOINT nor ACS_CONNECTION_STRING is set."""
        endpoint = (settings.acs_endpoint or "").strip() or None
        connection_string = (settings.acs_connection_string or "").strip() or None
        if not endpoint and not connection_string:
            return None
        return cls(endpoint, connection_string, settings.client_id)


def parse_connection_string(value: str) -> tuple[str, str]:
    """``endpoint=...;accesskey=...`` -> (endpoint URL with its scheme, access key)."""
    parts: dict[str, str] = {}
    for element in value.split(";"):
        name, sep, setting = element.partition("=")
        if sep:
            parts[name.strip().lower()] = setting.strip()
    endpoint, key = parts.get("endpoint"), parts.get("accesskey")
    if not endpoint or not key:
        raise AcsSettingsError(
            "ACS_CONNECTION_STRING must look like endpoint=https://NAME.communication.azure.com/;accesskey=KEY"
        )
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    return endpoint.rstrip("/"), key


def email_client(access: AcsAccess, retry_policy: RetryPolicy[Any, Any], **options: Any) -> EmailClient:
    """An EmailClient on the connection string (access key) when set, else on ACS_ENDPOINT with Entra ID;
    ``options`` go to the client's pipeline (a transport, timeouts)."""
    from azure.communication.email import EmailClient
    from azure.core.credentials import AzureKeyCredential

    if access.connection_string:
        endpoint, key = parse_connection_string(access.connection_string)
        return EmailClient(endpoint, AzureKeyCredential(key), retry_policy=retry_policy, **options)
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    credential = ManagedIdentityCredential(client_id=access.client_id) if access.client_id else DefaultAzureCredential()
    return EmailClient(str(access.endpoint), credential, retry_policy=retry_policy, **options)


def send_client(access: AcsAccess) -> EmailClient:
    """The EmailClient of the send route: one retry (none after a 429, nor after a failure whose Retry-After
    outlasts the request's budget), each attempt's timeouts cut to the budget."""
    from azure.core.pipeline.policies import RetryPolicy

    from shared import deadline
    from shared.storage import client_options

    class _SendRetry(RetryPolicy):  # type: ignore[type-arg]
        """azure-core's retry, except a 429: the caller's quota is spent, and only the caller can wait."""

        def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
            if response.http_response.status_code == 429:
                return False
            # A failure asking for a wait the request's budget cannot hold: answered now, its Retry-After passed on.
            wait, left = self.get_retry_after(response), deadline.remaining()
            if wait is not None and left is not None and wait >= left - 1:
                return False
            return bool(super().is_retry(settings, response))

    retry = _SendRetry(retry_total=SEND_RETRIES, retry_backoff_factor=0.2, retry_backoff_max=1)
    return email_client(access, retry, transport=client_options()["transport"])
