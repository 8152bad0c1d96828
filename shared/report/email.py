"""Sending the daily report through ACS Email, once per day, after the daily summary run.

Once per day: the send's ``Operation-Id`` is a UUID derived from the day, the sender and the recipients
(uuid5), and a successful send is recorded in the summary table (``SummaryStore.record_report_send``). A
retried timer run finds the record and sends nothing; a run that died between the send and the record
sends again with the same operation id, which ACS accepts as the same operation.

Never blocking: ``begin_send(..., polling=False)`` returns on the service's 202 (the SDK would otherwise
poll every 30 s, each poll a rate-limited "Get Email Status" call). The SDK's retry policy retries a 429
(after its ``Retry-After``, if that is short: :class:`_BoundedRetry`) and a 500 a few times.

A failure is logged (status and error code only: ACS error messages can quote addresses), recorded in
the table, reported by :func:`report_health`, and never raised to the summary job.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline.policies import RetryPolicy

from shared.errors import ServiceError
from shared.insights import Insights
from shared.models import ComponentHealth, validate_address
from shared.report.daily import build_daily_report
from shared.report.html import render_report
from shared.settings import Settings
from shared.summaries.table import SummaryStore

if TYPE_CHECKING:
    from azure.communication.email import EmailClient

logger = logging.getLogger(__name__)

#: Namespace of the report operation ids (uuid5): a fixed, arbitrary UUID of this project.
OPERATION_NAMESPACE: Final = uuid.UUID("6f1d7c2e-4b0a-5d8e-9c61-0e3a2f5b7d94")
#: A Retry-After longer than this is not waited for: the send is recorded failed and tried again next run.
MAX_RETRY_AFTER_SECONDS: Final = 30.0
RETRIES: Final = 3
#: How far back /api/health looks for the latest report send.
HEALTH_LOOKBACK_DAYS: Final = 31

SendStatus = Literal["sent", "skipped", "failed", "notConfigured"]


class ReportEmailError(ServiceError):
    """The report email settings are unusable (never quotes the addresses)."""

    title = "Report email misconfigured"


@dataclass(frozen=True)
class EmailSettings:
    """Who gets the report and through which ACS resource (REPORT_*, ACS_* settings)."""

    recipients: tuple[str, ...]
    sender: str
    endpoint: str | None
    connection_string: str | None
    client_id: str | None

    @classmethod
    def of(cls, settings: Settings) -> EmailSettings | None:
        """None when REPORT_RECIPIENTS or REPORT_SENDER is unset (no report email wanted)."""
        recipients, sender = settings.report_recipients, (settings.report_sender or "").strip()
        if not recipients or not sender:
            return None
        try:
            for address in (*recipients, sender):
                validate_address(address)
        except ValueError:
            raise ReportEmailError(
                "REPORT_RECIPIENTS or REPORT_SENDER holds something that is not an address"
            ) from None
        if len(recipients) > 50:
            raise ReportEmailError("REPORT_RECIPIENTS: ACS accepts at most 50 recipients per email")
        endpoint = (settings.acs_endpoint or "").strip() or None
        connection_string = (settings.acs_connection_string or "").strip() or None
        if not endpoint and not connection_string:
            raise ReportEmailError("set ACS_ENDPOINT (managed identity) or ACS_CONNECTION_STRING to send the report")
        return cls(recipients, sender, endpoint, connection_string, settings.client_id)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmailSettings | None:
        return cls.of(Settings.from_env(environ))


def operation_id(day: date, settings: EmailSettings) -> str:
    """The send's operation id: the same for every run of one day to one audience, new for another day."""
    audience = ",".join(sorted(address.lower() for address in settings.recipients))
    return str(uuid.uuid5(OPERATION_NAMESPACE, f"daily-report|{day.isoformat()}|{settings.sender.lower()}|{audience}"))


class _BoundedRetry(RetryPolicy):  # type: ignore[type-arg]
    """azure-core's retry, except that a throttle asking for a long wait is not waited for (the timer
    run would block); the failure is recorded and the next run tries again."""

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > MAX_RETRY_AFTER_SECONDS:
            return False
        return bool(super().is_retry(settings, response))


def make_email_client(settings: EmailSettings) -> EmailClient:
    """The report's EmailClient (built in :mod:`shared.sending.client`), with its bounded retry."""
    from shared.sending.client import AcsAccess, email_client

    retry = _BoundedRetry(retry_total=RETRIES, retry_backoff_factor=0.5, retry_backoff_max=10)
    return email_client(AcsAccess(settings.endpoint, settings.connection_string, settings.client_id), retry)


def build_message(day: date, settings: EmailSettings, store: SummaryStore, insights: Insights | None) -> dict[str, Any]:
    """The ACS message: HTML with ``cid:`` charts as inline attachments, and a plain-text part."""
    report = build_daily_report(store, insights, day)
    rendered = render_report(report, images="cid")
    return {
        "senderAddress": settings.sender,
        "recipients": {"to": [{"address": address} for address in settings.recipients]},
        "content": {"subject": rendered.subject, "plainText": rendered.text, "html": rendered.html},
        "attachments": [
            {
                "name": f"{chart.content_id}.png",
                "contentType": "image/png",
                "contentInBase64": base64.b64encode(chart.png).decode("ascii"),
                "contentId": chart.content_id,
            }
            for chart in rendered.charts
        ],
        "userEngagementTrackingDisabled": True,
    }


