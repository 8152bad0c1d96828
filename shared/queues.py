"""Storage queue connections, resolved as the Functions queue trigger resolves its ``connection`` setting.

The setting prefix ``P`` (``AzureWebJobsStorage`` for our queues) names a connection string
(``UseDevelopmentStorage=true``: Azurite's queue service on 127.0.0.1:10001) or identity-based
``P__queueServiceUri`` / ``P__accountName`` (+ ``P__credential``, ``P__clientId``), as for tables
(:mod:`shared.storage`). A connection string naming service endpoints but no ``QueueEndpoint`` has no queue
service: :func:`connect_queue` answers None and callers work without a queue.

Messages are base64 text, the encoding the Functions runtime's queue trigger expects by default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.queue import LinearRetry, QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.storage import DEV_ACCOUNT, DEV_KEY, StorageUnavailable, _identity_credential, client_options

DEV_QUEUE_PORT = 10001
_ENCODING = {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy()}


def _pairs(value: str) -> dict[str, str]:
    pairs = {}
    for part in value.split(";"):
        name, sep, setting = part.partition("=")
        if sep:
            pairs[name.strip().lower()] = setting.strip()
    return pairs


def _options() -> dict[str, object]:
    """Fail fast, as table requests do: two retries a second apart (the storage SDK's default waits 15 s and
    more between its retries, so an unreachable queue held a journal write for over a minute). The transport is
    the tables' (a new one per call, so per client: a shared one would be closed by the first close): attempts
    cut to the request's budget, and a connection pool as large as the threads that share the client (the SDK's
    own keeps 10, and the folds' requests discarded connections beyond them: "Connection pool is full")."""
    options = dict(client_options())
    for name in ("retry_total", "retry_backoff_factor", "retry_backoff_max"):
        options.pop(name, None)
    options["retry_policy"] = LinearRetry(backoff=1, random_jitter_range=0, retry_total=2)
    return options


def queue_with_string(connection_string: str, queue: str, *, encoded: bool = True) -> QueueClient | None:
    """The queue on a connection string's storage (None when it names no queue service); ``encoded=False``:
    message text as stored (base64), for the local host that decodes it itself."""
    coding = _ENCODING if encoded else {}
    value = connection_string.strip()
    pairs = _pairs(value)
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        proxy = pairs.get("developmentstorageproxyuri")
        scheme, host = "http", "127.0.0.1"
        if proxy:
            parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            scheme, host = parts.scheme or "http", parts.hostname or host
        endpoint = f"{scheme}://{host}:{DEV_QUEUE_PORT}/{DEV_ACCOUNT}"
        credential = AzureNamedKeyCredential(DEV_ACCOUNT, DEV_KEY)
        return QueueClient(endpoint, queue, credential=credential, **coding, **_options())  # type: ignore[arg-type]
    if "queueendpoint" not in pairs and any(k.endswith("endpoint") for k in pairs):
        return None  # endpoints named, the queue's not among them (e.g. a table-only Azurite)
    try:
        return QueueClient.from_connection_string(value, queue, **coding, **_options())  # type: ignore[arg-type]
    except (ValueError, TypeError):
        raise StorageUnavailable("the storage connection string is malformed or incomplete") from None


def connect_queue(
    prefix: str, queue: str, *, client_id: str | None = None, environ: Mapping[str, str], encoded: bool = True
) -> QueueClient | None:
    """The queue *queue* on the storage named by the setting prefix *prefix*, or None without a queue service."""

    def setting(name: str) -> str | None:
        value = environ.get(name)
        return value.strip() if value and value.strip() else None

    connection_string = setting(prefix)
    if connection_string:
        return queue_with_string(connection_string, queue, encoded=encoded)
    service_uri = setting(f"{prefix}__queueServiceUri")
    account = setting(f"{prefix}__accountName")
    if service_uri:
        endpoint = service_uri.rstrip("/")
    elif account and re.fullmatch(r"[a-z0-9]{3,24}", account):
        endpoint = f"https://{account}.queue.core.windows.net"
    else:
        return None
    credential = _identity_credential(setting(f"{prefix}__credential"), setting(f"{prefix}__clientId") or client_id)
    coding = _ENCODING if encoded else {}
    return QueueClient(endpoint, queue, credential=credential, **coding, **_options())  # type: ignore[arg-type]