def _failure(exc: Exception) -> str:
    """What went wrong, without the service's message (it can quote addresses)."""
    if isinstance(exc, HttpResponseError):
        code = getattr(exc, "error", None)
        code_text = getattr(code, "code", None) or getattr(exc, "error_code", None) or exc.reason or ""
        return f"ACS answered {exc.status_code} {code_text}".rstrip()
    if isinstance(exc, ServiceError):
        return exc.detail
    return f"{type(exc).__name__} talking to ACS"


def send_daily_report(
    store: SummaryStore,
    insights: Insights | None,
    day: date,
    settings: EmailSettings,
    *,
    client: EmailClient | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Send the report of *day* unless its send is already recorded; record the outcome. Never raises
    for a send that fails (the outcome says ``failed``); a table that cannot be read or written raises."""
    now = now or datetime.now(UTC)
    previous = store.report_send(day)
    if previous is not None and previous.get("Status") == "sent":
        logger.info("daily report %s: already sent (operation %s)", day.isoformat(), previous.get("OperationId"))
        return {"date": day.isoformat(), "status": "skipped", "operationId": previous.get("OperationId")}
    attempts = int((previous or {}).get("Attempts") or 0) + 1
    op_id = operation_id(day, settings)
    record: dict[str, Any] = {
        "OperationId": op_id,
        "Attempts": attempts,
        "LastAttemptAt": now,
        "Recipients": len(settings.recipients),
    }
    try:
        message = build_message(day, settings, store, insights)
        client = client or make_email_client(settings)
        poller = client.begin_send(message, operation_id=op_id, polling=False)
        accepted = poller.result() or {}
    except (AzureError, ServiceError, ValueError) as exc:
        detail = _failure(exc)
        logger.error("daily report %s: sending failed (attempt %d): %s", day.isoformat(), attempts, detail)
        store.record_report_send(day, {**record, "Status": "failed", "Error": detail})
        return {"date": day.isoformat(), "status": "failed", "operationId": op_id, "error": detail}
    store.record_report_send(
        day,
        {**record, "Status": "sent", "SentAt": now, "ServiceStatus": str(accepted.get("status") or "")},
    )
    logger.info(
        "daily report %s: sent to %d recipient(s), operation %s", day.isoformat(), len(settings.recipients), op_id
    )
    return {"date": day.isoformat(), "status": "sent", "operationId": op_id}


def send_after_summary(
    run: Mapping[str, Any], store: SummaryStore, insights: Insights | None, settings: Settings | None = None
) -> dict[str, Any]:
    """The hook of the daily summary timer: send the report of the day before ``run["today"]``.

    Skipped when no recipients are configured, or when that day's summary failed in this run (a rerun
    of the timer will send it). Returns a JSON-able outcome.
    """
    day = date.fromisoformat(str(run["today"])) - timedelta(days=1)
    try:
        email = EmailSettings.of(settings or Settings.from_env())
    except ReportEmailError as exc:
        logger.error("daily report %s: not sent: %s", day.isoformat(), exc.detail)
        return {"date": day.isoformat(), "status": "failed", "error": exc.detail}
    if email is None:
        return {"date": day.isoformat(), "status": "notConfigured"}
    if any(item.get("date") == day.isoformat() for item in run.get("failed", [])):
        logger.warning("daily report %s: not sent, the day's summary failed in this run", day.isoformat())
        return {"date": day.isoformat(), "status": "skipped", "error": "the day's summary failed"}
    return send_daily_report(store, insights, day, email)


def report_health(
    store: SummaryStore, *, today: date | None = None, settings: Settings | None = None
) -> ComponentHealth:
    """For /api/health: whether the latest report email went out (not configured counts as healthy)."""
    name = "reportEmail"
    try:
        email = EmailSettings.of(settings or Settings.from_env())
    except ReportEmailError as exc:
        return ComponentHealth(name=name, reachable=False, detail=exc.detail)
    if email is None:
        return ComponentHealth(name=name, reachable=True, detail="not configured (REPORT_RECIPIENTS, REPORT_SENDER)")
    today = today or datetime.now(UTC).date()
    try:
        latest = store.latest_report_send(today - timedelta(days=HEALTH_LOOKBACK_DAYS))
    except ServiceError as exc:
        return ComponentHealth(name=name, reachable=False, detail=exc.detail)
    if latest is None:
        return ComponentHealth(name=name, reachable=True, detail="no report sent yet")
    day = str(latest["RowKey"])
    if latest.get("Status") == "sent":
        return ComponentHealth(
            name=name, reachable=True, detail=f"report of {day} sent at {_when(latest.get('SentAt'))}"
        )
    return ComponentHealth(
        name=name,
        reachable=False,
        detail=f"report of {day} not sent after {latest.get('Attempts')} attempt(s), last at "
        f"{_when(latest.get('LastAttemptAt'))}: {latest.get('Error')}",
    )


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)
